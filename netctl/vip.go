package netctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"time"
)

// MountVIP mounts v now (marked, IPv6 with NODAD), announces it and keeps
// announcing (burst, then refresh) until UnmountVIP. The HA code calls it
// after winning leadership; Reconcile keeps it mounted (re-mounting it if
// the address or its interface comes back) and never collects it. An
// address present without fedgate's marker is not taken over: the error
// matches ErrAddressInUse. With VIPLease > 0 the address is added with
// that kernel lifetime: the caller must keep calling RenewVIPs, or the
// kernel drops the address by itself.
func (m *Manager) MountVIP(ctx context.Context, v VIP) error {
	if err := v.Validate(); err != nil {
		return objErr("vip", v.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, held := range m.haVIPs {
		if held.Name == v.Name && a != v.Addr.Addr() {
			return objErr("vip", v.Name, fmt.Errorf("%w: name already held for %s", ErrInvalid, held.Addr))
		}
	}
	snap, err := m.dump()
	if err != nil {
		return objErr("vip", v.Name, err)
	}
	p := &pass{m: m, ctx: ctx, keepA: map[addrKey]bool{}, keepR: map[routeKey]bool{}, keepL: map[string]bool{}}
	ix := newIndex(snap)
	lease := m.cfg.VIPLease
	if lease > 0 {
		// Set first: the announcement sent on mount checks it.
		prev, had := m.leaseUntil[v.Addr.Addr()]
		m.leaseUntil[v.Addr.Addr()] = m.cfg.Clock.Now().Add(lease)
		if _, held := m.haVIPs[v.Addr.Addr()]; !held {
			defer func() {
				if _, held := m.haVIPs[v.Addr.Addr()]; !held {
					if had {
						m.leaseUntil[v.Addr.Addr()] = prev
					} else {
						delete(m.leaseUntil, v.Addr.Addr())
					}
				}
			}()
		}
	} else {
		lease = 0
	}
	if l, ok := ix.byName[v.Interface]; ok && m.cfg.Fence != nil {
		// Claimed before the address goes up: the kernel never answers
		// for it, this process does from the start.
		c := Claim{Addr: v.Addr.Addr(), Link: l}
		if lease > 0 {
			c.Until = m.leaseUntil[v.Addr.Addr()]
		}
		m.syncFence(&c)
		defer m.syncFence(nil) // held, or released again if the mount failed
	}
	// A copy that exists (adopted after a restart) gets the lease too.
	if err := p.vip(ix, v, lease, lease > 0); err != nil {
		return objErr("vip", v.Name, err)
	}
	// A marked copy on another link (moved VIP) is removed.
	l := ix.byName[v.Interface]
	for _, a := range ix.addrs[v.Addr.Addr()] {
		if a.Marked() && a.LinkIndex != l.Index {
			if err := m.cfg.Netlink.Addr(false, a); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return objErr("vip", v.Name, fmt.Errorf("remove old copy: %w", err))
			}
		}
	}
	m.haVIPs[v.Addr.Addr()] = v
	m.m.vipMounts.Inc()
	return nil
}

// UnmountVIP removes the marked address addr from every link and stops its
// announcements. Removing an address that is not mounted is success; an
// unmarked address is left alone and reported (ErrAddressInUse). With a
// Fence, this process stops answering for addr before the address goes,
// and the kernel stays fenced until it is gone.
func (m *Manager) UnmountVIP(ctx context.Context, addr netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ip := addr.Addr()
	if _, held := m.haVIPs[ip]; held && m.cfg.Fence != nil {
		m.fenceOnly[ip] = true
	}
	delete(m.haVIPs, ip)
	delete(m.leaseUntil, ip)
	delete(m.ann, ip)
	m.syncFence(nil) // silent from here on
	snap, err := m.dump()
	if err != nil {
		return fmt.Errorf("unmount vip %s: %w", addr, err)
	}
	var errs []error
	gone := true
	for _, a := range snap.Addrs {
		if a.Prefix.Addr() != ip {
			continue
		}
		if !a.Marked() {
			errs = append(errs, fmt.Errorf("unmount vip %s: %w: left in place", addr, ErrAddressInUse))
			continue
		}
		if err := m.cfg.Netlink.Addr(false, a); err != nil && !errors.Is(err, fs.ErrNotExist) {
			gone = false
			errs = append(errs, fmt.Errorf("unmount vip %s: %w", addr, err))
		}
	}
	if gone && m.fenceOnly[ip] {
		// Released only once our copy is gone; one that could not be
		// removed stays fenced until a pass sees it gone.
		delete(m.fenceOnly, ip)
		m.syncFence(nil)
	}
	m.m.vipUnmounts.Inc()
	return errors.Join(errs...)
}

// RenewVIPs renews the kernel lease of every VIP mounted through MountVIP
// to VIPLease from now (NLM_F_REPLACE) and lets its announcements go on
// until then. The holder calls it each time it confirms it still owns the
// VIPs, more often than VIPLease. A VIP whose lease already ran out (the
// kernel may have dropped it) is mounted again and announced afresh. It
// does nothing when leases are disabled (VIPLease < 0).
func (m *Manager) RenewVIPs(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.VIPLease <= 0 || len(m.haVIPs) == 0 {
		return nil
	}
	now := m.cfg.Clock.Now()
	var errs []error
	var lapsed []VIP
	for a, v := range m.haVIPs {
		st := m.ann[a]
		if st == nil || !now.Before(m.leaseUntil[a]) {
			lapsed = append(lapsed, v)
			continue
		}
		is6 := v.Addr.Addr().Is6()
		err := m.cfg.Netlink.ReplaceAddr(Addr{LinkIndex: st.link.Index, Prefix: v.Addr, Protocol: AddrProtocol,
			NoDAD: is6, NoPrefixRoute: is6, ValidLft: m.cfg.VIPLease})
		if err != nil {
			// Its link may have changed: take the slow path.
			lapsed = append(lapsed, v)
			continue
		}
		m.leaseUntil[a] = now.Add(m.cfg.VIPLease)
	}
	if len(lapsed) > 0 {
		snap, err := m.dump()
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("renew vips: %w", err))...)
		}
		ix := newIndex(snap)
		p := &pass{m: m, ctx: ctx, keepA: map[addrKey]bool{}, keepR: map[routeKey]bool{}, keepL: map[string]bool{}}
		for _, v := range lapsed {
			m.leaseUntil[v.Addr.Addr()] = now.Add(m.cfg.VIPLease)
			if err := p.vip(ix, v, m.cfg.VIPLease, true); err != nil {
				m.leaseUntil[v.Addr.Addr()] = now // still lapsed: not announced
				errs = append(errs, objErr("vip", v.Name, fmt.Errorf("renew lease: %w", err)))
			}
		}
	}
	m.syncFence(nil) // answering goes on until the new lease ends
	m.m.vipRenewals.Inc()
	return errors.Join(errs...)
}

// leaseLapsed reports whether addr is an HA VIP whose lease ran out by now
// (the kernel drops it by itself; it must not be announced). Called with
// m.mu held.
func (m *Manager) leaseLapsed(addr netip.Addr, now time.Time) bool {
	until, ok := m.leaseUntil[addr]
	if !ok || m.cfg.VIPLease <= 0 {
		return false
	}
	if slices.ContainsFunc(m.desired.VIPs, func(v VIP) bool { return v.Addr.Addr() == addr }) {
		return false // also desired: mounted forever
	}
	return !now.Before(until)
}

// LastAnnounce returns when addr was last announced by this node and whether
// it is currently mounted by netctl.
func (m *Manager) LastAnnounce(addr netip.Addr) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.ann[addr]
	if !ok {
		return time.Time{}, false
	}
	return st.last, true
}

// announceNow sends one round for st and schedules the rest of the burst.
// Called with m.mu held.
func (m *Manager) announceNow(st *annState) {
	m.sendRound(st)
	st.burstLeft = m.cfg.AnnounceBurst - 1
	st.next = m.cfg.Clock.Now().Add(m.cfg.AnnounceBurstInterval)
	m.startLoop()
}

func (m *Manager) sendRound(st *annState) {
	if m.cfg.Announcer == nil || len(st.link.HardwareAddr) == 0 {
		return // no L2 (TUN, WireGuard): nothing to announce
	}
	if m.leaseLapsed(st.vip.Addr.Addr(), m.cfg.Clock.Now()) {
		// A frozen holder that resumed must not claim the address again:
		// only a renewal (after it re-confirmed ownership) does.
		m.m.announceSkipped.Inc()
		return
	}
	err := m.cfg.Announcer.Announce(st.link, st.vip.Addr.Addr())
	st.lastErr = err
	if err != nil {
		m.m.announceErrors.Inc()
		m.log.Warn("netctl announce failed", "vip", st.vip.Name, "addr", st.vip.Addr.Addr(), "err", err)
		return
	}
	st.last = m.cfg.Clock.Now()
	m.m.announces.Inc()
}

func (m *Manager) startLoop() {
	if m.cfg.Announcer == nil {
		return
	}
	m.annOnce.Do(func() {
		go m.announceLoop()
	})
}

func (m *Manager) announceLoop() {
	defer close(m.done)
	tick := m.cfg.AnnounceBurstInterval
	if tick <= 0 || tick > time.Second {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.mu.Lock()
		now := m.cfg.Clock.Now()
		for _, st := range m.ann {
			if now.Before(st.next) {
				continue
			}
			if st.burstLeft <= 0 && m.cfg.AnnounceRefresh < 0 {
				continue
			}
			m.sendRound(st)
			if st.burstLeft > 0 {
				st.burstLeft--
			}
			if st.burstLeft > 0 {
				st.next = now.Add(m.cfg.AnnounceBurstInterval)
			} else {
				st.next = now.Add(m.cfg.AnnounceRefresh)
			}
		}
		m.mu.Unlock()
	}
}
