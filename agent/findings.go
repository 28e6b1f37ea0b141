package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/raftstore"
)

// addFinding records a finding on peer id (replicated; the watcher posts
// the event and applies the suspend policy).
func (lc *lifecycle) addFinding(ctx context.Context, peerID string, kind federation.FindingKind, detail string) {
	f, err := federation.NewFinding(peerID, kind, truncateStr(detail, 4000), lc.now(), rand.Reader)
	if err != nil {
		lc.log.Warn("finding not built", LogKeyPeer, peerID, LogKeyErr, err)
		return
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdFindingAdd, f); err != nil {
		lc.log.Warn("finding not recorded", LogKeyPeer, peerID, "kind", kind, LogKeyErr, err)
	}
}

// onFinding posts a finding's event and suspends the peer when the policy
// says so (repeated hard-norm findings within the window).
func (lc *lifecycle) onFinding(ctx context.Context, f federation.Finding) {
	lc.events.post("federation.peer.finding", f.Kind.Severity(), f.PeerID, map[string]any{"finding_id": f.ID,
		"finding_kind": string(f.Kind), "detail": f.Detail, "hard_norm": f.Kind.Hard()})
	if !f.Kind.Hard() {
		return
	}
	pol := lc.cfg.suspendPolicy()
	st := lc.state()
	if !pol.ShouldSuspend(st.Findings(f.PeerID), lc.now()) {
		return
	}
	p, ok := st.Peer(f.PeerID)
	if !ok || federation.CanTransition(p.Status, federation.StatusSuspended) != nil {
		return
	}
	reason := fmt.Sprintf("auto-suspended: %d hard-norm findings within %s (latest %s), pending operator review",
		pol.HardCount(st.Findings(f.PeerID), lc.now()), pol.Window, f.Kind)
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: p.ID, To: federation.StatusSuspended,
		Reason: reason}); err != nil {
		lc.log.Warn("auto-suspend not applied", LogKeyPeer, p.ID, LogKeyErr, err)
		return
	}
	lc.auditRec(ctx, auditRecord(audit.ActionPeerTransition, p.ID, reason, map[string]string{"to": string(federation.StatusSuspended),
		"policy_threshold": fmt.Sprint(pol.Threshold), "policy_window": pol.Window.String()}))
}

// handleFindings is GET /v1/findings[?peer=ID] (local API).
func (a *Agent) handleFindings(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	peer := r.URL.Query().Get("peer")
	if peer != "" {
		if err := federation.ParseID(peer); err != nil {
			return errStatus(http.StatusBadRequest, "bad_request", "peer: %v", err)
		}
	}
	writeJSON(w, http.StatusOK, st.Findings(peer))
	return nil
}

// handleLifecycleStatus is GET /v1/lifecycle (local API): where the
// lifecycle listens, per-peer lifecycle notes and event counters.
func (a *Agent) handleLifecycleStatus(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.lifecycle()
	if err != nil {
		return err
	}
	sent, lost := lc.events.counts()
	type peerNote struct {
		ID               string            `json:"id"`
		Status           federation.Status `json:"status"`
		LastHeartbeatAt  time.Time         `json:"last_heartbeat_at,omitzero"`
		LastHandshakeAt  time.Time         `json:"last_handshake_at,omitzero"`
		SuspensionReason string            `json:"suspension_reason,omitempty"`
		RevocationReason string            `json:"revocation_reason,omitempty"`
		RevocationNotice string            `json:"revocation_notice,omitempty"`
		CompromiseNotice string            `json:"compromise_notice,omitempty"`
		Findings         int               `json:"findings"`
	}
	st := lc.state()
	notes := []peerNote{}
	for _, p := range st.Peers() {
		notes = append(notes, peerNote{ID: p.ID, Status: p.Status, LastHeartbeatAt: p.LastHeartbeatAt, LastHandshakeAt: p.LastHandshakeAt,
			SuspensionReason: p.Metadata[federation.MetaSuspensionReason], RevocationReason: p.Metadata[federation.MetaRevocationReason],
			RevocationNotice: p.Metadata[metaRevocationNotice], CompromiseNotice: p.Metadata[metaCompromiseNotice],
			Findings: len(st.Findings(p.ID))})
	}
	writeJSON(w, http.StatusOK, map[string]any{"control_url": lc.controlURL(), "bootstrap_url": lc.bootstrapURL(),
		"heartbeat_interval": lc.cfg.HeartbeatInterval.String(), "stale_after": lc.cfg.StaleAfter.String(),
		"events_sent": sent, "events_lost": lost, "peers": notes})
	return nil
}

// auditRecord is a lifecycle record not tied to a request.
func auditRecord(action, peerID, reason string, meta map[string]string) audit.Record {
	return audit.Record{Action: action, FederationPeerID: peerID, RemoteSubject: "fedgate:lifecycle", Decision: audit.DecisionAllow,
		Reason: reason, Metadata: meta}
}
