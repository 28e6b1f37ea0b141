package federation

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// HeartbeatInterval is the platform's heartbeat period; HeartbeatStaleAfter
// is how long without one before a peer is stale (active → degraded).
const (
	HeartbeatInterval   = 60 * time.Second
	HeartbeatStaleAfter = 5 * time.Minute
)

// Handshake is what a peer presents over mTLS to (re-)establish a peering.
type Handshake struct {
	PeerID               string       `json:"peer_id"`
	ContractVersion      int          `json:"contract_version"`
	ContractDigest       string       `json:"contract_digest"`
	PlatformVersion      string       `json:"platform_version"`
	Capabilities         Capabilities `json:"capabilities"`
	OperatorContact      string       `json:"operator_contact"`
	Jurisdiction         string       `json:"jurisdiction"`
	LastKnownGoodRelease string       `json:"last_known_good_release"`
	DataResidency        string       `json:"data_residency"`
	Endpoints            []Endpoint   `json:"endpoints"`
	WireGuardPublicKey   string       `json:"wireguard_public_key,omitempty"`
	VIPs                 []string     `json:"vips"`
}

// Validate checks the shape of h (not its acceptability: see CheckHandshake).
// Identity-disclosure fields may be empty here; they are required for
// enrolled, not for the handshake (see MissingDisclosure).
func (h Handshake) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fieldErr(field, err))
		}
	}
	add("peer_id", ParseID(h.PeerID))
	if h.ContractVersion <= 0 {
		add("contract_version", fmt.Errorf("%d is not > 0", h.ContractVersion))
	}
	if len(h.ContractDigest) != 64 || checkHex(h.ContractDigest) != nil {
		add("contract_digest", errors.New("not 64 lower-case hex characters"))
	}
	_, err := ParseVersion(h.PlatformVersion)
	add("platform_version", err)
	if err := h.Capabilities.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkDisclosureShapes(h.OperatorContact, h.Jurisdiction, h.LastKnownGoodRelease, h.DataResidency)...)
	if err := ValidateEndpoints("endpoints", h.Endpoints); err != nil {
		errs = append(errs, err)
	}
	if h.WireGuardPublicKey != "" {
		add("wireguard_public_key", CheckWireGuardKey(h.WireGuardPublicKey))
	}
	if err := ValidateVIPs("vips", h.VIPs); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: handshake: %w", ErrInvalid, err)
	}
	return nil
}

// MissingDisclosure lists the empty identity-disclosure fields of h.
func (h Handshake) MissingDisclosure() []string {
	return missingDisclosure(h.OperatorContact, h.Jurisdiction, h.PlatformVersion, h.LastKnownGoodRelease, h.DataResidency)
}

func checkDisclosureShapes(contact, jurisdiction, lkg, residency string) []error {
	var errs []error
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"operator_contact", contact, 512},
		{"jurisdiction", jurisdiction, 256},
		{"last_known_good_release", lkg, 128},
		{"data_residency", residency, 256},
	} {
		if err := checkOptText(f.v, f.max); err != nil {
			errs = append(errs, fieldErr(f.name, err))
		}
	}
	return errs
}

func checkHex(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return errors.New("not lower-case hex")
		}
	}
	return nil
}

// Local is our side of a handshake with one peer.
type Local struct {
	// PlatformVersion is our Powernode platform version (semver).
	PlatformVersion string
	// AgreedVersion is contract_version_agreed on our record of the peer;
	// 0 for a peering that has not agreed on one yet (then the offered
	// version must be adoptable by a new peer: known and not deprecated).
	AgreedVersion int
}

// Handshake refusal reasons (HandshakeError.Reason).
const (
	ReasonHandshakeInvalid           = "handshake_invalid"
	ReasonPeerIDMismatch             = "peer_id_mismatch"
	ReasonContractVersionUnsupported = "contract_version_unsupported"
	ReasonContractVersionMismatch    = "contract_version_mismatch"
	ReasonContractDigestMismatch     = "contract_digest_mismatch"
	ReasonPlatformVersionIncompat    = "platform_version_incompatible"
)

// HandshakeError is a refused handshake: the HTTP status to answer, a stable
// reason, the contract commitment it enforces (0 if none) and the cause.
type HandshakeError struct {
	Status     int
	Reason     string
	Commitment int
	Err        error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("federation: handshake refused: %d %s: %v", e.Status, e.Reason, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// CheckHandshake decides whether to accept theirs, in order: well-formed
// (400 handshake_invalid); contract version known, and adoptable when
// ours.AgreedVersion is 0 (422 contract_version_unsupported, the platform's
// answer); equal to ours.AgreedVersion when set (409
// contract_version_mismatch, commitment 12); digest equal to ours for that
// version (409 contract_digest_mismatch, commitment 12); platform versions at
// most one minor apart in the same major (409 platform_version_incompatible,
// commitment 10). Missing identity disclosure does not refuse the handshake;
// it blocks enrolled (Peer.Transition).
func CheckHandshake(ours Local, theirs Handshake, reg Registry) error {
	if err := theirs.Validate(); err != nil {
		return &HandshakeError{Status: http.StatusBadRequest, Reason: ReasonHandshakeInvalid, Err: err}
	}
	cv, ok := reg.Lookup(theirs.ContractVersion)
	if !ok {
		return &HandshakeError{Status: http.StatusUnprocessableEntity, Reason: ReasonContractVersionUnsupported,
			Commitment: 12, Err: fmt.Errorf("%w: version %d unsupported (supported: %v)",
				ErrContractVersion, theirs.ContractVersion, reg.SupportedVersions())}
	}
	if ours.AgreedVersion == 0 {
		if err := reg.AdoptableForNewPeer(theirs.ContractVersion); err != nil {
			return &HandshakeError{Status: http.StatusUnprocessableEntity, Reason: ReasonContractVersionUnsupported,
				Commitment: 12, Err: err}
		}
	} else if theirs.ContractVersion != ours.AgreedVersion {
		return &HandshakeError{Status: http.StatusConflict, Reason: ReasonContractVersionMismatch, Commitment: 12,
			Err: fmt.Errorf("%w: peer offers version %d, agreed version is %d",
				ErrContractVersion, theirs.ContractVersion, ours.AgreedVersion)}
	}
	if theirs.ContractDigest != cv.ContractDigest {
		return &HandshakeError{Status: http.StatusConflict, Reason: ReasonContractDigestMismatch, Commitment: 12,
			Err: fmt.Errorf("%w: version %d: peer digest %s, ours %s",
				ErrDigestMismatch, cv.Version, theirs.ContractDigest, cv.ContractDigest)}
	}
	if err := CompatibleVersions(ours.PlatformVersion, theirs.PlatformVersion); err != nil {
		return &HandshakeError{Status: http.StatusConflict, Reason: ReasonPlatformVersionIncompat, Commitment: 10, Err: err}
	}
	return nil
}

// ApplyHandshake returns a copy of p updated from an accepted handshake h
// (call CheckHandshake first): contract version agreed, platform version,
// capabilities, disclosure fields, endpoints, WireGuard key, VIPs,
// last_handshake_at = now. It refuses an h whose peer_id is not p's id. The
// status is not changed (use Transition); p is not mutated.
func (p Peer) ApplyHandshake(h Handshake, now time.Time) (Peer, error) {
	if h.PeerID != p.ID {
		return Peer{}, &HandshakeError{Status: http.StatusForbidden, Reason: ReasonPeerIDMismatch,
			Err: fmt.Errorf("handshake peer_id %s is not peer %s", h.PeerID, p.ID)}
	}
	q := p.Clone()
	q.ContractVersionAgreed = h.ContractVersion
	q.PlatformVersion = h.PlatformVersion
	q.Capabilities = h.Capabilities.Clone()
	q.OperatorContact = h.OperatorContact
	q.Jurisdiction = h.Jurisdiction
	q.LastKnownGoodRelease = h.LastKnownGoodRelease
	q.DataResidency = h.DataResidency
	q.Endpoints = slices.Clone(h.Endpoints)
	q.WireGuardPublicKey = h.WireGuardPublicKey
	q.VIPs = slices.Clone(h.VIPs)
	q.LastHandshakeAt = now
	q.UpdatedAt = now
	return q, nil
}

// Heartbeat is the periodic liveness and disclosure message (every 60 s).
// Status is the sender's status for the peering; "revoked" is the final
// notification of commitment 4.
type Heartbeat struct {
	PeerID               string       `json:"peer_id"`
	Status               Status       `json:"status"`
	SentAt               time.Time    `json:"sent_at"`
	OperatorContact      string       `json:"operator_contact"`
	Jurisdiction         string       `json:"jurisdiction"`
	PlatformVersion      string       `json:"platform_version"`
	LastKnownGoodRelease string       `json:"last_known_good_release"`
	DataResidency        string       `json:"data_residency"`
	Capabilities         Capabilities `json:"capabilities"`
	Endpoints            []Endpoint   `json:"endpoints"`
	ExtensionSlugs       []string     `json:"extension_slugs,omitempty"`
	SyncCursor           string       `json:"sync_cursor,omitempty"`
}

// Validate checks the shape of hb.
func (hb Heartbeat) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fieldErr(field, err))
		}
	}
	add("peer_id", ParseID(hb.PeerID))
	if !hb.Status.Valid() {
		add("status", fmt.Errorf("unknown status %q", hb.Status))
	}
	if hb.SentAt.IsZero() {
		add("sent_at", errors.New("missing"))
	}
	if hb.PlatformVersion != "" {
		_, err := ParseVersion(hb.PlatformVersion)
		add("platform_version", err)
	}
	errs = append(errs, checkDisclosureShapes(hb.OperatorContact, hb.Jurisdiction, hb.LastKnownGoodRelease, hb.DataResidency)...)
	if err := hb.Capabilities.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateEndpoints("endpoints", hb.Endpoints); err != nil {
		errs = append(errs, err)
	}
	for i, s := range hb.ExtensionSlugs {
		add(fmt.Sprintf("extension_slugs[%d]", i), checkToken(s, 128))
	}
	add("sync_cursor", checkOptText(hb.SyncCursor, 4096))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: heartbeat: %w", ErrInvalid, err)
	}
	return nil
}

// MissingDisclosure lists the empty identity-disclosure fields of hb.
func (hb Heartbeat) MissingDisclosure() []string {
	return missingDisclosure(hb.OperatorContact, hb.Jurisdiction, hb.PlatformVersion, hb.LastKnownGoodRelease, hb.DataResidency)
}

// ApplyHeartbeat returns a copy of p updated from heartbeat hb received at
// now (last_heartbeat_at; the disclosure fields hb sets — an empty one keeps
// the recorded value; capabilities, endpoints, extension slugs, sync cursor)
// and the finding kinds it raises:
// peer_residency_missing when data_residency is empty, and
// peer_schema_version_drift when a kind's schema versions differ from those
// recorded at the handshake (the recorded ones are kept: a change needs a
// re-handshake). It refuses hb for another peer. Status is not changed.
func (p Peer) ApplyHeartbeat(hb Heartbeat, now time.Time) (Peer, []FindingKind, error) {
	if hb.PeerID != p.ID {
		return Peer{}, nil, &HandshakeError{Status: http.StatusForbidden, Reason: ReasonPeerIDMismatch,
			Err: fmt.Errorf("heartbeat peer_id %s is not peer %s", hb.PeerID, p.ID)}
	}
	var kinds []FindingKind
	q := p.Clone()
	q.LastHeartbeatAt = now
	q.UpdatedAt = now
	// Disclosure is updated, never erased: a heartbeat that omits a field
	// keeps the last declared value (and an omitted residency is a finding).
	setIf(&q.OperatorContact, hb.OperatorContact)
	setIf(&q.Jurisdiction, hb.Jurisdiction)
	setIf(&q.PlatformVersion, hb.PlatformVersion)
	setIf(&q.LastKnownGoodRelease, hb.LastKnownGoodRelease)
	setIf(&q.DataResidency, hb.DataResidency)
	if hb.DataResidency == "" {
		kinds = append(kinds, FindingResidencyMissing)
	}
	if schemaDrift(p.Capabilities, hb.Capabilities) {
		kinds = append(kinds, FindingSchemaVersionDrift)
	} else {
		q.Capabilities = hb.Capabilities.Clone()
	}
	q.Endpoints = slices.Clone(hb.Endpoints)
	if hb.ExtensionSlugs != nil {
		q.ExtensionSlugs = slices.Clone(hb.ExtensionSlugs)
	}
	if hb.SyncCursor != "" {
		q.SyncCursor = hb.SyncCursor
	}
	return q, kinds, nil
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func schemaDrift(recorded, now Capabilities) bool {
	for kind, vs := range now.SchemaVersions {
		old, ok := recorded.SchemaVersions[kind]
		if !ok {
			if recorded.Declares(kind) || len(recorded.SchemaVersions) > 0 {
				return true
			}
			continue
		}
		if !slices.Equal(slices.Sorted(slices.Values(old)), slices.Sorted(slices.Values(vs))) {
			return true
		}
	}
	return false
}

// Stale reports whether a peer whose last heartbeat was at last is stale at
// now: more than HeartbeatStaleAfter ago, or never.
func Stale(last, now time.Time) bool {
	return last.IsZero() || now.Sub(last) > HeartbeatStaleAfter
}
