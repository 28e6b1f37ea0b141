package netctltest

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/powernode/fedgate/netctl"
)

type device struct {
	priv  wgtypes.Key
	port  int
	peers map[wgtypes.Key]*wgtypes.Peer
}

// Host is an in-memory host: links, addresses, fedgate routes and WireGuard
// devices. The zero value is not usable; call NewHost.
type Host struct {
	mu      sync.Mutex
	links   map[string]*netctl.Link
	addrs   []netctl.Addr
	routes  []netctl.Route
	devs    map[string]*device
	next    int
	kernel  bool
	intr    int
	faults  []fault
	ops     map[string]int
	announc []Announcement
	gate    chan struct{}
	started chan string
	hang    map[string]chan struct{}
	watch   []chan struct{}
	// fence state (fence.go) and the event journal.
	claims    map[netip.Addr]netctl.Claim
	journalOn bool
	journal   []string
}

// notify signals watchers (called with h.mu held, like a kernel
// notification after any change).
func (h *Host) notify() {
	for _, w := range h.watch {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// RemoveAddr deletes an address from the outside (an operator or another
// program), marked or not.
func (h *Host) RemoveAddr(link string, p netip.Prefix) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.links[link]
	if l == nil {
		return
	}
	for i, a := range h.addrs {
		if a.LinkIndex == l.Index && a.Prefix == p {
			h.addrs = append(h.addrs[:i], h.addrs[i+1:]...)
			h.logf("addr-gone %s on %s", p, link)
			h.notify()
			return
		}
	}
}

// Watch implements netctl.Watcher on the fake netlink view.
func (f *fakeNetlink) Watch(ctx context.Context) (<-chan struct{}, error) {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	in := make(chan struct{}, 1)
	h.watch = append(h.watch, in)
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				h.mu.Lock()
				for i, w := range h.watch {
					if w == in {
						h.watch = append(h.watch[:i], h.watch[i+1:]...)
						break
					}
				}
				h.mu.Unlock()
				return
			case <-in:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

// HangDevice makes WG().Device and ConfigureDevice on name block until
// release is called, like a stopped userspace device process.
func (h *Host) HangDevice(name string) (release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hang == nil {
		h.hang = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	h.hang[name] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.hang, name)
			h.mu.Unlock()
			close(ch)
		})
	}
}

func (h *Host) waitHang(name string) {
	h.mu.Lock()
	ch := h.hang[name]
	h.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

type fault struct {
	op, match string
	err       error
}

// Announcement is one round recorded by the fake announcer.
type Announcement struct {
	Link string
	Addr netip.Addr
}

// NewHost returns an empty host with a loopback link. kernelWG says whether
// the kernel "has" the wireguard link type; without it AddLink(wireguard)
// fails with netctl.ErrKernelUnsupported and the Launcher is used.
func NewHost(kernelWG bool) *Host {
	h := &Host{links: map[string]*netctl.Link{}, devs: map[string]*device{}, kernel: kernelWG, next: 1, ops: map[string]int{}}
	h.AddLink("lo", "device", nil)
	return h
}

// AddLink adds a non-fedgate link (test setup) and returns its index.
func (h *Host) AddLink(name, kind string, hw net.HardwareAddr) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addLinkLocked(name, kind, 1500, hw).Index
}

func (h *Host) addLinkLocked(name, kind string, mtu int, hw net.HardwareAddr) *netctl.Link {
	h.notify()
	l := &netctl.Link{Name: name, Index: h.next, Kind: kind, MTU: mtu, Up: kind != netctl.KindWireguard && kind != netctl.KindTuntap, HardwareAddr: hw}
	h.next++
	h.links[name] = l
	if kind == netctl.KindWireguard || kind == netctl.KindTuntap {
		h.devs[name] = &device{peers: map[wgtypes.Key]*wgtypes.Peer{}}
	}
	return l
}

// AddForeignAddr adds an unmarked address (owned by someone else).
func (h *Host) AddForeignAddr(link string, p netip.Prefix) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs = append(h.addrs, netctl.Addr{LinkIndex: h.links[link].Index, Prefix: p})
	h.notify()
}

// RemoveLink removes a link and everything on it (simulates an outside
// deletion or a crashed device process).
func (h *Host) RemoveLink(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delLinkLocked(name)
}

// SetHandshake sets a peer's handshake time and counters (for status tests).
func (h *Host) SetHandshake(dev string, pub wgtypes.Key, t time.Time, rx, tx int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.devs[dev].peers[pub]; p != nil {
		p.LastHandshakeTime, p.ReceiveBytes, p.TransmitBytes = t, rx, tx
	}
}

// Fail makes every later operation op whose object text contains match
// fail with err. Ops: link-add, link-set, link-del, addr-add, addr-del, addr-replace,
// route-add, route-del, wg-config (object: "dev/peerkey", one per peer in
// the config), launch.
func (h *Host) Fail(op, match string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, fault{op, match, err})
}

// ClearFaults removes all injected faults.
func (h *Host) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = nil
}

// InterruptDumps makes the next n dumps fail with netlink.ErrDumpInterrupted.
func (h *Host) InterruptDumps(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.intr = n
}

// Ops returns the count of mutating calls issued, by op name, since the
// last ResetOps, including calls answered EEXIST/ENOENT (reads,
// announcements and injected faults are not counted).
func (h *Host) Ops() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.ops))
	for k, v := range h.ops {
		out[k] = v
	}
	return out
}

// ResetOps zeroes the operation counters.
func (h *Host) ResetOps() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = map[string]int{}
}

// Announcements returns the rounds sent so far.
func (h *Host) Announcements() []Announcement {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Announcement(nil), h.announc...)
}

func (h *Host) check(op, obj string) error {
	for _, f := range h.faults {
		if f.op == op && strings.Contains(obj, f.match) {
			return f.err
		}
	}
	h.ops[op]++
	return nil
}

func (h *Host) linkByIndex(i int) *netctl.Link {
	for _, l := range h.links {
		if l.Index == i {
			return l
		}
	}
	return nil
}

func (h *Host) delLinkLocked(name string) {
	l := h.links[name]
	if l == nil {
		return
	}
	h.notify()
	delete(h.links, name)
	delete(h.devs, name)
	addrs := h.addrs[:0]
	for _, a := range h.addrs {
		if a.LinkIndex != l.Index {
			addrs = append(addrs, a)
		}
	}
	h.addrs = addrs
	routes := h.routes[:0]
	for _, r := range h.routes {
		if r.LinkIndex != l.Index {
			routes = append(routes, r)
		}
	}
	h.routes = routes
}

// Render prints the state: one block per link (sorted by name) with its
// addresses, fedgate routes and WireGuard device. Indices are omitted so
// that equal states render equally whatever the creation order.
func (h *Host) Render() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	names := make([]string, 0, len(h.links))
	for n := range h.links {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		l := h.links[n]
		up := "down"
		if l.Up {
			up = "up"
		}
		fmt.Fprintf(&b, "link %s %s mtu=%d %s\n", l.Name, l.Kind, l.MTU, up)
		var lines []string
		for _, a := range h.addrs {
			if a.LinkIndex == l.Index {
				mark := ""
				if a.Marked() {
					mark = " fedgate"
				}
				if a.NoDAD {
					mark += " nodad"
				}
				lines = append(lines, fmt.Sprintf("  addr %s%s", a.Prefix, mark))
			}
		}
		for _, r := range h.routes {
			if r.LinkIndex == l.Index {
				lines = append(lines, fmt.Sprintf("  route %s proto=%#x", r.Dst, r.Protocol))
			}
		}
		sort.Strings(lines)
		for _, s := range lines {
			b.WriteString(s + "\n")
		}
		if d := h.devs[n]; d != nil {
			fmt.Fprintf(&b, "  wg pub=%s port=%d\n", short(d.priv.PublicKey()), d.port)
			var ps []string
			for _, p := range d.peers {
				ep := "-"
				if p.Endpoint != nil {
					ep = p.Endpoint.String()
				}
				var al []string
				for _, a := range p.AllowedIPs {
					al = append(al, a.String())
				}
				sort.Strings(al)
				ps = append(ps, fmt.Sprintf("    peer %s endpoint=%s allowed=%s keepalive=%s", short(p.PublicKey), ep, strings.Join(al, ","), p.PersistentKeepaliveInterval))
			}
			sort.Strings(ps)
			for _, s := range ps {
				b.WriteString(s + "\n")
			}
		}
	}
	return b.String()
}

func short(k wgtypes.Key) string {
	if k == (wgtypes.Key{}) {
		return "none"
	}
	return k.String()[:8]
}

// Netlink returns the host's netctl.Netlink view.
func (h *Host) Netlink() netctl.Netlink { return (*fakeNetlink)(h) }

// WG returns the host's netctl.WGClient view.
func (h *Host) WG() netctl.WGClient { return (*fakeWG)(h) }

// Launcher returns the host's netctl.DeviceLauncher view: Start creates a
// tuntap link with a WireGuard device.
func (h *Host) Launcher() netctl.DeviceLauncher { return (*fakeLauncher)(h) }

// Announcer returns the host's netctl.Announcer view, recording rounds.
func (h *Host) Announcer() netctl.Announcer { return (*fakeAnnouncer)(h) }

type fakeNetlink Host

func (f *fakeNetlink) Dump() (*netctl.Snapshot, error) {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.intr > 0 {
		h.intr--
		return nil, fmt.Errorf("dump: %w", netlink.ErrDumpInterrupted)
	}
	s := &netctl.Snapshot{
		Addrs:  append([]netctl.Addr(nil), h.addrs...),
		Routes: append([]netctl.Route(nil), h.routes...),
	}
	for _, l := range h.links {
		s.Links = append(s.Links, *l)
	}
	sort.Slice(s.Links, func(i, j int) bool { return s.Links[i].Index < s.Links[j].Index })
	return s, nil
}

func (f *fakeNetlink) AddLink(name, kind string, mtu int) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("link-add", name); err != nil {
		return err
	}
	if kind == netctl.KindWireguard && !h.kernel {
		if h.ops["link-add"]--; h.ops["link-add"] == 0 {
			delete(h.ops, "link-add")
		}
		return fmt.Errorf("add link %s: %w", name, netctl.ErrKernelUnsupported)
	}
	if _, ok := h.links[name]; ok {
		return unix.EEXIST
	}
	h.addLinkLocked(name, kind, mtu, nil)
	return nil
}

func (f *fakeNetlink) SetLink(name string, mtu int) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("link-set", name); err != nil {
		return err
	}
	l := h.links[name]
	if l == nil {
		return unix.ENODEV
	}
	if mtu > 0 {
		l.MTU = mtu
	}
	l.Up = true
	h.notify()
	return nil
}

func (f *fakeNetlink) DeleteLink(name string) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("link-del", name); err != nil {
		return err
	}
	if h.links[name] == nil {
		return fmt.Errorf("delete link %s: %w", name, fs.ErrNotExist)
	}
	h.delLinkLocked(name)
	return nil
}

func (f *fakeNetlink) Addr(add bool, a netctl.Addr) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	op := "addr-del"
	if add {
		op = "addr-add"
	}
	l := h.linkByIndex(a.LinkIndex)
	if l == nil {
		return unix.ENODEV
	}
	if err := h.check(op, l.Name+"/"+a.Prefix.String()); err != nil {
		return err
	}
	for i, x := range h.addrs {
		// Like IPv4 in the kernel: an address is keyed by address and
		// prefix length.
		if x.LinkIndex == a.LinkIndex && x.Prefix == a.Prefix {
			if add {
				return unix.EEXIST
			}
			h.addrs = append(h.addrs[:i], h.addrs[i+1:]...)
			h.logf("addr-del %s on %s", a.Prefix, l.Name)
			h.notify()
			return nil
		}
	}
	if !add {
		return fmt.Errorf("delete address: %w", fs.ErrNotExist)
	}
	h.addrs = append(h.addrs, a)
	h.logf("addr-add %s on %s", a.Prefix, l.Name)
	h.notify()
	return nil
}

// ReplaceAddr adds a or, like NLM_F_REPLACE, updates the flags, marker and
// lifetime of the equal address (op "addr-replace"). The fake never expires
// addresses by itself: RemoveAddr plays the kernel dropping one.
func (f *fakeNetlink) ReplaceAddr(a netctl.Addr) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.linkByIndex(a.LinkIndex)
	if l == nil {
		return unix.ENODEV
	}
	if err := h.check("addr-replace", l.Name+"/"+a.Prefix.String()); err != nil {
		return err
	}
	for i, x := range h.addrs {
		if x.LinkIndex == a.LinkIndex && x.Prefix == a.Prefix {
			h.addrs[i] = a
			return nil
		}
	}
	h.addrs = append(h.addrs, a)
	h.notify()
	return nil
}

// AddrLifetime returns the lifetime last set on the address p of link (0:
// forever) and whether it exists.
func (h *Host) AddrLifetime(link string, p netip.Prefix) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.links[link]
	if l == nil {
		return 0, false
	}
	for _, a := range h.addrs {
		if a.LinkIndex == l.Index && a.Prefix == p {
			return a.ValidLft, true
		}
	}
	return 0, false
}

func (f *fakeNetlink) Route(add bool, r netctl.Route) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	op := "route-del"
	if add {
		op = "route-add"
	}
	l := h.linkByIndex(r.LinkIndex)
	if l == nil {
		return unix.ENODEV
	}
	if err := h.check(op, l.Name+"/"+r.Dst.String()); err != nil {
		return err
	}
	for i, x := range h.routes {
		if x.LinkIndex == r.LinkIndex && x.Dst == r.Dst {
			if add {
				return unix.EEXIST
			}
			h.routes = append(h.routes[:i], h.routes[i+1:]...)
			return nil
		}
	}
	if !add {
		return fmt.Errorf("delete route: %w", fs.ErrNotExist)
	}
	h.routes = append(h.routes, r)
	return nil
}

type fakeWG Host

func (f *fakeWG) Device(name string) (*wgtypes.Device, error) {
	h := (*Host)(f)
	h.waitHang(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devs[name]
	if d == nil {
		return nil, os.ErrNotExist
	}
	typ := wgtypes.LinuxKernel
	if h.links[name].Kind == netctl.KindTuntap {
		typ = wgtypes.Userspace
	}
	out := &wgtypes.Device{Name: name, Type: typ, PrivateKey: d.priv, ListenPort: d.port}
	if d.priv != (wgtypes.Key{}) {
		out.PublicKey = d.priv.PublicKey()
	}
	for _, p := range d.peers {
		c := *p
		c.AllowedIPs = append([]net.IPNet(nil), p.AllowedIPs...)
		out.Peers = append(out.Peers, c)
	}
	return out, nil
}

func (f *fakeWG) ConfigureDevice(name string, cfg wgtypes.Config) error {
	h := (*Host)(f)
	h.waitHang(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devs[name]
	if d == nil {
		return os.ErrNotExist
	}
	if cfg.ReplacePeers {
		return fmt.Errorf("fake wireguard: ReplacePeers must never be used by netctl")
	}
	// All-or-nothing like the kernel's one netlink message.
	for _, pc := range cfg.Peers {
		for _, fl := range h.faults {
			if fl.op == "wg-config" && strings.Contains(name+"/"+pc.PublicKey.String(), fl.match) {
				return fl.err
			}
		}
	}
	h.ops["wg-config"]++
	if cfg.PrivateKey != nil {
		d.priv = *cfg.PrivateKey
	}
	if cfg.ListenPort != nil {
		d.port = *cfg.ListenPort
	}
	for _, pc := range cfg.Peers {
		if pc.Remove {
			delete(d.peers, pc.PublicKey)
			continue
		}
		p := d.peers[pc.PublicKey]
		if p == nil {
			if pc.UpdateOnly {
				continue
			}
			p = &wgtypes.Peer{PublicKey: pc.PublicKey}
			d.peers[pc.PublicKey] = p
		}
		if pc.Endpoint != nil {
			e := *pc.Endpoint
			p.Endpoint = &e
		}
		if pc.PersistentKeepaliveInterval != nil {
			p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		p.AllowedIPs = append(p.AllowedIPs, pc.AllowedIPs...)
	}
	return nil
}

func (f *fakeWG) Close() error { return nil }

// BlockLaunches makes Launcher().Start wait until release is called (a slow
// device process). The name of each blocked start is sent on started.
func (h *Host) BlockLaunches() (started <-chan string, release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	gate, st := make(chan struct{}), make(chan string, 16)
	h.gate, h.started = gate, st
	var once sync.Once
	return st, func() { once.Do(func() { close(gate) }) }
}

type fakeLauncher Host

func (f *fakeLauncher) Start(ctx context.Context, name string) error {
	h := (*Host)(f)
	h.mu.Lock()
	gate, st := h.gate, h.started
	h.mu.Unlock()
	if gate != nil {
		st <- name
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("launch", name); err != nil {
		return err
	}
	if _, ok := h.links[name]; ok {
		return nil
	}
	h.addLinkLocked(name, netctl.KindTuntap, 1420, nil)
	return nil
}

func (f *fakeLauncher) Stop(_ context.Context, name string) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delLinkLocked(name)
	return nil
}

type fakeAnnouncer Host

func (f *fakeAnnouncer) Announce(l netctl.Link, a netip.Addr) error {
	h := (*Host)(f)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.faults {
		if f.op == "announce" && strings.Contains(l.Name+"/"+a.String(), f.match) {
			return f.err
		}
	}
	h.announc = append(h.announc, Announcement{Link: l.Name, Addr: a})
	h.logf("announce %s on %s", a, l.Name)
	return nil
}

func (f *fakeAnnouncer) Close() error { return nil }
