package raftstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// fsmResponse is what fsm.Apply returns to the raft future.
type fsmResponse struct {
	res Result
	err error
}

// fsm is the thin raft FSM: decode, hand to State, publish.
type fsm struct {
	state   atomic.Pointer[State]
	window  int
	metrics *metrics
	// onApply is called after each successfully applied (non-duplicate)
	// command and after a restore; it must not block.
	onApply func(Event)
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(window int, m *metrics, onApply func(Event)) *fsm {
	f := &fsm{window: window, metrics: m, onApply: onApply}
	f.state.Store(NewState(window))
	return f
}

// decodeCommand strictly decodes a log entry's command envelope.
func decodeCommand(data []byte) (Command, error) {
	var c Command
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, &RefusedError{Reason: fmt.Sprintf("malformed command envelope: %v", err)}
	}
	return c, nil
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := decodeCommand(l.Data)
	if err != nil {
		f.metrics.applied.WithLabelValues("", "refused").Inc()
		return &fsmResponse{err: err}
	}
	cur := f.state.Load()
	next, res, err := cur.Apply(l.Index, cmd)
	switch {
	case err != nil:
		f.metrics.applied.WithLabelValues(cmd.Type, "refused").Inc()
		return &fsmResponse{err: err}
	case res.Duplicate:
		f.metrics.applied.WithLabelValues(cmd.Type, "duplicate").Inc()
		return &fsmResponse{res: res}
	}
	f.state.Store(next)
	f.metrics.applied.WithLabelValues(cmd.Type, "applied").Inc()
	if f.onApply != nil {
		f.onApply(Event{Index: l.Index, Type: cmd.Type, Key: res.Key})
	}
	return &fsmResponse{res: res}
}

// Snapshot captures the current immutable State; Persist may run
// concurrently with later Applies because State is never mutated.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{s: f.state.Load()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("restore: read snapshot: %w", err)
	}
	s, err := DecodeState(data, f.window)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.state.Store(s)
	if f.onApply != nil {
		f.onApply(Event{Type: EventRestore})
	}
	return nil
}

type fsmSnapshot struct{ s *State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.s.MarshalJSON()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
