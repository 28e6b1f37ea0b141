package raftstore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by Store methods wrap one of these where
// it applies; test with errors.Is.
var (
	// ErrNotLeader is returned by operations that must run on the leader
	// when this node is not the leader (only seen when forwarding is
	// impossible, e.g. VerifyLeader).
	ErrNotLeader = errors.New("raftstore: not the leader")
	// ErrNoLeader is returned when no leader is known before the context
	// expires.
	ErrNoLeader = errors.New("raftstore: no leader")
	// ErrNotFound is returned for a missing key, peer, member or record.
	ErrNotFound = errors.New("raftstore: not found")
	// ErrRefused is wrapped by every refusal of a command by State; the
	// state is unchanged. Use errors.As with *RefusedError for the reason.
	ErrRefused = errors.New("raftstore: refused")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("raftstore: closed")
	// ErrExistingState is returned by Bootstrap when the data dir already
	// holds raft state (the node is or was part of a cluster).
	ErrExistingState = errors.New("raftstore: existing raft state")
	// ErrCorrupt is returned by Open when a file in the data dir cannot be
	// read as what it should be; the file is named in the error and left
	// untouched.
	ErrCorrupt = errors.New("raftstore: corrupt data")
	// ErrInvalidConfig is wrapped by Config.Validate errors.
	ErrInvalidConfig = errors.New("raftstore: invalid config")
)

// RefusedError is a command refusal with its reason. It unwraps to
// ErrRefused.
type RefusedError struct {
	Type   string // command type
	Reason string
	// NotFound marks a refusal because the named record does not exist;
	// errors.Is(err, ErrNotFound) is then true as well.
	NotFound bool
}

func (e *RefusedError) Error() string {
	if e.Type == "" {
		return "refused: " + e.Reason
	}
	return fmt.Sprintf("%s refused: %s", e.Type, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Is reports ErrNotFound for not-found refusals.
func (e *RefusedError) Is(target error) bool { return e.NotFound && target == ErrNotFound }

func notFound(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...), NotFound: true}
}

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

func asRefused(err error, target **RefusedError) bool {
	return errors.As(err, target)
}
