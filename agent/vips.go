package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/raftstore"
)

// VIP ownership. A VIP without a holder list is held by the raft leader:
// mounted only after Barrier() succeeds on a new leader, unmounted the
// moment leadership is lost or the leader cannot confirm its lease
// (VerifyLeader fails). A VIP with a holder list is mounted by the node the
// replicated state assigns it to. So two nodes never hold one VIP longer
// than the lease: the old leader drops it within LeaderLeaseTimeout (raft
// steps down) or the next lease check, before a new leader can win an
// election (HeartbeatTimeout > LeaderLeaseTimeout).

// vipMounter is what vipOwner needs from netctl.
type vipMounter interface {
	MountVIP(ctx context.Context, v netctl.VIP) error
	UnmountVIP(ctx context.Context, addr netip.Prefix) error
}

// leaderStore is what vipOwner needs from raftstore.
type leaderStore interface {
	LeadershipChanges() <-chan bool
	Barrier(ctx context.Context) error
	VerifyLeader() error
	State() *raftstore.State
	Watch() (<-chan raftstore.Event, func())
	Apply(ctx context.Context, cmd raftstore.Command) (raftstore.Result, error)
}

type vipOwner struct {
	nodeID   string
	store    leaderStore
	m        vipMounter
	defIface string
	log      *slog.Logger
	// leaseEvery is how often a leader confirms its lease.
	leaseEvery time.Duration

	leader  bool                        // raft leader with a confirmed barrier
	mounted map[netip.Prefix]netctl.VIP // what this node mounted
}

func newVIPOwner(nodeID string, s leaderStore, m vipMounter, defIface string, log *slog.Logger) *vipOwner {
	return &vipOwner{nodeID: nodeID, store: s, m: m, defIface: defIface, log: log,
		leaseEvery: 100 * time.Millisecond, mounted: map[netip.Prefix]netctl.VIP{}}
}

// wanted lists the VIPs this node should hold now.
func (o *vipOwner) wanted() map[netip.Prefix]netctl.VIP {
	out := map[netip.Prefix]netctl.VIP{}
	for _, v := range o.store.State().VIPs() {
		mine := (len(v.HolderNodeIDs) == 0 && len(v.FailoverNodeIDs) == 0 && o.leader) || v.Holder == o.nodeID && (len(v.HolderNodeIDs) > 0 || o.leader)
		if !mine || v.State == raftstore.VIPError {
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

// converge mounts what is wanted and unmounts the rest.
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

// recordHolder notes a leader-held VIP's new holder in the replicated
// history (after the mount: the mount never waits for raft).
func (o *vipOwner) recordHolder(ctx context.Context, name string) {
	v, ok := o.store.State().VIP(name)
	if !ok || v.Holder == o.nodeID || len(v.HolderNodeIDs) > 0 {
		return
	}
	reason := "sensor_failover"
	if v.Holder == "" {
		reason = "initial"
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: name, NodeID: o.nodeID, Reason: reason})
	if err != nil {
		return
	}
	go func() {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := o.store.Apply(actx, cmd); err != nil {
			o.log.Warn("could not record the VIP holder", "vip", name, LogKeyErr, err)
		}
	}()
}

// run follows leadership and state changes until ctx ends, then unmounts
// everything it mounted.
func (o *vipOwner) run(ctx context.Context) {
	leaderCh := o.store.LeadershipChanges()
	events, cancel := o.store.Watch()
	defer cancel()
	lease := time.NewTicker(o.leaseEvery)
	defer lease.Stop()
	defer func() {
		uctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		o.leader = false
		o.unmountAll(uctx)
	}()
	isLeader := false // raft's view; o.leader additionally needs a barrier
	gain := func() {
		bctx, c := context.WithTimeout(ctx, 2*time.Second)
		err := o.store.Barrier(bctx)
		c()
		if err != nil {
			o.log.Warn("new leader could not confirm the log (Barrier): VIPs stay unmounted for now", LogKeyErr, err)
			return
		}
		o.leader = true
		o.converge(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-leaderCh:
			if !ok {
				return
			}
			isLeader = l
			if l {
				gain()
			} else {
				o.leader = false
				o.converge(ctx) // drops every leader-held VIP at once
			}
		case _, ok := <-events:
			if !ok {
				return
			}
			o.converge(ctx)
		case <-lease.C:
			switch {
			case o.leader:
				if err := o.store.VerifyLeader(); err != nil {
					o.log.Warn("leader lease not confirmed: dropping leader-held VIPs", LogKeyErr, err)
					o.leader = false
					o.converge(ctx)
				}
			case isLeader:
				gain() // lease lost earlier but still raft leader: re-confirm
			}
		}
	}
}
