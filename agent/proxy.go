package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/raftstore"
)

// The proxy reads everything from the node's copy of the replicated state;
// nothing on the request path waits for raft.

// stateView adapts the store's current state to proxy.StateView.
type stateView struct{ a *Agent }

func (v stateView) st() *raftstore.State                     { return v.a.store.Load().State() }
func (v stateView) Peer(id string) (federation.Peer, bool)   { return v.st().Peer(id) }
func (v stateView) Grant(id string) (federation.Grant, bool) { return v.st().Grant(id) }
func (v stateView) Contracts() federation.Registry           { return v.st().Contracts() }
func (v stateView) Peers() []federation.Peer                 { return v.st().Peers() }

// peerSource adapts the state to pki.PeerSource.
type peerSource struct{ a *Agent }

func (s peerSource) PeerTrust(id string) ([]byte, string, bool) {
	return peerTrust(s.a.store.Load().State(), id)
}

// peerTrust answers pki.PeerSource.PeerTrust from a state copy.
func peerTrust(st *raftstore.State, id string) ([]byte, string, bool) {
	p, ok := st.Peer(id)
	if !ok {
		return nil, "", false
	}
	return []byte(p.TrustedCAPEM), string(p.Status), true
}

func (s peerSource) Revoked(serial *big.Int, spki [32]byte) bool {
	return revocationView(s).Revoked(serial, spki)
}

// verifier adapts pki's per-peer verifier to proxy.Verifier.
type verifier struct {
	pv  *pki.PeerVerifier
	rev pki.RevocationChecker
}

func (v verifier) VerifyClient(cs tls.ConnectionState) (string, error) {
	id, err := v.pv.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return "", err
	}
	return id.PeerID, nil
}

func (v verifier) VerifyServer(peerID string, cs tls.ConnectionState) error {
	return v.pv.VerifyServer(peerID)(cs)
}

func (v verifier) Revoked(c *x509.Certificate) bool {
	return v.rev.Revoked(c.SerialNumber, pki.SPKIHash(c))
}

// fedCerts holds our federation certificate for each peer (symmetric
// model: our site CA issues CN fed:<the id the peer assigned us>; the key
// is generated here and never leaves the node).
type fedCerts struct {
	a     *Agent
	mu    sync.Mutex
	certs map[string]*pki.FederationCert // by peer id
	subj  map[string]string              // assigned id -> peer id
}

// sync opens certificates for peers that need one.
func (f *fedCerts) sync(ctx context.Context) {
	st := f.a.store.Load().State()
	for _, p := range st.Peers() {
		if p.Status == federation.StatusRevoked || p.OutboundSubject == "" {
			continue
		}
		assigned, err := federation.PeerIDFromSubject(p.OutboundSubject)
		if err != nil {
			continue
		}
		f.mu.Lock()
		_, have := f.certs[p.ID]
		f.mu.Unlock()
		if have {
			continue
		}
		fc, err := pki.OpenFederationCert(ctx, pki.FederationCertConfig{Dir: f.a.dataPath("federation"), PeerID: p.ID,
			AssignedID: assigned, Issuer: f.a.issuer(), Roots: f.a.roots(), Logger: f.a.log.With("component", "fedcert"),
			Registerer: nil})
		if err != nil {
			f.a.log.Warn("federation certificate not available", LogKeyPeer, p.ID, LogKeyErr, err)
			continue
		}
		f.mu.Lock()
		f.certs[p.ID] = fc
		f.subj[assigned] = p.ID
		f.mu.Unlock()
		f.a.bg.Add(1)
		go func() { defer f.a.bg.Done(); fc.Run(f.a.runCtx) }()
	}
}

func (f *fedCerts) get(peerID string) (*pki.FederationCert, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.certs[peerID]
	return c, ok
}

// ClientCertificate implements proxy.Certificates.
func (f *fedCerts) ClientCertificate(peerID string) (*tls.Certificate, error) {
	c, ok := f.get(peerID)
	if !ok {
		return nil, fmt.Errorf("%w: no federation certificate for peer %s (is its outbound_subject set?)", pki.ErrNoCertificate, peerID)
	}
	return c.Get()
}

// ServerCertificate implements proxy.Certificates: the caller names, in
// SNI, the identity it knows us by ("<id it assigned us>.peer.fedgate");
// we present our federation certificate for that peer.
func (f *fedCerts) ServerCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if assigned, err := proxy.ParsePeerHost(hello.ServerName); err == nil {
		f.mu.Lock()
		peerID, ok := f.subj[assigned]
		f.mu.Unlock()
		if ok {
			if c, ok := f.get(peerID); ok {
				return c.Get()
			}
		}
	}
	if id := f.a.ident.Load(); id != nil {
		return id.Certificate(), nil // a peer will refuse it: it names no federation identity
	}
	return nil, pki.ErrNoCertificate
}

// issuer returns the issuer for certificates this node needs: the site CA
// when this node holds it, else the CA node through the cluster API.
func (a *Agent) issuer() pki.Issuer {
	if a.ca != nil {
		return a.ca
	}
	return &remoteIssuer{a: a, url: a.caURL(), roots: a.roots()}
}

// findingSink records the proxy's findings in the replicated state.
type findingSink struct{ a *Agent }

func (s findingSink) Report(ctx context.Context, peerID string, kind federation.FindingKind, detail string) {
	f, err := federation.NewFinding(peerID, kind, detail, time.Now(), rand.Reader)
	if err != nil {
		return
	}
	go func() {
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.a.apply(actx, raftstore.CmdFindingAdd, f); err != nil {
			s.a.log.Warn("could not record finding", LogKeyPeer, peerID, "kind", kind, LogKeyErr, err)
		}
	}()
}

// handshakeSink records accepted peer handshakes on the peer record.
type handshakeSink struct{ a *Agent }

func (s handshakeSink) PeerHandshake(ctx context.Context, peerID string, hs federation.Handshake) error {
	p, ok := s.a.store.Load().State().Peer(peerID)
	if !ok {
		return fmt.Errorf("peer %s does not exist", peerID)
	}
	np, err := p.ApplyHandshake(hs, time.Now().UTC())
	if err != nil {
		return err
	}
	_, err = s.a.apply(ctx, raftstore.CmdPeerUpdate, np)
	return err
}

func (a *Agent) proxyConfig() proxy.Config {
	pc := a.cfg.Proxy
	routes := make([]proxy.Route, 0, len(pc.Routes))
	for _, r := range pc.Routes {
		kind := proxy.RouteHTTP
		if r.Kind == "tcp" {
			kind = proxy.RouteTCP
		}
		routes = append(routes, proxy.Route{Name: r.Name, Kind: kind, PathPrefix: r.PathPrefix, Backend: r.Backend,
			ResourceKind: r.ResourceKind, RequireGrant: r.RequireGrant, Scope: federation.Scope(r.Scope), RateLimited: r.RateLimited})
	}
	l4 := make([]proxy.OutboundL4, 0, len(pc.OutboundL4))
	for _, o := range pc.OutboundL4 {
		l4 = append(l4, proxy.OutboundL4{Listen: o.Listen, PeerID: o.Peer, Route: o.Route})
	}
	caps := federation.Capabilities{ResourceKinds: pc.ResourceKinds}
	return proxy.Config{
		Logger: a.log.With("component", "proxy"), Registerer: a.reg, NodeID: a.nodeID, SDWANNetworkID: pc.SDWANNetworkID,
		PlatformVersion: a.cfg.Federation.PlatformVersion, Capabilities: caps,
		InboundAddr: pc.Inbound, OutboundAddr: pc.Outbound, OutboundSocket: pc.OutboundSocket,
		Routes: routes, OutboundL4: l4, MigrationGrace: pc.MigrationGrace,
		AuditStrictAll: pc.AuditStrictAll, Limits: pc.Limits.proxyLimits(),
	}
}

// startProxy starts the data path once state and certificates are loaded.
func (a *Agent) startProxy(ctx context.Context) error {
	pc := a.cfg.Proxy
	if pc.Inbound == "" && pc.Outbound == "" && pc.OutboundSocket == "" {
		return nil
	}
	pv, err := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peerSource{a}, Logger: a.log.With("component", "peer-verifier")})
	if err != nil {
		return err
	}
	key, err := federation.NewTokenKey(a.secrets.grant)
	if err != nil {
		return fmt.Errorf("grant secret: %w", err)
	}
	fc := &fedCerts{a: a, certs: map[string]*pki.FederationCert{}, subj: map[string]string{}}
	fc.sync(ctx)
	a.fed = fc
	cfg := a.proxyConfig()
	cfg.State, cfg.Auditor, cfg.Certs = stateView{a}, a.audit, fc
	cfg.Verifier = verifier{pv: pv, rev: a.revocations()}
	cfg.Findings, cfg.Handshakes = findingSink{a}, handshakeSink{a}
	cfg.GrantKey = func() *federation.TokenKey { return key }
	p, err := proxy.New(cfg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	a.proxy = p
	a.closers = append(a.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = p.Shutdown(sctx)
	})
	// Every applied change re-evaluates live connections (suspended or
	// revoked peers, revoked certificates) and opens missing certificates.
	a.onChange(ctx, func() {
		p.StateChanged()
		fc.sync(ctx)
	})
	return nil
}

func proxyAddrs(p *proxy.Proxy) []string {
	var out []string
	if a := p.InboundAddr(); a != nil {
		out = append(out, "inbound mTLS "+a.String())
	}
	if a := p.OutboundAddr(); a != nil {
		out = append(out, "outbound http://"+a.String()+" (Host: <peer-id>"+proxy.PeerHostSuffix+")")
	}
	return out
}

// proxyLimits converts to the proxy package's limits (zero fields take
// the proxy's defaults there).
func (l ProxyLimits) proxyLimits() proxy.Limits {
	return proxy.Limits{MaxConns: l.MaxConns, HandshakeTimeout: l.HandshakeTimeout, ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout: l.ReadTimeout, IdleTimeout: l.IdleTimeout, WriteStallTimeout: l.WriteStallTimeout,
		MaxHeaderBytes: l.MaxHeaderBytes, MaxBodyBytes: l.MaxBodyBytes, BackendTimeout: l.BackendTimeout,
		ConnectTimeout: l.ConnectTimeout, EndpointTimeout: l.EndpointTimeout, EndpointBackoff: l.EndpointBackoff,
		MaxIdlePerHost: l.MaxIdlePerHost, MaxConnsPerHost: l.MaxConnsPerHost, MaxInFlightPerPeer: l.MaxInFlightPerPeer}
}
