package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/powernode/fedgate/raftstore"
)

// Holder-list VIPs. The leader probes every member (Store.Members) each
// assignEvery and assigns each holder-list VIP to the first reachable node
// of holder_node_ids then failover_node_ids. Assignments are sticky: a VIP
// stays where it is while its holder answers (no flap back when the
// primary returns). History reasons:
//
//	initial          first assignment of a VIP
//	sensor_failover  the holder has not answered for failoverAfter
//	holder_changed   the holder lists no longer name the holder, or the
//	                 holder was removed from the cluster
//	manual_failover  `fedgate vips failover`
//
// A move away from a holder that still answers is two steps: the VIP is
// first unassigned (state failing_over), and assigned to its new node only
// once the old holder has applied that step (its applied index, as the
// probe reports it) or has been silent for failoverAfter. So the new node
// never mounts while the old one still has the VIP.

// vipAssigner runs on every node and acts while the node is the confirmed
// leader.
type vipAssigner struct {
	o *vipOwner

	mu       sync.Mutex
	lastSeen map[string]time.Time // last probe each member answered (leader's clock)
	wasLead  bool
}

func newVIPAssigner(o *vipOwner) *vipAssigner {
	return &vipAssigner{o: o, lastSeen: map[string]time.Time{}}
}

func (a *vipAssigner) run(ctx context.Context) {
	t := time.NewTicker(a.o.assignEvery)
	defer t.Stop()
	warned := false
	var lastProbe time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !a.o.leaderOK.Load() {
			a.mu.Lock()
			a.wasLead = false
			a.mu.Unlock()
			continue
		}
		st := a.o.store.State()
		if !hasHolderLists(st) && time.Since(lastProbe) < warnEvery {
			continue // nothing to assign: probe members only for the warning
		}
		lastProbe = time.Now()
		ms, err := a.o.store.Members(ctx)
		if err != nil {
			continue
		}
		if w := twoNodeWarning(ms); w != "" && !warned {
			a.o.log.Warn(w)
			warned = true
		} else if w == "" {
			warned = false
		}
		view := a.observe(ms)
		for _, p := range planVIPs(st, view) {
			if !a.o.leaderOK.Load() {
				break
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := a.o.store.Apply(actx, raftstore.MustCommand(raftstore.CmdVIPAssign, p))
			cancel()
			if err != nil && !errors.Is(err, raftstore.ErrRefused) {
				a.o.log.Warn("VIP assignment failed", "vip", p.Name, "to", p.NodeID, "reason", p.Reason, LogKeyErr, err)
			} else if err == nil {
				a.o.log.Info("VIP assigned", "vip", p.Name, "to", p.NodeID, "reason", p.Reason, "state", p.State)
			}
		}
	}
}

// warnEvery is how often the leader probes members when no VIP has holder
// lists (for the two-voter warning only).
const warnEvery = 5 * time.Second

func hasHolderLists(st *raftstore.State) bool {
	for _, v := range st.VIPs() {
		if !leaderHeld(v) {
			return true
		}
	}
	return false
}

// observe folds one probe into the liveness view. A leader that just won
// counts every member as seen now: it does not know when they were last
// heard of, so it waits a full failoverAfter before declaring one dead.
func (a *vipAssigner) observe(ms []raftstore.ClusterMember) liveView {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.o.now()
	v := liveView{now: now, failoverAfter: a.o.failoverAfter, reachable: map[string]bool{},
		applied: map[string]uint64{}, lastSeen: a.lastSeen}
	if !a.wasLead {
		for _, m := range ms {
			a.lastSeen[m.NodeID] = now
		}
		a.wasLead = true
	}
	for _, m := range ms {
		if m.Reachable {
			a.lastSeen[m.NodeID] = now
			v.reachable[m.NodeID] = true
			v.applied[m.NodeID] = m.AppliedIndex
		}
	}
	return v
}

// twoNodeWarning is the warning for a cluster of two voters ("" otherwise).
func twoNodeWarning(ms []raftstore.ClusterMember) string {
	voters := 0
	for _, m := range ms {
		if m.Suffrage == "voter" {
			voters++
		}
	}
	if voters == 2 {
		return "cluster of two voters: no fault tolerance (losing either node stops raft and unmounts every VIP); add a third node"
	}
	return ""
}

// HAWarnings lists what the operator should know about this site's HA
// (for `fedgate status`): a cluster of two voters.
func (a *Agent) HAWarnings(ctx context.Context) []string {
	s := a.store.Load()
	if s == nil {
		return nil
	}
	ms, err := s.Members(ctx)
	if err != nil {
		return nil
	}
	if w := twoNodeWarning(ms); w != "" {
		return []string{w}
	}
	return nil
}

// liveView is the leader's picture of its members at one probe.
type liveView struct {
	now           time.Time
	failoverAfter time.Duration
	reachable     map[string]bool      // answered this probe
	applied       map[string]uint64    // applied index reported this probe
	lastSeen      map[string]time.Time // last answered probe
}

// silent reports whether id has not answered for failoverAfter (a node
// never seen counts as silent).
func (v liveView) silent(id string) bool {
	t, ok := v.lastSeen[id]
	return !ok || v.now.Sub(t) >= v.failoverAfter
}

// released reports whether from no longer holds a VIP that the entry at
// index moved away from it: it applied that entry, or it has been silent
// long enough that its holder lease ran out.
func (v liveView) released(from string, index uint64) bool {
	if from == "" {
		return true
	}
	if v.reachable[from] && v.applied[from] >= index {
		return true
	}
	return v.silent(from)
}

// candidates lists v's allowed holders in order.
func candidates(v raftstore.VIP) []string {
	return append(slices.Clone(v.HolderNodeIDs), v.FailoverNodeIDs...)
}

// firstReachable returns the first candidate that answered, skipping skip.
func (v liveView) firstReachable(cands []string, skip string) string {
	for _, id := range cands {
		if id != skip && v.reachable[id] {
			return id
		}
	}
	return ""
}

// planVIPs returns the vip.assign commands the leader should apply now for
// the holder-list VIPs of st. It is pure: the same state and view give the
// same plan.
func planVIPs(st *raftstore.State, view liveView) []raftstore.VIPAssignPayload {
	var out []raftstore.VIPAssignPayload
	for _, v := range st.VIPs() {
		if leaderHeld(v) || v.State == raftstore.VIPError {
			continue
		}
		cands := candidates(v)
		hist := st.VIPHistory(v.Name)
		switch {
		case v.Holder == "":
			reason := raftstore.ReasonInitial
			if len(hist) > 0 {
				last := hist[len(hist)-1]
				if !view.released(last.From, last.Index) {
					continue // the old holder may still have it mounted
				}
				reason = last.Reason
				if last.Reason == raftstore.ReasonManualFailover && v.State == raftstore.VIPFailingOver &&
					view.now.Sub(last.At) < manualGrace {
					continue // the API call that started the move finishes it
				}
				if reason == raftstore.ReasonInitial || reason == raftstore.ReasonRevoked {
					reason = raftstore.ReasonSensorFailover
				}
			}
			skip := ""
			if len(hist) > 0 && reason != raftstore.ReasonHolderChanged {
				skip = hist[len(hist)-1].From // move away from where it failed, if anywhere else answers
			}
			to := view.firstReachable(cands, skip)
			if to == "" {
				to = view.firstReachable(cands, "")
			}
			if to != "" {
				out = append(out, raftstore.VIPAssignPayload{Name: v.Name, NodeID: to, Reason: reason})
			}
		case !slices.Contains(cands, v.Holder):
			// The lists no longer name the holder: step one of a move.
			out = append(out, raftstore.VIPAssignPayload{Name: v.Name, Reason: raftstore.ReasonHolderChanged, State: raftstore.VIPFailingOver})
		case view.silent(v.Holder):
			// Its holder lease has run out: it has dropped the VIP.
			if to := view.firstReachable(cands, v.Holder); to != "" {
				out = append(out, raftstore.VIPAssignPayload{Name: v.Name, NodeID: to, Reason: raftstore.ReasonSensorFailover})
			}
		}
	}
	return out
}

// manualGrace is how long the leader leaves a manual move to the API call
// that started it before finishing it itself.
const manualGrace = 5 * time.Second

type failoverRequest struct {
	// To is the node to move the VIP to; empty picks the next reachable
	// candidate (holder-list VIPs) or the best voter (leader-held VIPs).
	To string `json:"to,omitempty"`
}

type failoverResponse struct {
	VIP    string `json:"vip"`
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	// Leadership is true when the move was a raft leadership transfer.
	Leadership bool `json:"leadership_transfer"`
}

// handleVIPFailover moves a VIP by hand (POST /v1/vips/{name}/failover).
// A leader-held VIP moves with raft leadership: this node must be the
// leader, and it transfers leadership (to --to when given). A holder-list
// VIP moves in two replicated steps (see above), from any node.
func (a *Agent) handleVIPFailover(w http.ResponseWriter, r *http.Request) error {
	var req failoverRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	s, err := a.storeOrErr()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	v, ok := s.State().VIP(name)
	if !ok {
		return errStatus(http.StatusNotFound, "not_found", "vip %q does not exist", name)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if leaderHeld(v) {
		res, err := a.failoverLeaderHeld(ctx, s, v, req.To)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	}
	res, err := failoverHolderList(ctx, s, v, req.To, a.apply)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (a *Agent) failoverLeaderHeld(ctx context.Context, s *raftstore.Store, v raftstore.VIP, to string) (failoverResponse, error) {
	st := s.Status()
	if st.State != "leader" {
		return failoverResponse{}, errStatus(http.StatusConflict, "not_leader",
			"vip %q follows the raft leader (%s): run the failover on the leader, which hands leadership over", v.Name, st.LeaderID)
	}
	if to == a.nodeID {
		return failoverResponse{}, errStatus(http.StatusConflict, "already_holder", "vip %q is already held here", v.Name)
	}
	// Note the intent first, so the new leader records manual_failover.
	if v.Holder != "" || v.State != raftstore.VIPFailingOver {
		if _, err := a.apply(ctx, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: v.Name, Reason: raftstore.ReasonManualFailover, State: raftstore.VIPFailingOver}); err != nil {
			return failoverResponse{}, err
		}
	}
	if err := s.TransferLeadership(ctx, to); err != nil {
		// Still the leader: put the record back.
		if _, aerr := a.apply(context.WithoutCancel(ctx), raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: v.Name, NodeID: a.nodeID, Reason: raftstore.ReasonManualFailover}); aerr != nil {
			a.log.Warn("could not restore the VIP holder after a failed transfer", "vip", v.Name, LogKeyErr, aerr)
		}
		var re *raftstore.RefusedError
		if errors.As(err, &re) {
			return failoverResponse{}, errStatus(http.StatusUnprocessableEntity, "refused", "%v", err)
		}
		return failoverResponse{}, err
	}
	newLeader := s.Status().LeaderID
	for deadline := time.Now().Add(time.Second); (newLeader == "" || newLeader == a.nodeID) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the new leader's first heartbeat names it
		newLeader = s.Status().LeaderID
	}
	return failoverResponse{VIP: v.Name, From: a.nodeID, To: newLeader, Reason: raftstore.ReasonManualFailover, Leadership: true}, nil
}

type applyFunc func(ctx context.Context, typ string, payload any) (raftstore.Result, error)

// failoverHolderList moves a holder-list VIP to to (or the next reachable
// candidate after its holder): unassign (failing_over), wait until the old
// holder applied that or went silent, then assign.
func failoverHolderList(ctx context.Context, s clusterView, v raftstore.VIP, to string, apply applyFunc) (failoverResponse, error) {
	cands := candidates(v)
	ms, err := s.Members(ctx)
	if err != nil {
		return failoverResponse{}, err
	}
	reach := map[string]bool{}
	for _, m := range ms {
		reach[m.NodeID] = m.Reachable
	}
	if to != "" {
		if !slices.Contains(cands, to) {
			return failoverResponse{}, errStatus(http.StatusUnprocessableEntity, "not_a_holder", "node %s is not in the holder or failover list of vip %q", to, v.Name)
		}
		if to == v.Holder {
			return failoverResponse{}, errStatus(http.StatusConflict, "already_holder", "vip %q is already held by %s", v.Name, to)
		}
		if !reach[to] {
			return failoverResponse{}, errStatus(http.StatusConflict, "unreachable", "node %s does not answer: not moving vip %q there", to, v.Name)
		}
	} else {
		i := slices.Index(cands, v.Holder)
		for k := 1; k <= len(cands); k++ {
			c := cands[(i+k+len(cands))%len(cands)]
			if c != v.Holder && reach[c] {
				to = c
				break
			}
		}
		if to == "" {
			return failoverResponse{}, errStatus(http.StatusConflict, "no_candidate", "no other holder of vip %q answers", v.Name)
		}
	}
	from := v.Holder
	var idx uint64
	if from != "" || v.State != raftstore.VIPFailingOver {
		res, err := apply(ctx, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: v.Name, Reason: raftstore.ReasonManualFailover, State: raftstore.VIPFailingOver})
		if err != nil {
			return failoverResponse{}, err
		}
		idx = res.Index
	}
	if from != "" {
		if err := waitReleased(ctx, s, from, idx, defaultFailoverAfter); err != nil {
			return failoverResponse{}, fmt.Errorf("vip %s: old holder %s: %w", v.Name, from, err)
		}
	}
	if _, err := apply(ctx, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: v.Name, NodeID: to, Reason: raftstore.ReasonManualFailover}); err != nil {
		return failoverResponse{}, err
	}
	return failoverResponse{VIP: v.Name, From: from, To: to, Reason: raftstore.ReasonManualFailover}, nil
}

// waitReleased polls the members until from has applied index, or has not
// answered for silentFor.
func waitReleased(ctx context.Context, s clusterView, from string, index uint64, silentFor time.Duration) error {
	lastSeen := time.Now()
	for {
		ms, err := s.Members(ctx)
		if err == nil {
			for _, m := range ms {
				if m.NodeID != from {
					continue
				}
				if m.Reachable {
					if m.AppliedIndex >= index {
						return nil
					}
					lastSeen = time.Now()
				}
			}
			if !slices.ContainsFunc(ms, func(m raftstore.ClusterMember) bool { return m.NodeID == from && m.Reachable }) && time.Since(lastSeen) >= silentFor {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("did not let go of the VIP: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// HandOffLeadership hands raft leadership to another voter before a
// planned stop, so leader-held VIPs move within one election round trip
// instead of after a heartbeat timeout. A no-op on a follower; bounded by
// timeout. Call it first in shutdown, before anything is cancelled.
func (a *Agent) HandOffLeadership(timeout time.Duration) {
	s := a.store.Load()
	if s == nil || !s.IsLeader() {
		return
	}
	if len(s.State().Members()) < 2 {
		return // a single-node site has nobody to hand over to
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.TransferLeadership(ctx, ""); err != nil {
		a.log.Warn("could not hand leadership over before stopping", LogKeyErr, err)
		return
	}
	a.log.Info("leadership handed over before stopping")
}
