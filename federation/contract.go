package federation

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

//go:embed contract/v1.txt
var contractV1 string

// ContractV1Digest is the SHA-256 (hex) of the embedded v1 contract text.
const ContractV1Digest = "aebddc1097b29aaee79e22ddd9ebb14b40ea1f27d1dc3e06de937253df65a15f"

// contractV1Effective is the "Effective:" date of the v1 text.
var contractV1Effective = time.Date(2026, 5, 14, 0, 0, 0, 0, time.UTC)

// ContractVersion is a row of system_federation_contract_versions.
type ContractVersion struct {
	Version        int       `json:"version"`
	ContractText   string    `json:"contract_text"`
	ContractDigest string    `json:"contract_digest"`
	EffectiveAt    time.Time `json:"effective_at"`
	DeprecatedAt   time.Time `json:"deprecated_at,omitzero"`
}

// Digest is the SHA-256 hex of a contract text.
func Digest(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// Deprecated reports whether c has been deprecated.
func (c ContractVersion) Deprecated() bool { return !c.DeprecatedAt.IsZero() }

// Validate checks version > 0, non-empty text and that the digest is the
// SHA-256 of the text.
func (c ContractVersion) Validate() error {
	if c.Version <= 0 {
		return fmt.Errorf("%w: version %d is not > 0", ErrContractVersion, c.Version)
	}
	if c.ContractText == "" {
		return fmt.Errorf("%w %d: contract_text: empty", ErrContractVersion, c.Version)
	}
	if got := Digest(c.ContractText); got != c.ContractDigest {
		return fmt.Errorf("contract version %d: %w: contract_digest %q, text hashes to %s",
			c.Version, ErrDigestMismatch, c.ContractDigest, got)
	}
	if c.EffectiveAt.IsZero() {
		return fmt.Errorf("%w %d: effective_at: missing", ErrContractVersion, c.Version)
	}
	return nil
}

// BuiltinContracts returns the contract versions compiled in: v1, embedded
// byte for byte, with its digest.
func BuiltinContracts() []ContractVersion {
	return []ContractVersion{{
		Version:        1,
		ContractText:   contractV1,
		ContractDigest: ContractV1Digest,
		EffectiveAt:    contractV1Effective,
	}}
}

// Registry is the set of contract versions a site knows. It is a plain value
// (JSON: {"versions":[…]} sorted by version) fit for a raft FSM: Add and
// Deprecate return a new Registry and never mutate the receiver. The zero
// value is empty and valid.
type Registry struct {
	Versions []ContractVersion `json:"versions"`
}

// DefaultRegistry is a registry holding BuiltinContracts.
func DefaultRegistry() Registry {
	return Registry{Versions: BuiltinContracts()}
}

// Add returns r with c added. It refuses a version <= 0, a text that does not
// hash to its digest, and a version already present with a different text or
// digest; adding an identical text again is an idempotent no-op (its
// effective_at and deprecated_at stay as first recorded).
func (r Registry) Add(c ContractVersion) (Registry, error) {
	if err := c.Validate(); err != nil {
		return r, fmt.Errorf("add contract: %w", err)
	}
	i, found := r.index(c.Version)
	if found {
		if r.Versions[i].ContractDigest != c.ContractDigest || r.Versions[i].ContractText != c.ContractText {
			return r, fmt.Errorf("add contract: %w: version %d already registered with digest %s, refusing digest %s",
				ErrContractVersion, c.Version, r.Versions[i].ContractDigest, c.ContractDigest)
		}
		return r, nil
	}
	out := make([]ContractVersion, 0, len(r.Versions)+1)
	out = append(out, r.Versions[:i]...)
	out = append(out, c)
	out = append(out, r.Versions[i:]...)
	return Registry{Versions: out}, nil
}

// Deprecate returns r with version v deprecated at at: it stays known to
// existing peerings but new peers cannot adopt it. Deprecating an already
// deprecated version keeps the first time (idempotent).
func (r Registry) Deprecate(v int, at time.Time) (Registry, error) {
	i, found := r.index(v)
	if !found {
		return r, fmt.Errorf("deprecate: %w: version %d unknown", ErrContractVersion, v)
	}
	if at.IsZero() {
		return r, fmt.Errorf("deprecate: %w: version %d: zero time", ErrContractVersion, v)
	}
	if r.Versions[i].Deprecated() {
		return r, nil
	}
	out := slices.Clone(r.Versions)
	out[i].DeprecatedAt = at
	return Registry{Versions: out}, nil
}

// Lookup returns version v.
func (r Registry) Lookup(v int) (ContractVersion, bool) {
	i, found := r.index(v)
	if !found {
		return ContractVersion{}, false
	}
	return r.Versions[i], true
}

// Known reports whether v is registered, deprecated or not. Existing
// peerings on a deprecated version keep working.
func (r Registry) Known(v int) bool {
	for i := range r.Versions {
		if r.Versions[i].Version == v {
			return true
		}
	}
	return false
}

// AdoptableForNewPeer returns nil if a new peering may agree on v: v is
// registered and not deprecated.
func (r Registry) AdoptableForNewPeer(v int) error {
	c, ok := r.Lookup(v)
	if !ok {
		return fmt.Errorf("%w: version %d unsupported (supported: %v)", ErrContractVersion, v, r.SupportedVersions())
	}
	if c.Deprecated() {
		return fmt.Errorf("%w: version %d deprecated at %s; new peers cannot adopt it",
			ErrContractVersion, v, c.DeprecatedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// SupportedVersions lists, ascending, the versions a new peer may adopt (not
// deprecated). This is what the platform's accept endpoint advertises.
func (r Registry) SupportedVersions() []int {
	out := []int{}
	for _, c := range r.Versions {
		if !c.Deprecated() {
			out = append(out, c.Version)
		}
	}
	return out
}

// Validate checks every version (digest matches text), ascending order and
// uniqueness; use it after decoding a registry from JSON.
func (r Registry) Validate() error {
	var errs []error
	for i, c := range r.Versions {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
		if i > 0 && r.Versions[i-1].Version >= c.Version {
			errs = append(errs, fmt.Errorf("%w: versions not strictly ascending at %d", ErrContractVersion, c.Version))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: registry: %w", ErrInvalid, err)
	}
	return nil
}

func (r Registry) index(v int) (int, bool) {
	return slices.BinarySearchFunc(r.Versions, v, func(c ContractVersion, v int) int { return c.Version - v })
}
