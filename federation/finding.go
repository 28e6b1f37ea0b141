package federation

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// FindingKind is the kind of a governance finding.
type FindingKind string

// Finding kinds.
const (
	FindingCapabilityDrift    FindingKind = "peer_capability_drift"
	FindingHeartbeatStale     FindingKind = "peer_heartbeat_stale"
	FindingResidencyMissing   FindingKind = "peer_residency_missing"
	FindingSchemaVersionDrift FindingKind = "peer_schema_version_drift"
	FindingContractMismatch   FindingKind = "contract_mismatch"
)

// Valid reports whether k is a known finding kind.
func (k FindingKind) Valid() bool {
	switch k {
	case FindingCapabilityDrift, FindingHeartbeatStale, FindingResidencyMissing,
		FindingSchemaVersionDrift, FindingContractMismatch:
		return true
	}
	return false
}

// Hard reports whether k violates a hard norm (commitments 3 and 12:
// capability drift, schema-version drift, contract mismatch); only hard
// findings count towards automatic suspension.
func (k FindingKind) Hard() bool {
	return k == FindingCapabilityDrift || k == FindingSchemaVersionDrift || k == FindingContractMismatch
}

// Severity is the FleetEvent severity of a finding of kind k.
func (k FindingKind) Severity() Severity {
	if k.Hard() {
		return SeverityHigh
	}
	return SeverityMedium
}

// Finding is one observed violation by a peer.
type Finding struct {
	ID     string      `json:"id"`
	PeerID string      `json:"peer_id"`
	Kind   FindingKind `json:"kind"`
	Detail string      `json:"detail"`
	At     time.Time   `json:"at"`
}

// NewFinding returns a finding with a fresh UUIDv7 id (from now and rand).
func NewFinding(peerID string, kind FindingKind, detail string, now time.Time, rand io.Reader) (Finding, error) {
	id, err := NewID(now, rand)
	if err != nil {
		return Finding{}, fmt.Errorf("new finding: %w", err)
	}
	f := Finding{ID: id, PeerID: peerID, Kind: kind, Detail: detail, At: now}
	if err := f.Validate(); err != nil {
		return Finding{}, err
	}
	return f, nil
}

// Validate checks the shape of f.
func (f Finding) Validate() error {
	var errs []error
	if err := ParseID(f.ID); err != nil {
		errs = append(errs, fieldErr("id", err))
	}
	if err := ParseID(f.PeerID); err != nil {
		errs = append(errs, fieldErr("peer_id", err))
	}
	if !f.Kind.Valid() {
		errs = append(errs, fieldErr("kind", fmt.Errorf("unknown kind %q", f.Kind)))
	}
	if err := checkOptText(f.Detail, 4096); err != nil {
		errs = append(errs, fieldErr("detail", err))
	}
	if f.At.IsZero() {
		errs = append(errs, fieldErr("at", errors.New("missing")))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: finding: %w", ErrInvalid, err)
	}
	return nil
}

// SuspendPolicy suspends a peer automatically after Threshold hard-norm
// findings within Window.
type SuspendPolicy struct {
	Threshold int           `json:"threshold" yaml:"threshold"`
	Window    time.Duration `json:"window" yaml:"window"`
}

// DefaultSuspendPolicy is 3 hard findings within 24 hours.
func DefaultSuspendPolicy() SuspendPolicy {
	return SuspendPolicy{Threshold: 3, Window: 24 * time.Hour}
}

// Validate checks Threshold >= 1 and Window > 0.
func (sp SuspendPolicy) Validate() error {
	if sp.Threshold < 1 {
		return fmt.Errorf("%w: suspend policy: threshold %d < 1", ErrInvalid, sp.Threshold)
	}
	if sp.Window <= 0 {
		return fmt.Errorf("%w: suspend policy: window %s <= 0", ErrInvalid, sp.Window)
	}
	return nil
}

// HardCount counts hard findings with At in (now-Window, now].
func (sp SuspendPolicy) HardCount(findings []Finding, now time.Time) int {
	from := now.Add(-sp.Window)
	n := 0
	for _, f := range findings {
		if f.Kind.Hard() && f.At.After(from) && !f.At.After(now) {
			n++
		}
	}
	return n
}

// ShouldSuspend reports whether findings (of one peer: the caller filters)
// hold at least Threshold hard findings within the Window ending at now. An
// invalid policy never suspends.
func (sp SuspendPolicy) ShouldSuspend(findings []Finding, now time.Time) bool {
	if sp.Validate() != nil {
		return false
	}
	return sp.HardCount(findings, now) >= sp.Threshold
}
