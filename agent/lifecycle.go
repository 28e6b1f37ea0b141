package agent

// The federation lifecycle (issue 7): accept (accept.go), handshake and
// enrol (this file), heartbeat (heartbeat.go), revoke and compromise
// notices (notice.go), findings and auto-suspend (findings.go), platform
// events (events.go).
//
// Two listeners:
//   - bootstrap (lifecycle.bootstrap_listen): HTTPS with the node
//     certificate of the site CA; a peer that holds an acceptance token
//     redeems it here. Nothing else is served on it.
//   - control (lifecycle.listen): mTLS with federation certificates (our
//     certificate per peer, SNI-selected), every client verified against
//     the claimed peer's own bundle. Handshakes, heartbeats and notices.
//
// Why not the proxy inbound: its verifier admits only reachable peers
// (enrolled, active, degraded), but a handshake comes from an accepted peer,
// a compromise notice may come from a suspended one, and the final
// revocation heartbeat from a peer we have just marked revoked. The control
// listener admits those at TLS and decides per route.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/internal/freebind"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/raftstore"
)

// Paths of the federation API (the platform's names where it has them).
const (
	pathAccept    = "/api/v1/system/federation_api/accept"
	pathHandshake = "/api/v1/system/federation_api/handshake"
	pathHeartbeat = "/api/v1/system/federation_api/heartbeat"
	pathNotice    = "/api/v1/system/federation_api/notice"
)

// Peer metadata keys the lifecycle writes.
const (
	metaControlURL       = "fedgate_control_url"
	metaWGEndpoint       = "fedgate_wireguard_endpoint"
	metaWGAllowedIPs     = "fedgate_wireguard_allowed_ips"
	metaRevocationNotice = "fedgate_revocation_notice"
	metaCompromiseNotice = "fedgate_compromise_notice"
)

// Audit actions of the lifecycle (the audit list is open).
const (
	actionAccept = "federation.accept"
	actionInvite = "federation.invite"
	actionNotice = "federation.notice"
)

// maxControlBody bounds a message on the control and bootstrap listeners.
const maxControlBody = 256 << 10

// ErrLifecycleOff is returned by lifecycle routes when lifecycle.listen is
// not configured.
var ErrLifecycleOff = errors.New("the federation lifecycle is off (set lifecycle.listen)")

// lifecycles maps a running Agent to its lifecycle part (the Agent struct
// is not this part's file; see the report).
var lifecycles sync.Map // *Agent -> *lifecycle

func (a *Agent) lifecycle() (*lifecycle, error) {
	if v, ok := lifecycles.Load(a); ok {
		return v.(*lifecycle), nil
	}
	return nil, errStatus(http.StatusServiceUnavailable, "lifecycle_off", "%v", ErrLifecycleOff)
}

// lifecycle is the running federation lifecycle of one node.
type lifecycle struct {
	a        *Agent
	cfg      LifecycleConfig
	log      *slog.Logger
	serverPV *pki.PeerVerifier // control listener: accepted..revoked, decided per route
	clientPV *pki.PeerVerifier // dialing peers (final notices reach revoked ones)
	events   *eventPoster
	now      func() time.Time

	controlAddr   string
	bootstrapAddr string

	hbLimits     limiterSet
	acceptLimit  *rate.Limiter
	mu           sync.Mutex
	statuses     map[string]federation.Status // last seen, for status events
	hsNext       map[string]time.Time         // next handshake attempt per accepted peer
	hsBackoff    map[string]time.Duration
	hbLast       map[string]time.Time // last heartbeat we sent per peer
	revokeLocked map[string]bool      // revocations this node is carrying out or has handled
}

// startLifecycle starts the lifecycle when lifecycle.listen is set. It is
// called from startParts after the proxy.
func (a *Agent) startLifecycle(ctx context.Context) error {
	if a.cfg.Lifecycle.Listen == "" && a.cfg.Lifecycle.BootstrapListen == "" {
		return nil
	}
	cfg := a.cfg.Lifecycle.withDefaults()
	lc := &lifecycle{a: a, cfg: cfg, log: a.log.With("component", "lifecycle"), now: func() time.Time { return time.Now().UTC() },
		hbLimits:    limiterSet{r: rate.Limit(cfg.HeartbeatRate), burst: cfg.HeartbeatBurst, m: map[string]*rate.Limiter{}},
		acceptLimit: rate.NewLimiter(5, 10), statuses: map[string]federation.Status{}, hsNext: map[string]time.Time{},
		hsBackoff: map[string]time.Duration{}, hbLast: map[string]time.Time{}, revokeLocked: map[string]bool{}}
	var err error
	lc.serverPV, err = pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peerSource{a}, Logger: lc.log,
		Reachable: []string{"accepted", "enrolled", "active", "degraded", "suspended", "revoked"}})
	if err != nil {
		return err
	}
	lc.clientPV, err = pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peerSource{a}, Logger: lc.log,
		Reachable: []string{"accepted", "enrolled", "active", "degraded", "suspended", "revoked"}})
	if err != nil {
		return err
	}
	lc.events = newEventPoster(eventPosterConfig{URL: cfg.PlatformURL, TokenFile: cfg.PlatformTokenFile,
		Attempts: cfg.EventAttempts, Logger: lc.log.With("part", "events")})
	if a.fed == nil {
		// No proxy on this node: the lifecycle keeps federation
		// certificates itself.
		a.fed = &fedCerts{a: a, certs: map[string]*pki.FederationCert{}, subj: map[string]string{}}
		fc := a.fed
		fc.sync(ctx)
		a.onChange(ctx, func() { fc.sync(ctx) })
	}
	if cfg.BootstrapListen != "" {
		if err := lc.serveBootstrap(); err != nil {
			return err
		}
	}
	if cfg.Listen != "" {
		if err := lc.serveControl(); err != nil {
			return err
		}
	}
	lifecycles.Store(a, lc)
	a.closers = append(a.closers, func() { lifecycles.Delete(a) })
	for _, p := range a.store.Load().State().Peers() {
		lc.statuses[p.ID] = p.Status
	}
	a.bg.Add(3)
	go func() { defer a.bg.Done(); lc.events.run(ctx) }()
	go func() { defer a.bg.Done(); lc.watch(ctx) }()
	go func() { defer a.bg.Done(); lc.loop(ctx) }()
	return nil
}

func (lc *lifecycle) serveBootstrap() error {
	a := lc.a
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.ident.Load().Certificate(), nil }}
	ln, err := freebind.Listen(context.Background(), "tcp", lc.cfg.BootstrapListen)
	if err != nil {
		return fmt.Errorf("lifecycle bootstrap listener: %w", err)
	}
	lc.bootstrapAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/trust_bundle", func(w http.ResponseWriter, r *http.Request) {
		if err := a.handleTrustBundle(w, r); err != nil {
			writeError(w, err)
		}
	})
	mux.HandleFunc("POST "+pathAccept, lc.handleAccept)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.serve("lifecycle bootstrap", srv, tls.NewListener(ln, tlsCfg))
	return nil
}

func (lc *lifecycle) serveControl() error {
	a := lc.a
	tlsCfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequireAnyClientCert,
		VerifyConnection:       lc.serverPV.VerifyClient,
		GetCertificate:         func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return a.fed.ServerCertificate(h) },
		SessionTicketsDisabled: true,
	}
	ln, err := freebind.Listen(context.Background(), "tcp", lc.cfg.Listen)
	if err != nil {
		return fmt.Errorf("lifecycle listener: %w", err)
	}
	lc.controlAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathHandshake, lc.handleHandshake)
	mux.HandleFunc("POST "+pathHeartbeat, lc.handleHeartbeat)
	mux.HandleFunc("POST "+pathNotice, lc.handleNotice)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.serve("lifecycle control", srv, tls.NewListener(ln, tlsCfg))
	return nil
}

// controlURL is where peers reach our control listener.
func (lc *lifecycle) controlURL() string {
	addr := lc.cfg.Advertise
	if addr == "" {
		addr = lc.controlAddr
	}
	if addr == "" {
		return ""
	}
	return "https://" + addr
}

func (lc *lifecycle) bootstrapURL() string {
	addr := lc.cfg.BootstrapAdvertise
	if addr == "" {
		addr = lc.bootstrapAddr
	}
	return "https://" + addr
}

// endpoints are what we declare to peers.
func (lc *lifecycle) endpoints() []federation.Endpoint {
	out := []federation.Endpoint{}
	for _, e := range lc.cfg.Endpoints {
		sc := federation.EndpointScope(e.Scope)
		if sc == "" {
			sc = federation.ScopeLAN
		}
		out = append(out, federation.Endpoint{URL: e.URL, Scope: sc, Priority: e.Priority})
	}
	if len(out) == 0 && lc.a.proxy != nil {
		if in := lc.a.proxy.InboundAddr(); in != nil {
			out = append(out, federation.Endpoint{URL: "https://" + in.String(), Scope: federation.ScopeLAN, Priority: 10})
		}
	}
	return out
}

func (lc *lifecycle) capabilities() federation.Capabilities {
	kinds := slices.Clone(lc.a.cfg.Proxy.ResourceKinds)
	if kinds == nil {
		kinds = []string{}
	}
	return federation.Capabilities{ResourceKinds: kinds}
}

func (lc *lifecycle) state() *raftstore.State { return lc.a.store.Load().State() }

// leader reports whether this node acts for the site (one sender of
// heartbeats, events and timers per site).
func (lc *lifecycle) leader() bool {
	s := lc.a.store.Load()
	return s != nil && s.IsLeader()
}

// assignedID is the id peer p assigned us (from its outbound subject).
func assignedID(p federation.Peer) (string, error) {
	if p.OutboundSubject == "" {
		return "", fmt.Errorf("peer %s has no outbound_subject yet", p.ID)
	}
	return federation.PeerIDFromSubject(p.OutboundSubject)
}

// auditRec writes one lifecycle audit record; errors are logged (the
// control listener answers even when the disk is slow; operator actions
// use fail-closed auditLocal).
func (lc *lifecycle) auditRec(ctx context.Context, rec audit.Record) {
	if lc.a.audit == nil {
		return
	}
	if rec.Metadata == nil {
		rec.Metadata = map[string]string{}
	}
	if _, err := lc.a.audit.Append(ctx, rec); err != nil {
		lc.log.Warn("audit record not written", "action", rec.Action, LogKeyPeer, rec.FederationPeerID, LogKeyErr, err)
	}
}

// inboundRecord starts an audit record for a control-listener request.
func inboundRecord(r *http.Request, action, peerID string) audit.Record {
	rec := audit.Record{Action: action, FederationPeerID: peerID, RemoteSubject: federation.SubjectFor(peerID),
		Method: r.Method, Path: r.URL.Path, Metadata: map[string]string{"remote_addr": r.RemoteAddr}}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		c := r.TLS.PeerCertificates[0]
		rec.CertSerial = c.SerialNumber.Text(16)
		rec.RemoteSubject = c.Subject.CommonName
		rec.TLSVersion = "TLS1.3"
	}
	return rec
}

// refuse answers a control-listener refusal and audits it as a denial.
func (lc *lifecycle) refuse(w http.ResponseWriter, r *http.Request, rec audit.Record, status int, reason, detail string) {
	rec.Decision, rec.Status, rec.Reason = audit.DecisionDeny, status, reason
	if detail != "" {
		rec.Metadata["detail"] = truncateStr(detail, 900)
	}
	lc.auditRec(r.Context(), rec)
	lc.log.Info("refused", "path", r.URL.Path, LogKeyPeer, rec.FederationPeerID, "reason", reason, "detail", detail)
	writeJSON(w, status, map[string]string{"error": detail, "reason": reason})
}

func truncateStr(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// callerIdentity re-verifies the client of a control-listener request.
func (lc *lifecycle) callerIdentity(r *http.Request) (pki.Identity, error) {
	if r.TLS == nil {
		return pki.Identity{}, errors.New("no TLS")
	}
	return lc.serverPV.Identity(*r.TLS)
}

// readJSON decodes a bounded body strictly.
func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
	if err != nil {
		return err
	}
	if len(b) > maxControlBody {
		return errors.New("body too large")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// peerClient returns an HTTP client that dials peer p's control listener
// with our federation certificate for p and verifies p against its bundle.
func (lc *lifecycle) peerClient(p federation.Peer, timeout time.Duration) (*http.Client, string, error) {
	u := p.Metadata[metaControlURL]
	if u == "" {
		return nil, "", fmt.Errorf("peer %s has no control URL", p.ID)
	}
	if _, err := url.Parse(u); err != nil {
		return nil, "", fmt.Errorf("peer %s control URL: %w", p.ID, err)
	}
	if lc.a.fed == nil {
		return nil, "", fmt.Errorf("no federation certificates")
	}
	if _, ok := lc.a.fed.get(p.ID); !ok {
		return nil, "", fmt.Errorf("%w: no federation certificate for peer %s yet", pki.ErrNoCertificate, p.ID)
	}
	id := p.ID
	tc := lc.clientPV.ClientTLSConfig(id, func() (*tls.Certificate, error) { return lc.a.fed.ClientCertificate(id) })
	tc.ServerName = proxy.PeerHost(id)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true,
		ForceAttemptHTTP2: false}}, u, nil
}

// postPeer posts body to path on peer p and decodes a 2xx answer into
// out. A non-2xx answer is a *peerRefusal.
func (lc *lifecycle) postPeer(ctx context.Context, p federation.Peer, path string, body, out any, timeout time.Duration) error {
	c, base, err := lc.peerClient(p, timeout)
	if err != nil {
		return err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
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
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Reason string }
		_ = json.Unmarshal(data, &e)
		return &peerRefusal{Status: resp.StatusCode, Reason: e.Reason, Detail: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("peer %s answer: %w", p.ID, err)
		}
	}
	return nil
}

// peerRefusal is a peer's non-2xx answer.
type peerRefusal struct {
	Status int
	Reason string
	Detail string
}

func (e *peerRefusal) Error() string {
	return fmt.Sprintf("peer refused: %d %s: %s", e.Status, e.Reason, e.Detail)
}

// ---- handshake ----

// handshakeMsg is our handshake envelope: the contract's handshake plus
// the WireGuard details the tunnel needs.
type handshakeMsg struct {
	Handshake           federation.Handshake `json:"handshake"`
	WireGuardEndpoint   string               `json:"wireguard_endpoint,omitempty"`
	WireGuardAllowedIPs []string             `json:"wireguard_allowed_ips,omitempty"`
}

// handshakeReply answers an accepted handshake with the receiver's side.
type handshakeReply struct {
	Status            federation.Status `json:"status"`
	MissingDisclosure []string          `json:"missing_disclosure,omitempty"`
	Handshake         handshakeMsg      `json:"handshake"`
}

// ourHandshake is what we present to peer p.
func (lc *lifecycle) ourHandshake(p federation.Peer) (handshakeMsg, error) {
	id, err := assignedID(p)
	if err != nil {
		return handshakeMsg{}, err
	}
	v := p.ContractVersionAgreed
	cv, ok := lc.state().Contract(v)
	if !ok {
		return handshakeMsg{}, fmt.Errorf("contract version %d is not known here", v)
	}
	h := federation.Handshake{PeerID: id, ContractVersion: v, ContractDigest: cv.ContractDigest,
		PlatformVersion: lc.a.cfg.Federation.PlatformVersion, Capabilities: lc.capabilities(),
		OperatorContact: lc.cfg.OperatorContact, Jurisdiction: lc.cfg.Jurisdiction,
		LastKnownGoodRelease: lc.cfg.LastKnownGoodRelease, DataResidency: lc.cfg.DataResidency,
		Endpoints: lc.endpoints(), VIPs: slices.Clone(lc.cfg.VIPs)}
	if h.VIPs == nil {
		h.VIPs = []string{}
	}
	m := handshakeMsg{Handshake: h}
	if lc.a.net != nil && lc.cfg.WireGuardInterface != "" {
		m.Handshake.WireGuardPublicKey = lc.a.net.m.PublicKey().String()
		m.WireGuardEndpoint = lc.cfg.WireGuardEndpoint
		m.WireGuardAllowedIPs = slices.Clone(lc.cfg.WireGuardAllowedIPs)
	}
	return m, nil
}

// applyHandshake records an accepted handshake m from peer p (checked by
// the caller) and enrols p when its disclosure is complete. It returns the
// peer's status afterwards and the missing disclosure fields.
func (lc *lifecycle) applyHandshake(ctx context.Context, p federation.Peer, m handshakeMsg) (federation.Status, []string, error) {
	np, err := p.ApplyHandshake(m.Handshake, lc.now())
	if err != nil {
		return p.Status, nil, err
	}
	if np.Metadata == nil {
		np.Metadata = map[string]string{}
	}
	if m.WireGuardEndpoint != "" {
		np.Metadata[metaWGEndpoint] = m.WireGuardEndpoint
	}
	if len(m.WireGuardAllowedIPs) > 0 {
		np.Metadata[metaWGAllowedIPs] = strings.Join(m.WireGuardAllowedIPs, ",")
	}
	missing := m.Handshake.MissingDisclosure()
	if len(missing) > 0 && (np.Status.Reachable()) {
		// A reachable peer must keep its disclosure: refuse to record a
		// handshake that drops it.
		return p.Status, missing, fmt.Errorf("%w: %s", federation.ErrDisclosureMissing, strings.Join(missing, ", "))
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerUpdate, np); err != nil {
		return p.Status, missing, fmt.Errorf("record handshake: %w", err)
	}
	status := p.Status
	if len(missing) == 0 && p.Status == federation.StatusAccepted {
		if _, err := lc.a.apply(ctx, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: p.ID, To: federation.StatusEnrolled,
			Reason: "handshake complete"}); err != nil && !isAlreadyIn(err) {
			return status, missing, fmt.Errorf("enrol: %w", err)
		}
		status = federation.StatusEnrolled
	}
	if status.Reachable() {
		lc.putWireGuardPeer(ctx, p.ID)
	}
	return status, missing, nil
}

func isAlreadyIn(err error) bool {
	return err != nil && strings.Contains(err.Error(), "already")
}

// putWireGuardPeer puts peer id's tunnel into the replicated state for
// netctl, when both sides declared WireGuard.
func (lc *lifecycle) putWireGuardPeer(ctx context.Context, id string) {
	if lc.cfg.WireGuardInterface == "" {
		return
	}
	p, ok := lc.state().Peer(id)
	if !ok || p.WireGuardPublicKey == "" {
		return
	}
	allowed := []string{}
	if s := p.Metadata[metaWGAllowedIPs]; s != "" {
		allowed = append(allowed, strings.Split(s, ",")...)
	}
	for _, v := range p.VIPs {
		if !slices.Contains(allowed, v) {
			allowed = append(allowed, v)
		}
	}
	wp := raftstore.WGPeerPutPayload{Name: "fed-" + p.ID, PeerID: p.ID, Interface: lc.cfg.WireGuardInterface,
		PublicKey: p.WireGuardPublicKey, Endpoint: p.Metadata[metaWGEndpoint], AllowedIPs: allowed, PersistentKeepalive: 25}
	for _, w := range lc.state().WGPeers() {
		if w.Name == wp.Name && w.PublicKey == wp.PublicKey && w.Endpoint == wp.Endpoint && slices.Equal(w.AllowedIPs, wp.AllowedIPs) {
			return
		}
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdWGPeerPut, wp); err != nil {
		lc.log.Warn("wireguard peer not recorded", LogKeyPeer, p.ID, LogKeyErr, err)
	}
}

// handleHandshake is the control listener's handshake endpoint.
func (lc *lifecycle) handleHandshake(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := lc.callerIdentity(r)
	rec := inboundRecord(r, audit.ActionHandshake, id.PeerID)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, err.Error())
		return
	}
	if !lc.hbLimits.allow("hs/" + id.PeerID) {
		lc.refuse(w, r, rec, http.StatusTooManyRequests, "rate_limited", "too many handshakes")
		return
	}
	p, ok := lc.state().Peer(id.PeerID)
	if !ok || (p.Status != federation.StatusAccepted && !p.Status.Reachable()) {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, fmt.Sprintf("peer is %s", p.Status))
		return
	}
	var m handshakeMsg
	if err := readJSON(r, &m); err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, federation.ReasonHandshakeInvalid, err.Error())
		return
	}
	if m.Handshake.PeerID != id.PeerID {
		rec.Metadata["claimed_peer_id"] = truncateStr(m.Handshake.PeerID, 64)
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerIDMismatch, "handshake peer_id is not the certificate's")
		return
	}
	if err := lc.checkHandshake(ctx, p, m); err != nil {
		var he *federation.HandshakeError
		if errors.As(err, &he) {
			lc.refuse(w, r, rec, he.Status, he.Reason, he.Err.Error())
			return
		}
		lc.refuse(w, r, rec, http.StatusBadRequest, federation.ReasonHandshakeInvalid, err.Error())
		return
	}
	status, missing, err := lc.applyHandshake(ctx, p, m)
	if len(missing) > 0 {
		rec.Metadata["missing_disclosure"] = strings.Join(missing, ",")
		lc.refuse(w, r, rec, http.StatusUnprocessableEntity, "identity_disclosure_missing",
			"a peer cannot reach enrolled without: "+strings.Join(missing, ", "))
		return
	}
	if err != nil {
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "handshake_not_recorded", err.Error())
		return
	}
	ours, err := lc.ourHandshake(p)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "handshake_not_recorded", err.Error())
		return
	}
	rec.Decision, rec.Status = audit.DecisionAllow, http.StatusOK
	rec.Metadata["contract_version"] = fmt.Sprint(m.Handshake.ContractVersion)
	rec.Metadata["platform_version"] = m.Handshake.PlatformVersion
	rec.Metadata["status"] = string(status)
	lc.auditRec(ctx, rec)
	writeJSON(w, http.StatusOK, handshakeReply{Status: status, Handshake: ours})
}

// checkHandshake runs the contract checks on m from p and records a
// contract_mismatch finding for version or digest mismatches.
func (lc *lifecycle) checkHandshake(ctx context.Context, p federation.Peer, m handshakeMsg) error {
	err := federation.CheckHandshake(federation.Local{PlatformVersion: lc.a.cfg.Federation.PlatformVersion,
		AgreedVersion: p.ContractVersionAgreed}, m.Handshake, lc.state().Contracts())
	var he *federation.HandshakeError
	if errors.As(err, &he) && (he.Reason == federation.ReasonContractDigestMismatch || he.Reason == federation.ReasonContractVersionMismatch) {
		lc.addFinding(ctx, p.ID, federation.FindingContractMismatch, he.Err.Error())
	}
	if err != nil {
		return err
	}
	if m.WireGuardEndpoint != "" {
		if _, err := netip.ParseAddrPort(m.WireGuardEndpoint); err != nil {
			return fmt.Errorf("wireguard_endpoint: %w", err)
		}
	}
	for _, a := range m.WireGuardAllowedIPs {
		if _, err := netip.ParsePrefix(a); err != nil {
			return fmt.Errorf("wireguard_allowed_ips: %w", err)
		}
	}
	return nil
}

// handshakeWith runs our side of a handshake with accepted or reachable
// peer p: we present ours, check theirs from the reply, record it.
func (lc *lifecycle) handshakeWith(ctx context.Context, p federation.Peer) error {
	m, err := lc.ourHandshake(p)
	if err != nil {
		return err
	}
	var rep handshakeReply
	if err := lc.postPeer(ctx, p, pathHandshake, m, &rep, lc.cfg.NoticeTimeout); err != nil {
		return err
	}
	if rep.Handshake.Handshake.PeerID != p.ID {
		return fmt.Errorf("peer %s answered a handshake as %q", p.ID, rep.Handshake.Handshake.PeerID)
	}
	if err := lc.checkHandshake(ctx, p, rep.Handshake); err != nil {
		return fmt.Errorf("peer %s handshake reply refused: %w", p.ID, err)
	}
	cur, ok := lc.state().Peer(p.ID)
	if !ok {
		return fmt.Errorf("peer %s vanished", p.ID)
	}
	status, missing, err := lc.applyHandshake(ctx, cur, rep.Handshake)
	if err != nil {
		return err
	}
	rec := audit.Record{Action: audit.ActionHandshake, FederationPeerID: p.ID, RemoteSubject: p.InboundSubject, Decision: audit.DecisionAllow,
		Method: http.MethodPost, Path: pathHandshake, Status: http.StatusOK,
		Metadata: map[string]string{"direction": "outbound", "status": string(status), "peer_status": string(rep.Status)}}
	if len(missing) > 0 {
		rec.Decision, rec.Reason = audit.DecisionDeny, "identity_disclosure_missing"
		rec.Metadata["missing_disclosure"] = strings.Join(missing, ",")
	}
	lc.auditRec(ctx, rec)
	if len(missing) > 0 {
		return fmt.Errorf("peer %s lacks identity disclosure: %s", p.ID, strings.Join(missing, ", "))
	}
	return nil
}

// ---- the timer loop ----

// loop drives handshakes for accepted peers, heartbeats and staleness.
func (lc *lifecycle) loop(ctx context.Context) {
	tick := lc.cfg.HeartbeatInterval / 4
	tick = min(max(tick, 50*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastGC time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !lc.leader() || lc.controlAddr == "" {
			continue
		}
		now := time.Now()
		for _, p := range lc.state().Peers() {
			switch {
			case p.Status == federation.StatusAccepted:
				lc.maybeHandshake(ctx, p, now)
			case p.Status.Reachable():
				lc.maybeHeartbeat(ctx, p, now)
			}
		}
		lc.checkStale(ctx)
		if now.Sub(lastGC) > time.Minute {
			lastGC = now
			lc.gc(ctx)
		}
	}
}

// gc deletes seen notice nonces that can no longer be replayed (their
// timestamps are outside the accepted skew) and expired invitations.
func (lc *lifecycle) gc(ctx context.Context) {
	st := lc.state()
	now := lc.now()
	var keys []string
	for _, e := range st.KVList("lifecycle/nonce/") {
		if now.Sub(e.Modified) > 2*lc.cfg.NoticeMaxSkew {
			keys = append(keys, e.Key)
		}
	}
	for _, e := range st.KVList("lifecycle/invite/") {
		var inv invite
		if json.Unmarshal(e.Value, &inv) != nil || !now.Before(inv.ExpiresAt) {
			keys = append(keys, e.Key)
		}
	}
	for _, k := range keys {
		if _, err := lc.a.apply(ctx, raftstore.CmdKVDelete, raftstore.KVDeletePayload{Key: k}); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
			lc.log.Warn("lifecycle gc", "key", k, LogKeyErr, err)
			return
		}
	}
}

func (lc *lifecycle) maybeHandshake(ctx context.Context, p federation.Peer, now time.Time) {
	lc.mu.Lock()
	next := lc.hsNext[p.ID]
	lc.mu.Unlock()
	if now.Before(next) || p.Metadata[metaControlURL] == "" {
		return
	}
	err := lc.handshakeWith(ctx, p)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if err == nil {
		delete(lc.hsBackoff, p.ID)
		lc.hsNext[p.ID] = now.Add(lc.cfg.HeartbeatInterval)
		return
	}
	b := lc.hsBackoff[p.ID]
	b = min(max(2*b, 200*time.Millisecond), 30*time.Second)
	lc.hsBackoff[p.ID] = b
	lc.hsNext[p.ID] = now.Add(b)
	lc.log.Debug("handshake not complete", LogKeyPeer, p.ID, LogKeyErr, err, "retry_in", b)
}

// newID returns a fresh UUIDv7.
func newID() (string, error) { return federation.NewID(time.Now(), rand.Reader) }

// limiterSet holds one token bucket per key.
type limiterSet struct {
	mu    sync.Mutex
	r     rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func (l *limiterSet) allow(key string) bool {
	l.mu.Lock()
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) > 10000 {
			clear(l.m)
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[key] = lim
	}
	l.mu.Unlock()
	return lim.Allow()
}
