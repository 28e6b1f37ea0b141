package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/raftstore"
)

// FleetEventsPath is where the platform takes agent events.
const FleetEventsPath = "/api/v1/system/node_api/fleet/events"

// FleetEvent is one event as the platform takes it.
type FleetEvent struct {
	Kind          string              `json:"kind"`
	Severity      federation.Severity `json:"severity"`
	Payload       map[string]any      `json:"payload"`
	CorrelationID string              `json:"correlation_id"`
}

type eventPosterConfig struct {
	URL       string // platform base URL; empty: events are only logged
	TokenFile string
	Attempts  int
	Logger    *slog.Logger
	Client    *http.Client
	// Backoff is the first retry delay (default 500ms, doubling).
	Backoff time.Duration
}

// eventPoster queues events and posts them in batches with retries. A
// full queue drops the newest event (logged): the audit log stays the
// record of truth; events are notifications.
type eventPoster struct {
	cfg   eventPosterConfig
	token string
	q     chan FleetEvent

	mu   sync.Mutex
	sent int
	lost int
}

func newEventPoster(cfg eventPosterConfig) *eventPoster {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	e := &eventPoster{cfg: cfg, q: make(chan FleetEvent, 1024)}
	if cfg.TokenFile != "" {
		if fi, err := os.Stat(cfg.TokenFile); err != nil || fi.Mode().Perm()&0o077 != 0 {
			cfg.Logger.Error("platform token file missing or not 0600: events are sent without a token", "file", cfg.TokenFile)
		} else if b, err := os.ReadFile(cfg.TokenFile); err == nil {
			e.token = strings.TrimSpace(string(b))
		}
	}
	return e
}

// post queues an event about peer peerID.
func (e *eventPoster) post(kind string, sev federation.Severity, peerID string, extra map[string]any) {
	payload := map[string]any{"federation_peer_id": peerID, "source": "fedgate", "emitted_at": time.Now().UTC()}
	for k, v := range extra {
		payload[k] = v
	}
	cid, err := newID()
	if err != nil {
		cid = fmt.Sprintf("fedgate-%d", time.Now().UnixNano())
	}
	ev := FleetEvent{Kind: kind, Severity: sev, Payload: payload, CorrelationID: cid}
	e.cfg.Logger.Info("federation event", "kind", kind, "severity", sev, LogKeyPeer, peerID)
	if e.cfg.URL == "" {
		return
	}
	select {
	case e.q <- ev:
	default:
		e.mu.Lock()
		e.lost++
		e.mu.Unlock()
		e.cfg.Logger.Warn("event queue full: event dropped", "kind", kind)
	}
}

// run sends queued events until ctx ends.
func (e *eventPoster) run(ctx context.Context) {
	if e.cfg.URL == "" {
		return
	}
	for {
		var batch []FleetEvent
		select {
		case <-ctx.Done():
			return
		case ev := <-e.q:
			batch = append(batch, ev)
		}
	more:
		for len(batch) < 100 {
			select {
			case ev := <-e.q:
				batch = append(batch, ev)
			default:
				break more
			}
		}
		e.send(ctx, batch)
	}
}

func (e *eventPoster) send(ctx context.Context, batch []FleetEvent) {
	body, _ := json.Marshal(map[string]any{"events": batch})
	u := strings.TrimSuffix(e.cfg.URL, "/") + FleetEventsPath
	wait := e.cfg.Backoff
	var err error
	for i := 0; i < e.cfg.Attempts; i++ {
		if err = e.once(ctx, u, body); err == nil {
			e.mu.Lock()
			e.sent += len(batch)
			e.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	e.mu.Lock()
	e.lost += len(batch)
	e.mu.Unlock()
	e.cfg.Logger.Warn("events not delivered to the platform", "events", len(batch), "attempts", e.cfg.Attempts, LogKeyErr, err)
}

func (e *eventPoster) once(ctx context.Context, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("platform answered %s", resp.Status)
	}
	return nil
}

// counts returns events delivered and lost.
func (e *eventPoster) counts() (sent, lost int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent, e.lost
}

// ---- the state watcher ----

// watch turns replicated changes into platform events (status changes,
// findings), runs the auto-suspend policy on new findings, and finishes
// revocations made without notice (e.g. the plain peers revoke route).
// Only the leader acts, so a site emits each event once.
func (lc *lifecycle) watch(ctx context.Context) {
	events, cancel := lc.a.store.Load().Watch()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			lc.onChange(ctx, ev)
		}
	}
}

func (lc *lifecycle) onChange(ctx context.Context, ev raftstore.Event) {
	st := lc.state()
	leader := lc.leader()
	if ev.Type == raftstore.CmdFindingAdd && leader {
		id := strings.TrimPrefix(ev.Key, "finding/")
		for _, f := range st.Findings("") {
			if f.ID == id {
				lc.onFinding(ctx, f)
			}
		}
	}
	for _, p := range st.Peers() {
		lc.mu.Lock()
		old, seen := lc.statuses[p.ID]
		lc.statuses[p.ID] = p.Status
		lc.mu.Unlock()
		if seen && old == p.Status {
			continue
		}
		if !leader {
			continue
		}
		payload := map[string]any{"from": string(old), "to": string(p.Status)}
		switch p.Status {
		case federation.StatusSuspended:
			payload["suspension_reason"] = p.Metadata[federation.MetaSuspensionReason]
		case federation.StatusRevoked:
			payload["revocation_reason"] = p.Metadata[federation.MetaRevocationReason]
		}
		lc.events.post(p.Status.EventKind(), p.Status.EventSeverity(), p.ID, payload)
		if p.Status == federation.StatusRevoked {
			lc.mu.Lock()
			handled := lc.revokeLocked[p.ID]
			lc.revokeLocked[p.ID] = true
			lc.mu.Unlock()
			if !handled && !strings.HasPrefix(p.Metadata[federation.MetaRevocationReason], revokedByPeerPrefix) {
				// Revoked without the lifecycle route: notify afterwards
				// (best effort) and revoke our certificate for the peer.
				lc.a.bg.Add(1)
				go func() {
					defer lc.a.bg.Done()
					lc.lateRevocation(ctx, p)
				}()
			}
		}
	}
}

// lateRevocation finishes a revocation that was applied without notice.
func (lc *lifecycle) lateRevocation(ctx context.Context, p federation.Peer) {
	reason := p.Metadata[federation.MetaRevocationReason]
	var err error
	if p.Metadata[metaControlURL] != "" {
		err = errors.Join(lc.sendNotice(ctx, p, NoticeRevoked, reason),
			lc.deliver(ctx, func(c context.Context) error { return lc.sendHeartbeat(c, p, federation.StatusRevoked) }))
	}
	serial := lc.revokeOurCert(ctx, p.ID, "peer revoked: "+reason)
	meta := map[string]string{"notice": "after revocation", "revoked_cert_serial": serial, "notice_delivered": fmt.Sprint(err == nil)}
	if err != nil {
		meta["notice_error"] = truncateStr(err.Error(), 900)
	}
	lc.auditRec(ctx, auditRecord(actionNotice, p.ID, reason, meta))
	lc.events.post(federation.EventPlatformPeerRevoked, federation.SeverityHigh, p.ID, map[string]any{"reason": reason,
		"direction": "sent", "notice_delivered": err == nil})
}
