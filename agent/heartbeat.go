package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/raftstore"
)

// ourHeartbeat is the heartbeat we send peer p, declaring status.
func (lc *lifecycle) ourHeartbeat(p federation.Peer, status federation.Status) (federation.Heartbeat, error) {
	id, err := assignedID(p)
	if err != nil {
		return federation.Heartbeat{}, err
	}
	return federation.Heartbeat{PeerID: id, Status: status, SentAt: lc.now(),
		OperatorContact: lc.cfg.OperatorContact, Jurisdiction: lc.cfg.Jurisdiction,
		PlatformVersion: lc.a.cfg.Federation.PlatformVersion, LastKnownGoodRelease: lc.cfg.LastKnownGoodRelease,
		DataResidency: lc.cfg.DataResidency, Capabilities: lc.capabilities(), Endpoints: lc.endpoints()}, nil
}

// sendHeartbeat sends one heartbeat to p.
func (lc *lifecycle) sendHeartbeat(ctx context.Context, p federation.Peer, status federation.Status) error {
	hb, err := lc.ourHeartbeat(p, status)
	if err != nil {
		return err
	}
	return lc.postPeer(ctx, p, pathHeartbeat, hb, nil, lc.cfg.NoticeTimeout)
}

func (lc *lifecycle) maybeHeartbeat(ctx context.Context, p federation.Peer, now time.Time) {
	lc.mu.Lock()
	last := lc.hbLast[p.ID]
	lc.mu.Unlock()
	if now.Sub(last) < lc.cfg.HeartbeatInterval {
		return
	}
	lc.mu.Lock()
	lc.hbLast[p.ID] = now
	lc.mu.Unlock()
	if err := lc.sendHeartbeat(ctx, p, p.Status); err != nil {
		lc.log.Info("heartbeat not delivered", LogKeyPeer, p.ID, LogKeyErr, err)
	}
}

// handleHeartbeat is the control listener's heartbeat endpoint: rate
// limited per peer, peer_id must be the certificate's, a revoked status is
// the peer's final notification.
func (lc *lifecycle) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := lc.callerIdentity(r)
	rec := inboundRecord(r, audit.ActionHeartbeat, id.PeerID)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, err.Error())
		return
	}
	if !lc.hbLimits.allow("hb/" + id.PeerID) {
		lc.refuse(w, r, rec, http.StatusTooManyRequests, "rate_limited", "too many heartbeats")
		return
	}
	var hb federation.Heartbeat
	if err := readJSON(r, &hb); err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "heartbeat_invalid", err.Error())
		return
	}
	if err := hb.Validate(); err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "heartbeat_invalid", err.Error())
		return
	}
	if hb.PeerID != id.PeerID {
		rec.Metadata["claimed_peer_id"] = hb.PeerID
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerIDMismatch, "heartbeat peer_id is not the certificate's")
		return
	}
	p, ok := lc.state().Peer(id.PeerID)
	if !ok {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, "unknown peer")
		return
	}
	if hb.Status == federation.StatusRevoked {
		rec.Metadata["final_notification"] = "heartbeat"
		lc.revokedByPeer(ctx, w, r, rec, p, "final heartbeat (status revoked)")
		return
	}
	if !p.Status.Reachable() {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, fmt.Sprintf("peer is %s", p.Status))
		return
	}
	np, kinds, err := p.ApplyHeartbeat(hb, lc.now())
	if err != nil {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerIDMismatch, err.Error())
		return
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerUpdate, np); err != nil {
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "heartbeat_not_recorded", err.Error())
		return
	}
	for _, k := range kinds {
		lc.addFinding(ctx, p.ID, k, "reported by heartbeat")
	}
	status := p.Status
	if p.Status == federation.StatusEnrolled || p.Status == federation.StatusDegraded {
		if _, err := lc.a.apply(ctx, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: p.ID, To: federation.StatusActive,
			Reason: "heartbeat received"}); err != nil && !isAlreadyIn(err) {
			lc.refuse(w, r, rec, http.StatusServiceUnavailable, "heartbeat_not_recorded", err.Error())
			return
		}
		status = federation.StatusActive
	}
	rec.Decision, rec.Status = audit.DecisionAllow, http.StatusOK
	rec.Metadata["peer_status"] = string(hb.Status)
	rec.Metadata["status"] = string(status)
	lc.auditRec(ctx, rec)
	writeJSON(w, http.StatusOK, map[string]string{"status": string(status)})
}

// checkStale moves active peers without a heartbeat for StaleAfter to
// degraded, with a peer_heartbeat_stale finding and event.
func (lc *lifecycle) checkStale(ctx context.Context) {
	now := lc.now()
	for _, p := range lc.state().Peers() {
		if p.Status != federation.StatusActive {
			continue
		}
		last := p.LastHeartbeatAt
		if last.IsZero() {
			last = p.UpdatedAt
		}
		if now.Sub(last) <= lc.cfg.StaleAfter {
			continue
		}
		detail := fmt.Sprintf("no heartbeat since %s (stale after %s)", last.Format(time.RFC3339), lc.cfg.StaleAfter)
		if _, err := lc.a.apply(ctx, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: p.ID, To: federation.StatusDegraded,
			Reason: detail}); err != nil {
			lc.log.Warn("stale peer not degraded", LogKeyPeer, p.ID, LogKeyErr, err)
			continue
		}
		lc.addFinding(ctx, p.ID, federation.FindingHeartbeatStale, detail)
		lc.events.post(federation.EventHeartbeatStale, federation.SeverityMedium, p.ID, map[string]any{"last_heartbeat_at": last})
		lc.auditRec(ctx, audit.Record{Action: audit.ActionPeerTransition, FederationPeerID: p.ID, RemoteSubject: "fedgate:lifecycle",
			Decision: audit.DecisionAllow, Reason: detail, Metadata: map[string]string{"to": string(federation.StatusDegraded)}})
	}
}
