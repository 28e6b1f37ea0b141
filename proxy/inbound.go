package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/pki"
)

// inboundTLSConfig is the inbound listener's TLS configuration: TLS 1.3
// only, a client certificate required and verified by the Verifier against
// the claimed peer's own bundle on every handshake (resumed ones included),
// session tickets on.
func (p *Proxy) inboundTLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	for alpn := range p.l4routes {
		protos = append(protos, alpn)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAnyClientCert,
		GetCertificate: p.cfg.Certs.ServerCertificate,
		NextProtos:     protos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := p.cfg.Verifier.VerifyClient(cs); err != nil {
				return &verifyError{err: err, claimed: claimedPeer(cs)}
			}
			return nil
		},
	}
}

// verifyError is what VerifyConnection returns: the handshake fails with it.
type verifyError struct {
	err     error
	claimed string
}

func (e *verifyError) Error() string { return "verify peer certificate: " + e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

func claimedPeer(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, _ := pki.PeerIDFromCert(cs.PeerCertificates[0])
	return id
}

// handshakeReason maps a verification error to a short label.
func handshakeReason(err error) string {
	switch {
	case errors.Is(err, pki.ErrRevoked):
		return "cert_revoked"
	case errors.Is(err, pki.ErrPeerUnknown):
		return "peer_unknown"
	case errors.Is(err, pki.ErrPeerNotReachable):
		return "peer_not_reachable"
	case errors.Is(err, pki.ErrExpired):
		return "cert_expired"
	case errors.Is(err, pki.ErrNoPeerCertificate):
		return "no_certificate"
	case errors.Is(err, pki.ErrNoIdentity), errors.Is(err, pki.ErrIdentityMismatch):
		return "no_identity"
	case errors.Is(err, pki.ErrUntrusted):
		return "untrusted"
	}
	return "untrusted"
}

func (p *Proxy) startInbound(ln net.Listener) {
	p.handoff = newChanListener(ln.Addr())
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	l := p.cfg.Limits
	p.inSrv = &http.Server{
		Handler:           http.HandlerFunc(p.serveInboundHTTP),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		Protocols:         &protos,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      250,
			MaxReceiveBufferPerStream: 1 << 20,
			WriteByteTimeout:          max(l.WriteStallTimeout, 0),
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic := p.conns.get(c); ic != nil {
				return context.WithValue(ctx, inConnKey{}, ic)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateClosed, http.StateHijacked:
				p.conns.remove(c)
			case http.StateIdle:
				if ic := p.conns.get(c); ic != nil {
					ic.idle()
				}
			}
		},
	}
	// HTTP/1.x connections are served by h1in, HTTP/2 ones by inSrv.
	p.h1in = newH1Server(http.HandlerFunc(p.serveInboundHTTP), l, p.log)
	p.h1in.connCtx = func(c net.Conn) context.Context {
		return context.WithValue(context.Background(), inConnKey{}, p.conns.get(c))
	}
	p.h1in.onIdle = func(c net.Conn) {
		if ic := p.conns.get(c); ic != nil {
			ic.idle()
		}
	}
	p.h1in.onClose = p.conns.remove
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.inSrv.Serve(p.handoff)
	}()
	go func() {
		defer p.wg.Done()
		p.acceptInbound(ln)
	}()
}

func (p *Proxy) acceptInbound(ln net.Listener) {
	defer p.handoff.Close()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if acceptPause(err, &backoff) {
				continue
			}
			p.log.Error("inbound accept", "err", err)
			return
		}
		backoff = 0
		if !p.conns.acquire() {
			p.m.hsFailures.WithLabelValues("", "connection_cap").Inc()
			c.Close()
			continue
		}
		go p.handshakeInbound(c)
	}
}

func (p *Proxy) handshakeInbound(raw net.Conn) {
	cc := &countConn{Conn: raw}
	tc := tls.Server(cc, p.inTLS)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Limits.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.handshakeFailed(tc, raw, err)
		tc.Close()
		p.conns.release()
		return
	}
	cs := tc.ConnectionState()
	ic := p.newInConn(tc, cs)
	cc.in, cc.out = ic.pm.bytesIn, ic.pm.bytesOut
	if r := p.l4routes[cs.NegotiatedProtocol]; r != nil {
		ic.isL4 = true
		p.conns.add(tc, ic)
		p.l4wg.Add(1)
		go func() {
			defer p.l4wg.Done()
			p.serveInboundL4(ic, tc, r)
		}()
		return
	}
	if cs.NegotiatedProtocol != "h2" {
		ic.conn = tc
		p.conns.add(tc, ic)
		p.h1in.serveConn(tc)
		return
	}
	ic.conn = tc
	p.conns.add(tc, ic)
	if !p.handoff.push(tc) {
		p.conns.remove(tc)
		tc.Close()
	}
}

// handshakeFailed counts and audits a failed inbound handshake. Failures
// without a certificate verdict (timeouts, garbage, EOF) are only counted.
func (p *Proxy) handshakeFailed(tc *tls.Conn, raw net.Conn, err error) {
	var ve *verifyError
	if !errors.As(err, &ve) {
		reason := "handshake"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			reason = "timeout"
		}
		p.m.hsFailures.WithLabelValues("", reason).Inc()
		p.log.Debug("inbound handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	reason := handshakeReason(ve.err)
	p.m.hsFailures.WithLabelValues(ve.claimed, reason).Inc()
	rec := audit.Record{
		Action:           audit.ActionProxyConnection,
		FederationPeerID: ve.claimed,
		Decision:         audit.DecisionDeny,
		Reason:           "tls: " + reason + ": " + ve.err.Error(),
		Metadata:         map[string]string{"direction": dirInbound, "remote_addr": raw.RemoteAddr().String()},
	}
	if ve.claimed != "" {
		rec.RemoteSubject = pki.PeerCNPrefix + ve.claimed
	}
	if _, aerr := p.cfg.Auditor.Append(context.Background(), rec); aerr != nil {
		p.m.auditErrors.Inc()
		p.log.Error("audit handshake failure", "err", aerr)
	}
	p.log.Info("inbound handshake refused", "peer", ve.claimed, "reason", reason, "remote", raw.RemoteAddr().String())
}

// inConn is one authenticated inbound connection.
type inConn struct {
	conn        net.Conn // what Close tears down (the handed-over conn)
	peerID      string
	certSubject string
	chain       []*x509.Certificate
	remote      netip.Addr
	remoteStr   string
	tlsVersion  string
	resumed     bool
	serial      string
	spki        string
	pm          *peerMetrics
	isL4        bool

	hdrOnce    sync.Once
	certHeader string
	infoHeader string

	mu          sync.Mutex
	reqs        map[*inReq]struct{}
	terminating bool
	termReason  string
	graceTimer  *time.Timer
	closed      atomic.Bool
}

type inReq struct {
	cancel    context.CancelFunc
	migration bool
}

func (p *Proxy) newInConn(tc *tls.Conn, cs tls.ConnectionState) *inConn {
	leaf := cs.PeerCertificates[0]
	peerID, _ := pki.PeerIDFromCert(leaf)
	ic := &inConn{
		conn:        tc,
		peerID:      peerID,
		certSubject: leaf.Subject.CommonName,
		chain:       cs.PeerCertificates,
		remote:      remoteIP(tc.RemoteAddr()),
		remoteStr:   tc.RemoteAddr().String(),
		tlsVersion:  tls.VersionName(cs.Version),
		resumed:     cs.DidResume,
		serial:      serialHex(leaf.SerialNumber),
		spki:        spkiHash(leaf),
		pm:          p.m.peer(dirInbound, peerID),
		reqs:        map[*inReq]struct{}{},
	}
	if ic.certSubject == "" {
		ic.certSubject = pki.PeerCNPrefix + peerID
	}
	ic.pm.conns.Inc()
	return ic
}

func serialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	return fmt.Sprintf("%x", n)
}

// headers returns the Traefik-compatible certificate headers, computed once.
func (c *inConn) headers() (cert, info string) {
	c.hdrOnce.Do(func() {
		c.certHeader = EncodeClientCert(c.chain)
		c.infoHeader = EncodeClientCertInfo(c.chain)
	})
	return c.certHeader, c.infoHeader
}

// begin registers a request; it reports false when the connection is being
// torn down (the request must be refused).
func (c *inConn) begin(r *inReq) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminating {
		return false
	}
	c.reqs[r] = struct{}{}
	return true
}

func (c *inConn) end(r *inReq) {
	c.mu.Lock()
	delete(c.reqs, r)
	closeSoon := c.terminating && !c.hasMigrationLocked()
	c.mu.Unlock()
	if closeSoon {
		// The handler has not flushed its response yet: an HTTP/1 connection
		// is closed when it turns idle (ConnState), and this timer covers
		// HTTP/2 and clients that never let it turn idle.
		time.AfterFunc(250*time.Millisecond, c.close)
	}
}

// idle is called when an HTTP/1 connection has finished a response.
func (c *inConn) idle() {
	c.mu.Lock()
	closeNow := c.terminating && !c.hasMigrationLocked()
	c.mu.Unlock()
	if closeNow {
		c.close()
	}
}

func (c *inConn) hasMigrationLocked() bool {
	for r := range c.reqs {
		if r.migration {
			return true
		}
	}
	return false
}

// terminate tears the connection down because its peer or certificate lost
// trust: requests without Powernode-Migration-Id are cancelled at once, the
// connection closes when the last migration request ends or grace expires.
func (c *inConn) terminate(reason string, grace time.Duration, log *slog.Logger) {
	c.mu.Lock()
	if c.terminating {
		c.mu.Unlock()
		return
	}
	c.terminating = true
	c.termReason = reason
	mig := false
	for r := range c.reqs {
		if r.migration {
			mig = true
		} else {
			r.cancel()
		}
	}
	if mig && !c.isL4 {
		c.graceTimer = time.AfterFunc(grace, c.close)
		c.mu.Unlock()
		log.Info("peer connection draining migrations", "peer", c.peerID, "reason", reason, "grace", grace)
		return
	}
	c.mu.Unlock()
	log.Info("peer connection closed", "peer", c.peerID, "reason", reason)
	c.close()
}

func (c *inConn) isTerminating() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.terminating
}

func (c *inConn) close() {
	if c.closed.Swap(true) {
		return
	}
	c.mu.Lock()
	if c.graceTimer != nil {
		c.graceTimer.Stop()
	}
	c.mu.Unlock()
	// The transport, not the TLS layer: a peer that has lost trust gets no
	// close_notify, and one that does not read cannot hold the caller
	// (StateChanged) for the 5 s crypto/tls gives that alert.
	closeTransport(c.conn)
}

// registry tracks live inbound connections and connection slots.
type registry struct {
	slots chan struct{}
	mu    sync.Mutex
	conns map[net.Conn]*inConn
}

func newRegistry() *registry { return &registry{conns: map[net.Conn]*inConn{}} }

func (r *registry) setCap(n int) { r.slots = make(chan struct{}, n) }

func (r *registry) acquire() bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *registry) release() { <-r.slots }

func (r *registry) add(c net.Conn, ic *inConn) {
	r.mu.Lock()
	r.conns[c] = ic
	r.mu.Unlock()
}

func (r *registry) get(c net.Conn) *inConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[c]
}

// remove forgets c and frees its slot (once).
func (r *registry) remove(c net.Conn) {
	r.mu.Lock()
	ic, ok := r.conns[c]
	delete(r.conns, c)
	r.mu.Unlock()
	if ok {
		ic.closed.Store(true)
		ic.pm.conns.Dec()
		r.release()
	}
}

func (r *registry) snapshot() []*inConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*inConn, 0, len(r.conns))
	for _, ic := range r.conns {
		out = append(out, ic)
	}
	return out
}

func (r *registry) closeAll() {
	for _, ic := range r.snapshot() {
		ic.conn.Close()
	}
}

// chanListener hands already-handshaken connections to an http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// countConn counts bytes on the raw connection into per-peer counters (set
// after the handshake, before the connection is shared).
type countConn struct {
	net.Conn
	in, out prometheus.Counter
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.in != nil && n > 0 {
		c.in.Add(float64(n))
	}
	return n, err
}

// CloseWrite half-closes the connection underneath (lingering close).
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.out != nil && n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}
