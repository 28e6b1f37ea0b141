package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/federation"
)

// TestEventPosterRetries: the platform fails twice, then takes the batch;
// every event arrives once, with the platform's shape and the bearer token.
func TestEventPosterRetries(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	var got []FleetEvent
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if r.URL.Path != FleetEventsPath || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if calls <= 2 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		auth = r.Header.Get("Authorization")
		var body struct {
			Events []FleetEvent `json:"events"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		got = append(got, body.Events...)
	}))
	defer srv.Close()
	tf := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tf, []byte("s3cret\n"), 0o600)
	e := newEventPoster(eventPosterConfig{URL: srv.URL, TokenFile: tf, Attempts: 5, Backoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { e.run(ctx); close(done) }()
	e.post(federation.StatusActive.EventKind(), federation.StatusActive.EventSeverity(), testPeerID, nil)
	e.post(federation.StatusRevoked.EventKind(), federation.StatusRevoked.EventSeverity(), testPeerID, map[string]any{"reason": "r"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if sent, _ := e.counts(); sent == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("events not delivered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if auth != "Bearer s3cret" {
		t.Errorf("Authorization %q", auth)
	}
	type view struct{ Kind, Severity, Peer string }
	var vs []view
	for _, ev := range got {
		if ev.CorrelationID == "" {
			t.Errorf("event %s without correlation_id", ev.Kind)
		}
		vs = append(vs, view{ev.Kind, string(ev.Severity), ev.Payload["federation_peer_id"].(string)})
	}
	want := []view{{"federation.peer.active", "low", testPeerID}, {"federation.peer.revoked", "high", testPeerID}}
	if d := cmp.Diff(want, vs); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

// TestEventPosterGivesUp counts a batch as lost after its attempts.
func TestEventPosterGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	e := newEventPoster(eventPosterConfig{URL: srv.URL, Attempts: 2, Backoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.run(ctx)
	e.post("federation.peer.degraded", federation.SeverityMedium, testPeerID, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, lost := e.counts(); lost == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("batch never counted as lost")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
