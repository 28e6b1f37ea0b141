package federation

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// PeerKind is what a peer federates for.
type PeerKind string

// Peer kinds.
const (
	PeerKindSDWANOnly PeerKind = "sdwan_only"
	PeerKindPlatform  PeerKind = "platform"
)

// EndpointScope is where an endpoint is reachable from.
type EndpointScope string

// Endpoint scopes.
const (
	ScopeLAN   EndpointScope = "lan"
	ScopeSDWAN EndpointScope = "sdwan"
	ScopeWAN   EndpointScope = "wan"
)

// Limits from the platform.
const (
	// MaxEndpoints is the most endpoints a peer may declare.
	MaxEndpoints = 10
	// MaxSubjectLen is the longest remote_subject (grant or asserted header).
	MaxSubjectLen = 256
	// WireGuardKeyLen is the length of a decoded WireGuard public key.
	WireGuardKeyLen = 32
	// SubjectPrefix prefixes a peer certificate CN: "fed:<peer-id>".
	SubjectPrefix = "fed:"
)

// Endpoint is one address of a peer, tried in priority order (lower first).
type Endpoint struct {
	URL      string        `json:"url"`
	Scope    EndpointScope `json:"scope"`
	Priority int           `json:"priority"`
	CIDRHint string        `json:"cidr_hint,omitempty"`
}

// Capabilities is what a peer declares it serves (commitment 3).
type Capabilities struct {
	ResourceKinds    []string            `json:"resource_kinds"`
	SchemaVersions   map[string][]string `json:"schema_versions,omitempty"`
	FilterPredicates []string            `json:"filter_predicates,omitempty"`
}

// Peer is a FederationPeer: every field of the platform's record plus the
// WireGuard key, VIPs, the subject the peer assigned to us and the
// identity-disclosure heartbeat metadata.
type Peer struct {
	ID                        string            `json:"id"`
	RemoteInstanceURL         string            `json:"remote_instance_url,omitempty"`
	RemoteInstanceID          string            `json:"remote_instance_id,omitempty"`
	Status                    Status            `json:"status"`
	SignedAt                  time.Time         `json:"signed_at,omitzero"`
	ExpiresAt                 time.Time         `json:"expires_at,omitzero"`
	PeerKind                  PeerKind          `json:"peer_kind"`
	SpawnMode                 string            `json:"spawn_mode,omitempty"`
	SpawnRole                 string            `json:"spawn_role,omitempty"`
	ParentPeerID              string            `json:"parent_peer_id,omitempty"`
	ContractVersionAgreed     int               `json:"contract_version_agreed"`
	Endpoints                 []Endpoint        `json:"endpoints"`
	ExtensionSlugs            []string          `json:"extension_slugs"`
	Capabilities              Capabilities      `json:"capabilities"`
	SyncCursor                string            `json:"sync_cursor,omitempty"`
	LastHeartbeatAt           time.Time         `json:"last_heartbeat_at,omitzero"`
	LastHandshakeAt           time.Time         `json:"last_handshake_at,omitzero"`
	PlatformVersion           string            `json:"platform_version,omitempty"`
	DataResidency             string            `json:"data_residency,omitempty"`
	InboundSubject            string            `json:"inbound_subject,omitempty"`
	OutboundSubject           string            `json:"outbound_subject,omitempty"`
	TrustedCAPEM              string            `json:"trusted_ca_pem,omitempty"`
	Metadata                  map[string]string `json:"metadata"`
	RemotePrefixAdvertisement string            `json:"remote_prefix_advertisement,omitempty"`
	WireGuardPublicKey        string            `json:"wireguard_public_key,omitempty"`
	VIPs                      []string          `json:"vips"`
	OperatorContact           string            `json:"operator_contact,omitempty"`
	Jurisdiction              string            `json:"jurisdiction,omitempty"`
	LastKnownGoodRelease      string            `json:"last_known_good_release,omitempty"`
	CreatedAt                 time.Time         `json:"created_at"`
	UpdatedAt                 time.Time         `json:"updated_at"`
}

// NewPeer returns a proposed peer with the given id, kind and creation time,
// and its inbound subject set to "fed:<id>". It does not validate.
func NewPeer(id string, kind PeerKind, now time.Time) Peer {
	return Peer{
		ID:             id,
		Status:         StatusProposed,
		PeerKind:       kind,
		InboundSubject: SubjectFor(id),
		Endpoints:      []Endpoint{},
		ExtensionSlugs: []string{},
		Capabilities:   Capabilities{ResourceKinds: []string{}},
		Metadata:       map[string]string{},
		VIPs:           []string{},
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// SubjectFor is the certificate CN of a federation peer: "fed:<id>".
func SubjectFor(id string) string { return SubjectPrefix + id }

// PeerIDFromSubject extracts and checks the peer id of a "fed:<id>" CN.
func PeerIDFromSubject(cn string) (string, error) {
	id, ok := strings.CutPrefix(cn, SubjectPrefix)
	if !ok {
		return "", fmt.Errorf("%w: subject %q lacks the %q prefix", ErrInvalidID, cn, SubjectPrefix)
	}
	if err := ParseID(id); err != nil {
		return "", fmt.Errorf("subject %q: %w", cn, err)
	}
	return id, nil
}

// Clone returns a deep copy of p sharing no slices or maps with it.
func (p Peer) Clone() Peer {
	q := p
	q.Endpoints = slices.Clone(p.Endpoints)
	q.ExtensionSlugs = slices.Clone(p.ExtensionSlugs)
	q.Capabilities = p.Capabilities.Clone()
	q.Metadata = maps.Clone(p.Metadata)
	q.VIPs = slices.Clone(p.VIPs)
	return q
}

// Clone returns a deep copy of c.
func (c Capabilities) Clone() Capabilities {
	d := Capabilities{
		ResourceKinds:    slices.Clone(c.ResourceKinds),
		FilterPredicates: slices.Clone(c.FilterPredicates),
	}
	if c.SchemaVersions != nil {
		d.SchemaVersions = make(map[string][]string, len(c.SchemaVersions))
		for k, v := range c.SchemaVersions {
			d.SchemaVersions[k] = slices.Clone(v)
		}
	}
	return d
}

// Declares reports whether c declares resource kind kind.
func (c Capabilities) Declares(kind string) bool {
	return kind != "" && slices.Contains(c.ResourceKinds, kind)
}

// DeclaresSchema reports whether c declares schema version v for kind.
func (c Capabilities) DeclaresSchema(kind, v string) bool {
	return v != "" && slices.Contains(c.SchemaVersions[kind], v)
}

// Validate checks the shape of c; errors name the field.
func (c Capabilities) Validate() error {
	var errs []error
	seen := make(map[string]bool, len(c.ResourceKinds))
	for i, k := range c.ResourceKinds {
		if err := checkToken(k, 128); err != nil {
			errs = append(errs, fieldErr(fmt.Sprintf("capabilities.resource_kinds[%d]", i), err))
		} else if seen[k] {
			errs = append(errs, fieldErr(fmt.Sprintf("capabilities.resource_kinds[%d]", i), fmt.Errorf("duplicate %q", k)))
		}
		seen[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(c.SchemaVersions)) {
		f := "capabilities.schema_versions[" + k + "]"
		if !seen[k] {
			errs = append(errs, fieldErr(f, errors.New("kind is not in resource_kinds")))
		}
		for i, v := range c.SchemaVersions[k] {
			if err := checkToken(v, 64); err != nil {
				errs = append(errs, fieldErr(fmt.Sprintf("%s[%d]", f, i), err))
			}
		}
	}
	for i, fp := range c.FilterPredicates {
		if err := checkToken(fp, 128); err != nil {
			errs = append(errs, fieldErr(fmt.Sprintf("capabilities.filter_predicates[%d]", i), err))
		}
	}
	return errors.Join(errs...)
}

// Validate checks e's shape; errors name the field.
func (e Endpoint) Validate() error { return e.validate("") }

func (e Endpoint) validate(prefix string) error {
	var errs []error
	fieldErr := func(f string, err error) error { return fmt.Errorf("%s%s: %w", prefix, f, err) }
	if err := checkURL(e.URL); err != nil {
		errs = append(errs, fieldErr("url", err))
	}
	switch e.Scope {
	case ScopeLAN, ScopeSDWAN, ScopeWAN:
	default:
		errs = append(errs, fieldErr("scope", fmt.Errorf("%q is not lan, sdwan or wan", e.Scope)))
	}
	if e.Priority < 0 {
		errs = append(errs, fieldErr("priority", fmt.Errorf("%d is negative", e.Priority)))
	}
	if e.CIDRHint != "" {
		if _, err := netip.ParsePrefix(e.CIDRHint); err != nil {
			errs = append(errs, fieldErr("cidr_hint", err))
		}
	}
	return errors.Join(errs...)
}

// ValidateEndpoints checks a list of endpoints: at most MaxEndpoints, each valid.
func ValidateEndpoints(field string, eps []Endpoint) error {
	var errs []error
	if len(eps) > MaxEndpoints {
		errs = append(errs, fieldErr(field, fmt.Errorf("%d endpoints, at most %d", len(eps), MaxEndpoints)))
	}
	for i, e := range eps {
		if err := e.validate(fmt.Sprintf("%s[%d].", field, i)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SortedEndpoints returns a copy of eps ordered by priority (lower first),
// stable for equal priorities.
func SortedEndpoints(eps []Endpoint) []Endpoint {
	out := slices.Clone(eps)
	slices.SortStableFunc(out, func(a, b Endpoint) int { return a.Priority - b.Priority })
	return out
}

// MissingDisclosure lists the identity-disclosure fields (commitment 1) that
// are empty, by JSON name, in a fixed order.
func (p Peer) MissingDisclosure() []string {
	return missingDisclosure(p.OperatorContact, p.Jurisdiction, p.PlatformVersion,
		p.LastKnownGoodRelease, p.DataResidency)
}

func missingDisclosure(contact, jurisdiction, platformVersion, lkg, residency string) []string {
	var m []string
	if strings.TrimSpace(contact) == "" {
		m = append(m, "operator_contact")
	}
	if strings.TrimSpace(jurisdiction) == "" {
		m = append(m, "jurisdiction")
	}
	if strings.TrimSpace(platformVersion) == "" {
		m = append(m, "platform_version")
	}
	if strings.TrimSpace(lkg) == "" {
		m = append(m, "last_known_good_release")
	}
	if strings.TrimSpace(residency) == "" {
		m = append(m, "data_residency")
	}
	return m
}

// Validate checks the shape of every field of p; the error joins one error per
// bad field, each naming the field by its JSON name. It also checks the
// invariant of commitment 1: a reachable peer (enrolled, active, degraded)
// has every identity-disclosure field.
func (p Peer) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fieldErr(field, err))
		}
	}
	add("id", ParseID(p.ID))
	if p.RemoteInstanceURL != "" {
		add("remote_instance_url", checkURL(p.RemoteInstanceURL))
	}
	if p.RemoteInstanceID != "" {
		add("remote_instance_id", ParseUUID(p.RemoteInstanceID))
	}
	if !p.Status.Valid() {
		add("status", fmt.Errorf("unknown status %q", p.Status))
	} else if p.Status.Reachable() {
		if missing := p.MissingDisclosure(); len(missing) > 0 {
			add("status", fmt.Errorf("%s requires identity disclosure: %w: %s",
				p.Status, ErrDisclosureMissing, strings.Join(missing, ", ")))
		}
	}
	if !p.SignedAt.IsZero() && !p.ExpiresAt.IsZero() && !p.ExpiresAt.After(p.SignedAt) {
		add("expires_at", errors.New("not after signed_at"))
	}
	switch p.PeerKind {
	case PeerKindPlatform, PeerKindSDWANOnly:
	default:
		add("peer_kind", fmt.Errorf("%q is not platform or sdwan_only", p.PeerKind))
	}
	add("spawn_mode", checkOptText(p.SpawnMode, 64))
	add("spawn_role", checkOptText(p.SpawnRole, 64))
	if p.ParentPeerID != "" {
		add("parent_peer_id", ParseID(p.ParentPeerID))
		if p.ParentPeerID == p.ID {
			add("parent_peer_id", errors.New("a peer cannot be its own parent"))
		}
	}
	if p.ContractVersionAgreed < 0 {
		add("contract_version_agreed", fmt.Errorf("%d is negative", p.ContractVersionAgreed))
	}
	if err := ValidateEndpoints("endpoints", p.Endpoints); err != nil {
		errs = append(errs, err)
	}
	for i, s := range p.ExtensionSlugs {
		add(fmt.Sprintf("extension_slugs[%d]", i), checkToken(s, 128))
	}
	if err := p.Capabilities.Validate(); err != nil {
		errs = append(errs, err)
	}
	add("sync_cursor", checkOptText(p.SyncCursor, 4096))
	if p.PlatformVersion != "" {
		_, err := ParseVersion(p.PlatformVersion)
		add("platform_version", err)
	}
	add("data_residency", checkOptText(p.DataResidency, 256))
	if p.InboundSubject != "" && p.InboundSubject != SubjectFor(p.ID) {
		add("inbound_subject", fmt.Errorf("%q is not %q", p.InboundSubject, SubjectFor(p.ID)))
	}
	if p.OutboundSubject != "" {
		_, err := PeerIDFromSubject(p.OutboundSubject)
		add("outbound_subject", err)
	}
	if p.TrustedCAPEM != "" {
		_, err := ParseCABundle(p.TrustedCAPEM)
		add("trusted_ca_pem", err)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Metadata)) {
		if err := checkToken(k, 128); err != nil {
			add("metadata", fmt.Errorf("key %q: %w", k, err))
		}
		if len(p.Metadata[k]) > 4096 || !utf8.ValidString(p.Metadata[k]) {
			add("metadata["+k+"]", errors.New("value longer than 4096 bytes or not UTF-8"))
		}
	}
	if p.RemotePrefixAdvertisement != "" {
		add("remote_prefix_advertisement", checkULAPrefix(p.RemotePrefixAdvertisement))
	}
	if p.WireGuardPublicKey != "" {
		add("wireguard_public_key", CheckWireGuardKey(p.WireGuardPublicKey))
	}
	if err := ValidateVIPs("vips", p.VIPs); err != nil {
		errs = append(errs, err)
	}
	add("operator_contact", checkOptText(p.OperatorContact, 512))
	add("jurisdiction", checkOptText(p.Jurisdiction, 256))
	add("last_known_good_release", checkOptText(p.LastKnownGoodRelease, 128))
	if p.CreatedAt.IsZero() {
		add("created_at", errors.New("missing"))
	}
	if !p.UpdatedAt.IsZero() && p.UpdatedAt.Before(p.CreatedAt) {
		add("updated_at", errors.New("before created_at"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: peer %s: %w", ErrInvalid, p.ID, err)
	}
	return nil
}

// ParseCABundle parses a PEM bundle of one or more CA certificates. Any
// non-CERTIFICATE block or trailing garbage is refused.
func ParseCABundle(pemText string) ([]*x509.Certificate, error) {
	rest := []byte(pemText)
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pem block %q is not CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs), err)
		}
		certs = append(certs, c)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("data after the last PEM block")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// CheckWireGuardKey checks that k is standard base64 of exactly 32 bytes.
func CheckWireGuardKey(k string) error {
	b, err := base64.StdEncoding.Strict().DecodeString(k)
	if err != nil {
		return fmt.Errorf("not base64: %w", err)
	}
	if len(b) != WireGuardKeyLen {
		return fmt.Errorf("%d bytes, want %d", len(b), WireGuardKeyLen)
	}
	return nil
}

// ValidateVIPs checks that every VIP is a /32 (IPv4) or /128 (IPv6) prefix in
// canonical form, without duplicates.
func ValidateVIPs(field string, vips []string) error {
	var errs []error
	seen := make(map[netip.Prefix]bool, len(vips))
	for i, v := range vips {
		f := fmt.Sprintf("%s[%d]", field, i)
		pfx, err := netip.ParsePrefix(v)
		if err != nil {
			errs = append(errs, fieldErr(f, err))
			continue
		}
		if pfx.Addr().Zone() != "" || pfx.Addr().Is4In6() || pfx.Bits() != pfx.Addr().BitLen() {
			errs = append(errs, fieldErr(f, fmt.Errorf("%q is not a /32 or /128", v)))
			continue
		}
		if pfx.String() != v {
			errs = append(errs, fieldErr(f, fmt.Errorf("%q is not canonical (%s)", v, pfx)))
			continue
		}
		if seen[pfx] {
			errs = append(errs, fieldErr(f, fmt.Errorf("duplicate %q", v)))
		}
		seen[pfx] = true
	}
	return errors.Join(errs...)
}

func checkULAPrefix(s string) error {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return err
	}
	if !pfx.Addr().Is6() || pfx.Addr().Is4In6() || pfx.Addr().As16()[0]&0xfe != 0xfc {
		return fmt.Errorf("%q is not an IPv6 ULA prefix (fc00::/7)", s)
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > 2048 {
		return errors.New("longer than 2048 bytes")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q is not an absolute URL with a host", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q carries user info", s)
	}
	return nil
}

// checkToken checks a non-empty identifier-like string without spaces or
// control characters.
func checkToken(s string, maxLen int) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("longer than %d bytes", maxLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q contains a space or control character", s)
		}
	}
	return nil
}

// checkOptText checks free text: UTF-8, no control characters, bounded.
func checkOptText(s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("longer than %d bytes", maxLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

func fieldErr(field string, err error) error { return fmt.Errorf("%s: %w", field, err) }
