package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Revocation names a revoked certificate by serial, by SPKI hash, or both.
type Revocation struct {
	// Serial of the certificate; nil when revoked by key only.
	Serial *big.Int
	// SPKI is the SHA-256 of the SubjectPublicKeyInfo; zero when by serial only.
	SPKI      [32]byte
	RevokedAt time.Time
	Reason    string
}

// ParseRevocationTarget parses an operator's revoke argument: "serial:<hex>"
// or "spki:<64 hex>" (a bare value is a hex serial).
func ParseRevocationTarget(s string) (Revocation, error) {
	kind, v, found := strings.Cut(s, ":")
	if !found {
		kind, v = "serial", s
	}
	switch kind {
	case "serial":
		n, ok := new(big.Int).SetString(v, 16)
		if !ok || n.Sign() <= 0 || len(v) > 40 {
			return Revocation{}, fmt.Errorf("%w: serial %q is not a positive hex number of at most 20 bytes", ErrConfig, v)
		}
		return Revocation{Serial: n}, nil
	case "spki":
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != sha256.Size {
			return Revocation{}, fmt.Errorf("%w: spki %q is not 64 hex digits", ErrConfig, v)
		}
		var r Revocation
		copy(r.SPKI[:], b)
		return r, nil
	}
	return Revocation{}, fmt.Errorf("%w: revocation target %q: want serial:<hex> or spki:<hex>", ErrConfig, s)
}

// RevocationSet is an immutable set of revocations; it implements
// RevocationChecker. Build a new one when the replicated list changes and
// swap it in.
type RevocationSet struct {
	serials map[string]struct{}
	spkis   map[[32]byte]struct{}
}

// NewRevocationSet builds a set from entries.
func NewRevocationSet(entries []Revocation) *RevocationSet {
	s := &RevocationSet{serials: map[string]struct{}{}, spkis: map[[32]byte]struct{}{}}
	for _, e := range entries {
		if e.Serial != nil {
			s.serials[string(e.Serial.Bytes())] = struct{}{}
		}
		if e.SPKI != ([32]byte{}) {
			s.spkis[e.SPKI] = struct{}{}
		}
	}
	return s
}

// Revoked implements RevocationChecker.
func (s *RevocationSet) Revoked(serial *big.Int, spki [32]byte) bool {
	if s == nil {
		return false
	}
	if serial != nil {
		if _, ok := s.serials[string(serial.Bytes())]; ok {
			return true
		}
	}
	_, ok := s.spkis[spki]
	return ok
}

// Len returns the number of distinct serials and SPKI hashes.
func (s *RevocationSet) Len() int { return len(s.serials) + len(s.spkis) }

// RevocationHook is registered by the proxy and called (after the
// revocation is applied to the local state) with what was newly revoked, so
// that live connections that used those certificates are closed.
type RevocationHook func(revoked []Revocation)

// MatchesAny reports whether a certificate is named by any of revoked.
func MatchesAny(c *x509.Certificate, revoked []Revocation) bool {
	spki := SPKIHash(c)
	for _, r := range revoked {
		if r.Serial != nil && r.Serial.Cmp(c.SerialNumber) == 0 {
			return true
		}
		if r.SPKI != ([32]byte{}) && r.SPKI == spki {
			return true
		}
	}
	return false
}

// Revocations is the node's current revocation list: a RevocationChecker
// for the verifiers and a fan-out to hooks. The agent calls Update from its
// raftstore watcher with the full replicated list; hooks (the proxy's
// connection closer) receive only what is new.
type Revocations struct {
	mu    sync.Mutex
	set   atomic.Pointer[RevocationSet]
	list  []Revocation
	hooks []RevocationHook
}

// OnRevoke registers a hook.
func (r *Revocations) OnRevoke(h RevocationHook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, h)
}

// Update replaces the list. The new set is in force for every handshake
// that starts after Update begins calling hooks; hooks run synchronously,
// in registration order, with the entries that were not in the old list.
func (r *Revocations) Update(entries []Revocation) {
	r.mu.Lock()
	old := NewRevocationSet(r.list)
	r.list = slices.Clone(entries)
	r.set.Store(NewRevocationSet(entries))
	var added []Revocation
	for _, e := range entries {
		if !old.Revoked(e.Serial, e.SPKI) {
			added = append(added, e)
		}
	}
	hooks := slices.Clone(r.hooks)
	r.mu.Unlock()
	if len(added) == 0 {
		return
	}
	for _, h := range hooks {
		h(added)
	}
}

// List returns the current entries.
func (r *Revocations) List() []Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// Revoked implements RevocationChecker.
func (r *Revocations) Revoked(serial *big.Int, spki [32]byte) bool {
	return r.set.Load().Revoked(serial, spki)
}
