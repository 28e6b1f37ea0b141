package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powernode/fedgate/internal/freebind"
)

// Proxy is one node's inbound and outbound federation proxy.
type Proxy struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	routes   []*route          // L7, longest prefix first
	l4routes map[string]*route // by ALPN protocol
	inTLS    *tls.Config

	inSrv   *http.Server
	h1in    *h1Server     // inbound HTTP/1.x (inSrv serves HTTP/2)
	h1out   *h1Server     // outbound
	handoff *chanListener // handshaken inbound HTTP connections

	backendTransport *http.Transport
	peerTransport    *http.Transport
	outProxy         *httputil.ReverseProxy
	dialer           *endpointDialer
	peerUps          sync.Map // peer id → *upstream

	limiters *limiters
	inflight peerInflight // inbound calls in flight per peer
	conns    *registry
	outReqs  *outTracker
	outL4    *l4Tracker

	mu        sync.Mutex
	listeners []net.Listener
	started   bool
	closed    atomic.Bool
	ready     atomic.Bool
	wg        sync.WaitGroup // accept loops and L4 connections
	l4wg      sync.WaitGroup
	inAddr    net.Addr
	outAddr   net.Addr
	l4Addrs   map[string]net.Addr
}

type route struct {
	Route
	target *url.URL
	proxy  *httputil.ReverseProxy // protocol upgrades
	up     *upstream              // everything else
	alpn   string
}

// uri is the request target sent to the backend: the route's base path
// joined with the request path, and the query.
func (r *route) uri(req *http.Request) string {
	path := req.URL.EscapedPath()
	if bp := strings.TrimSuffix(r.target.EscapedPath(), "/"); bp != "" {
		path = bp + path
	}
	if req.URL.RawQuery != "" {
		return path + "?" + req.URL.RawQuery
	}
	return path
}

// New validates cfg (after defaults) and builds a Proxy. It opens no
// listener: call Start.
func New(cfg Config) (*Proxy, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger,
		m:        m,
		l4routes: map[string]*route{},
		limiters: newLimiters(),
		conns:    newRegistry(),
		outReqs:  newOutTracker(),
		outL4:    newL4Tracker(),
		l4Addrs:  map[string]net.Addr{},
	}
	p.conns.setCap(cfg.Limits.MaxConns)
	p.backendTransport = newTransport(cfg.Limits)
	p.dialer = newEndpointDialer(p)
	p.peerTransport = newTransport(cfg.Limits)
	p.peerTransport.DialTLSContext = p.dialer.dialTLSForTransport
	p.peerTransport.ForceAttemptHTTP2 = cfg.HTTP2ToPeers

	for i := range cfg.Routes {
		r := &route{Route: cfg.Routes[i]}
		switch r.Kind {
		case RouteHTTP:
			r.target, _ = url.Parse(r.Backend)
			r.proxy = p.newBackendProxy(r)
			r.up = newUpstream(backendDialer(r.target), cfg.Limits)
			p.routes = append(p.routes, r)
		case RouteTCP:
			r.alpn = ALPNPrefix + r.Name
			p.l4routes[r.alpn] = r
		}
	}
	sort.SliceStable(p.routes, func(i, j int) bool { return len(p.routes[i].PathPrefix) > len(p.routes[j].PathPrefix) })
	p.inTLS = p.inboundTLSConfig()
	p.outProxy = p.newPeerProxy()
	return p, nil
}

// newTransport returns an http.Transport tuned for a small number of hosts
// with many concurrent requests: a deep idle pool, no compression, no proxy
// from the environment.
func newTransport(l Limits) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		MaxIdleConns:           l.MaxIdlePerHost * 4,
		MaxIdleConnsPerHost:    l.MaxIdlePerHost,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  l.BackendTimeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
}

// Start opens the configured listeners and serves them in the background.
// The proxy is ready (Ready reports true) once every listener is open.
func (p *Proxy) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return ErrStarted
	}
	p.started = true
	p.mu.Unlock()
	// Free binding: the inbound address is usually the site VIP, which
	// only the leader holds; every node listens on it from the start.
	lc := freebind.ListenConfig()
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err) // names network and address
		}
		p.mu.Lock()
		p.listeners = append(p.listeners, ln)
		p.mu.Unlock()
		return ln, nil
	}
	fail := func(err error) error {
		p.closeListeners()
		return err
	}
	if p.cfg.InboundAddr != "" {
		ln, err := listen("tcp", p.cfg.InboundAddr)
		if err != nil {
			return fail(err)
		}
		p.inAddr = ln.Addr()
		p.startInbound(ln)
	}
	var outLns []net.Listener
	if p.cfg.OutboundAddr != "" {
		ln, err := listen("tcp", p.cfg.OutboundAddr)
		if err != nil {
			return fail(err)
		}
		p.outAddr = ln.Addr()
		outLns = append(outLns, ln)
	}
	if p.cfg.OutboundSocket != "" {
		_ = os.Remove(p.cfg.OutboundSocket)
		ln, err := listen("unix", p.cfg.OutboundSocket)
		if err != nil {
			return fail(err)
		}
		if err := os.Chmod(p.cfg.OutboundSocket, 0o660); err != nil {
			return fail(fmt.Errorf("proxy: chmod %s: %w", p.cfg.OutboundSocket, err))
		}
		outLns = append(outLns, ln)
	}
	if len(outLns) > 0 {
		p.startOutbound(outLns)
	}
	for _, o := range p.cfg.OutboundL4 {
		ln, err := listen("tcp", o.Listen)
		if err != nil {
			return fail(err)
		}
		p.l4Addrs[o.Route+"@"+o.PeerID] = ln.Addr()
		p.startOutboundL4(ln, o)
	}
	p.ready.Store(true)
	return nil
}

// Ready reports whether Start has opened every listener, the inbound
// server certificate is available, and the proxy has not begun shutting
// down.
func (p *Proxy) Ready() bool {
	if !p.ready.Load() || p.closed.Load() {
		return false
	}
	if p.inAddr != nil {
		if c, err := p.cfg.Certs.ServerCertificate(&tls.ClientHelloInfo{}); err != nil || c == nil {
			return false
		}
	}
	return true
}

// InboundAddr is the inbound listener's address (nil before Start).
func (p *Proxy) InboundAddr() net.Addr { return p.inAddr }

// OutboundAddr is the outbound TCP listener's address (nil before Start).
func (p *Proxy) OutboundAddr() net.Addr { return p.outAddr }

// OutboundL4Addr is the address of the outbound L4 listener for route of
// peer peerID (nil if none).
func (p *Proxy) OutboundL4Addr(route, peerID string) net.Addr {
	return p.l4Addrs[route+"@"+peerID]
}

func (p *Proxy) closeListeners() {
	p.mu.Lock()
	lns := p.listeners
	p.listeners = nil
	p.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// Shutdown stops accepting, lets in-flight requests and L4 streams finish
// until ctx is done, then closes whatever is left. It returns ctx.Err() when
// the deadline cut connections.
func (p *Proxy) Shutdown(ctx context.Context) error {
	if p.closed.Swap(true) {
		return ErrClosed
	}
	p.ready.Store(false)
	p.closeListeners()
	var (
		errs []error
		emu  sync.Mutex
		wg   sync.WaitGroup
	)
	shut := func(stop func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stop(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	if p.inSrv != nil { // HTTP/2
		shut(func(ctx context.Context) error {
			err := p.inSrv.Shutdown(ctx)
			if err != nil {
				p.inSrv.Close()
			}
			return err
		})
	}
	for _, s := range []*h1Server{p.h1in, p.h1out} {
		if s != nil {
			shut(s.shutdown)
		}
	}
	wg.Wait()
	l4done := make(chan struct{})
	go func() { p.l4wg.Wait(); close(l4done) }()
	select {
	case <-l4done:
	case <-ctx.Done():
		p.conns.closeAll()
		<-l4done
		errs = append(errs, ctx.Err())
	}
	p.conns.closeAll()
	p.wg.Wait()
	p.backendTransport.CloseIdleConnections()
	p.peerTransport.CloseIdleConnections()
	for _, r := range p.routes {
		r.up.closeIdle()
	}
	p.peerUps.Range(func(_, v any) bool { v.(*upstream).closeIdle(); return true })
	if len(errs) > 0 {
		return fmt.Errorf("proxy: shutdown: %w", errors.Join(errs...))
	}
	return nil
}

// backendDialer dials a route's backend (TLS for https backends, verified
// against the system roots).
func backendDialer(u *url.URL) func(ctx context.Context) (net.Conn, error) {
	addr := hostPort(u.Scheme, u.Host)
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if u.Scheme != "https" {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	cfg := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	return func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", addr) }
}

// peerUpstream is the pooled HTTP/1.1 client to peer id.
func (p *Proxy) peerUpstream(id string) *upstream {
	if u, ok := p.peerUps.Load(id); ok {
		return u.(*upstream)
	}
	u := newUpstream(func(ctx context.Context) (net.Conn, error) {
		return p.dialer.dial(ctx, id, "http/1.1")
	}, p.cfg.Limits)
	got, _ := p.peerUps.LoadOrStore(id, u)
	return got.(*upstream)
}
