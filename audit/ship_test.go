package audit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/powernode/fedgate/audit"
)

// platform is a fake platform node API that fails the first `fail` posts.
type platform struct {
	mu     sync.Mutex
	fail   int
	posts  int
	auth   []string
	events []audit.FleetEvent
}

func (p *platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != audit.FleetEventsPath {
		http.Error(w, "wrong route", 404)
		return
	}
	p.posts++
	p.auth = append(p.auth, r.Header.Get("Authorization"))
	if p.fail > 0 {
		p.fail--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var b audit.FleetEventBatch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	p.events = append(p.events, b.Events...)
	w.WriteHeader(201)
}

func (p *platform) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShippingRetriesAndResumes(t *testing.T) {
	plat := &platform{fail: 2}
	srv := httptest.NewServer(plat)
	defer srv.Close()
	dir := t.TempDir()
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	ship := func() *audit.ShipConfig {
		return &audit.ShipConfig{PlatformURL: srv.URL, TokenFile: tok, BatchSize: 4, Interval: 20 * time.Millisecond,
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}
	}
	l := open(t, dir, nil, func(c *audit.Config) { c.Ship = ship() })
	for i := range 10 {
		rec := r(i)
		if i == 3 {
			rec.Decision = audit.DecisionDeny
		}
		if _, err := l.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "10 events", func() bool { return plat.count() == 10 })
	waitFor(t, "cursor", func() bool { return l.Stats().ShippedSeq == 10 })
	plat.mu.Lock()
	if plat.posts < 5 || plat.auth[0] != "Bearer s3cret" {
		t.Fatalf("posts=%d auth=%q", plat.posts, plat.auth[0])
	}
	for i, e := range plat.events {
		if e.Payload.Seq != uint64(i+1) || e.Payload.FederationPeerID != "peer-x" || e.Kind != "federation.audit.proxy.request" || e.CorrelationID == "" {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
	if plat.events[3].Severity != "medium" || plat.events[0].Severity != "low" {
		t.Fatalf("severities %q %q", plat.events[3].Severity, plat.events[0].Severity)
	}
	plat.mu.Unlock()
	l.Close()

	// Restart: shipping resumes from the persisted cursor, no duplicates.
	l2 := open(t, dir, nil, func(c *audit.Config) { c.Ship = ship() })
	l2.Append(context.Background(), r(11))
	waitFor(t, "11th event", func() bool { return plat.count() == 11 })
	time.Sleep(50 * time.Millisecond)
	if n := plat.count(); n != 11 {
		t.Fatalf("%d events after restart, want 11 (no re-shipping)", n)
	}
}

func TestShippingNeverBlocksAppends(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	l := open(t, t.TempDir(), nil, func(c *audit.Config) {
		c.Ship = &audit.ShipConfig{PlatformURL: srv.URL, BatchSize: 1, Interval: time.Millisecond}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 200 {
		if _, err := l.Append(ctx, r(i)); err != nil {
			t.Fatalf("append %d while the platform hangs: %v", i, err)
		}
	}
}

func TestShipTokenFileModeChecked(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("x"), 0o644)
	_, err := audit.Open(audit.Config{Dir: t.TempDir(), NodeID: "n", Ship: &audit.ShipConfig{PlatformURL: "http://127.0.0.1:1", TokenFile: tok}})
	if err == nil {
		t.Fatal("world-readable token file accepted")
	}
}
