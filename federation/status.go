package federation

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status is a FederationPeer status.
type Status string

// The seven peer statuses of the platform.
const (
	StatusProposed  Status = "proposed"
	StatusAccepted  Status = "accepted"
	StatusEnrolled  Status = "enrolled"
	StatusActive    Status = "active"
	StatusDegraded  Status = "degraded"
	StatusSuspended Status = "suspended"
	StatusRevoked   Status = "revoked"
)

// Statuses lists every status in lifecycle order.
func Statuses() []Status {
	return []Status{StatusProposed, StatusAccepted, StatusEnrolled, StatusActive,
		StatusDegraded, StatusSuspended, StatusRevoked}
}

// Valid reports whether s is one of the seven statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusProposed, StatusAccepted, StatusEnrolled, StatusActive,
		StatusDegraded, StatusSuspended, StatusRevoked:
		return true
	}
	return false
}

// Reachable reports whether a peer in status s may call the federation API:
// enrolled, active or degraded.
func (s Status) Reachable() bool {
	return s == StatusEnrolled || s == StatusActive || s == StatusDegraded
}

// EventKind is the platform event kind for a change to status s:
// "federation.peer.<status>".
func (s Status) EventKind() string { return "federation.peer." + string(s) }

// Severity is a FleetEvent severity.
type Severity string

// FleetEvent severities.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// EventSeverity is the severity of the status-change event to s: low for
// proposed/accepted/enrolled/active, medium for degraded/suspended, high for
// revoked.
func (s Status) EventSeverity() Severity {
	switch s {
	case StatusDegraded, StatusSuspended:
		return SeverityMedium
	case StatusRevoked:
		return SeverityHigh
	}
	return SeverityLow
}

// Event kinds other than status changes.
const (
	// EventHeartbeatStale is emitted when active → degraded for lack of heartbeats.
	EventHeartbeatStale = "federation.peer.heartbeat_stale"
	// EventPlatformPeerRevoked is the final notification a revoking peer delivers
	// (commitment 4).
	EventPlatformPeerRevoked = "platform.peer.revoked"
)

// Metadata keys the state machine writes.
const (
	MetaSuspensionReason = "suspension_reason"
	MetaRevocationReason = "revocation_reason"
)

var transitions = map[Status][]Status{
	StatusProposed:  {StatusAccepted, StatusRevoked},
	StatusAccepted:  {StatusEnrolled, StatusSuspended, StatusRevoked},
	StatusEnrolled:  {StatusActive, StatusSuspended, StatusRevoked},
	StatusActive:    {StatusDegraded, StatusSuspended, StatusRevoked},
	StatusDegraded:  {StatusActive, StatusSuspended, StatusRevoked},
	StatusSuspended: {StatusAccepted, StatusRevoked},
	StatusRevoked:   nil,
}

// CanTransition reports, with an error wrapping ErrTransition, whether the
// state machine allows from → to. Revoke is allowed from every status except
// revoked itself (terminal); a change to the same status is refused.
func CanTransition(from, to Status) error {
	if !from.Valid() {
		return fmt.Errorf("%w: unknown status %q", ErrTransition, from)
	}
	if !to.Valid() {
		return fmt.Errorf("%w: unknown status %q", ErrTransition, to)
	}
	if from == to {
		return fmt.Errorf("%w: peer is already %s", ErrTransition, from)
	}
	if from == StatusRevoked {
		return fmt.Errorf("%w: revoked is terminal (to %s)", ErrTransition, to)
	}
	if !slices.Contains(transitions[from], to) {
		return fmt.Errorf("%w: %s → %s", ErrTransition, from, to)
	}
	return nil
}

// Transition returns a copy of p in status to, with UpdatedAt = now. It never
// mutates p. The change to enrolled is refused (ErrDisclosureMissing, naming
// the fields) while any identity-disclosure field is empty. For suspended and
// revoked the reason is recorded in metadata under suspension_reason or
// revocation_reason (an empty reason removes a stale one).
func (p Peer) Transition(to Status, reason string, now time.Time) (Peer, error) {
	if err := CanTransition(p.Status, to); err != nil {
		return Peer{}, fmt.Errorf("peer %s: %w", p.ID, err)
	}
	if to == StatusEnrolled {
		if missing := p.MissingDisclosure(); len(missing) > 0 {
			return Peer{}, fmt.Errorf("peer %s: cannot reach enrolled: %w: %s",
				p.ID, ErrDisclosureMissing, strings.Join(missing, ", "))
		}
	}
	q := p.Clone()
	q.Status = to
	q.UpdatedAt = now
	var key string
	switch to {
	case StatusSuspended:
		key = MetaSuspensionReason
	case StatusRevoked:
		key = MetaRevocationReason
	}
	if key != "" {
		if reason != "" {
			if q.Metadata == nil {
				q.Metadata = make(map[string]string, 1)
			}
			q.Metadata[key] = reason
		} else {
			delete(q.Metadata, key)
		}
	}
	return q, nil
}

// Reachable reports whether p may call the federation API (enrolled, active
// or degraded).
func (p Peer) Reachable() bool { return p.Status.Reachable() }
