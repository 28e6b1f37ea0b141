package netctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Manager reconciles WireGuard interfaces, addresses, routes and VIPs. All
// methods are safe for concurrent use; mutations are serialized.
type Manager struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	// recMu serializes Reconcile and Cleanup (slow: device processes start
	// and stop under it). mu guards the VIP state, desired and last and is
	// held only for fast netlink work, so MountVIP/UnmountVIP never wait
	// for a device process.
	recMu    sync.Mutex
	kernelOK *bool // guarded by recMu; nil: not probed yet
	mu       sync.Mutex
	haVIPs   map[netip.Addr]VIP // mounted through MountVIP
	// leaseUntil: when the kernel lease of each HA VIP runs out by our
	// clock (last MountVIP/RenewVIPs + VIPLease); only with VIPLease > 0.
	leaseUntil map[netip.Addr]time.Time
	ann        map[netip.Addr]*annState
	// fenceOnly: former HA VIPs still on a link, fenced but not answered
	// (see fence.go).
	fenceOnly    map[netip.Addr]bool
	fenceFailing bool
	desired      Desired // last sanitized desired state
	last         Result

	closers  []io.Closer // seams built by Open
	closeErr error

	annOnce sync.Once
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.Once
}

type annState struct {
	vip       VIP
	link      Link
	last      time.Time
	lastErr   error
	burstLeft int
	next      time.Time
}

// Result reports one Reconcile pass.
type Result struct {
	// Errors holds one entry per refused or failed object; everything else
	// was applied.
	Errors []*ObjectError
	// Changes counts mutating kernel/WireGuard operations issued.
	Changes int
}

// Err joins Errors, nil when the pass converged.
func (r Result) Err() error {
	errs := make([]error, len(r.Errors))
	for i, e := range r.Errors {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// New returns a Manager. It touches nothing until Reconcile, MountVIP or
// Cleanup is called.
func New(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:        cfg,
		log:        cfg.Logger,
		haVIPs:     map[netip.Addr]VIP{},
		leaseUntil: map[netip.Addr]time.Time{},
		ann:        map[netip.Addr]*annState{},
		fenceOnly:  map[netip.Addr]bool{},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	var err error
	if m.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendKernel:
		t := true
		m.kernelOK = &t
	case BackendUserspace:
		f := false
		m.kernelOK = &f
	}
	return m, nil
}

// PublicKey returns the node's public key, for the agent to replicate.
func (m *Manager) PublicKey() wgtypes.Key { return m.cfg.PrivateKey.PublicKey() }

// Close stops the announcement loop. It leaves the kernel state in place (an
// agent restart must not interrupt traffic); see Cleanup.
func (m *Manager) Close() error {
	m.closeMu.Do(func() {
		close(m.stop)
		m.annOnce.Do(func() { close(m.done) }) // loop never started
		<-m.done
		var errs []error
		if m.cfg.Announcer != nil {
			errs = append(errs, m.cfg.Announcer.Close())
		}
		if m.cfg.Fence != nil {
			errs = append(errs, m.cfg.Fence.Close())
		}
		for _, c := range m.closers {
			errs = append(errs, c.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

const dumpRetries = 8

func (m *Manager) dump() (*Snapshot, error) {
	var err error
	for i := 0; i < dumpRetries; i++ {
		var s *Snapshot
		s, err = m.cfg.Netlink.Dump()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		m.m.dumpRetries.Inc()
	}
	return nil, fmt.Errorf("netlink dump still interrupted after %d tries: %w", dumpRetries, err)
}

// index over a snapshot.
type index struct {
	byName  map[string]Link
	byIndex map[int]Link
	addrs   map[netip.Addr][]Addr
	routes  map[routeKey]Route
}

type routeKey struct {
	link int
	dst  netip.Prefix
}

type addrKey struct {
	link   int
	prefix netip.Prefix
}

func newIndex(s *Snapshot) *index {
	ix := &index{
		byName:  make(map[string]Link, len(s.Links)),
		byIndex: make(map[int]Link, len(s.Links)),
		addrs:   make(map[netip.Addr][]Addr, len(s.Addrs)),
		routes:  make(map[routeKey]Route, len(s.Routes)),
	}
	for _, l := range s.Links {
		ix.byName[l.Name] = l
		ix.byIndex[l.Index] = l
	}
	for _, a := range s.Addrs {
		ix.addrs[a.Prefix.Addr()] = append(ix.addrs[a.Prefix.Addr()], a)
	}
	for _, r := range s.Routes {
		ix.routes[routeKey{r.LinkIndex, r.Dst}] = r
	}
	return ix
}

func isWGKind(k string) bool { return k == KindWireguard || k == KindTuntap }

// pass carries the state of one Reconcile.
type pass struct {
	m       *Manager
	ctx     context.Context
	res     Result
	keepA   map[addrKey]bool
	keepR   map[routeKey]bool
	keepL   map[string]bool
	failedL map[string]bool
	// protectL names refused interfaces: what exists on them stays as is.
	protectL map[string]bool
	// refusedPeers: existing peers whose desired update was refused stay.
	refusedPeers map[string]map[wgtypes.Key]bool
	// keepRoutesOn: links whose device could not be read; their routes
	// stay (removing them could send overlay traffic out in clear).
	keepRoutesOn map[int]bool
	// removedA: marked addresses this pass deleted.
	removedA map[addrKey]bool
}

func (p *pass) fail(kind, id string, err error) {
	p.res.Errors = append(p.res.Errors, objErr(kind, id, err))
}

// Reconcile converges the host to d and reports per-object errors. Invalid
// objects are refused and reported while the rest is applied. Existing
// fedgate objects are adopted; only marked objects are removed.
func (m *Manager) Reconcile(ctx context.Context, d Desired) Result {
	start := time.Now()
	m.recMu.Lock()
	defer m.recMu.Unlock()
	clean, verrs, refused := d.sanitize()
	p := &pass{m: m, ctx: ctx,
		keepA: map[addrKey]bool{}, keepR: map[routeKey]bool{},
		keepL: map[string]bool{}, failedL: map[string]bool{},
		protectL: map[string]bool{}, refusedPeers: refused}
	for _, e := range verrs {
		var oe *ObjectError
		if errors.As(e, &oe) {
			p.res.Errors = append(p.res.Errors, oe)
			if oe.Kind == "interface" && strings.HasPrefix(oe.ID, InterfacePrefix) {
				p.keepL[oe.ID] = true // refused: leave what exists alone
				p.protectL[oe.ID] = true
			}
		}
	}
	m.mu.Lock()
	m.desired = clean
	m.mu.Unlock()
	p.run(clean)
	m.mu.Lock()
	m.last = p.res
	m.mu.Unlock()
	m.m.observe(p.res, time.Since(start))
	if len(p.res.Errors) > 0 {
		m.log.Warn("netctl reconcile incomplete", "errors", len(p.res.Errors), "changes", p.res.Changes, "first", p.res.Errors[0].Error())
	} else if p.res.Changes > 0 {
		m.log.Info("netctl reconciled", "changes", p.res.Changes, "duration", time.Since(start))
	}
	return p.res
}

func (p *pass) run(d Desired) {
	m := p.m
	snap, err := m.dump()
	if err != nil {
		p.fail("dump", "netlink", err)
		return
	}
	ix := newIndex(snap)
	// Phase 1: links.
	created := false
	for _, in := range d.Interfaces {
		p.keepL[in.Name] = true
		l, ok := ix.byName[in.Name]
		if ok && !isWGKind(l.Kind) {
			p.failedL[in.Name] = true
			p.fail("interface", in.Name, fmt.Errorf("%w: link exists with kind %q", ErrAddressInUse, l.Kind))
			continue
		}
		if !ok {
			if err := m.createLink(p.ctx, in); err != nil {
				p.failedL[in.Name] = true
				p.fail("interface", in.Name, err)
				continue
			}
			p.res.Changes++
			created = true
		}
	}
	if created {
		if snap, err = m.dump(); err != nil {
			p.fail("dump", "netlink", err)
			return
		}
		ix = newIndex(snap)
	}
	// Phase 2: per interface settings, peers, addresses, routes.
	for _, in := range d.Interfaces {
		if p.failedL[in.Name] {
			continue
		}
		l, ok := ix.byName[in.Name]
		if !ok {
			p.fail("interface", in.Name, fmt.Errorf("link vanished after creation"))
			continue
		}
		p.iface(ix, l, in)
	}
	// Phase 3: fg- links no longer desired (may stop device processes).
	p.gcLinks(snap)
	// Phase 4, under mu: VIPs (desired and HA-held), then marked addresses
	// and routes no longer desired, from a fresh dump.
	m.mu.Lock()
	defer m.mu.Unlock()
	if snap, err = m.dump(); err != nil {
		p.fail("dump", "netlink", err)
		return
	}
	ix = newIndex(snap)
	vips := make([]VIP, 0, len(d.VIPs)+len(m.haVIPs))
	vips = append(vips, d.VIPs...)
	for _, v := range m.haVIPs {
		if !slices.ContainsFunc(d.VIPs, func(x VIP) bool { return x.Addr == v.Addr }) {
			vips = append(vips, v)
		}
	}
	keepVIP := map[netip.Addr]bool{}
	now := m.cfg.Clock.Now()
	for i, v := range vips {
		keepVIP[v.Addr.Addr()] = true
		var lft time.Duration
		if i >= len(d.VIPs) && m.cfg.VIPLease > 0 {
			// An HA VIP is re-added only for what is left of its lease: a
			// pass never extends it (only RenewVIPs does), and one whose
			// lease ran out (a resumed, frozen holder) is neither re-added
			// nor removed.
			lft = m.leaseUntil[v.Addr.Addr()].Sub(now)
			if lft <= 0 {
				if l, ok := ix.byName[v.Interface]; ok {
					p.keepA[addrKey{l.Index, v.Addr}] = true
				}
				continue
			}
		}
		if err := p.vip(ix, v, lft, false); err != nil {
			p.fail("vip", v.Name, err)
		}
	}
	for a := range m.ann {
		if !keepVIP[a] {
			delete(m.ann, a)
		}
	}
	p.gcAddrsRoutes(ix, snap)
	m.refreshFenceOnly(snap, p.removedA)
	m.syncFence(nil)
}

func (m *Manager) createLink(ctx context.Context, in Interface) error {
	if m.kernelOK == nil || *m.kernelOK {
		err := m.cfg.Netlink.AddLink(in.Name, KindWireguard, in.MTU)
		switch {
		case err == nil || errors.Is(err, fs.ErrExist):
			if m.kernelOK == nil {
				t := true
				m.kernelOK = &t
				m.log.Info("netctl backend", "backend", BackendKernel)
			}
			return nil
		case errors.Is(err, ErrKernelUnsupported) && m.cfg.Backend == BackendAuto:
			f := false
			m.kernelOK = &f
			m.log.Info("netctl backend", "backend", BackendUserspace, "reason", err.Error())
		default:
			return fmt.Errorf("create kernel wireguard link: %w", err)
		}
	}
	if err := m.cfg.Launcher.Start(ctx, in.Name); err != nil {
		return fmt.Errorf("start userspace device: %w", err)
	}
	return nil
}

func (p *pass) iface(ix *index, l Link, in Interface) {
	m := p.m
	if l.MTU != in.MTU || !l.Up {
		if err := m.cfg.Netlink.SetLink(in.Name, in.MTU); err != nil {
			p.fail("interface", in.Name, fmt.Errorf("set mtu/up: %w", err))
		} else {
			p.res.Changes++
		}
	}
	failedPeers := p.peers(in, l)
	// Addresses on the interface.
	for _, pre := range in.Addresses {
		p.keepA[addrKey{l.Index, pre}] = true
		if err := p.ensureAddr(ix, l, pre, false, 0, false); err != nil {
			p.fail("address", in.Name+"/"+pre.String(), err)
		}
	}
	// Routes for allowed IPs.
	for _, peer := range in.Peers {
		if failedPeers[peer.PublicKey] {
			// Not configured: add no route, but keep one that exists.
			for _, a := range peer.AllowedIPs {
				if _, ok := ix.routes[routeKey{l.Index, a}]; ok {
					p.keepR[routeKey{l.Index, a}] = true
				}
			}
			continue
		}
		for _, a := range peer.AllowedIPs {
			k := routeKey{l.Index, a}
			if p.keepR[k] {
				continue
			}
			p.keepR[k] = true
			if _, ok := ix.routes[k]; ok {
				continue
			}
			err := m.cfg.Netlink.Route(true, Route{LinkIndex: l.Index, Dst: a, Protocol: RouteProtocol})
			switch {
			case err == nil:
				p.res.Changes++
			case errors.Is(err, fs.ErrExist):
				p.fail("route", in.Name+"/"+a.String(), fmt.Errorf("%w: a route to %s exists without fedgate's protocol", ErrAddressInUse, a))
			default:
				p.fail("route", in.Name+"/"+a.String(), err)
			}
		}
	}
}

// ensureAddr makes pre exist, marked, on l, added with lifetime lft (0:
// forever). For a VIP (exclusive=true) an unmarked copy on any link is a
// conflict and a marked copy elsewhere is moved. renew re-applies lft to a
// copy that exists (NLM_F_REPLACE).
func (p *pass) ensureAddr(ix *index, l Link, pre netip.Prefix, exclusive bool, lft time.Duration, renew bool) error {
	m := p.m
	have := false
	var resize []Addr
	for _, a := range ix.addrs[pre.Addr()] {
		switch {
		case a.LinkIndex == l.Index && a.Marked() && a.Prefix == pre:
			have = true
		case !a.Marked() && (exclusive || a.LinkIndex == l.Index):
			owner := ix.byIndex[a.LinkIndex].Name
			return fmt.Errorf("%w: %s is on %s without fedgate's marker", ErrAddressInUse, a.Prefix, owner)
		case a.LinkIndex == l.Index && a.Marked():
			resize = append(resize, a) // same address, other prefix length
		}
	}
	want := Addr{LinkIndex: l.Index, Prefix: pre, Protocol: AddrProtocol, NoDAD: pre.Addr().Is6(), ValidLft: lft,
		NoPrefixRoute: lft > 0 && pre.Addr().Is6()}
	if have {
		if !renew {
			return nil
		}
		if err := m.cfg.Netlink.ReplaceAddr(want); err != nil {
			return fmt.Errorf("renew address: %w", err)
		}
		p.res.Changes++
		return nil
	}
	for _, a := range resize {
		if err := m.cfg.Netlink.Addr(false, a); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", a.Prefix, err)
		}
		p.res.Changes++
	}
	err := m.cfg.Netlink.Addr(true, want)
	switch {
	case err == nil:
		p.res.Changes++
	case errors.Is(err, fs.ErrExist):
		// Appeared since the dump; the next pass checks its marker.
	default:
		return fmt.Errorf("add address: %w", err)
	}
	return nil
}

func keyOf(s string) wgtypes.Key {
	k, _ := wgtypes.ParseKey(s) // validated before
	return k
}

func peerConfig(p Peer) wgtypes.PeerConfig {
	pc := wgtypes.PeerConfig{
		PublicKey:         keyOf(p.PublicKey),
		ReplaceAllowedIPs: true,
	}
	if p.Endpoint.IsValid() {
		pc.Endpoint = net.UDPAddrFromAddrPort(p.Endpoint)
	}
	ka := p.PersistentKeepalive
	pc.PersistentKeepaliveInterval = &ka
	pc.AllowedIPs = make([]net.IPNet, 0, len(p.AllowedIPs))
	for _, a := range p.AllowedIPs {
		pc.AllowedIPs = append(pc.AllowedIPs, prefixToIPNet(a))
	}
	return pc
}

func prefixToIPNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ipNetToPrefix(n net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	if ones == 32 || len(n.Mask) == 4 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, ones).Masked()
}

func peerEqual(p Peer, actual wgtypes.Peer) bool {
	if p.Endpoint.IsValid() {
		if actual.Endpoint == nil || actual.Endpoint.AddrPort() != p.Endpoint &&
			netip.AddrPortFrom(actual.Endpoint.AddrPort().Addr().Unmap(), actual.Endpoint.AddrPort().Port()) != p.Endpoint {
			return false
		}
	}
	if actual.PersistentKeepaliveInterval != p.PersistentKeepalive {
		return false
	}
	if len(actual.AllowedIPs) != len(p.AllowedIPs) {
		return false
	}
	want := make(map[netip.Prefix]bool, len(p.AllowedIPs))
	for _, a := range p.AllowedIPs {
		want[a] = true
	}
	for _, n := range actual.AllowedIPs {
		if !want[ipNetToPrefix(n)] {
			return false
		}
	}
	return true
}

// peers applies the minimal peer diff to one device and returns the keys of
// desired peers that failed.
func (p *pass) peers(in Interface, l Link) map[string]bool {
	m := p.m
	failed := map[string]bool{}
	dev, err := m.wgDevice(in.Name)
	if err != nil {
		if p.keepRoutesOn == nil {
			p.keepRoutesOn = map[int]bool{}
		}
		p.keepRoutesOn[l.Index] = true
		p.fail("interface", in.Name, fmt.Errorf("read wireguard device: %w", err))
		for _, peer := range in.Peers {
			failed[peer.PublicKey] = true
		}
		return failed
	}
	var base wgtypes.Config
	baseChanged := false
	if dev.PrivateKey != m.cfg.PrivateKey {
		k := m.cfg.PrivateKey
		base.PrivateKey = &k
		baseChanged = true
	}
	if in.ListenPort != 0 && dev.ListenPort != in.ListenPort {
		port := in.ListenPort
		base.ListenPort = &port
		baseChanged = true
	}
	actual := make(map[wgtypes.Key]wgtypes.Peer, len(dev.Peers))
	for _, ap := range dev.Peers {
		actual[ap.PublicKey] = ap
	}
	var changes []wgtypes.PeerConfig
	var changeIDs []string
	want := make(map[wgtypes.Key]bool, len(in.Peers))
	for _, peer := range in.Peers {
		k := keyOf(peer.PublicKey)
		want[k] = true
		if ap, ok := actual[k]; ok && peerEqual(peer, ap) {
			continue
		}
		changes = append(changes, peerConfig(peer))
		changeIDs = append(changeIDs, peer.PublicKey)
	}
	for _, ap := range dev.Peers {
		if !want[ap.PublicKey] && p.refusedPeers[in.Name][ap.PublicKey] {
			// Its update was refused: keep the peer and its routes as they are.
			for _, n := range ap.AllowedIPs {
				p.keepR[routeKey{l.Index, ipNetToPrefix(n)}] = true
			}
			continue
		}
		if !want[ap.PublicKey] {
			changes = append(changes, wgtypes.PeerConfig{PublicKey: ap.PublicKey, Remove: true})
			changeIDs = append(changeIDs, "")
		}
	}
	if !baseChanged && len(changes) == 0 {
		return failed
	}
	cfg := base
	cfg.Peers = changes
	if err := m.wgConfigure(in.Name, cfg); err == nil {
		p.res.Changes += len(changes)
		if baseChanged {
			p.res.Changes++
		}
		return failed
	}
	// The batch failed: isolate the failing objects one by one.
	if baseChanged {
		if err := m.wgConfigure(in.Name, base); err != nil {
			p.fail("interface", in.Name, fmt.Errorf("configure device: %w", err))
		} else {
			p.res.Changes++
		}
	}
	for i, pc := range changes {
		err := m.wgConfigure(in.Name, wgtypes.Config{Peers: []wgtypes.PeerConfig{pc}})
		if err != nil {
			id := changeIDs[i]
			if id == "" {
				id = pc.PublicKey.String()
			} else {
				failed[id] = true
			}
			p.fail("peer", in.Name+"/"+id, fmt.Errorf("configure peer: %w", err))
			continue
		}
		p.res.Changes++
	}
	return failed
}

// vip mounts v with lifetime lft (0: forever); renew re-applies lft to a
// copy that exists.
func (p *pass) vip(ix *index, v VIP, lft time.Duration, renew bool) error {
	m := p.m
	l, ok := ix.byName[v.Interface]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoInterface, v.Interface)
	}
	p.keepA[addrKey{l.Index, v.Addr}] = true
	changesBefore := p.res.Changes
	if err := p.ensureAddr(ix, l, v.Addr, true, lft, renew); err != nil {
		return err
	}
	st, ok := m.ann[v.Addr.Addr()]
	if !ok || p.res.Changes != changesBefore || st.link.Index != l.Index || st.link.Name != l.Name ||
		!bytes.Equal(st.link.HardwareAddr, l.HardwareAddr) {
		// Newly mounted, moved, adopted after a restart, or its link
		// renamed or given a new MAC (a bond's fail_over_mac): announce,
		// and the fence's responder follows st.link.
		st = &annState{vip: v, link: l}
		m.ann[v.Addr.Addr()] = st
		m.announceNow(st)
	}
	st.vip = v
	return nil
}

// gcLinks removes fg- WireGuard links that are not kept.
func (p *pass) gcLinks(snap *Snapshot) {
	m := p.m
	for _, l := range snap.Links {
		if !strings.HasPrefix(l.Name, InterfacePrefix) || !isWGKind(l.Kind) || p.keepL[l.Name] {
			continue
		}
		if err := m.deleteLink(p.ctx, l); err != nil {
			p.fail("interface", l.Name, fmt.Errorf("remove: %w", err))
			continue
		}
		p.res.Changes++
	}
}

// gcAddrsRoutes removes marked addresses and fedgate routes not kept.
func (p *pass) gcAddrsRoutes(ix *index, snap *Snapshot) {
	m := p.m
	protect := map[int]bool{}
	for name := range p.protectL {
		if l, ok := ix.byName[name]; ok {
			protect[l.Index] = true
		}
	}
	for _, a := range snap.Addrs {
		if !a.Marked() || protect[a.LinkIndex] || p.keepA[addrKey{a.LinkIndex, a.Prefix}] {
			continue
		}
		if err := m.cfg.Netlink.Addr(false, a); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.fail("address", ix.byIndex[a.LinkIndex].Name+"/"+a.Prefix.String(), fmt.Errorf("remove: %w", err))
			continue
		}
		if p.removedA == nil {
			p.removedA = map[addrKey]bool{}
		}
		p.removedA[addrKey{a.LinkIndex, a.Prefix}] = true
		p.res.Changes++
	}
	for _, r := range snap.Routes {
		if r.Protocol != RouteProtocol || protect[r.LinkIndex] || p.keepRoutesOn[r.LinkIndex] || p.keepR[routeKey{r.LinkIndex, r.Dst}] {
			continue
		}
		if err := m.cfg.Netlink.Route(false, r); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.fail("route", ix.byIndex[r.LinkIndex].Name+"/"+r.Dst.String(), fmt.Errorf("remove: %w", err))
			continue
		}
		p.res.Changes++
	}
}

func (m *Manager) deleteLink(ctx context.Context, l Link) error {
	if l.Kind == KindTuntap && m.cfg.Launcher != nil {
		// The TUN interface goes away with its device process.
		if err := m.cfg.Launcher.Stop(ctx, l.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	err := m.cfg.Netlink.DeleteLink(l.Name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Cleanup removes everything fedgate created: every fg- WireGuard link
// (stopping userspace device processes), every marked address, every
// route with RouteProtocol and, last, the L2 fence's nftables tables.
// Unmarked objects are never touched.
func (m *Manager) Cleanup(ctx context.Context) error {
	m.recMu.Lock()
	defer m.recMu.Unlock()
	snap, err := m.dump()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	p := &pass{m: m, ctx: ctx, keepA: map[addrKey]bool{}, keepR: map[routeKey]bool{}, keepL: map[string]bool{}}
	p.gcLinks(snap)
	m.mu.Lock()
	defer m.mu.Unlock()
	held := m.haVIPs
	m.haVIPs = map[netip.Addr]VIP{}
	m.leaseUntil = map[netip.Addr]time.Time{}
	m.ann = map[netip.Addr]*annState{}
	m.fenceOnly = map[netip.Addr]bool{}
	for a := range held {
		m.fenceOnly[a] = true // fenced, no longer answered
	}
	m.desired = Desired{}
	if m.cfg.Fence != nil && len(held) > 0 {
		m.syncFence(nil) // silent before the addresses go
	}
	if snap, err = m.dump(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	p.gcAddrsRoutes(newIndex(snap), snap)
	removeStaleSockets()
	err = p.res.Err()
	if m.cfg.Fence != nil {
		// After the addresses, and only once they are gone: a leased VIP
		// that could not be removed stays fenced (and silent).
		if err != nil {
			m.refreshFenceOnly(snap, p.removedA)
			m.syncFence(nil)
		} else if ferr := m.cfg.Fence.Remove(); ferr != nil {
			err = fmt.Errorf("cleanup: remove l2 fence: %w", ferr)
		}
	}
	return err
}

// wgDevice and wgConfigure bound a wgctrl call: a userspace device whose
// process is stopped never answers its UAPI socket, and wgctrl sets no
// deadline. The abandoned call finishes (or not) in its own goroutine.
func (m *Manager) wgDevice(name string) (*wgtypes.Device, error) {
	type res struct {
		d   *wgtypes.Device
		err error
	}
	ch := make(chan res, 1)
	go func() { d, err := m.cfg.WG.Device(name); ch <- res{d, err} }()
	select {
	case r := <-ch:
		return r.d, r.err
	case <-time.After(m.cfg.DeviceTimeout):
		return nil, fmt.Errorf("read %s: %w (%s)", name, ErrDeviceTimeout, m.cfg.DeviceTimeout)
	}
}

func (m *Manager) wgConfigure(name string, cfg wgtypes.Config) error {
	ch := make(chan error, 1)
	go func() { ch <- m.cfg.WG.ConfigureDevice(name, cfg) }()
	select {
	case err := <-ch:
		return err
	case <-time.After(m.cfg.DeviceTimeout):
		return fmt.Errorf("configure %s: %w (%s)", name, ErrDeviceTimeout, m.cfg.DeviceTimeout)
	}
}
