package pki_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/prometheus/client_golang/prometheus"
)

func openIdentity(t *testing.T, iss pki.Issuer, mod ...func(*pki.IdentityConfig)) *pki.NodeIdentity {
	t.Helper()
	cfg := pki.IdentityConfig{
		Dir:    filepath.Join(t.TempDir(), "node"),
		NodeID: pkitest.NewID(t),
		Issuer: iss,
		Logger: pkitest.Logger(t),
	}
	for _, m := range mod {
		m(&cfg)
	}
	n, err := pki.OpenNodeIdentity(context.Background(), cfg)
	if err != nil {
		t.Fatalf("OpenNodeIdentity: %v", err)
	}
	return n
}

// handshake runs one TLS handshake over a pipe and returns both sides' errors
// and connection states.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error, scs, ccs tls.ConnectionState) {
	t.Helper()
	// Loopback TCP, not net.Pipe: an unbuffered pipe deadlocks when both
	// sides write at once (e.g. an alert during a resumed handshake).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	c1.SetDeadline(deadline)
	c2.SetDeadline(deadline)
	s := tls.Server(c1, server)
	c := tls.Client(c2, client)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serr = s.HandshakeContext(t.Context())
		if serr == nil {
			// TLS 1.3: the client learns of a refused client certificate on its first read.
			_, serr = s.Write([]byte("x"))
		}
		scs = s.ConnectionState()
		s.Close()
	}()
	cerr = c.HandshakeContext(t.Context())
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	ccs = c.ConnectionState()
	c.Close()
	wg.Wait()
	return serr, cerr, scs, ccs
}

func TestNodeMTLS(t *testing.T) {
	ca := pkitest.NewCA(t)
	a, b := openIdentity(t, ca), openIdentity(t, ca)
	serr, cerr, scs, ccs := handshake(t, a.ServerTLSConfig(), b.ClientTLSConfigFor(a.NodeID()))
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if scs.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", scs.Version)
	}
	if got, err := pki.NodeIDFromConn(scs); err != nil || got != b.NodeID() {
		t.Errorf("server sees %q, %v; want %q", got, err, b.NodeID())
	}
	if got, err := pki.NodeIDFromConn(ccs); err != nil || got != a.NodeID() {
		t.Errorf("client sees %q, %v; want %q", got, err, a.NodeID())
	}
}

type revokedSet struct {
	mu      sync.Mutex
	serials map[string]bool
}

func (r *revokedSet) add(s *big.Int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serials == nil {
		r.serials = map[string]bool{}
	}
	r.serials[s.String()] = true
}

func (r *revokedSet) Revoked(s *big.Int, _ [32]byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serials[s.String()]
}

func TestNodeTLSRefuses(t *testing.T) {
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	revs := &revokedSet{}
	srv := openIdentity(t, ca, func(c *pki.IdentityConfig) { c.Revocations = revs })
	good := openIdentity(t, ca)
	foreign := openIdentity(t, other)
	revoked := openIdentity(t, ca)
	revs.add(revoked.Certificate().Leaf.SerialNumber)

	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		wantSide  string // which side refuses
		wantError error
	}{
		{"no client certificate", srv.ServerTLSConfig(), &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, "server", nil},
		{"client from another CA", srv.ServerTLSConfig(), func() *tls.Config {
			c := foreign.ClientTLSConfig()
			c.VerifyConnection = nil // only the server decides here
			return c
		}(), "server", pki.ErrUntrusted},
		{"server from another CA", foreign.ServerTLSConfig(), good.ClientTLSConfig(), "client", pki.ErrUntrusted},
		{"server is not the expected node", srv.ServerTLSConfig(), good.ClientTLSConfigFor(good.NodeID()), "client", pki.ErrIdentityMismatch},
		{"revoked client", srv.ServerTLSConfig(), revoked.ClientTLSConfig(), "server", pki.ErrRevoked},
		{"TLS 1.2 client", srv.ServerTLSConfig(), func() *tls.Config {
			c := good.ClientTLSConfig()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), "server", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serr, cerr, _, _ := handshake(t, tt.server, tt.client)
			if serr == nil || cerr == nil {
				t.Fatalf("handshake not refused: server %v, client %v", serr, cerr)
			}
			side := serr
			if tt.wantSide == "client" {
				side = cerr
			}
			if tt.wantError != nil && !errors.Is(side, tt.wantError) {
				t.Fatalf("%s error %v, want %v", tt.wantSide, side, tt.wantError)
			}
		})
	}
}

func TestNodeCertificateExpiredRefused(t *testing.T) {
	ca := pkitest.NewCA(t)
	srv := openIdentity(t, ca)
	short := openIdentity(t, ca, func(c *pki.IdentityConfig) { c.Lifetime = 2 * time.Second })
	// No Run: the certificate is not renewed and expires.
	time.Sleep(time.Until(short.Certificate().Leaf.NotAfter) + 100*time.Millisecond)
	serr, _, _, _ := handshake(t, srv.ServerTLSConfig(), short.ClientTLSConfig())
	if !errors.Is(serr, pki.ErrExpired) {
		t.Fatalf("server error %v, want ErrExpired", serr)
	}
	if s := short.Status(); s.State != "expired" {
		t.Fatalf("status %q, want expired", s)
	}
}

func TestOpenNodeIdentityReusesSavedCertificate(t *testing.T) {
	ca := pkitest.NewCA(t)
	fi := &pkitest.FaultyIssuer{Next: ca}
	dir, id := t.TempDir(), pkitest.NewID(t)
	cfg := func(c *pki.IdentityConfig) { c.Dir, c.NodeID = dir, id }
	n1 := openIdentity(t, fi, cfg)
	n2 := openIdentity(t, fi, cfg)
	if fi.Calls() != 1 {
		t.Fatalf("issuer called %d times, want 1 (second open reuses the saved certificate)", fi.Calls())
	}
	if n1.Certificate().Leaf.SerialNumber.Cmp(n2.Certificate().Leaf.SerialNumber) != 0 {
		t.Fatal("reopened identity serves another certificate")
	}
	fi2, err := os.Stat(filepath.Join(dir, pki.NodeKeyFile))
	if err != nil || fi2.Mode().Perm() != 0o600 {
		t.Fatalf("node key: %v mode %v", err, fi2.Mode())
	}
	if err := os.Chmod(filepath.Join(dir, pki.NodeKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = pki.OpenNodeIdentity(t.Context(), pki.IdentityConfig{Dir: dir, NodeID: id, Issuer: ca})
	if !errors.Is(err, pki.ErrKeyFileMode) || !strings.Contains(err.Error(), "0644") || !strings.Contains(err.Error(), pki.NodeKeyFile) {
		t.Fatalf("loose key accepted or error unclear: %v", err)
	}
}

func TestOpenNodeIdentityUnreachableIssuer(t *testing.T) {
	ca := pkitest.NewCA(t)
	fi := &pkitest.FaultyIssuer{Next: ca}
	fi.SetFault(pkitest.Unreachable)
	_, err := pki.OpenNodeIdentity(t.Context(), pki.IdentityConfig{Dir: t.TempDir(), NodeID: pkitest.NewID(t), Issuer: fi})
	if !errors.Is(err, pkitest.ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
}

// TestRenewalKeepsLastGood feeds the renewal loop bad answers from a real CA
// (garbage PEM, wrong-order chain, a certificate for another key, an
// unreachable issuer): each is refused, the last good certificate stays,
// failures are counted and shown in the status, and the next good answer is
// swapped in.
func TestRenewalKeepsLastGood(t *testing.T) {
	ca := pkitest.NewCA(t)
	fi := &pkitest.FaultyIssuer{Next: ca}
	reg := prometheus.NewRegistry()
	n := openIdentity(t, fi, func(c *pki.IdentityConfig) {
		c.Registerer = reg
		c.Lifetime = time.Hour
		c.Renew = pki.RenewPolicy{RetryMin: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	good := n.Certificate().Leaf.SerialNumber
	for _, tt := range []struct {
		fault pkitest.Fault
		want  string
	}{
		{pkitest.Garbage, pki.ErrBadPEM.Error()},
		{pkitest.WrongOrder, pki.ErrChainOrder.Error()},
		{pkitest.OtherKey, pki.ErrKeyMismatch.Error()},
		{pkitest.Unreachable, pkitest.ErrUnreachable.Error()},
	} {
		fi.SetFault(tt.fault)
		n.RenewNow()
		waitFor(t, 5*time.Second, func() bool { s := n.Status(); return s.Failures >= 2 && strings.Contains(s.LastError, tt.want) })
		s := n.Status()
		if s.State != "renewing-failed" || n.Certificate().Leaf.SerialNumber.Cmp(good) != 0 {
			t.Fatalf("fault %d: status %v; serving serial %x, want last good %x", tt.fault, s, n.Certificate().Leaf.SerialNumber, good)
		}
		t.Logf("status: %v", s)
		fi.SetFault(pkitest.None)
		waitFor(t, 5*time.Second, func() bool { return n.Status().Failures == 0 })
		if s := n.Status(); s.State != "ok" || n.Certificate().Leaf.SerialNumber.Cmp(good) == 0 {
			t.Fatalf("after recovery: %v", s)
		}
		good = n.Certificate().Leaf.SerialNumber
		// Block renewal again until the next fault is set.
		fi.SetFault(tt.fault)
	}
	fails, renewals, notAfter := metric(t, reg, "fedgate_pki_renewal_failures_total"), metric(t, reg, "fedgate_pki_renewals_total"), metric(t, reg, "fedgate_pki_certificate_not_after_seconds")
	if fails < 8 || renewals < 5 || int64(notAfter) != n.Certificate().Leaf.NotAfter.Unix() {
		t.Fatalf("metrics: failures %v, renewals %v, not_after %v", fails, renewals, notAfter)
	}
}

// metric returns the value of the cert="node" series of a metric.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cert" && l.GetValue() == "node" {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRotationUnderLoad keeps mTLS requests flowing — over kept-alive and
// fresh connections — while both sides' certificates renew several times.
// Not one request may fail.
func TestRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation under load takes ~16s")
	}
	ca := pkitest.NewCA(t)
	// 6s lifetimes renew every ~4s, leaving >=1.7s before expiry even on a
	// loaded machine with the race detector (3s left <1s and flaked).
	short := func(c *pki.IdentityConfig) { c.Lifetime = 6 * time.Second }
	srv, cli := openIdentity(t, ca, short), openIdentity(t, ca, short)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, n := range []*pki.NodeIdentity{srv, cli} {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	var mu sync.Mutex
	var resumed atomic.Int64
	clientSerials := map[string]bool{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pki.NodeIDFromConn(*r.TLS)
		if err != nil || id != cli.NodeID() {
			http.Error(w, fmt.Sprint("bad identity ", id, err), http.StatusForbidden)
			return
		}
		if r.TLS.DidResume {
			resumed.Add(1)
		}
		mu.Lock()
		clientSerials[r.TLS.PeerCertificates[0].SerialNumber.String()] = true
		mu.Unlock()
		io.WriteString(w, "ok")
	}), ErrorLog: log.New(tlogWriter{t}, "", 0)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	serverSerials := map[string]bool{}
	var ok, failed atomic.Int64
	stop := time.Now().Add(15 * time.Second)
	var lg sync.WaitGroup
	for i := range 8 {
		tr := &http.Transport{TLSClientConfig: cli.ClientTLSConfigFor(srv.NodeID()), DisableKeepAlives: i%2 == 0, ForceAttemptHTTP2: false}
		tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		lg.Add(1)
		go func() {
			defer lg.Done()
			defer tr.CloseIdleConnections()
			for time.Now().Before(stop) {
				resp, err := c.Get("https://" + ln.Addr().String() + "/")
				if err != nil {
					failed.Add(1)
					t.Errorf("request: %v", err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("status %d: %s", resp.StatusCode, b)
					continue
				}
				mu.Lock()
				serverSerials[resp.TLS.PeerCertificates[0].SerialNumber.String()] = true
				mu.Unlock()
				ok.Add(1)
			}
		}()
	}
	lg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("requests ok %d (on resumed sessions %d), failed %d; distinct client certs seen by server %d, server certs seen by clients %d",
		ok.Load(), resumed.Load(), failed.Load(), len(clientSerials), len(serverSerials))
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if resumed.Load() == 0 {
		t.Fatal("no session was resumed: resumption must stay on")
	}
	if len(clientSerials) < 4 || len(serverSerials) < 4 {
		t.Fatalf("certificates renewed too rarely: %d client, %d server serials", len(clientSerials), len(serverSerials))
	}
}

// TestRestartWithIssuerDown: a node restarts while its issuer (the leader
// holding the CA, or an external CA) is unreachable; it serves its saved
// certificate with its saved trust bundle.
func TestRestartWithIssuerDown(t *testing.T) {
	ca := pkitest.NewCA(t)
	fi := &pkitest.FaultyIssuer{Next: ca}
	dir, id := t.TempDir(), pkitest.NewID(t)
	n1 := openIdentity(t, fi, func(c *pki.IdentityConfig) { c.Dir, c.NodeID = dir, id })
	fi.SetFault(pkitest.Unreachable)
	n2, err := pki.OpenNodeIdentity(t.Context(), pki.IdentityConfig{Dir: dir, NodeID: id, Issuer: fi})
	if err != nil {
		t.Fatalf("restart with the issuer down: %v", err)
	}
	if n2.Certificate().Leaf.SerialNumber.Cmp(n1.Certificate().Leaf.SerialNumber) != 0 {
		t.Fatal("restarted node serves another certificate")
	}
	peer := openIdentity(t, ca)
	if serr, cerr, _, _ := handshake(t, n2.ServerTLSConfig(), peer.ClientTLSConfig()); serr != nil || cerr != nil {
		t.Fatalf("restarted node: server %v, client %v", serr, cerr)
	}
}

func TestPinnedRoots(t *testing.T) {
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	bundle := append(ca.BundlePEM(), other.BundlePEM()...)
	pool, err := pki.PinnedRoots(bundle, strings.ToUpper(pki.Fingerprint(ca.Root())))
	if err != nil {
		t.Fatal(err)
	}
	n := openIdentity(t, ca, func(c *pki.IdentityConfig) { c.Roots = pool })
	foreign := openIdentity(t, other)
	cfg := foreign.ClientTLSConfig()
	cfg.VerifyConnection = nil
	if serr, _, _, _ := handshake(t, n.ServerTLSConfig(), cfg); !errors.Is(serr, pki.ErrUntrusted) {
		t.Fatalf("root that came along in the bundle but was not pinned is trusted: %v", serr)
	}
	if _, err := pki.PinnedRoots(other.BundlePEM(), pki.Fingerprint(ca.Root())); !errors.Is(err, pki.ErrUntrusted) {
		t.Fatalf("bundle without the pinned root: %v", err)
	}
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
