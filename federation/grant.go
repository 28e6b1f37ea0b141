package federation

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Scope is a grant permission scope.
type Scope string

// The four grant scopes.
const (
	ScopeRead    Scope = "read"
	ScopeWrite   Scope = "write"
	ScopeAdmin   Scope = "admin"
	ScopeMigrate Scope = "migrate"
)

// Valid reports whether s is read, write, admin or migrate.
func (s Scope) Valid() bool {
	return s == ScopeRead || s == ScopeWrite || s == ScopeAdmin || s == ScopeMigrate
}

// DefaultGrantLifetime is the platform's default grant lifetime.
const DefaultGrantLifetime = 30 * 24 * time.Hour

// Grant is a FederationGrant: what a peer's remote_subject may do here.
// Empty allowlists (node_instance_ids, sdwan_network_ids, source_cidrs) do
// not restrict; a nil resource_id covers every resource of the kind.
type Grant struct {
	ID               string         `json:"id"`
	FederationPeerID string         `json:"federation_peer_id"`
	RemoteSubject    string         `json:"remote_subject"`
	ResourceKind     string         `json:"resource_kind"`
	ResourceID       *string        `json:"resource_id"`
	PermissionScopes []Scope        `json:"permission_scopes"`
	IssuedAt         time.Time      `json:"issued_at"`
	ExpiresAt        time.Time      `json:"expires_at"`
	RevokedAt        time.Time      `json:"revoked_at,omitzero"`
	RevocationReason string         `json:"revocation_reason,omitempty"`
	NodeInstanceIDs  []string       `json:"node_instance_ids"`
	SDWANNetworkIDs  []string       `json:"sdwan_network_ids"`
	SourceCIDRs      []netip.Prefix `json:"source_cidrs"`
}

// NewGrant returns a grant issued at now that expires after
// DefaultGrantLifetime, covering every resource of kind. It does not validate.
func NewGrant(id, peerID, remoteSubject, kind string, scopes []Scope, now time.Time) Grant {
	return Grant{
		ID:               id,
		FederationPeerID: peerID,
		RemoteSubject:    remoteSubject,
		ResourceKind:     kind,
		PermissionScopes: slices.Clone(scopes),
		IssuedAt:         now,
		ExpiresAt:        now.Add(DefaultGrantLifetime),
		NodeInstanceIDs:  []string{},
		SDWANNetworkIDs:  []string{},
		SourceCIDRs:      []netip.Prefix{},
	}
}

// Clone returns a deep copy of g.
func (g Grant) Clone() Grant {
	h := g
	if g.ResourceID != nil {
		id := *g.ResourceID
		h.ResourceID = &id
	}
	h.PermissionScopes = slices.Clone(g.PermissionScopes)
	h.NodeInstanceIDs = slices.Clone(g.NodeInstanceIDs)
	h.SDWANNetworkIDs = slices.Clone(g.SDWANNetworkIDs)
	h.SourceCIDRs = slices.Clone(g.SourceCIDRs)
	return h
}

// Expired reports whether g has expired at now (expiry to the second:
// expired from expires_at on).
func (g Grant) Expired(now time.Time) bool { return !now.Before(g.ExpiresAt) }

// Revoked reports whether g has been revoked.
func (g Grant) Revoked() bool { return !g.RevokedAt.IsZero() }

// Active reports whether g is neither expired nor revoked at now.
func (g Grant) Active(now time.Time) bool { return !g.Expired(now) && !g.Revoked() }

// Revoke returns a copy of g revoked at now with reason; g is unchanged.
// Revoking a revoked grant is refused with ErrGrantRevoked.
func (g Grant) Revoke(reason string, now time.Time) (Grant, error) {
	if g.Revoked() {
		return Grant{}, fmt.Errorf("grant %s: %w", g.ID, ErrGrantRevoked)
	}
	h := g.Clone()
	h.RevokedAt = now
	h.RevocationReason = reason
	return h, nil
}

// HasScope reports whether g carries scope s.
func (g Grant) HasScope(s Scope) bool { return s != "" && slices.Contains(g.PermissionScopes, s) }

// Validate checks the shape of g; errors name the field by its JSON name.
func (g Grant) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fieldErr(field, err))
		}
	}
	add("id", ParseID(g.ID))
	add("federation_peer_id", ParseID(g.FederationPeerID))
	if g.RemoteSubject == "" {
		add("remote_subject", errors.New("missing"))
	} else if len(g.RemoteSubject) > MaxSubjectLen {
		add("remote_subject", fmt.Errorf("%d bytes, at most %d", len(g.RemoteSubject), MaxSubjectLen))
	} else {
		add("remote_subject", checkOptText(g.RemoteSubject, MaxSubjectLen))
	}
	add("resource_kind", checkToken(g.ResourceKind, 128))
	if g.ResourceID != nil {
		add("resource_id", checkToken(*g.ResourceID, 256))
	}
	if len(g.PermissionScopes) == 0 {
		add("permission_scopes", errors.New("empty"))
	}
	for i, s := range g.PermissionScopes {
		if !s.Valid() {
			add(fmt.Sprintf("permission_scopes[%d]", i), fmt.Errorf("%q is not read, write, admin or migrate", s))
		} else if slices.Index(g.PermissionScopes, s) != i {
			add(fmt.Sprintf("permission_scopes[%d]", i), fmt.Errorf("duplicate %q", s))
		}
	}
	if g.IssuedAt.IsZero() {
		add("issued_at", errors.New("missing"))
	}
	if g.ExpiresAt.IsZero() {
		add("expires_at", errors.New("missing"))
	} else if !g.ExpiresAt.After(g.IssuedAt) {
		add("expires_at", errors.New("not after issued_at"))
	}
	if g.RevokedAt.IsZero() && g.RevocationReason != "" {
		add("revocation_reason", errors.New("set on a grant that is not revoked"))
	}
	add("revocation_reason", checkOptText(g.RevocationReason, 1024))
	for i, id := range g.NodeInstanceIDs {
		add(fmt.Sprintf("node_instance_ids[%d]", i), ParseUUID(id))
	}
	for i, id := range g.SDWANNetworkIDs {
		add(fmt.Sprintf("sdwan_network_ids[%d]", i), ParseUUID(id))
	}
	for i, p := range g.SourceCIDRs {
		if !p.IsValid() {
			add(fmt.Sprintf("source_cidrs[%d]", i), errors.New("invalid prefix"))
		} else if p != p.Masked() {
			add(fmt.Sprintf("source_cidrs[%d]", i), fmt.Errorf("%s has host bits set (want %s)", p, p.Masked()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: grant %s: %w", ErrInvalid, g.ID, err)
	}
	return nil
}
