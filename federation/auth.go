package federation

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"
)

// Denial reasons (AuthError.Reason), in the platform's check order.
const (
	// 401: the caller is not authenticated for a grant.
	ReasonTokenMissing      = "token_missing"
	ReasonTokenInvalid      = "token_invalid"
	ReasonGrantNotFound     = "grant_not_found"
	ReasonGrantPeerMismatch = "grant_peer_mismatch"
	ReasonGrantExpired      = "grant_expired"
	ReasonGrantRevoked      = "grant_revoked"
	// 403: the grant does not cover the request.
	ReasonResourceKindDenied = "resource_kind_denied"
	ReasonResourceDenied     = "resource_denied"
	ReasonScopeDenied        = "scope_denied"
	ReasonNodeInstanceDenied = "node_instance_denied"
	ReasonSDWANNetworkDenied = "sdwan_network_denied"
	ReasonSourceCIDRDenied   = "source_cidr_denied"
	// 403: Authorize's checks before the grant.
	ReasonPeerNotReachable         = "peer_not_reachable"
	ReasonContractMismatch         = "contract_mismatch"
	ReasonCapabilityNotDeclared    = "capability_not_declared"
	ReasonSchemaVersionNotDeclared = "schema_version_not_declared"
)

// AuthError is a denial with the HTTP status the proxy answers and a stable
// snake_case reason (one of the Reason constants).
type AuthError struct {
	Status int
	Reason string
	// Err is the underlying cause, if any (e.g. ErrNoSecret, ErrTokenMismatch).
	Err error
}

func (e *AuthError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("federation: %d %s: %v", e.Status, e.Reason, e.Err)
	}
	return fmt.Sprintf("federation: %d %s", e.Status, e.Reason)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Preallocated denials: the deny path does not allocate either.
var (
	errTokenMissing       = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonTokenMissing}
	errGrantNotFound      = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonGrantNotFound}
	errGrantPeerMismatch  = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonGrantPeerMismatch}
	errGrantExpired       = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonGrantExpired}
	errGrantRevoked       = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonGrantRevoked}
	errResourceKindDenied = &AuthError{Status: http.StatusForbidden, Reason: ReasonResourceKindDenied}
	errResourceDenied     = &AuthError{Status: http.StatusForbidden, Reason: ReasonResourceDenied}
	errScopeDenied        = &AuthError{Status: http.StatusForbidden, Reason: ReasonScopeDenied}
	errNodeInstanceDenied = &AuthError{Status: http.StatusForbidden, Reason: ReasonNodeInstanceDenied}
	errSDWANNetworkDenied = &AuthError{Status: http.StatusForbidden, Reason: ReasonSDWANNetworkDenied}
	errSourceCIDRDenied   = &AuthError{Status: http.StatusForbidden, Reason: ReasonSourceCIDRDenied}
	errPeerNotReachable   = &AuthError{Status: http.StatusForbidden, Reason: ReasonPeerNotReachable}
	errContractMismatch   = &AuthError{Status: http.StatusForbidden, Reason: ReasonContractMismatch}
	errCapability         = &AuthError{Status: http.StatusForbidden, Reason: ReasonCapabilityNotDeclared}
	errSchemaVersion      = &AuthError{Status: http.StatusForbidden, Reason: ReasonSchemaVersionNotDeclared}
	errTokenInvalid       = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonTokenInvalid, Err: ErrTokenMismatch}
	errTokenMalformed     = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonTokenInvalid, Err: ErrTokenMalformed}
	errTokenNoSecret      = &AuthError{Status: http.StatusUnauthorized, Reason: ReasonTokenInvalid, Err: ErrNoSecret}
)

// GrantRequest is what a call asks of a grant.
type GrantRequest struct {
	// PeerID is the authenticated calling peer (from its certificate).
	PeerID string
	// Token is the bearer token without "Bearer " ("fgs.…"); empty if none.
	Token          string
	ResourceKind   string
	ResourceID     string // empty for calls on the kind as a whole
	Scope          Scope
	NodeInstanceID string // empty if the call targets no node instance
	SDWANNetworkID string // empty if the call targets no SDWAN network
	SourceIP       netip.Addr
}

// CheckGrant checks req in the platform's order — token present, token
// verifies (constant time, fails closed without a secret), grant found,
// grant belongs to the calling peer, not expired, not revoked (401s); then
// resource kind, resource id, scope, node instance, SDWAN network, source
// CIDR (403s) — and returns the grant or an *AuthError.
func CheckGrant(req GrantRequest, lookup func(id string) (Grant, bool), secret []byte, now time.Time) (Grant, error) {
	return checkGrant(req, lookup, nil, secret, now)
}

// CheckGrantKey is CheckGrant with a prepared TokenKey (the fast path); a nil
// key fails closed.
func CheckGrantKey(req GrantRequest, lookup func(id string) (Grant, bool), key *TokenKey, now time.Time) (Grant, error) {
	if key == nil {
		return checkGrant(req, lookup, nil, nil, now)
	}
	return checkGrant(req, lookup, key, nil, now)
}

func checkGrant(req GrantRequest, lookup func(id string) (Grant, bool), key *TokenKey, secret []byte, now time.Time) (Grant, error) {
	if req.Token == "" {
		return Grant{}, errTokenMissing
	}
	var id string
	var err error
	if key != nil {
		id, err = key.Verify(req.Token)
	} else {
		id, err = VerifyToken(secret, req.Token)
	}
	switch err {
	case nil:
	case ErrNoSecret:
		return Grant{}, errTokenNoSecret
	case ErrTokenMalformed:
		return Grant{}, errTokenMalformed
	default:
		return Grant{}, errTokenInvalid
	}
	if lookup == nil {
		return Grant{}, errGrantNotFound
	}
	g, ok := lookup(id)
	if !ok || g.ID != id {
		return Grant{}, errGrantNotFound
	}
	if req.PeerID == "" || g.FederationPeerID != req.PeerID {
		return Grant{}, errGrantPeerMismatch
	}
	if g.Expired(now) {
		return Grant{}, errGrantExpired
	}
	if g.Revoked() {
		return Grant{}, errGrantRevoked
	}
	if req.ResourceKind == "" || g.ResourceKind != req.ResourceKind {
		return Grant{}, errResourceKindDenied
	}
	if g.ResourceID != nil && *g.ResourceID != req.ResourceID {
		return Grant{}, errResourceDenied
	}
	if !g.HasScope(req.Scope) {
		return Grant{}, errScopeDenied
	}
	if len(g.NodeInstanceIDs) > 0 && (req.NodeInstanceID == "" || !slices.Contains(g.NodeInstanceIDs, req.NodeInstanceID)) {
		return Grant{}, errNodeInstanceDenied
	}
	if len(g.SDWANNetworkIDs) > 0 && (req.SDWANNetworkID == "" || !slices.Contains(g.SDWANNetworkIDs, req.SDWANNetworkID)) {
		return Grant{}, errSDWANNetworkDenied
	}
	if len(g.SourceCIDRs) > 0 && !prefixesContain(g.SourceCIDRs, req.SourceIP) {
		return Grant{}, errSourceCIDRDenied
	}
	return g, nil
}

func prefixesContain(ps []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// CallRequest is one call through the proxy, as Authorize sees it.
type CallRequest struct {
	// ResourceKind is the route's resource kind; it must be declared in the
	// peer's capabilities (an empty kind is refused: default deny).
	ResourceKind string
	// SchemaVersion, if set, must be declared for ResourceKind.
	SchemaVersion string
	// RequiresGrant is set when the route requires a grant. A call that
	// carries a token is grant-checked even on a route that does not.
	RequiresGrant bool
	// Token is the bearer token ("fgs.…") without the "Bearer " prefix.
	Token          string
	ResourceID     string
	Scope          Scope
	NodeInstanceID string
	SDWANNetworkID string
	SourceIP       netip.Addr
	// AssertedSubject is the Powernode-Remote-Subject header of an
	// authenticated peer, empty if absent.
	AssertedSubject string
	// CertSubject is the verified client certificate subject (CN).
	CertSubject string
}

// AuthState is the replicated state Authorize reads: the contract registry,
// the grant lookup and the grant-token secret, either prepared (Key, the fast
// path, preferred when set) or raw (Secret). With neither, grant checks fail
// closed.
type AuthState struct {
	Contracts   Registry
	LookupGrant func(id string) (Grant, bool)
	Key         *TokenKey
	Secret      []byte
}

// Decision is an allowed call: who acts on the peer's side and under which
// grant (HasGrant false when the call carried none).
type Decision struct {
	RemoteSubject string
	Grant         Grant
	HasGrant      bool
}

// Authorize decides a call from (inbound) or to (outbound) peer p, in the
// order the proxy needs: p reachable (403 peer_not_reachable); p's
// contract_version_agreed known to the registry, deprecated or not (403
// contract_mismatch); the route's resource kind (and schema version if given)
// declared in p's capabilities (403 capability_not_declared /
// schema_version_not_declared — the caller raises peer_capability_drift /
// peer_schema_version_drift); then CheckGrant when the route requires a grant
// or the call carries a token. Denials are *AuthError values.
func Authorize(p Peer, req CallRequest, st AuthState, now time.Time) (Decision, error) {
	if !p.Status.Reachable() {
		return Decision{}, errPeerNotReachable
	}
	if p.ContractVersionAgreed <= 0 || !st.Contracts.Known(p.ContractVersionAgreed) {
		return Decision{}, errContractMismatch
	}
	if !p.Capabilities.Declares(req.ResourceKind) {
		return Decision{}, errCapability
	}
	if req.SchemaVersion != "" && !p.Capabilities.DeclaresSchema(req.ResourceKind, req.SchemaVersion) {
		return Decision{}, errSchemaVersion
	}
	if !req.RequiresGrant && req.Token == "" {
		return Decision{RemoteSubject: RemoteSubject(nil, req.AssertedSubject, req.CertSubject)}, nil
	}
	g, err := checkGrant(GrantRequest{
		PeerID:         p.ID,
		Token:          req.Token,
		ResourceKind:   req.ResourceKind,
		ResourceID:     req.ResourceID,
		Scope:          req.Scope,
		NodeInstanceID: req.NodeInstanceID,
		SDWANNetworkID: req.SDWANNetworkID,
		SourceIP:       req.SourceIP,
	}, st.LookupGrant, st.Key, st.Secret, now)
	if err != nil {
		return Decision{}, err
	}
	return Decision{RemoteSubject: g.RemoteSubject, Grant: g, HasGrant: true}, nil
}

// RemoteSubject chooses who acts on the peer's side (ARCHITECTURE.md): the
// grant's remote_subject when the call carries a grant; else the subject the
// authenticated peer asserts in Powernode-Remote-Subject if it is non-empty,
// at most MaxSubjectLen bytes, UTF-8 and free of control characters; else the
// certificate subject.
func RemoteSubject(grant *Grant, asserted, certSubject string) string {
	if grant != nil && grant.RemoteSubject != "" {
		return grant.RemoteSubject
	}
	if asserted != "" && len(asserted) <= MaxSubjectLen && cleanSubject(asserted) {
		return asserted
	}
	return certSubject
}

func cleanSubject(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}
