package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
)

type inConnKey struct{}

// Denial reasons the proxy adds to federation's.
const (
	ReasonNoRoute           = "no_route"
	ReasonConnectionRevoked = "connection_revoked"
	ReasonAuditUnavailable  = "audit_unavailable"
	ReasonRateLimited       = "rate_limited"
	ReasonPeerBusy          = "peer_concurrency_limit"
	ReasonBodyTooLarge      = "body_too_large"
	ReasonSmuggling         = "ambiguous_message_length"
	ReasonBackendError      = "backend_unavailable"
	ReasonPeerUnknown       = "peer_unknown"
	ReasonNotPeerHost       = "not_a_peer_host"
	ReasonPeerUnreachable   = "peer_endpoints_unreachable"
	// ReasonPeerRefused: the peer's TLS stack refused our certificate (with
	// TLS 1.3 the client learns this on its first read, not in the dial).
	ReasonPeerRefused = "peer_refused_tls"
)

// denial is a refused call: status and stable reason.
type denial struct {
	status     int
	reason     string
	retryAfter int // seconds, for 429
	detail     string
}

func (d *denial) Error() string { return strconv.Itoa(d.status) + " " + d.reason }

type denialBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// writeDenial answers a refused call with a JSON body, never more.
func writeDenial(w http.ResponseWriter, d *denial) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if d.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(d.retryAfter))
	}
	b, _ := json.Marshal(denialBody{Error: d.reason, Status: d.status})
	w.WriteHeader(d.status)
	w.Write(append(b, '\n'))
}

// deny audits and answers a refused call. An audit failure does not turn a
// denial into anything else: the call is refused either way.
func (p *Proxy) deny(ctx context.Context, w http.ResponseWriter, dir, peer string, d *denial, rec *audit.Record) {
	rec.Decision = audit.DecisionDeny
	rec.Status = d.status
	rec.Reason = d.reason
	if d.detail != "" {
		rec.Reason += ": " + d.detail
	}
	p.m.deny(dir, peer, d.reason)
	if _, err := p.cfg.Auditor.Append(ctx, *rec); err != nil {
		p.m.auditErrors.Inc()
		p.log.Error("audit denial", "peer", peer, "reason", d.reason, "err", err)
	}
	writeDenial(w, d)
}

func authDenial(err error) *denial {
	var ae *federation.AuthError
	if errors.As(err, &ae) {
		return &denial{status: ae.Status, reason: ae.Reason}
	}
	var he *federation.HandshakeError
	if errors.As(err, &he) {
		return &denial{status: he.Status, reason: he.Reason, detail: he.Err.Error()}
	}
	return &denial{status: http.StatusForbidden, reason: "denied", detail: err.Error()}
}

func (p *Proxy) matchRoute(path string) *route {
	for _, r := range p.routes {
		if strings.HasPrefix(path, r.PathPrefix) {
			return r
		}
	}
	return nil
}

// resourceID is the first path segment after the route prefix.
func (r *route) resourceID(path string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(path, r.PathPrefix), "/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func requiredScope(rt *route, r *http.Request, migration bool) federation.Scope {
	switch {
	case rt.Scope != "":
		return rt.Scope
	case migration:
		return federation.ScopeMigrate
	case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions:
		return federation.ScopeRead
	}
	return federation.ScopeWrite
}

func bearer(h http.Header) string {
	v := h.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// smuggled reports whether an HTTP/1.x request carried both
// Content-Length and Transfer-Encoding: net/http's parser drops the
// Content-Length (RFC 9112 lets an intermediary do so), the HTTP/1 server
// loop sees it in the raw header, and the issue asks to refuse such
// messages outright.
func smuggled(w http.ResponseWriter) bool {
	lc, ok := w.(interface{ LengthConflict() bool })
	return ok && lc.LengthConflict()
}

func (p *Proxy) inboundRecord(ic *inConn, r *http.Request, rt *route) audit.Record {
	rec := audit.Record{
		Action:           audit.ActionProxyRequest,
		FederationPeerID: ic.peerID,
		RemoteSubject:    ic.certSubject,
		Method:           r.Method,
		Path:             r.URL.Path,
		TLSVersion:       ic.tlsVersion,
		Resumed:          ic.resumed,
		CertSerial:       ic.serial,
		CertSPKISHA256:   ic.spki,
		CorrelationID:    r.Header.Get(HeaderCorrelationID),
	}
	if r.ContentLength > 0 {
		rec.BytesIn = r.ContentLength
	}
	rec.Metadata = map[string]string{"direction": dirInbound, "remote_addr": ic.remoteStr}
	if rt != nil {
		rec.Metadata["route"] = rt.Name
	}
	if mid := r.Header.Get(HeaderMigrationID); mid != "" {
		rec.Metadata["migration_id"] = mid
	}
	return rec
}

func (p *Proxy) serveInboundHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	ic, _ := ctx.Value(inConnKey{}).(*inConn)
	if ic == nil {
		// Unreachable: every inbound connection is registered before
		// hand-off. Refuse rather than serve an unauthenticated request.
		writeDenial(w, &denial{status: http.StatusInternalServerError, reason: "no_identity"})
		return
	}
	if r.URL.Path == p.cfg.HandshakePath {
		p.serveHandshake(w, r, ic)
		return
	}
	rt := p.matchRoute(r.URL.Path)
	rec := p.inboundRecord(ic, r, rt)
	migration := rec.Metadata["migration_id"] != ""
	switch {
	case ic.isTerminating():
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusForbidden, reason: ReasonConnectionRevoked}, &rec)
		return
	case smuggled(w):
		w.Header().Set("Connection", "close")
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusBadRequest, reason: ReasonSmuggling,
			detail: "both Transfer-Encoding and Content-Length"}, &rec)
		return
	case r.ContentLength > p.cfg.Limits.MaxBodyBytes:
		w.Header().Set("Connection", "close")
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusRequestEntityTooLarge, reason: ReasonBodyTooLarge}, &rec)
		return
	case rt == nil:
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusNotFound, reason: ReasonNoRoute}, &rec)
		return
	}
	peer, ok := p.cfg.State.Peer(ic.peerID)
	if !ok {
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusForbidden, reason: federation.ReasonPeerNotReachable, detail: "unknown peer"}, &rec)
		return
	}
	asserted := r.Header.Get(HeaderAssertedSubject)
	dec, err := federation.Authorize(peer, federation.CallRequest{
		ResourceKind:    rt.ResourceKind,
		RequiresGrant:   rt.RequireGrant,
		Token:           bearer(r.Header),
		ResourceID:      rt.resourceID(r.URL.Path),
		Scope:           requiredScope(rt, r, migration),
		NodeInstanceID:  p.cfg.NodeID,
		SDWANNetworkID:  p.cfg.SDWANNetworkID,
		SourceIP:        ic.remote,
		AssertedSubject: asserted,
		CertSubject:     ic.certSubject,
	}, federation.AuthState{
		Contracts:   p.cfg.State.Contracts(),
		LookupGrant: p.cfg.State.Grant,
		Key:         p.cfg.GrantKey(),
	}, p.cfg.Now())
	if err != nil {
		d := authDenial(err)
		if d.reason == federation.ReasonCapabilityNotDeclared || d.reason == federation.ReasonSchemaVersionNotDeclared {
			p.reportDrift(ctx, ic.peerID, rt.ResourceKind)
		}
		p.deny(ctx, w, dirInbound, ic.peerID, d, &rec)
		return
	}
	rec.RemoteSubject = dec.RemoteSubject
	if dec.HasGrant {
		rec.GrantID = dec.Grant.ID
	}
	if rt.RateLimited {
		if wait, ok := p.limiters.allow(kindCapability, ic.peerID, p.cfg.CapabilityRate, p.cfg.CapabilityBurst); !ok {
			p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusTooManyRequests, reason: ReasonRateLimited, retryAfter: wait}, &rec)
			return
		}
	}
	if !p.inflight.acquire(ic.peerID, p.cfg.Limits.MaxInFlightPerPeer) {
		// One peer may not take every backend connection (the pools and
		// their MaxConnsPerHost slots are shared by all peers).
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusTooManyRequests, reason: ReasonPeerBusy, retryAfter: 1}, &rec)
		return
	}
	defer p.inflight.release(ic.peerID)
	req := &inReq{migration: migration}
	ctx, req.cancel = context.WithCancel(ctx)
	defer req.cancel()
	if !ic.begin(req) {
		p.deny(ctx, w, dirInbound, ic.peerID, &denial{status: http.StatusForbidden, reason: ReasonConnectionRevoked}, &rec)
		return
	}
	defer ic.end(req)
	rec.Decision = audit.DecisionAllow
	h := r.Header
	stripIdentity(h)
	cert, info := ic.headers()
	h[HeaderPeerID] = []string{ic.peerID}
	h[HeaderRemoteSubject] = []string{dec.RemoteSubject}
	h[HeaderClientCert] = []string{cert}
	h[HeaderClientCertInfo] = []string{info}
	if r.ContentLength < 0 {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.Limits.MaxBodyBytes)
	}
	c := &call{rec: &rec, dir: dirInbound, peer: ic.peerID}
	if isUpgrade(r) {
		if p.appendStrict(ctx, w, c) {
			rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, callKey{}, c)))
		}
	} else {
		p.auditAndForward(ctx, w, r, c, p.overlapAudit(r, false), func(gate func() error) error {
			return rt.up.forwardGated(ctx, w, r, rt.target.Host, rt.uri(r), gate)
		})
	}
	ic.pm.requests.Inc()
	ic.pm.latency.Observe(time.Since(start).Seconds())
}

func (p *Proxy) reportDrift(ctx context.Context, peerID, kind string) {
	if p.cfg.Findings != nil {
		p.cfg.Findings.Report(ctx, peerID, federation.FindingCapabilityDrift,
			"called a route of resource kind "+strconv.Quote(kind)+" it has not declared")
	}
}

type callKey struct{}

// call is what the reverse proxy's error handler needs to audit a failed
// forward.
type call struct {
	rec  *audit.Record
	seq  uint64
	dir  string
	peer string
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type bufferPool struct{}

func (bufferPool) Get() []byte  { return *(bufPool.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { bufPool.Put(&b) }

func (p *Proxy) newBackendProxy(rt *route) *httputil.ReverseProxy {
	target := rt.target
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
		},
		Transport:    p.backendTransport,
		BufferPool:   bufferPool{},
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ErrorHandler: p.forwardError,
	}
}

// forwardError answers a failed forward: 413 when the body outgrew the
// limit, 502 otherwise; it audits the failure as a follow-up record that
// names the request's record.
func (p *Proxy) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	p.forwardFailed(w, r, err, c)
}

func (p *Proxy) forwardFailed(w http.ResponseWriter, r *http.Request, err error, c *call) {
	d := &denial{status: http.StatusBadGateway, reason: ReasonBackendError}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		d = &denial{status: http.StatusRequestEntityTooLarge, reason: ReasonBodyTooLarge}
	case errors.Is(err, context.Canceled):
		// The client went away, or the call was cut because its peer or
		// certificate was revoked.
		d = &denial{status: http.StatusServiceUnavailable, reason: "cancelled"}
	case errors.Is(err, ErrNoEndpoint):
		d = &denial{status: http.StatusBadGateway, reason: ReasonPeerUnreachable}
	case c != nil && c.dir == dirOutbound && (strings.Contains(err.Error(), "remote error: tls:") || errors.Is(err, errFreshClosed)):
		d = &denial{status: http.StatusBadGateway, reason: ReasonPeerRefused}
	}
	if c != nil {
		rec := *c.rec
		rec.Decision = audit.DecisionAllow
		rec.Status = d.status
		rec.Reason = d.reason + ": " + err.Error()
		rec.Metadata = map[string]string{"direction": c.dir, "request_seq": strconv.FormatUint(c.seq, 10)}
		if _, aerr := p.cfg.Auditor.Append(context.WithoutCancel(r.Context()), rec); aerr != nil {
			p.m.auditErrors.Inc()
		}
		p.m.deny(c.dir, c.peer, d.reason)
	}
	p.log.Debug("forward failed", "path", r.URL.Path, "err", err)
	writeDenial(w, d)
}

// overlapAudit says whether the audit append may run while the call is
// forwarded. The response is released only once the record is durable
// either way, so the caller never receives anything unaudited; what the
// choice decides is whether the far side may see the call first. That is
// allowed for safe methods (GET, HEAD, OPTIONS: no side effects by HTTP
// semantics) unless AuditStrictAll is set, and, on the outbound side, for
// every method when OutboundAuditOverlap is set. Everything else is strict:
// no durable record, no call.
func (p *Proxy) overlapAudit(r *http.Request, outbound bool) bool {
	if outbound && p.cfg.OutboundAuditOverlap {
		return true
	}
	return !p.cfg.AuditStrictAll && safeMethod(r.Method) && r.Header.Get(HeaderMigrationID) == ""
}

// appendStrict makes c's record durable before anything is forwarded; on
// failure it answers 503 and reports false.
func (p *Proxy) appendStrict(ctx context.Context, w http.ResponseWriter, c *call) bool {
	seq, err := p.cfg.Auditor.Append(ctx, *c.rec)
	if err != nil {
		p.auditFailed(w, c, err)
		return false
	}
	c.seq = seq
	return true
}

func (p *Proxy) auditFailed(w http.ResponseWriter, c *call, err error) {
	p.m.auditErrors.Inc()
	p.m.deny(c.dir, c.peer, ReasonAuditUnavailable)
	p.log.Error("audit append failed, refusing call", "direction", c.dir, "peer", c.peer, "err", err)
	writeDenial(w, &denial{status: http.StatusServiceUnavailable, reason: ReasonAuditUnavailable})
}

type auditResult struct {
	seq uint64
	err error
}

// auditAndForward appends c's record (fail-closed) and forwards the call
// with fwd, strictly in that order or, with overlap, concurrently: then fwd
// gets a gate that waits for the append and must be passed before any byte
// of the response is written.
func (p *Proxy) auditAndForward(ctx context.Context, w http.ResponseWriter, r *http.Request, c *call, overlap bool, fwd func(gate func() error) error) {
	if !overlap {
		if !p.appendStrict(ctx, w, c) {
			return
		}
		if err := fwd(nil); err != nil {
			p.forwardFailed(w, r, err, c)
		}
		return
	}
	var await func() auditResult
	if st, ok := p.cfg.Auditor.(AuditStarter); ok {
		// Queue the record from this goroutine; no goroutine per call.
		tk := st.Start(ctx, *c.rec)
		await = func() auditResult { seq, err := tk.Wait(ctx); return auditResult{seq, err} }
	} else {
		done := make(chan auditResult, 1)
		snapshot := *c.rec
		go func() {
			seq, err := p.cfg.Auditor.Append(ctx, snapshot)
			done <- auditResult{seq, err}
		}()
		await = func() auditResult { return <-done }
	}
	var got *auditResult
	wait := func() error {
		if got == nil {
			res := await()
			got = &res
			c.seq = res.seq
		}
		return got.err
	}
	err := fwd(wait)
	if aerr := wait(); aerr != nil {
		p.auditFailed(w, c, aerr)
	} else if err != nil {
		p.forwardFailed(w, r, err, c)
	}
}

// peerInflight counts inbound calls in flight per peer.
type peerInflight struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire counts a call of peer unless it already has max in flight
// (max < 0: no limit).
func (f *peerInflight) acquire(peer string, max int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if max >= 0 && f.n[peer] >= max {
		return false
	}
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[peer]++
	return true
}

func (f *peerInflight) release(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[peer]--; f.n[peer] <= 0 {
		delete(f.n, peer)
	}
}
