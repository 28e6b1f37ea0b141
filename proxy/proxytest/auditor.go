package proxytest

import (
	"context"
	"sync"

	"github.com/powernode/fedgate/audit"
)

// Auditor records appended records in memory. SetErr makes Append fail
// (fail-closed tests).
type Auditor struct {
	mu      sync.Mutex
	records []audit.Record
	err     error
}

// Append implements proxy.Auditor.
func (a *Auditor) Append(_ context.Context, r audit.Record) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return 0, a.err
	}
	r.Seq = uint64(len(a.records) + 1)
	a.records = append(a.records, r)
	return r.Seq, nil
}

// SetErr sets the error every later Append returns (nil: succeed).
func (a *Auditor) SetErr(err error) {
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
}

// Records returns a copy of the records so far.
func (a *Auditor) Records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.records...)
}
