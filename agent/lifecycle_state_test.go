package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

// newStateLifecycle is a lifecycle on a real single-node raft store,
// without listeners: for the state logic of accept, findings, staleness
// and garbage collection.
func newStateLifecycle(t *testing.T) *lifecycle {
	t.Helper()
	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{LogLevel: slog.LevelWarn})
	log := raftstoretest.Logger(t, slog.LevelInfo)
	a := &Agent{log: log}
	a.cfg.Federation.PlatformVersion = "1.0.0"
	a.store.Store(c.Nodes[0].Store)
	lc := &lifecycle{a: a, cfg: LifecycleConfig{StaleAfter: 5 * time.Minute}.withDefaults(), log: log,
		now: func() time.Time { return time.Now().UTC() }, events: newEventPoster(eventPosterConfig{Logger: log}),
		hbLimits: limiterSet{r: rate.Inf, m: map[string]*rate.Limiter{}}, acceptLimit: rate.NewLimiter(rate.Inf, 1),
		statuses: map[string]federation.Status{}, hsNext: map[string]time.Time{}, hsBackoff: map[string]time.Duration{},
		hbLast: map[string]time.Time{}, revokeLocked: map[string]bool{}}
	return lc
}

func (lc *lifecycle) mustApply(t *testing.T, typ string, payload any) {
	t.Helper()
	if _, err := lc.a.apply(context.Background(), typ, payload); err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
}

// invitePeer records a proposed peer and an invitation expiring at exp.
func (lc *lifecycle) invitePeer(t *testing.T, exp time.Time) (string, string) {
	t.Helper()
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	lc.mustApply(t, raftstore.CmdPeerAdd, federation.NewPeer(id, federation.PeerKindPlatform, time.Now()))
	tok, key, err := newAcceptanceToken()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(invite{PeerID: id, ExpiresAt: exp})
	lc.mustApply(t, raftstore.CmdKVPut, raftstore.KVPutPayload{Key: key, Value: v})
	return id, tok
}

func TestHandleAccept(t *testing.T) {
	lc := newStateLifecycle(t)
	bundle := string(pkitest.NewCA(t).BundlePEM())
	assigned, _ := newID()
	id, tok := lc.invitePeer(t, time.Now().Add(time.Hour))
	_, expiredTok := lc.invitePeer(t, time.Now().Add(-time.Second))
	body := func(tok string, version int) AcceptRequest {
		return AcceptRequest{AcceptanceToken: tok, ContractVersion: version, Endpoints: []federation.Endpoint{{URL: "https://192.0.2.2:8443",
			Scope: federation.ScopeWAN, Priority: 1}}, Capabilities: federation.Capabilities{ResourceKinds: []string{"workspace"}},
			TrustedCAPEM: bundle, AssignedPeerID: assigned, ControlURL: "https://192.0.2.2:7444"}
	}
	other, _, _ := newAcceptanceToken()
	for _, step := range []struct {
		name   string
		req    AcceptRequest
		status int
		reason string
	}{
		{"malformed token", body("short", 1), 401, "bad_token"},
		{"unknown token", body(other, 1), 401, "bad_token"},
		{"expired token", body(expiredTok, 1), 401, "token_expired"},
		{"version 2", body(tok, 2), 422, federation.ReasonContractVersionUnsupported},
		{"accepted", body(tok, 1), 200, ""},
		{"reused token", body(tok, 1), 401, "bad_token"},
	} {
		b, _ := json.Marshal(step.req)
		w := httptest.NewRecorder()
		lc.handleAccept(w, httptest.NewRequest(http.MethodPost, pathAccept, bytes.NewReader(b)))
		if w.Code != step.status || !strings.Contains(w.Body.String(), step.reason) {
			t.Fatalf("%s: %d %s, want %d %s", step.name, w.Code, w.Body, step.status, step.reason)
		}
		if step.status == 200 {
			var resp AcceptResponse
			json.Unmarshal(w.Body.Bytes(), &resp)
			if resp.PeerID != id || resp.Status != federation.StatusAccepted || resp.ContractVersionAgreed != 1 {
				t.Fatalf("answer %+v", resp)
			}
		}
	}
	p, _ := lc.state().Peer(id)
	if p.Status != federation.StatusAccepted || p.ContractVersionAgreed != 1 || p.OutboundSubject != "fed:"+assigned ||
		p.TrustedCAPEM != bundle || p.Metadata[metaControlURL] != "https://192.0.2.2:7444" {
		t.Fatalf("peer after accept: %+v", p)
	}
	if n := len(lc.state().KVList("lifecycle/invite/")); n != 0 {
		t.Fatalf("%d invitations left; the used and the expired one must be gone", n)
	}
}

// activePeer records a peer with full disclosure and walks it to active.
func (lc *lifecycle) activePeer(t *testing.T) federation.Peer {
	t.Helper()
	id, _ := newID()
	p := federation.NewPeer(id, federation.PeerKindPlatform, time.Now())
	p.Status = federation.StatusAccepted
	p.ContractVersionAgreed = 1
	p.OperatorContact, p.Jurisdiction, p.PlatformVersion, p.LastKnownGoodRelease, p.DataResidency = "ops@b", "EU", "1.0.0", "v1", "eu"
	lc.mustApply(t, raftstore.CmdPeerAdd, p)
	for _, s := range []federation.Status{federation.StatusEnrolled, federation.StatusActive} {
		lc.mustApply(t, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: id, To: s})
	}
	p, _ = lc.state().Peer(id)
	return p
}

func (lc *lifecycle) findingsOf(id string) []federation.FindingKind {
	var out []federation.FindingKind
	for _, f := range lc.state().Findings(id) {
		out = append(out, f.Kind)
	}
	return out
}

// TestAutoSuspend: soft findings never suspend; the third hard finding
// within the window does.
func TestAutoSuspend(t *testing.T) {
	lc := newStateLifecycle(t)
	ctx := context.Background()
	p := lc.activePeer(t)
	add := func(k federation.FindingKind) {
		lc.addFinding(ctx, p.ID, k, "test")
		fs := lc.state().Findings(p.ID)
		lc.onFinding(ctx, fs[len(fs)-1])
	}
	for i := 0; i < 5; i++ {
		add(federation.FindingResidencyMissing)
	}
	add(federation.FindingCapabilityDrift)
	add(federation.FindingContractMismatch)
	if got, _ := lc.state().Peer(p.ID); got.Status != federation.StatusActive {
		t.Fatalf("suspended after 2 hard findings: %s", got.Status)
	}
	add(federation.FindingSchemaVersionDrift)
	got, _ := lc.state().Peer(p.ID)
	if got.Status != federation.StatusSuspended || !strings.HasPrefix(got.Metadata[federation.MetaSuspensionReason], "auto-suspended: 3 hard-norm findings") {
		t.Fatalf("after 3 hard findings: %s %q", got.Status, got.Metadata[federation.MetaSuspensionReason])
	}
}

// TestCheckStale: an active peer silent for longer than stale_after is
// degraded with a peer_heartbeat_stale finding; a fresh one is not.
func TestCheckStale(t *testing.T) {
	lc := newStateLifecycle(t)
	stale, fresh := lc.activePeer(t), lc.activePeer(t)
	now := time.Now().UTC()
	stale.LastHeartbeatAt = now.Add(-6 * time.Minute)
	fresh.LastHeartbeatAt = now.Add(-4 * time.Minute)
	lc.mustApply(t, raftstore.CmdPeerUpdate, stale)
	lc.mustApply(t, raftstore.CmdPeerUpdate, fresh)
	lc.checkStale(context.Background())
	if p, _ := lc.state().Peer(stale.ID); p.Status != federation.StatusDegraded {
		t.Fatalf("stale peer is %s", p.Status)
	}
	if k := lc.findingsOf(stale.ID); len(k) != 1 || k[0] != federation.FindingHeartbeatStale {
		t.Fatalf("stale findings %v", k)
	}
	if p, _ := lc.state().Peer(fresh.ID); p.Status != federation.StatusActive || len(lc.findingsOf(fresh.ID)) != 0 {
		t.Fatalf("fresh peer %s with findings %v", p.Status, lc.findingsOf(fresh.ID))
	}
}

// TestLifecycleGC: nonces outside twice the skew and expired invitations
// go; the rest stays.
func TestLifecycleGC(t *testing.T) {
	lc := newStateLifecycle(t)
	lc.mustApply(t, raftstore.CmdKVPut, raftstore.KVPutPayload{Key: nonceKey(testPeerID, strings.Repeat("a", 32)), Value: []byte("x")})
	lc.invitePeer(t, time.Now().Add(-time.Minute))
	lc.invitePeer(t, time.Now().Add(48*time.Hour))
	lc.gc(context.Background())
	if n, m := len(lc.state().KVList("lifecycle/nonce/")), len(lc.state().KVList("lifecycle/invite/")); n != 1 || m != 1 {
		t.Fatalf("after gc now: %d nonces, %d invitations; want 1, 1", n, m)
	}
	lc.now = func() time.Time { return time.Now().UTC().Add(time.Hour) }
	lc.gc(context.Background())
	if n, m := len(lc.state().KVList("lifecycle/nonce/")), len(lc.state().KVList("lifecycle/invite/")); n != 0 || m != 1 {
		t.Fatalf("after gc in an hour: %d nonces, %d invitations; want 0, 1", n, m)
	}
}
