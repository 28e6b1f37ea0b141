package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/powernode/fedgate/federation"
)

// endpointDialer originates mTLS to a peer: endpoints by priority (lower
// first), a short TCP connect probe each, TLS handshake with a timeout,
// failover to the next; endpoints that just failed are tried last for a
// while.
type endpointDialer struct {
	p        *Proxy
	sessions tls.ClientSessionCache
	cfgs     sync.Map // cfgKey → *tls.Config

	mu   sync.Mutex
	down map[string]time.Time // endpoint addr → until
}

type cfgKey struct{ peer, server, alpn string }

func newEndpointDialer(p *Proxy) *endpointDialer {
	return &endpointDialer{p: p, sessions: tls.NewLRUClientSessionCache(1024), down: map[string]time.Time{}}
}

// endpointAddr returns host:port of an endpoint URL (https default 443).
func endpointAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("endpoint %q has no host", raw)
	}
	return hostPort(u.Scheme, u.Host), nil
}

func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "443"
	if scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func (d *endpointDialer) dialTLSForTransport(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	peerID, err := ParsePeerHost(host)
	if err != nil {
		return nil, err
	}
	alpn := "http/1.1"
	if d.p.cfg.HTTP2ToPeers {
		alpn = "h2,http/1.1"
	}
	return d.dial(ctx, peerID, alpn)
}

func (d *endpointDialer) tlsConfig(peerID, server, alpn string) *tls.Config {
	k := cfgKey{peerID, server, alpn}
	if c, ok := d.cfgs.Load(k); ok {
		return c.(*tls.Config)
	}
	p := d.p
	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: server,
		// The chain is verified in VerifyConnection against peerID's own
		// bundle (and on resumption too), not against system roots.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return p.cfg.Verifier.VerifyServer(peerID, cs)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.cfg.Certs.ClientCertificate(peerID)
		},
		ClientSessionCache: d.sessions,
		NextProtos:         strings.Split(alpn, ","),
	}
	got, _ := d.cfgs.LoadOrStore(k, c)
	return got.(*tls.Config)
}

// dial returns an mTLS connection to peer peerID negotiating alpn (a
// comma-separated list).
func (d *endpointDialer) dial(ctx context.Context, peerID, alpn string) (*tls.Conn, error) {
	p := d.p
	peer, ok := p.cfg.State.Peer(peerID)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, peerID)
	}
	eps := federation.SortedEndpoints(peer.Endpoints)
	now := time.Now()
	var up, down []federation.Endpoint
	d.mu.Lock()
	for _, ep := range eps {
		if a, err := endpointAddr(ep.URL); err == nil && d.down[a].After(now) {
			down = append(down, ep)
		} else {
			up = append(up, ep)
		}
	}
	d.mu.Unlock()
	pm := p.m.peer(dirOutbound, peerID)
	var errs []error
	for _, ep := range append(up, down...) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		addr, err := endpointAddr(ep.URL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tc, err := d.dialOne(ctx, peerID, addr, alpn, pm)
		if err != nil {
			p.log.Debug("peer endpoint failed", "peer", peerID, "endpoint", addr, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			d.mu.Lock()
			d.down[addr] = time.Now().Add(p.cfg.Limits.EndpointBackoff)
			d.mu.Unlock()
			continue
		}
		d.mu.Lock()
		delete(d.down, addr)
		d.mu.Unlock()
		return tc, nil
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no endpoints"))
	}
	return nil, fmt.Errorf("%w: peer %s: %w", ErrNoEndpoint, peerID, errors.Join(errs...))
}

func (d *endpointDialer) dialOne(ctx context.Context, peerID, addr, alpn string, pm *peerMetrics) (*tls.Conn, error) {
	l := d.p.cfg.Limits
	cctx, cancel := context.WithTimeout(ctx, l.ConnectTimeout)
	var nd net.Dialer
	raw, err := nd.DialContext(cctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		tcp.SetKeepAlive(true)
		tcp.SetKeepAlivePeriod(30 * time.Second)
	}
	// SNI names the identity we know the peer by ("<peer-id>.peer.fedgate"),
	// so a site federated with many peers presents the certificate it holds
	// for us; the endpoint host (often an IP literal) is not sent.
	tc := tls.Client(&countConn{Conn: raw, in: pm.bytesIn, out: pm.bytesOut}, d.tlsConfig(peerID, PeerHost(peerID), alpn))
	hctx, cancel := context.WithTimeout(ctx, l.EndpointTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}
