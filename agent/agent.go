package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/raftstore"
)

// Options are what the daemon passes to Run.
type Options struct {
	Config     Config
	ConfigPath string // empty in --dev
	Dev        bool
	Out        io.Writer       // where start-up information is printed
	LogOutput  io.Writer       // where logs go
	Reload     <-chan struct{} // one value per (coalesced) SIGHUP
}

// Agent is one running fedgated.
type Agent struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	level  *slog.LevelVar
	nodeID string
	reg    *prometheus.Registry
	notify *notifier

	ca      *pki.CA // nil on nodes that joined an existing site
	ident   atomic.Pointer[pki.NodeIdentity]
	store   atomic.Pointer[raftstore.Store]
	secrets struct{ grant []byte }
	site    atomic.Pointer[siteRecord]
	ready   atomic.Bool
	joinMu  sync.Mutex

	net   *netPart     // nil when netctl is off
	audit *audit.Log   // the node's audit log
	proxy *proxy.Proxy // nil when no proxy listener is configured
	fed   *fedCerts    // federation certificates (with the proxy)

	clusterAddr string // bound address of the cluster API
	runCtx      context.Context
	cancel      context.CancelFunc
	bg          sync.WaitGroup
	closers     []func()
}

// siteRecord is this node's own note of its membership, in DATA/site.json.
type siteRecord struct {
	NodeID string `json:"node_id"`
	Role   string `json:"role"` // "ca" (bootstrapped the site, holds the CA) or "member"
	CAURL  string `json:"ca_url,omitempty"`
}

func (a *Agent) dataPath(parts ...string) string {
	return filepath.Join(append([]string{a.cfg.Node.DataDir}, parts...)...)
}

// Run starts the node and serves until ctx ends, then stops gracefully.
func Run(ctx context.Context, opts Options) error {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	logOut := opts.LogOutput
	if logOut == nil {
		logOut = os.Stderr
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	log, level := NewLogger(logOut, cfg.Log)
	runCtx, cancel := context.WithCancel(ctx)
	a := &Agent{cfg: cfg, opts: opts, log: log, level: level, reg: prometheus.NewRegistry(), runCtx: runCtx, cancel: cancel}
	a.notify = &notifier{log: log}
	lock, err := lockDataDir(cfg.Node.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if a.nodeID, err = loadNodeID(cfg.Node.DataDir); err != nil {
		return err
	}
	a.log = log.With(LogKeyNode, a.nodeID)
	defer a.shutdown()

	if err := a.start(runCtx); err != nil {
		if ctx.Err() != nil {
			log.Info("stopped during start-up")
			return nil // SIGTERM while starting is a clean stop
		}
		return err
	}
	a.printWhere(out)
	go a.notify.watchdog(runCtx)
	return a.mainLoop(runCtx)
}

// start opens everything this node can open on its own.
func (a *Agent) start(ctx context.Context) error {
	rec, err := a.loadSite()
	if err != nil {
		return err
	}
	if err := a.openAudit(); err != nil {
		return err
	}
	bootstrap := a.cfg.Raft.Bootstrap == nil || *a.cfg.Raft.Bootstrap
	switch {
	case rec != nil && rec.Role == "ca":
		err = a.startCANode(ctx, false)
	case rec != nil:
		err = a.startMember(ctx, rec)
	case bootstrap:
		err = a.startCANode(ctx, true)
	default:
		a.log.Info("not part of a site yet: waiting for `fedgate cluster join`")
	}
	if err != nil {
		return err
	}
	if err := a.serveLocalAPI(); err != nil {
		return err
	}
	if err := a.serveMetrics(); err != nil {
		return err
	}
	if a.store.Load() != nil {
		if err := a.waitReady(ctx); err != nil {
			return err
		}
		return a.startParts(ctx)
	}
	return nil
}

// startParts starts what needs the replicated state: netctl and VIPs.
func (a *Agent) startParts(ctx context.Context) error {
	a.recordSelf(ctx)
	if err := a.startNet(ctx); err != nil {
		return err
	}
	if err := a.startProxy(ctx); err != nil {
		return err
	}
	return a.startLifecycle(ctx)
}

// recordSelf keeps this node's member record (raft and cluster API
// addresses) current in the replicated state.
func (a *Agent) recordSelf(ctx context.Context) {
	s := a.store.Load()
	want := raftstore.MemberPutPayload{NodeID: a.nodeID, RaftAddr: s.Addr(), APIAddr: a.clusterURL()}
	for _, m := range s.State().Members() {
		if m.NodeID == want.NodeID && m.RaftAddr == want.RaftAddr && m.APIAddr == want.APIAddr {
			return
		}
	}
	if _, err := a.apply(ctx, raftstore.CmdMemberPut, want); err != nil {
		a.log.Warn("could not record this node as a member", LogKeyErr, err)
	}
}

func (a *Agent) loadSite() (*siteRecord, error) {
	b, err := os.ReadFile(a.dataPath("site.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec siteRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.NodeID != a.nodeID {
		return nil, fmt.Errorf("%s is corrupt or belongs to another node: refusing to start", a.dataPath("site.json"))
	}
	a.site.Store(&rec)
	return &rec, nil
}

func (a *Agent) saveSite(rec siteRecord) error {
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := writeFileAtomic(a.dataPath("site.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	a.site.Store(&rec)
	return nil
}

// startCANode opens the site CA and this node's identity, then raft; a new
// site is bootstrapped with this node as its single voter.
func (a *Agent) startCANode(ctx context.Context, bootstrap bool) error {
	ca, err := pki.OpenCA(pki.Config{Dir: a.dataPath("ca"), SiteName: a.cfg.Node.SiteName, Logger: a.log.With("component", "ca"),
		NodeLifetime: a.cfg.PKI.NodeCertLifetime})
	if err != nil {
		return err
	}
	a.ca = ca
	grant, err := loadSecret(a.grantSecretPath(), true)
	if err != nil {
		return err
	}
	a.secrets.grant = grant
	if err := a.openIdentity(ctx, ca, ca.Roots()); err != nil {
		return err
	}
	if err := a.serveClusterAPI(); err != nil {
		return err
	}
	s, err := a.openStore()
	if err != nil {
		return err
	}
	if bootstrap {
		if err := s.Bootstrap(); err != nil && !errors.Is(err, raftstore.ErrExistingState) {
			return err
		}
		if err := a.saveSite(siteRecord{NodeID: a.nodeID, Role: "ca", CAURL: a.clusterURL()}); err != nil {
			return err
		}
	}
	a.store.Store(s)
	a.bg.Add(1)
	go func() { defer a.bg.Done(); a.publishCAURL(a.runCtx) }()
	return nil
}

// publishCAURL records where the CA's cluster API is, so joined nodes find
// it for renewals after a restart.
func (a *Agent) publishCAURL(ctx context.Context) {
	s := a.store.Load()
	if err := s.WaitReady(ctx); err != nil {
		return
	}
	want := a.clusterURL()
	if e, ok := s.State().KVGet(caURLKey); ok && string(e.Value) == want {
		return
	}
	if _, err := a.apply(ctx, raftstore.CmdKVPut, raftstore.KVPutPayload{Key: caURLKey, Value: []byte(want)}); err != nil {
		a.log.Warn("could not publish the CA address", LogKeyErr, err)
	}
}

// startMember restarts a node that joined a site earlier.
func (a *Agent) startMember(ctx context.Context, rec *siteRecord) error {
	grant, err := loadSecret(a.grantSecretPath(), false)
	if err != nil {
		return err
	}
	a.secrets.grant = grant
	b, err := os.ReadFile(a.dataPath("identity", pki.BundleFile))
	if err != nil {
		return fmt.Errorf("site trust bundle: %w", err)
	}
	roots, _, err := pki.PoolFromPEM(b)
	if err != nil {
		return fmt.Errorf("%s: %w", a.dataPath("identity", pki.BundleFile), err)
	}
	iss := &remoteIssuer{a: a, url: rec.CAURL, roots: roots}
	if err := a.openIdentity(ctx, iss, roots); err != nil {
		return err
	}
	if err := a.serveClusterAPI(); err != nil {
		return err
	}
	s, err := a.openStore()
	if err != nil {
		return err
	}
	a.store.Store(s)
	return nil
}

// join runs the join flow (see join.go) on an empty node.
func (a *Agent) join(ctx context.Context, joinURL string, tok joinToken) error {
	roots, bundle, err := fetchPinnedRoots(ctx, joinURL, tok.rootFP)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.dataPath("identity"), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(a.dataPath("identity", pki.BundleFile), bundle, 0o644); err != nil {
		return err
	}
	iss := &remoteIssuer{a: a, url: joinURL, roots: roots, token: tok.String()}
	if err := a.openIdentity(ctx, iss, roots); err != nil {
		return err
	}
	if iss.result == nil {
		return fmt.Errorf("this node already holds a certificate in %s: join needs an empty data dir", a.dataPath("identity"))
	}
	if iss.result.CAURL != "" {
		iss.url = iss.result.CAURL
	}
	if len(iss.result.GrantSecret) < 32 {
		return fmt.Errorf("the site sent no grant secret")
	}
	if err := os.MkdirAll(filepath.Dir(a.grantSecretPath()), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(a.grantSecretPath(), iss.result.GrantSecret, 0o600); err != nil {
		return err
	}
	a.secrets.grant = iss.result.GrantSecret
	if err := a.serveClusterAPI(); err != nil {
		return err
	}
	s, err := a.openStore()
	if err != nil {
		return err
	}
	cli := iss.client()
	if err := postJSON(ctx, cli, joinURL+"/v1/join/raft", map[string]string{"raft_addr": s.Addr()}, nil); err != nil {
		s.Close()
		return fmt.Errorf("add to raft: %w", err)
	}
	if err := a.saveSite(siteRecord{NodeID: a.nodeID, Role: "member", CAURL: iss.url}); err != nil {
		s.Close()
		return err
	}
	a.store.Store(s)
	if err := a.waitReady(ctx); err != nil {
		return err
	}
	return a.startParts(a.runCtx)
}

func (a *Agent) grantSecretPath() string {
	if a.cfg.Federation.GrantSecretFile != "" {
		return a.cfg.Federation.GrantSecretFile
	}
	return a.dataPath("secrets", "grant.key")
}

func (a *Agent) openIdentity(ctx context.Context, iss pki.Issuer, roots *x509.CertPool) error {
	id, err := pki.OpenNodeIdentity(ctx, pki.IdentityConfig{
		Dir: a.dataPath("identity"), NodeID: a.nodeID, Issuer: iss, Roots: roots,
		Lifetime: a.cfg.PKI.NodeCertLifetime, Revocations: revocationView{a},
		Logger: a.log.With("component", "identity"), Registerer: a.reg,
	})
	if err != nil {
		return err
	}
	a.ident.Store(id)
	a.bg.Add(1)
	go func() { defer a.bg.Done(); id.Run(a.runCtx) }()
	return nil
}

// revocationView answers pki's revocation checks from the replicated state.
type revocationView struct{ a *Agent }

func (r revocationView) Revoked(serial *big.Int, spki [32]byte) bool {
	s := r.a.store.Load()
	if s == nil {
		return false
	}
	return isRevoked(s.State(), serial, spki)
}

// isRevoked answers a revocation check from a state copy.
func isRevoked(st *raftstore.State, serial *big.Int, spki [32]byte) bool {
	return st.IsRevoked(serial.Text(16), hex.EncodeToString(spki[:]))
}

func (a *Agent) revocations() pki.RevocationChecker { return revocationView{a} }

func (a *Agent) roots() *x509.CertPool {
	if id := a.ident.Load(); id != nil {
		return id.Roots()
	}
	return x509.NewCertPool()
}

func (a *Agent) bundlePEM() []byte {
	if a.ca != nil {
		return a.ca.BundlePEM()
	}
	b, _ := os.ReadFile(a.dataPath("identity", pki.BundleFile))
	return b
}

func (a *Agent) openStore() (*raftstore.Store, error) {
	id := a.ident.Load()
	// pki's server config hands each handshake a copy of itself (to bind
	// session tickets to the served certificate), so the ALPN protocols
	// raftstore demultiplexes on must be set on it in place, not on a clone.
	server := id.ServerTLSConfig()
	server.NextProtos = []string{raftstore.ProtoRaft, raftstore.ProtoRPC}
	return raftstore.Open(raftstore.Config{
		NodeID: a.nodeID, DataDir: a.dataPath("raft"), BindAddr: a.cfg.Raft.Listen, AdvertiseAddr: a.cfg.Raft.Advertise,
		ServerTLS: server, ClientTLS: id.ClientTLSConfig(), Logger: a.log.With("component", "raft"),
		HeartbeatTimeout: a.cfg.Raft.HeartbeatTimeout, ElectionTimeout: a.cfg.Raft.ElectionTimeout,
		LeaderLeaseTimeout: a.cfg.Raft.LeaderLeaseTimeout, Registerer: a.reg,
	})
}

func (a *Agent) storeMust() *raftstore.Store { return a.store.Load() }

// onChange runs f in the background after every applied change to the
// replicated state (coalesced by raftstore for slow readers) until ctx ends.
func (a *Agent) onChange(ctx context.Context, f func()) {
	events, cancel := a.store.Load().Watch()
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-events:
				if !ok {
					return
				}
				f()
			}
		}
	}()
}

// waitReady blocks until raft has a leader and this node has applied what
// was committed (Barrier), then reports ready to systemd.
func (a *Agent) waitReady(ctx context.Context) error {
	s := a.store.Load()
	a.notify.status("waiting for raft")
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.WaitReady(wctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.log.Warn("raft not ready yet (no leader or not caught up)", LogKeyErr, err)
	}
	a.ready.Store(true)
	a.notify.ready(fmt.Sprintf("serving; node %s", a.nodeID))
	a.log.Info("ready", "raft", s.Status().State)
	return nil
}

func (a *Agent) clusterURL() string {
	addr := a.cfg.Cluster.Advertise
	if addr == "" {
		addr = a.clusterAddr
	}
	if addr == "" {
		return ""
	}
	return "https://" + addr
}

func (a *Agent) caURL() string {
	if a.ca != nil {
		return a.clusterURL()
	}
	if s := a.store.Load(); s != nil {
		if e, ok := s.State().KVGet(caURLKey); ok {
			return string(e.Value)
		}
	}
	if rec := a.site.Load(); rec != nil {
		return rec.CAURL
	}
	return ""
}

// serveLocalAPI listens on the unix socket.
func (a *Agent) serveLocalAPI() error {
	ln, err := listenUnix(a.cfg.API.Socket)
	if err != nil {
		return fmt.Errorf("local API: %w", err)
	}
	srv := &http.Server{Handler: a.localAPI(), ReadHeaderTimeout: 10 * time.Second, ConnContext: withPeerCred}
	a.serve("local API", srv, ln)
	a.closers = append(a.closers, func() { os.Remove(a.cfg.API.Socket) })
	return nil
}

// serveClusterAPI listens on cluster.listen with the node certificate.
func (a *Agent) serveClusterAPI() error {
	if a.clusterAddr != "" {
		return nil
	}
	id := a.ident.Load()
	tlsCfg := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.Certificate(), nil },
		ClientAuth:     tls.RequestClientCert, // verified per route (join needs none)
	}
	ln, err := net.Listen("tcp", a.cfg.Cluster.Listen)
	if err != nil {
		return fmt.Errorf("cluster API: %w", err)
	}
	a.clusterAddr = ln.Addr().String()
	srv := &http.Server{Handler: a.clusterAPI(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.serve("cluster API", srv, tls.NewListener(ln, tlsCfg))
	return nil
}

func (a *Agent) serve(name string, srv *http.Server, ln net.Listener) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(name+" stopped", LogKeyErr, err)
		}
	}()
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

func (a *Agent) printWhere(w io.Writer) {
	fmt.Fprintf(w, "fedgated node %s (site %s)\n", a.nodeID, a.cfg.Node.SiteName)
	fmt.Fprintf(w, "  data dir:    %s\n", a.cfg.Node.DataDir)
	fmt.Fprintf(w, "  local API:   %s   (fedgate --socket %s status)\n", a.cfg.API.Socket, a.cfg.API.Socket)
	if s := a.store.Load(); s != nil {
		fmt.Fprintf(w, "  raft:        %s (mTLS)\n", s.Addr())
	}
	if a.clusterAddr != "" {
		fmt.Fprintf(w, "  cluster API: %s\n", a.clusterURL())
	}
	a.printExtra(w)
}

// mainLoop runs until ctx ends: it keeps the watchdog fed and applies reloads.
func (a *Agent) mainLoop(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.notify.alive()
		select {
		case <-ctx.Done():
			a.log.Info("stopping")
			a.notify.stopping()
			return nil
		case <-a.opts.Reload:
			a.notify.reloading()
			res, err := a.reload()
			if err != nil {
				a.log.Error("reload refused; the running config is kept", LogKeyErr, err)
			} else {
				a.log.Info("reloaded", "applied", res.Applied, "needs_restart", res.NeedsRestart)
			}
			a.notify.ready("serving; reloaded")
		case <-t.C:
		}
	}
}

// shutdown stops servers, raft and background work, in that order.
func (a *Agent) shutdown() {
	// A leader hands raft leadership (and with it the leader-held VIPs) to
	// another voter before it stops, so a planned stop fails over at
	// manual-failover speed instead of waiting for an election.
	a.HandOffLeadership(2 * time.Second)
	a.cancel()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	if s := a.store.Load(); s != nil {
		if err := s.Close(); err != nil {
			a.log.Warn("raft close", LogKeyErr, err)
		}
	}
	a.bg.Wait()
}
