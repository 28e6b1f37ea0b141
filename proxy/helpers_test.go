package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/proxy/proxytest"
)

const platformVersion = "1.4.0"

var grantSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// teeAuditor appends to the real audit log (durable, fail-closed) and keeps
// a copy of what was durably appended for assertions.
type teeAuditor struct {
	log  *audit.Log
	mem  proxytest.Auditor
	mu   sync.Mutex
	fail error
}

func (a *teeAuditor) Append(ctx context.Context, r audit.Record) (uint64, error) {
	a.mu.Lock()
	fail := a.fail
	a.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	seq, err := a.log.Append(ctx, r)
	if err != nil {
		return 0, err
	}
	a.mem.Append(ctx, r)
	return seq, nil
}

func (a *teeAuditor) setFail(err error) {
	a.mu.Lock()
	a.fail = err
	a.mu.Unlock()
}

// find returns the records matching f.
func (a *teeAuditor) find(f func(audit.Record) bool) []audit.Record {
	var out []audit.Record
	for _, r := range a.mem.Records() {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

// waitRecord polls for a record matching f (deny records of TLS failures
// are written by the handshake goroutine, after the client saw the alert).
func (a *teeAuditor) waitRecord(t *testing.T, what string, f func(audit.Record) bool) audit.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if rs := a.find(f); len(rs) > 0 {
			return rs[len(rs)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record: %s; have %d records", what, len(a.mem.Records()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// site is one fedgate site: its CA, state, verifier, certificates, audit
// log and proxy.
type site struct {
	name   string
	ca     *pki.CA
	state  *proxytest.State
	ver    testVerifier
	blind  bool // status-blind verifier (HTTP-level status checks)
	certs  *proxytest.Certs
	audit  *teeAuditor
	reg    *prometheus.Registry
	drift  *driftSink
	p      *proxy.Proxy
	cfg    proxy.Config
	socket string
}

type driftSink struct {
	mu    sync.Mutex
	found []string
}

func (d *driftSink) Report(_ context.Context, peerID string, kind federation.FindingKind, detail string) {
	d.mu.Lock()
	d.found = append(d.found, peerID+" "+string(kind))
	d.mu.Unlock()
}

func (d *driftSink) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.found...)
}

func newSite(t testing.TB, name string) *site {
	t.Helper()
	ca := pkitest.NewCA(t)
	st := proxytest.NewState()
	lg, err := audit.Open(audit.Config{Dir: filepath.Join(t.TempDir(), "audit"), NodeID: name + "-node"})
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	t.Cleanup(func() { lg.Close() })
	return &site{
		name:  name,
		ca:    ca,
		state: st,
		certs: &proxytest.Certs{},
		audit: &teeAuditor{log: lg},
		reg:   prometheus.NewRegistry(),
		drift: &driftSink{},
	}
}

// testVerifier is a proxy.Verifier whose revocation list tests can add to.
type testVerifier interface {
	proxy.Verifier
	Revoke(*x509.Certificate)
}

func (s *site) start(t testing.TB, mod func(*proxy.Config)) {
	t.Helper()
	if s.blind {
		s.ver = &proxytest.Verifier{State: s.state}
	} else {
		v, err := proxytest.NewPKIVerifier(s.state)
		if err != nil {
			t.Fatal(err)
		}
		s.ver = v
	}
	key, err := federation.NewTokenKey(grantSecret)
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{
		Logger:          pkitest.Logger(t),
		Registerer:      s.reg,
		NodeID:          "0190a000-0000-7000-8000-0000000000aa",
		State:           s.state,
		Auditor:         s.audit,
		Verifier:        s.ver,
		Certs:           s.certs,
		Findings:        s.drift,
		GrantKey:        func() *federation.TokenKey { return key },
		PlatformVersion: platformVersion,
		Capabilities:    federation.Capabilities{ResourceKinds: []string{"vm"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatalf("%s: proxy.New: %v", s.name, err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("%s: Start: %v", s.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	s.p, s.cfg = p, cfg
	if !p.Ready() {
		t.Fatalf("%s: not ready after Start", s.name)
	}
}

// backend records what the platform behind site B sees.
type backend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []*http.Request
	// hold, when set for a path, blocks the handler until closed.
	holds   map[string]chan struct{}
	arrived chan string
}

func newBackend(t testing.TB) *backend {
	b := &backend{holds: map[string]chan struct{}{}, arrived: make(chan string, 100)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r2 := r.Clone(context.Background())
		b.mu.Lock()
		b.seen = append(b.seen, r2)
		hold := b.holds[r.URL.Path]
		b.mu.Unlock()
		select {
		case b.arrived <- r.URL.Path:
		default:
		}
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "bytes": len(body)})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) hold(path string) chan struct{} {
	ch := make(chan struct{})
	b.mu.Lock()
	b.holds[path] = ch
	b.mu.Unlock()
	return ch
}

func (b *backend) last() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return nil
	}
	return b.seen[len(b.seen)-1]
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// pair is site A (caller) and site B (callee) federated with each other.
type pair struct {
	a, b   *site
	be     *backend
	idA    string // the id B assigned to A
	idB    string // the id A assigned to B
	certA  *tls.Certificate
	certB  *tls.Certificate
	client *http.Client // to A's outbound TCP listener
}

func newID(t testing.TB) string { return pkitest.NewID(t) }

func activePeer(id string, bundle []byte, kinds ...string) federation.Peer {
	p := federation.NewPeer(id, federation.PeerKindPlatform, time.Now())
	p.Status = federation.StatusActive
	p.ContractVersionAgreed = 1
	p.TrustedCAPEM = string(bundle)
	p.PlatformVersion = platformVersion
	p.Capabilities = federation.Capabilities{ResourceKinds: kinds}
	return p
}

// newPair starts site B's inbound in front of a backend and site A's
// outbound pointing at it.
func newPair(t testing.TB, modA, modB func(*proxy.Config)) *pair {
	t.Helper()
	wrap := func(f func(*proxy.Config)) func(*pair, *proxy.Config) {
		if f == nil {
			return nil
		}
		return func(_ *pair, c *proxy.Config) { f(c) }
	}
	return newPairWith(t, wrap(modA), wrap(modB))
}

// newPairWith is newPair with modifiers that see the pair (ids, certs).
func newPairWith(t testing.TB, modA, modB func(*pair, *proxy.Config)) *pair {
	return newPairOpts(t, false, modA, modB)
}

// newBlindPair is newPair where B's verifier ignores peer status, so a
// suspended or revoked peer still completes the TLS handshake and the
// proxy's own HTTP-level checks answer (as they do for connections opened
// before the status changed).
func newBlindPair(t testing.TB, modA, modB func(*proxy.Config)) *pair {
	wrap := func(f func(*proxy.Config)) func(*pair, *proxy.Config) {
		if f == nil {
			return nil
		}
		return func(_ *pair, c *proxy.Config) { f(c) }
	}
	return newPairOpts(t, true, wrap(modA), wrap(modB))
}

func newPairOpts(t testing.TB, blind bool, modA, modB func(*pair, *proxy.Config)) *pair {
	t.Helper()
	pr := &pair{a: newSite(t, "site-a"), b: newSite(t, "site-b"), be: newBackend(t), idA: newID(t), idB: newID(t)}
	pr.b.blind = blind
	pr.certA = proxytest.IssueFederation(t, pr.a.ca, pr.idA, 0)
	pr.certB = proxytest.IssueFederation(t, pr.b.ca, pr.idB, 0)
	// B knows A (capabilities: vm, echo), trusts A's CA for A only.
	pr.b.state.SetPeer(activePeer(pr.idA, pr.a.ca.BundlePEM(), "vm", "echo"))
	pr.b.certs.SetServer(pr.certB)
	pr.b.start(t, func(c *proxy.Config) {
		c.InboundAddr = "127.0.0.1:0"
		c.Routes = []proxy.Route{
			{Name: "vms", PathPrefix: "/api/vms/", Backend: pr.be.srv.URL, ResourceKind: "vm", RequireGrant: true},
			{Name: "status", PathPrefix: "/api/status", Backend: pr.be.srv.URL, ResourceKind: "vm"},
			{Name: "dns", PathPrefix: "/api/dns/", Backend: pr.be.srv.URL, ResourceKind: "dns"},
			{Name: "caps", PathPrefix: "/api/capabilities", Backend: pr.be.srv.URL, ResourceKind: "vm", RateLimited: true},
		}
		if modB != nil {
			modB(pr, c)
		}
	})
	// A knows B at B's inbound address.
	peerB := activePeer(pr.idB, pr.b.ca.BundlePEM(), "vm")
	peerB.Endpoints = []federation.Endpoint{{URL: "https://" + pr.b.p.InboundAddr().String(), Scope: federation.ScopeLAN, Priority: 10}}
	peerB.OutboundSubject = federation.SubjectFor(pr.idA) // the subject of certA, as the agent records it
	pr.a.state.SetPeer(peerB)
	pr.a.certs.SetClient(pr.idB, pr.certA)
	pr.a.socket = filepath.Join(t.TempDir(), "out.sock")
	pr.a.start(t, func(c *proxy.Config) {
		c.OutboundAddr = "127.0.0.1:0"
		c.OutboundSocket = pr.a.socket
		if modA != nil {
			modA(pr, c)
		}
	})
	pr.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(pr.client.CloseIdleConnections)
	return pr
}

// url is a URL on A's outbound listener naming peer B by Host.
func (pr *pair) url(path string) string { return "http://" + pr.a.p.OutboundAddr().String() + path }

// req builds a request to B through A.
func (pr *pair) req(t testing.TB, method, path string, body io.Reader) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, pr.url(path), body)
	if err != nil {
		t.Fatal(err)
	}
	r.Host = proxy.PeerHost(pr.idB)
	return r
}

// grant issues a grant for A on B and returns its token.
func (pr *pair) grant(t testing.TB, mod func(*federation.Grant)) (federation.Grant, string) {
	t.Helper()
	id := newID(t)
	g := federation.NewGrant(id, pr.idA, "user:alice@site-a", "vm", []federation.Scope{federation.ScopeRead, federation.ScopeWrite}, time.Now())
	if mod != nil {
		mod(&g)
	}
	pr.b.state.SetGrant(g)
	tok, err := federation.MintToken(grantSecret, id)
	if err != nil {
		t.Fatal(err)
	}
	return g, tok
}

func do(t testing.TB, c *http.Client, r *http.Request) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func denialReason(t testing.TB, body string) string {
	t.Helper()
	var d struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("denial body %q is not JSON: %v", body, err)
	}
	return d.Error
}

// peerTLS returns a client TLS config presenting cert to B's inbound,
// verifying nothing about the server (tests of B's client checks).
func peerTLS(cert *tls.Certificate, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{*cert},
		InsecureSkipVerify: true,
		NextProtos:         protos,
	}
}

// directClient talks to B's inbound directly with a client certificate.
func directClient(cert *tls.Certificate, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: peerTLS(cert), ForceAttemptHTTP2: h2, DisableCompression: true}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func dialRaw(t testing.TB, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type urlT = url.URL

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

type tlsCert = tls.Certificate

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func ioCopy(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, r) }

type netTCPAddr = net.TCPAddr

type x509Cert = x509.Certificate

type auditRecord = audit.Record
