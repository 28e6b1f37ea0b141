package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/raftstore"
)

// VIP ownership. A VIP without a holder list is held by the raft leader:
// mounted only after Barrier() succeeds on a new leader, unmounted the
// moment leadership is lost or the leader cannot confirm its lease
// (VerifyLeader fails). So two nodes never hold one VIP longer than the
// lease: the old leader drops it within LeaderLeaseTimeout (raft steps
// down) or the next lease check, before a new leader can win an election
// (HeartbeatTimeout > LeaderLeaseTimeout).
//
// A VIP with a holder list is mounted by the node the replicated state
// assigns it to (see vipassign.go for how the leader assigns), and only
// while that node is in touch with the leader: a follower holder drops it
// once its last contact with the leader is older than holderLease; the
// leader reassigns a silent holder only after failoverAfter, which is
// longer than holderLease plus one probe round, so the old holder has let
// go before the new one mounts.

// vipMounter is what vipOwner needs from netctl.
type vipMounter interface {
	MountVIP(ctx context.Context, v netctl.VIP) error
	UnmountVIP(ctx context.Context, addr netip.Prefix) error
	// RenewVIPs extends the kernel lease of every mounted VIP: the holder
	// calls it after each confirmation that it still owns them, so a
	// killed or frozen holder loses them by itself (netctl.Config.VIPLease).
	RenewVIPs(ctx context.Context) error
}

// leaderStore is what vipOwner needs from raftstore for leader-held VIPs.
type leaderStore interface {
	LeadershipChanges() <-chan bool
	Barrier(ctx context.Context) error
	VerifyLeader() error
	State() *raftstore.State
	Watch() (<-chan raftstore.Event, func())
	Apply(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error)
}

// clusterView is what holder-list VIPs need from raftstore: this node's
// contact with the leader, and the leader's probe of every member.
type clusterView interface {
	Status() raftstore.Status
	Members(ctx context.Context) ([]raftstore.ClusterMember, error)
}

// diskFence is the disk-stall fence (*raftstore.Store has it): a leader
// stuck in a raft log write keeps heartbeating, so raft never replaces it;
// the owner unmounts and then isolates the node so the others elect a new
// leader.
type diskFence interface {
	LogWriteStall() time.Duration
	Isolate() error
}

// errLeaseStuck: a lease check did not return in time (the leader loop is
// blocked, e.g. on a stalled disk).
var errLeaseStuck = errors.New("leader lease check did not return in time")

// vipStore is a store that can do both (*raftstore.Store is one).
type vipStore interface {
	leaderStore
	clusterView
}

// Holder-list timing defaults.
const (
	defaultHolderLease   = 500 * time.Millisecond
	defaultFailoverAfter = 1500 * time.Millisecond
	defaultAssignEvery   = 200 * time.Millisecond
	// defaultVerifyTimeout bounds one lease check: twice raftstore's
	// default LeaderLeaseTimeout.
	defaultVerifyTimeout = 250 * time.Millisecond
	// defaultDiskStallAfter: a raft log write blocked this long fences the
	// leader (a healthy fsync takes milliseconds).
	defaultDiskStallAfter = time.Second
	// defaultRenewEvery: how often confirmed VIPs get their kernel lease
	// renewed (well below netctl's default VIPLease of 2s).
	defaultRenewEvery = 500 * time.Millisecond
)

type vipOwner struct {
	nodeID   string
	store    vipStore
	m        vipMounter
	defIface string
	log      *slog.Logger
	// leaseEvery is how often a leader confirms its lease (and a holder
	// checks its contact with the leader).
	leaseEvery time.Duration
	// holderLease: a follower keeps a holder-list VIP only while its last
	// contact with the leader is younger than this.
	holderLease time.Duration
	// failoverAfter: the leader reassigns a holder-list VIP once its holder
	// has not answered a probe for this long (> holderLease + a probe round).
	failoverAfter time.Duration
	// assignEvery is how often the leader probes members and assigns.
	assignEvery time.Duration
	// verifyTimeout bounds one VerifyLeader; a check still running after
	// it counts as a lost lease.
	verifyTimeout time.Duration
	// diskStallAfter: a raft log write blocked this long on the leader
	// unmounts everything and isolates the node (diskFence).
	diskStallAfter time.Duration
	// renewEvery bounds how often the VIPs' kernel lease is renewed.
	renewEvery time.Duration
	lastRenew  time.Time // run goroutine only
	now        func() time.Time

	verifying chan error // an outstanding VerifyLeader (run goroutine only)
	isolated  bool       // fenced for a stalled disk (run goroutine only)

	leader   bool                        // raft leader with a confirmed barrier (run goroutine only)
	leaderOK atomic.Bool                 // the same, for the assigner
	mounted  map[netip.Prefix]netctl.VIP // what this node mounted (run goroutine only)

	recMu     sync.Mutex
	recording map[string]bool // leader-held VIPs whose holder record is in flight

	assign *vipAssigner
}

func newVIPOwner(nodeID string, s vipStore, m vipMounter, defIface string, log *slog.Logger) *vipOwner {
	o := &vipOwner{nodeID: nodeID, store: s, m: m, defIface: defIface, log: log,
		leaseEvery: 100 * time.Millisecond, holderLease: defaultHolderLease, failoverAfter: defaultFailoverAfter,
		assignEvery: defaultAssignEvery, verifyTimeout: defaultVerifyTimeout, diskStallAfter: defaultDiskStallAfter, renewEvery: defaultRenewEvery, now: time.Now,
		mounted: map[netip.Prefix]netctl.VIP{}, recording: map[string]bool{}}
	o.assign = newVIPAssigner(o)
	return o
}

// holderInTouch reports whether this node may keep holder-list VIPs: it is
// the confirmed leader, or a follower that heard from the leader recently.
func (o *vipOwner) holderInTouch() bool {
	if o.leader {
		return true
	}
	st := o.store.Status()
	if st.State != "follower" || st.LastContact.IsZero() {
		return false
	}
	return o.now().Sub(st.LastContact) < o.holderLease
}

// wanted lists the VIPs this node should hold now.
func (o *vipOwner) wanted() map[netip.Prefix]netctl.VIP {
	out := map[netip.Prefix]netctl.VIP{}
	if o.isolated {
		return out
	}
	inTouch := -1 // lazily: -1 unknown, 0 no, 1 yes
	st := o.store.State()
	for _, v := range st.VIPs() {
		if v.State == raftstore.VIPError {
			continue
		}
		if v.PeerID != "" {
			// Dedicated to a federation peer: never held for a revoked (or
			// vanished) peer, whatever the assignment says (commitment 11).
			if p, ok := st.Peer(v.PeerID); !ok || p.Status == federation.StatusRevoked {
				continue
			}
		}
		var mine bool
		if leaderHeld(v) {
			mine = o.leader
		} else if v.Holder == o.nodeID && (slices.Contains(v.HolderNodeIDs, o.nodeID) || slices.Contains(v.FailoverNodeIDs, o.nodeID)) {
			if inTouch < 0 {
				inTouch = 0
				if o.holderInTouch() {
					inTouch = 1
				}
			}
			mine = inTouch == 1
		}
		if !mine {
			continue
		}
		pfx, err := netip.ParsePrefix(v.CIDR)
		if err != nil {
			continue
		}
		ifc := v.Interface
		if ifc == "" {
			ifc = o.defIface
		}
		if ifc == "" {
			o.log.Warn("VIP has no interface and netctl.vip_interface is unset: not mounted", "vip", v.Name)
			continue
		}
		out[pfx] = netctl.VIP{Name: v.Name, Addr: pfx, Interface: ifc}
	}
	return out
}

// leaderHeld reports whether v follows the raft leader (no holder lists).
func leaderHeld(v raftstore.VIP) bool {
	return len(v.HolderNodeIDs) == 0 && len(v.FailoverNodeIDs) == 0
}

// converge mounts what is wanted and unmounts the rest. Unmounts go first,
// so a VIP that moves between interfaces is never on two.
func (o *vipOwner) converge(ctx context.Context) {
	want := o.wanted()
	for p, v := range o.mounted {
		if w, ok := want[p]; !ok || w != v {
			o.unmount(ctx, p)
		}
	}
	for p, v := range want {
		if _, ok := o.mounted[p]; ok {
			continue
		}
		start := time.Now()
		if err := o.m.MountVIP(ctx, v); err != nil {
			o.log.Error("VIP mount failed", "vip", v.Name, "addr", p, LogKeyErr, err)
			continue
		}
		o.mounted[p] = v
		o.log.Info("VIP mounted", "vip", v.Name, "addr", p, "interface", v.Interface, "took", time.Since(start))
		o.recordHolder(ctx, v.Name)
	}
}

func (o *vipOwner) unmount(ctx context.Context, p netip.Prefix) {
	v := o.mounted[p]
	if err := o.m.UnmountVIP(ctx, p); err != nil {
		o.log.Error("VIP unmount failed", "vip", v.Name, "addr", p, LogKeyErr, err)
		return
	}
	delete(o.mounted, p)
	o.log.Info("VIP unmounted", "vip", v.Name, "addr", p)
}

func (o *vipOwner) unmountAll(ctx context.Context) {
	for p := range o.mounted {
		o.unmount(ctx, p)
	}
}

// holderReason is the history reason when this node becomes the holder of
// the leader-held VIP v.
func holderReason(st *raftstore.State, v raftstore.VIP) string {
	switch {
	case v.Holder == "" && v.State == raftstore.VIPFailingOver:
		return raftstore.ReasonManualFailover // a leadership transfer asked for by an operator
	case v.Holder == "" && len(st.VIPHistory(v.Name)) == 0:
		return raftstore.ReasonInitial
	case v.Holder == "":
		return raftstore.ReasonHolderChanged
	}
	return raftstore.ReasonSensorFailover
}

// recordHolder notes a leader-held VIP's new holder in the replicated
// history (after the mount: the mount never waits for raft).
func (o *vipOwner) recordHolder(ctx context.Context, name string) {
	st := o.store.State()
	v, ok := st.VIP(name)
	if !ok || v.Holder == o.nodeID || !leaderHeld(v) {
		return
	}
	o.recMu.Lock()
	if o.recording[name] {
		o.recMu.Unlock()
		return
	}
	o.recording[name] = true
	o.recMu.Unlock()
	cmd, err := raftstore.NewCommand(raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: name, NodeID: o.nodeID, Reason: holderReason(st, v)})
	if err != nil {
		return
	}
	go func() {
		defer func() { o.recMu.Lock(); delete(o.recording, name); o.recMu.Unlock() }()
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := o.store.Apply(actx, cmd); err != nil {
			o.log.Warn("could not record the VIP holder", "vip", name, LogKeyErr, err)
		}
	}()
}

// rerecord retries the holder record of leader-held VIPs mounted here whose
// replicated holder is still someone else (a record that failed earlier).
func (o *vipOwner) rerecord(ctx context.Context) {
	for _, v := range o.mounted {
		o.recordHolder(ctx, v.Name)
	}
}

// run follows leadership and state changes until ctx ends, then unmounts
// everything it mounted. The assigner for holder-list VIPs runs beside it.
func (o *vipOwner) run(ctx context.Context) {
	leaderCh := o.store.LeadershipChanges()
	events, cancel := o.store.Watch()
	defer cancel()
	lease := time.NewTicker(o.leaseEvery)
	defer lease.Stop()
	actx, stopAssign := context.WithCancel(ctx)
	assignDone := make(chan struct{})
	go func() { defer close(assignDone); o.assign.run(actx) }()
	defer func() {
		stopAssign()
		<-assignDone
		uctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		o.setLeader(false)
		o.unmountAll(uctx)
	}()
	isLeader := false // raft's view; o.leader additionally needs a barrier
	gain := func() {
		// Barrier is forwarded to the leader on a follower, so it alone
		// proves nothing: confirm leadership with a quorum before and
		// after it (a stale "leader" view after a partition must never
		// mount).
		if o.isolated {
			return
		}
		if err := o.verifyLease(); err != nil {
			o.log.Debug("not confirmed as leader: VIPs stay unmounted", LogKeyErr, err)
			return
		}
		bctx, c := context.WithTimeout(ctx, 2*time.Second)
		err := o.store.Barrier(bctx)
		c()
		if err == nil {
			err = o.verifyLease()
		}
		if err != nil {
			o.log.Warn("new leader could not confirm the log (Barrier) or its lease: VIPs stay unmounted for now", LogKeyErr, err)
			return
		}
		o.setLeader(true)
		o.converge(ctx)
	}
	onLeader := func(l bool) {
		isLeader = l
		if l {
			gain()
		} else {
			o.setLeader(false)
			o.converge(ctx) // drops every leader-held VIP at once
		}
	}
	// latest takes a pending leadership change, so a lease tick never acts
	// on a stale view. It reports false when the channel closed.
	latest := func() bool {
		for {
			select {
			case l, ok := <-leaderCh:
				if !ok {
					return false
				}
				isLeader = l
				if !l {
					o.setLeader(false)
				}
			default:
				return true
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-leaderCh:
			if !ok {
				return
			}
			onLeader(l)
		case _, ok := <-events:
			if !ok {
				return
			}
			o.converge(ctx)
		case <-lease.C:
			if !latest() {
				return
			}
			o.checkDisk(ctx, isLeader)
			switch {
			case o.isolated:
			case o.leader:
				confirmed := false
				if err := o.verifyLease(); err != nil {
					o.log.Warn("leader lease not confirmed: dropping leader-held VIPs", LogKeyErr, err)
					o.setLeader(false)
				} else {
					confirmed = true
					o.rerecord(ctx)
				}
				o.converge(ctx)
				if confirmed {
					o.renew(ctx)
				}
			case isLeader:
				gain() // lease lost earlier but still raft leader: re-confirm
			default:
				o.converge(ctx) // a follower's holder lease may have run out
				if len(o.mounted) > 0 && o.holderInTouch() {
					o.renew(ctx) // holder-list VIPs, held while in touch
				}
			}
		}
	}
}

// renew extends the kernel lease of the mounted VIPs, at most every
// renewEvery. Called only right after ownership was confirmed.
func (o *vipOwner) renew(ctx context.Context) {
	if len(o.mounted) == 0 {
		return
	}
	now := o.now()
	if !o.lastRenew.IsZero() && now.Sub(o.lastRenew) < o.renewEvery {
		return
	}
	o.lastRenew = now
	if err := o.m.RenewVIPs(ctx); err != nil {
		o.log.Warn("VIP lease renewal failed", LogKeyErr, err)
	}
}

// verifyLease confirms leadership with a quorum, bounded by verifyTimeout.
// A check that does not return in time counts as failed, and no new one
// starts while it is outstanding (the leader loop is stuck).
func (o *vipOwner) verifyLease() error {
	if o.verifying != nil {
		select {
		case <-o.verifying: // the stuck check finished; start afresh
			o.verifying = nil
		default:
			return errLeaseStuck
		}
	}
	ch := make(chan error, 1)
	go func() { ch <- o.store.VerifyLeader() }()
	t := time.NewTimer(o.verifyTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		o.verifying = ch
		return errLeaseStuck
	}
}

// checkDisk fences this node when it is (or believes it is) the leader and
// a raft log write has been blocked for diskStallAfter: VIPs are unmounted
// first, then the node is isolated so the others elect a new leader. The
// node stays isolated until it is restarted.
func (o *vipOwner) checkDisk(ctx context.Context, isLeader bool) {
	f, ok := o.store.(diskFence)
	if !ok || o.isolated || !(isLeader || o.leader) {
		return
	}
	stall := f.LogWriteStall()
	if stall < o.diskStallAfter {
		return
	}
	o.log.Error("raft disk stalled on the leader: unmounting VIPs and isolating this node (restart it once the disk is healthy)",
		"stalled_for", stall, "threshold", o.diskStallAfter)
	o.setLeader(false)
	o.isolated = true
	o.converge(ctx)
	if err := f.Isolate(); err != nil {
		o.log.Error("isolate failed", LogKeyErr, err)
	}
}

func (o *vipOwner) setLeader(v bool) {
	o.leader = v
	o.leaderOK.Store(v)
}
