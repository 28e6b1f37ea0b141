package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
)

func (p *Proxy) startOutbound(lns []net.Listener) {
	p.h1out = newH1Server(http.HandlerFunc(p.serveOutboundHTTP), p.cfg.Limits, p.log)
	for _, ln := range lns {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.h1out.serve(ln)
		}()
	}
}

// resolvePeer finds the peer an outbound request names: Host
// "<peer-id>.peer.fedgate", or an absolute-form URI whose host:port is one of
// a peer's endpoints.
func (p *Proxy) resolvePeer(r *http.Request) (string, *denial) {
	if id, err := ParsePeerHost(r.Host); err == nil {
		return id, nil
	}
	if r.URL.IsAbs() && r.URL.Host != "" {
		want := hostPort(r.URL.Scheme, r.URL.Host)
		for _, peer := range p.cfg.State.Peers() {
			for _, ep := range peer.Endpoints {
				if a, err := endpointAddr(ep.URL); err == nil && strings.EqualFold(a, want) {
					return peer.ID, nil
				}
			}
		}
		return "", &denial{status: http.StatusNotFound, reason: ReasonPeerUnknown, detail: "no peer has endpoint " + truncate(want, 100)}
	}
	return "", &denial{status: http.StatusBadRequest, reason: ReasonNotPeerHost, detail: truncate(r.Host, 100)}
}

func (p *Proxy) serveOutboundHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	rec := audit.Record{
		Action:        audit.ActionProxyRequest,
		Method:        r.Method,
		Path:          r.URL.Path,
		CorrelationID: r.Header.Get(HeaderCorrelationID),
		Metadata:      map[string]string{"direction": dirOutbound},
	}
	if r.ContentLength > 0 {
		rec.BytesIn = r.ContentLength
	}
	mid := r.Header.Get(HeaderMigrationID)
	if mid != "" {
		rec.Metadata["migration_id"] = mid
	}
	asserted := r.Header.Get(HeaderAssertedSubject)
	if asserted != "" {
		rec.RemoteSubject = asserted
	}
	peerID, d := p.resolvePeer(r)
	rec.FederationPeerID = peerID
	if d == nil && asserted != "" && !validSubject(asserted) {
		d = &denial{status: http.StatusBadRequest, reason: "invalid_remote_subject"}
	}
	if d == nil && r.ContentLength > p.cfg.Limits.MaxBodyBytes {
		d = &denial{status: http.StatusRequestEntityTooLarge, reason: ReasonBodyTooLarge}
	}
	var peer federation.Peer
	if d == nil {
		var ok bool
		if peer, ok = p.cfg.State.Peer(peerID); !ok {
			d = &denial{status: http.StatusNotFound, reason: ReasonPeerUnknown}
		}
	}
	if d == nil {
		switch {
		case !peer.Reachable():
			d = &denial{status: http.StatusForbidden, reason: federation.ReasonPeerNotReachable, detail: "status " + string(peer.Status)}
		case peer.ContractVersionAgreed <= 0 || !p.cfg.State.Contracts().Known(peer.ContractVersionAgreed):
			d = &denial{status: http.StatusForbidden, reason: federation.ReasonContractMismatch}
		}
	}
	if rec.RemoteSubject == "" {
		// No subject asserted: the call acts as this site, under the
		// certificate subject it presents to the peer, the subject the
		// peer records too (ARCHITECTURE: remote_subject). Empty for a
		// peer that is not known.
		rec.RemoteSubject = peer.OutboundSubject
	}
	if d != nil {
		p.deny(ctx, w, dirOutbound, peerID, d, &rec)
		return
	}
	req := &inReq{migration: mid != ""}
	ctx, req.cancel = context.WithCancel(ctx)
	defer req.cancel()
	p.outReqs.add(peerID, req)
	defer p.outReqs.remove(peerID, req)
	rec.Decision = audit.DecisionAllow
	for _, k := range outboundStripped {
		delete(r.Header, k)
	}
	if r.ContentLength < 0 {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.Limits.MaxBodyBytes)
	}
	c := &call{rec: &rec, dir: dirOutbound, peer: peerID}
	if p.cfg.HTTP2ToPeers || isUpgrade(r) {
		if p.appendStrict(ctx, w, c) {
			p.outProxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, callKey{}, c)))
		}
	} else {
		p.auditAndForward(ctx, w, r, c, p.overlapAudit(r, true), func(gate func() error) error {
			return p.peerUpstream(peerID).forwardGated(ctx, w, r, PeerHost(peerID), r.URL.RequestURI(), gate)
		})
	}
	pm := p.m.peer(dirOutbound, peerID)
	pm.requests.Inc()
	pm.latency.Observe(time.Since(start).Seconds())
}

func (p *Proxy) newPeerProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			c := pr.In.Context().Value(callKey{}).(*call)
			host := PeerHost(c.peer)
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = host
			pr.Out.Host = host
		},
		Transport:    p.peerTransport,
		BufferPool:   bufferPool{},
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ErrorHandler: p.forwardError,
	}
}

// outTracker tracks in-flight outbound requests per peer so a revocation can
// cut them (migrations after the grace period).
type outTracker struct {
	mu   sync.Mutex
	reqs map[string]map[*inReq]struct{}
}

func newOutTracker() *outTracker { return &outTracker{reqs: map[string]map[*inReq]struct{}{}} }

func (t *outTracker) add(peer string, r *inReq) {
	t.mu.Lock()
	m := t.reqs[peer]
	if m == nil {
		m = map[*inReq]struct{}{}
		t.reqs[peer] = m
	}
	m[r] = struct{}{}
	t.mu.Unlock()
}

func (t *outTracker) remove(peer string, r *inReq) {
	t.mu.Lock()
	delete(t.reqs[peer], r)
	if len(t.reqs[peer]) == 0 {
		delete(t.reqs, peer)
	}
	t.mu.Unlock()
}

// cut cancels peer's requests now, and its migration requests after grace.
func (t *outTracker) cut(peer string, grace time.Duration) {
	t.mu.Lock()
	var later []*inReq
	for r := range t.reqs[peer] {
		if r.migration {
			later = append(later, r)
		} else {
			r.cancel()
		}
	}
	t.mu.Unlock()
	if len(later) > 0 {
		time.AfterFunc(grace, func() {
			for _, r := range later {
				r.cancel()
			}
		})
	}
}

func (t *outTracker) peers() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.reqs))
	for p := range t.reqs {
		out = append(out, p)
	}
	return out
}
