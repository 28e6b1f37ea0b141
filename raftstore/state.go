package raftstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix"

	"github.com/powernode/fedgate/federation"
)

// State is one immutable version of the replicated state. Apply never
// mutates its receiver: it returns a new State that shares every map it did
// not touch. Readers may therefore hold a *State for as long as they like
// and call its getters from any goroutine.
//
// State is deterministic: it never reads a clock (time comes from
// Command.At), never iterates a map to build output without sorting, and
// never generates random values. The same commands applied in the same
// order give byte-identical MarshalJSON output on every node.
//
// Values returned by getters share slices and maps with the State; treat
// them as read-only (Clone before modifying).
type State struct {
	dedupWindow int

	peers       map[string]peerRec
	grants      map[string]grantRec
	contracts   contractReg
	revocations map[string]Revocation // "serial:<hex>" / "spki:<hex>"
	vips        map[string]VIP
	vipHistory  []VIPAssignment
	wgKeys      map[string]WGKey
	wgPeers     map[string]WGPeer
	kv          *iradix.Tree // key → KVEntry
	locks       map[string]Lock
	members     map[string]Member
	findings    map[string]federation.Finding

	// Idempotency window: applied command ID → first Result, and the
	// order they were applied in (big-endian seq → ID) for eviction.
	applied      *iradix.Tree
	appliedOrder *iradix.Tree
	appliedSeq   uint64
	// lastAt is the time of the last applied command.
	lastAt time.Time
}

// NewState returns the initial state with dedupWindow remembered command
// IDs (DefaultDedupWindow if <= 0) and the built-in contract versions
// seeded.
func NewState(dedupWindow int) *State {
	if dedupWindow <= 0 {
		dedupWindow = DefaultDedupWindow
	}
	s := &State{
		dedupWindow:  dedupWindow,
		peers:        map[string]peerRec{},
		grants:       map[string]grantRec{},
		revocations:  map[string]Revocation{},
		vips:         map[string]VIP{},
		wgKeys:       map[string]WGKey{},
		wgPeers:      map[string]WGPeer{},
		kv:           iradix.New(),
		locks:        map[string]Lock{},
		members:      map[string]Member{},
		findings:     map[string]federation.Finding{},
		applied:      iradix.New(),
		appliedOrder: iradix.New(),
	}
	s.seedContracts()
	return s
}

// cow returns a shallow copy of s for a command to modify. Each handler
// replaces (never mutates) the maps it changes.
func (s *State) cow() *State {
	n := *s
	return &n
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := maps.Clone(m)
	if out == nil {
		out = map[K]V{}
	}
	return out
}

type handler func(s *State, at applyCtx, payload json.RawMessage) (*State, string, any, error)

// applyCtx is what a handler knows about the command besides its payload.
type applyCtx struct {
	Index uint64
	Cmd   Command
}

var handlers = map[string]handler{}

func register(typ string, h handler) { handlers[typ] = h }

// Apply applies cmd, applied at raft log index, and returns the new State
// and the result. On refusal it returns the receiver unchanged and an error
// wrapping ErrRefused (a *RefusedError naming the reason). A command whose
// ID is in the idempotency window returns the receiver and the first
// result with Duplicate set.
func (s *State) Apply(index uint64, cmd Command) (*State, Result, error) {
	next, res, err := s.apply(index, cmd)
	if err != nil {
		var re *RefusedError
		if asRefused(err, &re) {
			if re.Type == "" {
				re.Type = cmd.Type
			}
			return s, Result{}, re
		}
		return s, Result{}, &RefusedError{Type: cmd.Type, Reason: err.Error()}
	}
	return next, res, nil
}

func (s *State) apply(index uint64, cmd Command) (*State, Result, error) {
	v := cmd.V
	if v == 0 {
		v = CommandVersion
	}
	if v != CommandVersion {
		return nil, Result{}, refuse("command version %d is not supported (this build applies %d)", cmd.V, CommandVersion)
	}
	if cmd.ID == "" {
		return nil, Result{}, refuse("command has no id")
	}
	if len(cmd.ID) > 128 {
		return nil, Result{}, refuse("command id longer than 128 bytes")
	}
	if cmd.At.IsZero() {
		return nil, Result{}, refuse("command has no leader timestamp")
	}
	// State time never goes backwards: a new leader whose clock is behind
	// the last applied command's is clamped to it (deterministically).
	if cmd.At.Before(s.lastAt) {
		cmd.At = s.lastAt
	}
	if first, ok := s.applied.Get([]byte(cmd.ID)); ok {
		r := first.(Result)
		r.Duplicate = true
		return s, r, nil
	}
	h, ok := handlers[cmd.Type]
	if !ok {
		return nil, Result{}, refuse("unknown command type %q", cmd.Type)
	}
	next, key, data, err := h(s, applyCtx{Index: index, Cmd: cmd}, cmd.Payload)
	if err != nil {
		return nil, Result{}, err
	}
	res := Result{ID: cmd.ID, Index: index, Key: key}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, Result{}, fmt.Errorf("encode result: %w", err)
		}
		res.Data = b
	}
	if next == s {
		next = s.cow()
	}
	next.remember(res)
	next.lastAt = cmd.At
	return next, res, nil
}

func (s *State) remember(res Result) {
	s.appliedSeq++
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], s.appliedSeq)
	s.applied, _, _ = s.applied.Insert([]byte(res.ID), res)
	s.appliedOrder, _, _ = s.appliedOrder.Insert(seq[:], res.ID)
	for s.appliedOrder.Len() > s.dedupWindow {
		k, v, ok := s.appliedOrder.Root().Minimum()
		if !ok {
			break
		}
		s.appliedOrder, _, _ = s.appliedOrder.Delete(k)
		s.applied, _, _ = s.applied.Delete([]byte(v.(string)))
	}
}

// decode strictly decodes a payload: unknown fields and trailing data are
// refused.
func decode(payload json.RawMessage, v any) error {
	if len(payload) == 0 {
		return refuse("payload is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse("malformed payload: %v", err)
	}
	if dec.More() {
		return refuse("malformed payload: trailing data")
	}
	return nil
}

// LastAppliedAt is the (leader-stamped) time of the last applied command;
// State time never decreases.
func (s *State) LastAppliedAt() time.Time { return s.lastAt }

// AppliedIDs reports how many command IDs the idempotency window holds.
func (s *State) AppliedIDs() int { return s.appliedOrder.Len() }

func itoa(v int) string { return strconv.Itoa(v) }
