package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/raftstore"
)

// Acceptance tokens: 32 random bytes, URL-safe base64 without padding (43
// characters). Only their SHA-256 is stored (raft KV under
// lifecycle/invite/<hex>), and redeeming one deletes it in the same raft
// command that proves it existed, so it is single use site-wide.

// AcceptanceTokenBytes is the length of a decoded acceptance token.
const AcceptanceTokenBytes = 32

// ErrBadToken marks an acceptance token that is malformed, unknown,
// expired or already used.
var ErrBadToken = errors.New("bad acceptance token")

// ParseAcceptanceToken decodes a token from outside (file, wire).
func ParseAcceptanceToken(s string) ([]byte, error) {
	if len(s) != base64.RawURLEncoding.EncodedLen(AcceptanceTokenBytes) {
		return nil, fmt.Errorf("%w: %d characters, want %d", ErrBadToken, len(s), base64.RawURLEncoding.EncodedLen(AcceptanceTokenBytes))
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not URL-safe base64: %v", ErrBadToken, err)
	}
	if len(b) != AcceptanceTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadToken, len(b))
	}
	return b, nil
}

// newAcceptanceToken returns a fresh token and its hash key.
func newAcceptanceToken() (string, string, error) {
	b := make([]byte, AcceptanceTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), inviteKey(b), nil
}

func inviteKey(tok []byte) string {
	h := sha256.Sum256(tok)
	return "lifecycle/invite/" + hex.EncodeToString(h[:])
}

// invite is the stored side of an acceptance token.
type invite struct {
	PeerID    string    `json:"peer_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// InviteURL is a bootstrap URL: the accept endpoint plus the SHA-256
// fingerprint of the inviting site's root (query "ca") that pins it.
type InviteURL struct {
	Base   string // scheme://host:port
	RootFP string
}

// ParseInviteURL parses and checks a bootstrap URL from an operator.
func ParseInviteURL(s string) (InviteURL, error) {
	if len(s) > 2048 {
		return InviteURL{}, errors.New("invitation URL longer than 2048 bytes")
	}
	u, err := url.Parse(s)
	if err != nil {
		return InviteURL{}, fmt.Errorf("invitation URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil {
		return InviteURL{}, fmt.Errorf("invitation URL %q: want https://host:port%s?ca=<sha256>", s, pathAccept)
	}
	if u.Path != pathAccept {
		return InviteURL{}, fmt.Errorf("invitation URL path %q is not %s", u.Path, pathAccept)
	}
	fp := u.Query().Get("ca")
	if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
		return InviteURL{}, errors.New("invitation URL: ca must be the 64-hex SHA-256 of the site root")
	}
	return InviteURL{Base: "https://" + u.Host, RootFP: fp}, nil
}

func (u InviteURL) String() string { return u.Base + pathAccept + "?ca=" + u.RootFP }

// rootFingerprint is the SHA-256 of our site root.
func (a *Agent) rootFingerprint() (string, error) {
	_, certs, err := pki.PoolFromPEM(a.bundlePEM())
	if err != nil {
		return "", err
	}
	for _, c := range certs {
		if c.IsCA && bytes.Equal(c.RawSubject, c.RawIssuer) {
			return pki.Fingerprint(c), nil
		}
	}
	return "", errors.New("the site bundle holds no self-signed root")
}

// ---- A: invitation (local API) ----

type inviteRequest struct {
	TTLSeconds int64  `json:"ttl_seconds"`
	PeerKind   string `json:"peer_kind"`
}

type inviteResponse struct {
	PeerID    string    `json:"peer_id"`
	URL       string    `json:"url"`
	Token     string    `json:"acceptance_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handleInvitePeer is POST /v1/lifecycle/invite: a proposed peer and a
// single-use acceptance token for it.
func (a *Agent) handleInvitePeer(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.lifecycle()
	if err != nil {
		return err
	}
	if lc.bootstrapAddr == "" {
		return errStatus(http.StatusServiceUnavailable, "lifecycle_off", "no bootstrap listener (set lifecycle.bootstrap_listen)")
	}
	var req inviteRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	ttl := lc.cfg.InviteTTL
	if req.TTLSeconds < 0 {
		return errStatus(http.StatusBadRequest, "bad_request", "ttl_seconds must be positive")
	}
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	kind := federation.PeerKind(req.PeerKind)
	if kind == "" {
		kind = federation.PeerKindPlatform
	}
	fp, err := a.rootFingerprint()
	if err != nil {
		return err
	}
	id, err := newID()
	if err != nil {
		return err
	}
	now := lc.now()
	p := federation.NewPeer(id, kind, now)
	if err := p.Validate(); err != nil {
		return errStatus(http.StatusUnprocessableEntity, "invalid_peer", "%v", err)
	}
	tok, key, err := newAcceptanceToken()
	if err != nil {
		return err
	}
	inv, _ := json.Marshal(invite{PeerID: id, ExpiresAt: now.Add(ttl)})
	if _, err := a.apply(r.Context(), raftstore.CmdPeerAdd, p); err != nil {
		return err
	}
	if _, err := a.apply(r.Context(), raftstore.CmdKVPut, raftstore.KVPutPayload{Key: key, Value: inv}); err != nil {
		return err
	}
	if err := a.auditLocal(r, actionInvite, id, "invitation created", map[string]string{"expires_at": now.Add(ttl).Format(time.RFC3339)}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, inviteResponse{PeerID: id, URL: InviteURL{Base: lc.bootstrapURL(), RootFP: fp}.String(),
		Token: tok, ExpiresAt: now.Add(ttl)})
	return nil
}

// ---- the accept exchange ----

// AcceptRequest is the body of POST /api/v1/system/federation_api/accept:
// the platform's fields plus the trust exchange.
type AcceptRequest struct {
	AcceptanceToken string                  `json:"acceptance_token"`
	ContractVersion int                     `json:"contract_version"`
	ExtensionSlugs  []string                `json:"extension_slugs"`
	Endpoints       []federation.Endpoint   `json:"endpoints"`
	Capabilities    federation.Capabilities `json:"capabilities"`
	// TrustedCAPEM is the accepting site's CA bundle.
	TrustedCAPEM string `json:"trusted_ca_pem"`
	// AssignedPeerID is the id the accepting site gives the inviting one
	// (the inviting site's certificates carry CN fed:<it>).
	AssignedPeerID string `json:"assigned_peer_id"`
	// ControlURL is the accepting site's control listener.
	ControlURL string `json:"control_url"`
}

// AcceptResponse answers an accepted token.
type AcceptResponse struct {
	PeerID                string                `json:"peer_id"`
	Status                federation.Status     `json:"status"`
	ContractVersionAgreed int                   `json:"contract_version_agreed"`
	AcceptedAt            time.Time             `json:"accepted_at"`
	TrustedCAPEM          string                `json:"trusted_ca_pem"`
	Endpoints             []federation.Endpoint `json:"endpoints"`
	ControlURL            string                `json:"control_url"`
}

// DecodeAcceptRequest decodes an accept body from the wire: strict JSON
// (unknown fields and trailing data refused), at most maxControlBody bytes.
// It checks neither the token nor the shape (see Validate).
func DecodeAcceptRequest(b []byte) (AcceptRequest, error) {
	var req AcceptRequest
	if len(b) > maxControlBody {
		return req, fmt.Errorf("body is %d bytes, at most %d", len(b), maxControlBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return AcceptRequest{}, err
	}
	if dec.More() {
		return AcceptRequest{}, errors.New("trailing data after the JSON object")
	}
	return req, nil
}

// Validate checks the shape of everything but the token and the contract
// version (which the endpoint answers with 401 and 422).
func (req AcceptRequest) Validate() error {
	var errs []error
	if err := federation.ParseID(req.AssignedPeerID); err != nil {
		errs = append(errs, fmt.Errorf("assigned_peer_id: %w", err))
	}
	if req.TrustedCAPEM == "" {
		errs = append(errs, errors.New("trusted_ca_pem: missing"))
	} else if _, err := federation.ParseCABundle(req.TrustedCAPEM); err != nil {
		errs = append(errs, fmt.Errorf("trusted_ca_pem: %w", err))
	}
	if err := checkControlURL(req.ControlURL); err != nil {
		errs = append(errs, err)
	}
	if err := federation.ValidateEndpoints("endpoints", req.Endpoints); err != nil {
		errs = append(errs, err)
	}
	if err := req.Capabilities.Validate(); err != nil {
		errs = append(errs, err)
	}
	for i, s := range req.ExtensionSlugs {
		if s == "" || len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("extension_slugs[%d]: not a slug", i))
		}
	}
	return errors.Join(errs...)
}

// handleAccept is the bootstrap listener's accept endpoint (site A).
func (lc *lifecycle) handleAccept(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rec := audit.Record{Action: actionAccept, RemoteSubject: "bootstrap:" + r.RemoteAddr, Method: r.Method, Path: r.URL.Path,
		Metadata: map[string]string{}}
	if !lc.acceptLimit.Allow() {
		lc.refuse(w, r, rec, http.StatusTooManyRequests, "rate_limited", "too many accept attempts")
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
	if err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	req, err := DecodeAcceptRequest(raw)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	tok, err := ParseAcceptanceToken(req.AcceptanceToken)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusUnauthorized, "bad_token", err.Error())
		return
	}
	key := inviteKey(tok)
	e, ok := lc.state().KVGet(key)
	if !ok {
		lc.refuse(w, r, rec, http.StatusUnauthorized, "bad_token", "acceptance token is unknown or already used")
		return
	}
	var inv invite
	if err := json.Unmarshal(e.Value, &inv); err != nil {
		lc.refuse(w, r, rec, http.StatusUnauthorized, "bad_token", "acceptance token record unreadable")
		return
	}
	rec.FederationPeerID = inv.PeerID
	if !lc.now().Before(inv.ExpiresAt) {
		_, _ = lc.a.apply(ctx, raftstore.CmdKVDelete, raftstore.KVDeletePayload{Key: key})
		lc.refuse(w, r, rec, http.StatusUnauthorized, "token_expired", "acceptance token expired at "+inv.ExpiresAt.Format(time.RFC3339))
		return
	}
	reg := lc.state().Contracts()
	if _, ok := reg.Lookup(req.ContractVersion); !ok || reg.AdoptableForNewPeer(req.ContractVersion) != nil {
		rec.Metadata["contract_version"] = fmt.Sprint(req.ContractVersion)
		lc.refuse(w, r, rec, http.StatusUnprocessableEntity, federation.ReasonContractVersionUnsupported,
			fmt.Sprintf("contract version %d is not supported (supported: %v)", req.ContractVersion, reg.SupportedVersions()))
		return
	}
	p, ok := lc.state().Peer(inv.PeerID)
	if !ok || p.Status != federation.StatusProposed {
		lc.refuse(w, r, rec, http.StatusUnauthorized, "bad_token", "the invited peer is no longer proposed")
		return
	}
	if err := req.Validate(); err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	np := p.Clone()
	np.ContractVersionAgreed = req.ContractVersion
	np.Endpoints = req.Endpoints
	if np.Endpoints == nil {
		np.Endpoints = []federation.Endpoint{}
	}
	if req.ExtensionSlugs != nil {
		np.ExtensionSlugs = req.ExtensionSlugs
	}
	np.Capabilities = req.Capabilities
	if np.Capabilities.ResourceKinds == nil {
		np.Capabilities.ResourceKinds = []string{}
	}
	np.TrustedCAPEM = req.TrustedCAPEM
	np.OutboundSubject = federation.SubjectFor(req.AssignedPeerID)
	if np.Metadata == nil {
		np.Metadata = map[string]string{}
	}
	np.Metadata[metaControlURL] = req.ControlURL
	if err := np.Validate(); err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// Consume the token: the delete fails for everyone but the first.
	if _, err := lc.a.apply(ctx, raftstore.CmdKVDelete, raftstore.KVDeletePayload{Key: key}); err != nil {
		if errors.Is(err, raftstore.ErrNotFound) {
			lc.refuse(w, r, rec, http.StatusUnauthorized, "bad_token", "acceptance token already used")
			return
		}
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "not_recorded", err.Error())
		return
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerUpdate, np); err != nil {
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "not_recorded", err.Error())
		return
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: p.ID, To: federation.StatusAccepted,
		Reason: "acceptance token redeemed"}); err != nil {
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "not_recorded", err.Error())
		return
	}
	now := lc.now()
	rec.Decision, rec.Status = audit.DecisionAllow, http.StatusOK
	rec.RemoteSubject = np.InboundSubject
	rec.Metadata["contract_version_agreed"] = fmt.Sprint(req.ContractVersion)
	rec.Metadata["assigned_peer_id"] = req.AssignedPeerID
	lc.auditRec(ctx, rec)
	writeJSON(w, http.StatusOK, AcceptResponse{PeerID: p.ID, Status: federation.StatusAccepted, ContractVersionAgreed: req.ContractVersion,
		AcceptedAt: now, TrustedCAPEM: string(lc.a.bundlePEM()), Endpoints: lc.endpoints(), ControlURL: lc.controlURL()})
}

func checkControlURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("control_url %q is not https://host:port", s)
	}
	return nil
}

// ---- B: accept (local API) ----

type acceptLocalRequest struct {
	URL             string `json:"url"`
	Token           string `json:"acceptance_token"`
	ContractVersion int    `json:"contract_version"`
	PeerKind        string `json:"peer_kind"`
}

// handleAcceptPeer is POST /v1/lifecycle/accept: redeem an invitation of
// another site and record it here as accepted.
func (a *Agent) handleAcceptPeer(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.lifecycle()
	if err != nil {
		return err
	}
	if lc.controlAddr == "" {
		return errStatus(http.StatusServiceUnavailable, "lifecycle_off", "no control listener (set lifecycle.listen)")
	}
	var req acceptLocalRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	iu, err := ParseInviteURL(req.URL)
	if err != nil {
		return errStatus(http.StatusBadRequest, "bad_url", "%v", err)
	}
	if _, err := ParseAcceptanceToken(req.Token); err != nil {
		return errStatus(http.StatusBadRequest, "bad_token", "%v", err)
	}
	kind := federation.PeerKind(req.PeerKind)
	if kind == "" {
		kind = federation.PeerKindPlatform
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	roots, bundle, err := fetchPinnedRoots(ctx, iu.Base, iu.RootFP)
	if err != nil {
		return errStatus(http.StatusBadGateway, "bootstrap_unverified", "%v", err)
	}
	id, err := newID()
	if err != nil {
		return err
	}
	body := AcceptRequest{AcceptanceToken: req.Token, ContractVersion: req.ContractVersion, ExtensionSlugs: []string{},
		Endpoints: lc.endpoints(), Capabilities: lc.capabilities(), TrustedCAPEM: string(a.bundlePEM()), AssignedPeerID: id,
		ControlURL: lc.controlURL()}
	var resp AcceptResponse
	if err := postPinned(ctx, roots, iu.Base+pathAccept, body, &resp); err != nil {
		var pr *peerRefusal
		if errors.As(err, &pr) {
			_ = a.auditLocal(r, actionAccept, id, "refused by the inviting site", map[string]string{"status": fmt.Sprint(pr.Status), "reason": pr.Reason})
			return errStatus(pr.Status, pr.Reason, "the inviting site refused: %s", pr.Detail)
		}
		return errStatus(http.StatusBadGateway, "bootstrap_failed", "%v", err)
	}
	if resp.Status != federation.StatusAccepted || resp.ContractVersionAgreed != req.ContractVersion {
		return errStatus(http.StatusBadGateway, "bootstrap_failed", "the inviting site answered status %q version %d", resp.Status, resp.ContractVersionAgreed)
	}
	if err := federation.ParseID(resp.PeerID); err != nil {
		return errStatus(http.StatusBadGateway, "bootstrap_failed", "peer_id: %v", err)
	}
	if err := checkControlURL(resp.ControlURL); err != nil {
		return errStatus(http.StatusBadGateway, "bootstrap_failed", "%v", err)
	}
	trusted := resp.TrustedCAPEM
	if trusted == "" {
		trusted = string(bundle)
	}
	now := lc.now()
	p := federation.NewPeer(id, kind, now)
	p.Status = federation.StatusAccepted
	p.RemoteInstanceURL = iu.Base
	p.ContractVersionAgreed = resp.ContractVersionAgreed
	p.Endpoints = resp.Endpoints
	if p.Endpoints == nil {
		p.Endpoints = []federation.Endpoint{}
	}
	p.TrustedCAPEM = trusted
	p.OutboundSubject = federation.SubjectFor(resp.PeerID)
	p.Metadata[metaControlURL] = resp.ControlURL
	if err := p.Validate(); err != nil {
		return errStatus(http.StatusBadGateway, "bootstrap_failed", "the inviting site's answer: %v", err)
	}
	if _, err := a.apply(r.Context(), raftstore.CmdPeerAdd, p); err != nil {
		return err
	}
	if err := a.auditLocal(r, actionAccept, id, "invitation accepted", map[string]string{"assigned_peer_id": resp.PeerID,
		"contract_version_agreed": fmt.Sprint(resp.ContractVersionAgreed), "remote_instance_url": iu.Base}); err != nil {
		return err
	}
	return a.answerPeer(w, http.StatusOK, id, raftstore.Result{})
}

// postPinned posts JSON to a bootstrap endpoint whose node certificate
// must chain to roots (the pinned root of the inviting site).
func postPinned(ctx context.Context, roots *x509.CertPool, u string, body, out any) error {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified against the pinned root below
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := pki.VerifyNode(cs.PeerCertificates, roots, time.Now(), x509.ExtKeyUsageServerAuth, nil)
			return err
		},
	}}}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxControlBody))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Reason string }
		_ = json.Unmarshal(data, &e)
		return &peerRefusal{Status: resp.StatusCode, Reason: e.Reason, Detail: e.Error}
	}
	return json.Unmarshal(data, out)
}
