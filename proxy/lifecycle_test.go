package proxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/proxy/proxytest"
)

type result struct {
	code int
	body string
	err  error
	at   time.Time
}

func goDo(pr *pair, r *http.Request) chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := pr.client.Do(r)
		if err != nil {
			ch <- result{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, err = ioCopy(&b, resp.Body)
		ch <- result{code: resp.StatusCode, body: b.String(), err: err, at: time.Now()}
	}()
	return ch
}

func waitArrival(t *testing.T, be *backend, path string) {
	t.Helper()
	for {
		select {
		case p := <-be.arrived:
			if p == path {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request for %s never reached the backend", path)
		}
	}
}

// TestRevokeMigrationGrace: revoking a peer cuts its ordinary calls at once
// and refuses new ones, while a migration-marked call in flight finishes
// within the grace period.
func TestRevokeMigrationGrace(t *testing.T) {
	pr := newBlindPair(t, nil, func(c *proxy.Config) { c.MigrationGrace = 10 * time.Second })
	_, tok := pr.grant(t, func(g *federation.Grant) {
		g.PermissionScopes = []federation.Scope{federation.ScopeRead, federation.ScopeWrite, federation.ScopeMigrate}
	})
	releaseMig := pr.be.hold("/api/vms/mig-1")
	releaseSlow := pr.be.hold("/api/vms/slow-1")
	defer close(releaseSlow)

	mig := pr.req(t, http.MethodPost, "/api/vms/mig-1", strings.NewReader(`{"chunk":1}`))
	mig.Header.Set("Authorization", "Bearer "+tok)
	mig.Header.Set(proxy.HeaderMigrationID, "0190a000-0000-7000-8000-00000000beef")
	migDone := goDo(pr, mig)
	waitArrival(t, pr.be, "/api/vms/mig-1")

	slow := pr.req(t, http.MethodGet, "/api/vms/slow-1", nil)
	slow.Header.Set("Authorization", "Bearer "+tok)
	slowDone := goDo(pr, slow)
	waitArrival(t, pr.be, "/api/vms/slow-1")

	revokedAt := time.Now()
	pr.b.state.UpdatePeer(pr.idA, func(p *federation.Peer) { p.Status = federation.StatusRevoked })
	pr.b.p.StateChanged()

	// The ordinary call is cut promptly.
	select {
	case r := <-slowDone:
		if r.err == nil && r.code == 200 {
			t.Errorf("ordinary call survived the revoke: %d %s", r.code, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ordinary call was not cut")
	}
	// A new call is refused.
	nr := pr.req(t, http.MethodGet, "/api/vms/vm-1", nil)
	nr.Header.Set("Authorization", "Bearer "+tok)
	code, _, body := do(t, pr.client, nr)
	if code != 403 || denialReason(t, body) != federation.ReasonPeerNotReachable {
		t.Errorf("new call after revoke: %d %s", code, body)
	}
	// The migration call finishes inside the grace period.
	time.Sleep(300 * time.Millisecond)
	close(releaseMig)
	select {
	case r := <-migDone:
		if r.err != nil || r.code != 200 {
			t.Fatalf("migration call: %d %v %s", r.code, r.err, r.body)
		}
		if r.at.Sub(revokedAt) > 10*time.Second {
			t.Errorf("migration finished after the grace period")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("migration call did not finish")
	}
}

// TestRevokeGraceExpires: a migration call still running when the grace
// period ends is cut.
func TestRevokeGraceExpires(t *testing.T) {
	pr := newPair(t, nil, func(c *proxy.Config) { c.MigrationGrace = 300 * time.Millisecond })
	_, tok := pr.grant(t, func(g *federation.Grant) {
		g.PermissionScopes = []federation.Scope{federation.ScopeMigrate}
	})
	release := pr.be.hold("/api/vms/mig-2")
	defer close(release)
	mig := pr.req(t, http.MethodPost, "/api/vms/mig-2", strings.NewReader("x"))
	mig.Header.Set("Authorization", "Bearer "+tok)
	mig.Header.Set(proxy.HeaderMigrationID, "m-2")
	done := goDo(pr, mig)
	waitArrival(t, pr.be, "/api/vms/mig-2")
	pr.b.ver.Revoke(pr.certA.Leaf) // certificate revocation this time
	pr.b.p.StateChanged()
	select {
	case r := <-done:
		if r.err == nil && r.code == 200 {
			t.Errorf("migration call outlived the grace period")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("migration call was not cut after grace")
	}
}

// TestResumptionReverifies: TLS session resumption is on, and a resumed
// session is verified again (a revoked certificate cannot resume).
func TestResumptionReverifies(t *testing.T) {
	pr := newPair(t, nil, nil)
	cfg := peerTLS(pr.certA, "http/1.1")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg, DisableKeepAlives: true,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	url := "https://" + pr.b.p.InboundAddr().String() + "/api/status"
	var resumed []bool
	for i := range 3 {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		resumed = append(resumed, resp.TLS.DidResume)
	}
	if resumed[0] || !resumed[2] {
		t.Fatalf("DidResume per request %v: want a full handshake first, resumption later", resumed)
	}
	recs := pr.b.audit.find(func(r audit.Record) bool { return r.Path == "/api/status" && r.Resumed })
	if len(recs) == 0 {
		t.Errorf("no audit record marked resumed")
	}
	pr.b.ver.Revoke(pr.certA.Leaf)
	if resp, err := client.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("revoked certificate resumed a session: %d (resumed %v)", resp.StatusCode, resp.TLS.DidResume)
	}
	pr.b.audit.waitRecord(t, "revoked resume", func(r audit.Record) bool {
		return r.Decision == audit.DecisionDeny && strings.HasPrefix(r.Reason, "tls: cert_revoked")
	})
}

// TestCertRotation: a new server certificate applies to new handshakes;
// live connections keep working.
func TestCertRotation(t *testing.T) {
	pr := newPair(t, nil, nil)
	client := directClient(pr.certA, false)
	url := "https://" + pr.b.p.InboundAddr().String() + "/api/status"
	get := func(c *http.Client) *http.Response {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		ioCopy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	first := get(client)
	newCert := proxytest.IssueFederation(t, pr.b.ca, pr.idB, 0)
	pr.b.certs.SetServer(newCert)
	again := get(client) // same keep-alive connection
	if !again.TLS.PeerCertificates[0].Equal(first.TLS.PeerCertificates[0]) {
		t.Errorf("live connection changed certificate")
	}
	fresh := directClient(pr.certA, false)
	if got := get(fresh).TLS.PeerCertificates[0]; !got.Equal(newCert.Leaf) {
		t.Errorf("new handshake did not present the rotated certificate")
	}
}

// TestShutdownDrains: Shutdown lets an in-flight call finish and stops
// accepting.
func TestShutdownDrains(t *testing.T) {
	pr := newPair(t, nil, nil)
	release := pr.be.hold("/api/status/slow")
	done := goDo(pr, pr.req(t, http.MethodGet, "/api/status/slow", nil))
	waitArrival(t, pr.be, "/api/status/slow")
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- pr.b.p.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond)
	if pr.b.p.Ready() {
		t.Errorf("ready while draining")
	}
	close(release)
	if r := <-done; r.err != nil || r.code != 200 {
		t.Errorf("in-flight call during drain: %d %v", r.code, r.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := tls.Dial("tcp", pr.b.p.InboundAddr().String(), peerTLS(pr.certA)); err == nil {
		t.Errorf("inbound still accepts after Shutdown")
	}
}

// TestShutdownDeadline: Shutdown cuts what is still running at the deadline.
func TestShutdownDeadline(t *testing.T) {
	pr := newPair(t, nil, nil)
	release := pr.be.hold("/api/status/stuck")
	defer close(release)
	done := goDo(pr, pr.req(t, http.MethodGet, "/api/status/stuck", nil))
	waitArrival(t, pr.be, "/api/status/stuck")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := pr.b.p.Shutdown(ctx)
	if err == nil {
		t.Errorf("Shutdown returned nil with a stuck call")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Shutdown took %v past a 300ms deadline", time.Since(start))
	}
	if r := <-done; r.err == nil && r.code == 200 {
		t.Errorf("stuck call completed")
	}
}
