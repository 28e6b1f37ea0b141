package raftstore

import (
	"encoding/json"
	"time"
)

// CommandVersion is the only envelope version this build applies. A newer
// version is refused (never half-understood), so a mixed-version cluster
// must be upgraded before new command shapes are used.
const CommandVersion = 1

// Command is the replicated write envelope. It is idempotent by ID: a
// command whose ID was applied recently (see Config.DedupWindow) is a no-op
// that returns the first result.
type Command struct {
	// V is the envelope version; 0 means CommandVersion.
	V int `json:"v"`
	// ID is the idempotency key; Store.Apply generates a UUIDv7 when empty.
	ID string `json:"id"`
	// Type names the command (the Cmd* constants).
	Type string `json:"type"`
	// At is stamped by the leader (Store.Apply ignores a caller's value) so
	// that State never reads a clock: lock expiry, issued_at and history
	// timestamps all come from here.
	At time.Time `json:"at"`
	// Payload is the type-specific body (the *Payload types).
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Result is what an applied command returns.
type Result struct {
	// ID is the command ID.
	ID string `json:"id"`
	// Index is the raft log index the command was applied at (the first
	// application for a duplicate).
	Index uint64 `json:"index"`
	// Duplicate is true when the ID had already been applied and this
	// application was a no-op.
	Duplicate bool `json:"duplicate,omitempty"`
	// Key names what changed ("peer/<id>", "kv/<key>", …), as in Event.
	Key string `json:"key,omitempty"`
	// Data is an optional type-specific answer (e.g. the lock record).
	Data json.RawMessage `json:"data,omitempty"`
}

// Command types.
const (
	CmdPeerAdd           = "peer.add"
	CmdPeerUpdate        = "peer.update"
	CmdPeerTransition    = "peer.transition"
	CmdPeerRevoke        = "peer.revoke"
	CmdGrantIssue        = "grant.issue"
	CmdGrantRevoke       = "grant.revoke"
	CmdContractAdd       = "contract.add"
	CmdContractDeprecate = "contract.deprecate"
	CmdCertRevoke        = "cert.revoke"
	CmdVIPPut            = "vip.put"
	CmdVIPDelete         = "vip.delete"
	CmdVIPAssign         = "vip.assign"
	CmdWGKeyPut          = "wg.key.put"
	CmdWGPeerPut         = "wg.peer.put"
	CmdWGPeerDelete      = "wg.peer.delete"
	CmdKVPut             = "kv.put"
	CmdKVDelete          = "kv.delete"
	CmdLockAcquire       = "lock.acquire"
	CmdLockRelease       = "lock.release"
	CmdMemberPut         = "member.put"
	CmdMemberDelete      = "member.delete"
	CmdFindingAdd        = "finding.add"
)

// NewCommand builds a Command of type typ with payload marshalled to JSON.
func NewCommand(typ string, payload any) (Command, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return Command{}, err
	}
	return Command{V: CommandVersion, Type: typ, Payload: b}, nil
}

// MustCommand is NewCommand for payloads that always marshal (the payload
// structs of this package); it panics otherwise.
func MustCommand(typ string, payload any) Command {
	c, err := NewCommand(typ, payload)
	if err != nil {
		panic(err)
	}
	return c
}
