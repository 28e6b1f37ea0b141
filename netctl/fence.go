package netctl

import (
	"net/netip"
	"slices"
)

// The Manager's side of the L2 fence (see Fence and DESIGN.md, "L2 fence").
// Every VIP mounted by MountVIP is claimed: fenced before its address goes
// up, answered by this process on its link while its lease runs, silenced
// before its address is removed and released only once the address is
// gone. Static VIPs (Desired.VIPs) are never claimed: the kernel answers for
// them as before, also while the agent is down.

// claims renders the fence state from the VIP state. pending, when set, is
// a VIP being mounted: claimed before its address is added. Called with
// m.mu held.
func (m *Manager) claims(pending *Claim) []Claim {
	static := make(map[netip.Addr]bool, len(m.desired.VIPs))
	for _, v := range m.desired.VIPs {
		static[v.Addr.Addr()] = true
	}
	out := make([]Claim, 0, len(m.haVIPs)+len(m.fenceOnly)+1)
	for a := range m.haVIPs {
		if static[a] || (pending != nil && pending.Addr == a) {
			continue
		}
		c := Claim{Addr: a}
		if st := m.ann[a]; st != nil {
			c.Link = st.link
		}
		if m.cfg.VIPLease > 0 {
			c.Until = m.leaseUntil[a]
		}
		out = append(out, c)
	}
	for a := range m.fenceOnly {
		if _, held := m.haVIPs[a]; held || static[a] || (pending != nil && pending.Addr == a) {
			continue
		}
		out = append(out, Claim{Addr: a})
	}
	if pending != nil && !static[pending.Addr] {
		out = append(out, *pending)
	}
	slices.SortFunc(out, func(a, b Claim) int { return a.Addr.Compare(b.Addr) })
	return out
}

// syncFence hands the fence the complete claim set. A failure is logged
// (once until it recovers) and counted, never returned: the fence fails
// open, the VIP stays mounted and the kernel lease still bounds a dead
// holder. Called with m.mu held.
func (m *Manager) syncFence(pending *Claim) {
	if m.cfg.Fence == nil {
		return
	}
	err := m.cfg.Fence.Set(m.claims(pending))
	switch {
	case err != nil:
		m.m.fenceErrors.Inc()
		if !m.fenceFailing {
			m.log.Warn("netctl L2 fence failed: the kernel answers for the VIPs concerned", "err", err)
		}
		m.fenceFailing = true
	case m.fenceFailing:
		m.log.Info("netctl L2 fence recovered")
		m.fenceFailing = false
	}
}

// refreshFenceOnly recomputes, from a snapshot taken after garbage
// collection, the addresses that stay fenced without being held: a marked
// copy of a former HA VIP that is still on a link (its lease not run out,
// or its removal failed). A leased address (a lifetime only HA VIPs get)
// is one even when this process never mounted it (left by a killed
// predecessor). removed lists the addresses this pass deleted. Called with
// m.mu held.
func (m *Manager) refreshFenceOnly(snap *Snapshot, removed map[addrKey]bool) {
	static := make(map[netip.Addr]bool, len(m.desired.VIPs))
	for _, v := range m.desired.VIPs {
		static[v.Addr.Addr()] = true
	}
	next := map[netip.Addr]bool{}
	for _, a := range snap.Addrs {
		ip := a.Prefix.Addr()
		if !a.Marked() || removed[addrKey{a.LinkIndex, a.Prefix}] || static[ip] {
			continue
		}
		if _, held := m.haVIPs[ip]; held {
			continue
		}
		if a.ValidLft > 0 || m.fenceOnly[ip] {
			next[ip] = true
		}
	}
	m.fenceOnly = next
}
