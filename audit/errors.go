package audit

import (
	"errors"
	"fmt"
)

// ErrUnavailable is matched (errors.Is) by every error that means "the
// record was not made durable, refuse the call": ErrQueueFull, ErrDiskFull,
// ErrReadOnly, ErrCorrupt, ErrClosed and write errors.
var ErrUnavailable = errors.New("audit: log unavailable")

type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }

// Is makes every unavailableError match ErrUnavailable.
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Sentinel errors. All but ErrDropped, ErrBadRequest and ErrNotFound match
// ErrUnavailable.
var (
	ErrQueueFull = &unavailableError{"audit: queue full"}
	ErrDiskFull  = &unavailableError{"audit: disk full"}
	ErrReadOnly  = &unavailableError{"audit: data dir is read-only"}
	ErrCorrupt   = &unavailableError{"audit: log is corrupt"}
	ErrClosed    = &unavailableError{"audit: log closed"}
	ErrWrite     = &unavailableError{"audit: write failed"}
	// ErrDropped is returned under PolicyDrop when the record was counted
	// and dropped instead of written; the call may proceed.
	ErrDropped = errors.New("audit: record dropped")
	// ErrBadRequest reports an invalid query, export or record.
	ErrBadRequest = errors.New("audit: bad request")
)

// CorruptError names where a segment stops verifying. It matches ErrCorrupt.
type CorruptError struct {
	File   string // segment file name
	Offset int64  // byte offset of the first bad line
	Seq    uint64 // first sequence number that cannot be trusted
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("audit: corrupt segment %s at byte offset %d (seq %d): %s", e.File, e.Offset, e.Seq, e.Reason)
}

// Is makes a CorruptError match ErrCorrupt and ErrUnavailable.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt || target == ErrUnavailable }
