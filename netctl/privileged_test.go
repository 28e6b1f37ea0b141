package netctl_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/powernode/fedgate/internal/nstest"
	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/wgdevice"
)

// node is one agent's netctl stack bound to a namespace.
type node struct {
	ns       *nstest.NS
	m        *netctl.Manager
	nl       *netctl.RealNetlink
	launcher *netctl.ProcessLauncher
	key      wgtypes.Key
	keyPath  string
	logDir   string
}

// startNode builds a Manager on the real seams in ns (a fresh "agent").
func startNode(t testing.TB, ns *nstest.NS, keyPath, logDir string) *node {
	t.Helper()
	key, err := netctl.LoadOrCreateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netctl.NewNetlink(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	wg, err := netctl.NewWGClient(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	l, err := netctl.NewProcessLauncher(netctl.LauncherConfig{
		Command: []string{os.Args[0], "wg-device"},
		Env:     []string{deviceEnv + "=1"},
		Netns:   ns.Path(), LogDir: logDir, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := netctl.New(netctl.Config{
		WG: wg, Netlink: nl, Launcher: l, Announcer: netctl.NewAnnouncer(ns.Path()),
		Logger: testLogger(t), PrivateKey: key,
		AnnounceBurstInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{ns: ns, m: m, nl: nl, launcher: l, key: key, keyPath: keyPath, logDir: logDir}
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *node) stop() {
	n.m.Close()
	n.nl.Close()
}

// cleanupAll removes what netctl created and kills any device left over,
// even when the test failed half way.
func cleanupAll(t testing.TB, n *node, ifaces ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		nl, err := netctl.NewNetlink(n.ns.Path())
		if err == nil {
			for _, name := range ifaces {
				_ = nl.DeleteLink(name)
			}
			nl.Close()
		}
		l, _ := netctl.NewProcessLauncher(netctl.LauncherConfig{})
		for _, name := range ifaces {
			_ = l.Stop(ctx, name)
		}
	})
}

func randName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// renderNS prints links, addresses and main-table routes of a namespace.
func renderNS(t testing.TB, h *netlink.Handle) string {
	t.Helper()
	var lines []string
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		lines = append(lines, fmt.Sprintf("link %s %s mtu=%d", l.Attrs().Name, l.Type(), l.Attrs().MTU))
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		lines = append(lines, fmt.Sprintf("addr %s dev %s", a.IPNet, names[a.LinkIndex]))
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		lines = append(lines, fmt.Sprintf("route %v dev %s proto %d", r.Dst, names[r.LinkIndex], r.Protocol))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// wire creates two namespaces joined by a veth pair addressed 192.168.<n>.1
// and .2/24.
func wire(t testing.TB, n int) (a, b *nstest.NS) {
	a, b = nstest.New(t, "a"), nstest.New(t, "b")
	nstest.Veth(t, a, "wire0", b, "wire1")
	nstest.AddAddr(t, a, "wire0", netip.MustParsePrefix(fmt.Sprintf("192.168.%d.1/24", n)))
	nstest.AddAddr(t, b, "wire1", netip.MustParsePrefix(fmt.Sprintf("192.168.%d.2/24", n)))
	return a, b
}

func listen(t testing.TB, ns *nstest.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	ns.MustDo(t, func() (err error) { ln, err = net.Listen("tcp", addr); return err })
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln
}

func dial(ns *nstest.NS, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return err })
	return c, err
}

// echo sends n bytes and reads them back.
func echo(c net.Conn, n int, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(buf); errc <- err }()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(buf, got) {
		return errors.New("echo mismatch")
	}
	return nil
}

// tunnel is two namespaces on a veth wire, each with a fedgate-managed
// userspace WireGuard interface peered with the other, and an echo server
// on B's tunnel address.
type tunnel struct {
	a, b             *nstest.NS
	na, nb           *node
	ifA, ifB         string
	dA, dB           netctl.Desired
	beforeA, beforeB string
	server           string // B's echo server across the tunnel
}

func setupTunnel(t testing.TB, subnet int) *tunnel {
	t.Helper()
	a, b := wire(t, subnet)
	tu := &tunnel{a: a, b: b, ifA: randName("fg-a"), ifB: randName("fg-b")}
	tu.beforeA, tu.beforeB = renderNS(t, a.Handle(t)), renderNS(t, b.Handle(t))
	dir := t.TempDir()
	tu.na = startNode(t, a, filepath.Join(dir, "a.key"), filepath.Join(dir, "logA"))
	tu.nb = startNode(t, b, filepath.Join(dir, "b.key"), filepath.Join(dir, "logB"))
	cleanupAll(t, tu.na, tu.ifA)
	cleanupAll(t, tu.nb, tu.ifB)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"logA/wg-" + tu.ifA + ".log", "logB/wg-" + tu.ifB + ".log"} {
				out, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, out)
			}
		}
	})
	mp := netip.MustParsePrefix
	peerB := netctl.Peer{PublicKey: tu.nb.key.PublicKey().String(),
		Endpoint:   netip.MustParseAddrPort(fmt.Sprintf("192.168.%d.2:51821", subnet)),
		AllowedIPs: []netip.Prefix{mp(fmt.Sprintf("10.%d.0.2/32", subnet))}, PersistentKeepalive: time.Second}
	peerA := netctl.Peer{PublicKey: tu.na.key.PublicKey().String(),
		Endpoint:   netip.MustParseAddrPort(fmt.Sprintf("192.168.%d.1:51820", subnet)),
		AllowedIPs: []netip.Prefix{mp(fmt.Sprintf("10.%d.0.1/32", subnet))}}
	tu.dA = netctl.Desired{Interfaces: []netctl.Interface{{Name: tu.ifA, ListenPort: 51820,
		Addresses: []netip.Prefix{mp(fmt.Sprintf("10.%d.0.1/24", subnet))}, Peers: []netctl.Peer{peerB}}}}
	tu.dB = netctl.Desired{Interfaces: []netctl.Interface{{Name: tu.ifB, ListenPort: 51821,
		Addresses: []netip.Prefix{mp(fmt.Sprintf("10.%d.0.2/24", subnet))}, Peers: []netctl.Peer{peerA}}}}
	ctx := context.Background()
	// B first: A's persistent keepalive starts a handshake at once, and a
	// handshake that meets no listener is only retried after 5 s.
	if r := tu.nb.m.Reconcile(ctx, tu.dB); r.Err() != nil {
		t.Fatalf("reconcile B: %v", r.Err())
	}
	if r := tu.na.m.Reconcile(ctx, tu.dA); r.Err() != nil {
		t.Fatalf("reconcile A: %v", r.Err())
	}
	tu.server = fmt.Sprintf("10.%d.0.2:7000", subnet)
	listen(t, b, tu.server)
	return tu
}

// connect dials B across the tunnel from A and checks an echo.
func (tu *tunnel) connect(t *testing.T) net.Conn {
	t.Helper()
	t0 := time.Now()
	c, err := dial(tu.a, tu.server, 10*time.Second)
	if err != nil {
		t.Fatalf("dial across tunnel: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := echo(c, 256<<10, 10*time.Second); err != nil {
		t.Fatalf("echo across tunnel: %v", err)
	}
	t.Logf("connected and echoed 256 KiB across the tunnel in %v", time.Since(t0))
	return c
}

func TestPrivilegedTunnel(t *testing.T) {
	tu := setupTunnel(t, 77)
	tu.connect(t)
	ctx := context.Background()
	st, err := tu.na.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].Backend != "userspace" || len(st.Interfaces[0].Peers) != 1 {
		t.Fatalf("status: %+v", st)
	}
	if p := st.Interfaces[0].Peers[0]; p.Health != "active" || p.RxBytes == 0 || p.TxBytes == 0 || p.Endpoint != "192.168.77.2:51821" {
		t.Errorf("peer status: %+v", p)
	}
	pid := tu.na.launcher.Pids()[tu.ifA]
	// Cleanup leaves both namespaces as they were.
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := tu.na.m.Cleanup(cctx); err != nil {
		t.Fatalf("cleanup A: %v", err)
	}
	if err := tu.nb.m.Cleanup(cctx); err != nil {
		t.Fatalf("cleanup B: %v", err)
	}
	if diff := cmp.Diff(tu.beforeA, renderNS(t, tu.a.Handle(t))); diff != "" {
		t.Errorf("namespace A after Cleanup (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(tu.beforeB, renderNS(t, tu.b.Handle(t))); diff != "" {
		t.Errorf("namespace B after Cleanup (-before +after):\n%s", diff)
	}
	for _, name := range []string{tu.ifA, tu.ifB} {
		if _, err := os.Stat(wgdevice.SocketPath(name)); err == nil {
			t.Errorf("uapi socket of %s left behind", name)
		}
	}
	if pid == 0 || !netctl.ProcessGone(pid) {
		t.Errorf("device process %d still running after Cleanup", pid)
	}
}

func TestPrivilegedPeerRemoval(t *testing.T) {
	tu := setupTunnel(t, 79)
	c := tu.connect(t)
	ctx := context.Background()
	dA := tu.dA
	dA.Interfaces = []netctl.Interface{tu.dA.Interfaces[0]}
	dA.Interfaces[0].Peers = nil
	if r := tu.na.m.Reconcile(ctx, dA); r.Err() != nil || r.Changes != 2 { // peer + its route
		t.Fatalf("remove peer: changes=%d err=%v", r.Changes, r.Err())
	}
	if err := echo(c, 1024, 1500*time.Millisecond); err == nil {
		t.Error("traffic still passes on the established connection after peer removal")
	}
	if c2, err := dial(tu.a, tu.server, 1500*time.Millisecond); err == nil {
		c2.Close()
		t.Error("new connection succeeded after peer removal")
	}
	// Put the peer back: traffic flows again.
	if r := tu.na.m.Reconcile(ctx, tu.dA); r.Err() != nil {
		t.Fatal(r.Err())
	}
	tu.connect(t)
}

func TestPrivilegedAgentRestart(t *testing.T) {
	tu := setupTunnel(t, 80)
	c := tu.connect(t)
	ctx := context.Background()
	// A stream of echoes keeps flowing while A's manager is closed and a new
	// one adopts the running device process.
	pidBefore := tu.na.launcher.Pids()[tu.ifA]
	var stop atomic.Bool
	var wg sync.WaitGroup
	var streamErr error
	var rounds atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := echo(c, 1024, 5*time.Second); err != nil {
				streamErr = err
				return
			}
			rounds.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	tu.na.stop()
	// The new agent is built the way fedgated builds it.
	m2, err := netctl.Open(netctl.HostConfig{KeyFile: tu.na.keyPath, Netns: tu.a.Path(),
		DeviceCommand: []string{os.Args[0], "wg-device"}, DeviceEnv: []string{deviceEnv + "=1"},
		DeviceLogDir: tu.na.logDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	if m2.PublicKey() != tu.na.key.PublicKey() {
		t.Fatal("restarted agent has another key")
	}
	r := m2.Reconcile(ctx, tu.dA)
	if r.Err() != nil || r.Changes != 0 {
		t.Errorf("restarted agent: changes=%d err=%v (want adoption without changes)", r.Changes, r.Err())
	}
	mid := rounds.Load()
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if streamErr != nil {
		t.Fatalf("stream interrupted by agent restart: %v", streamErr)
	}
	if rounds.Load() <= mid {
		t.Errorf("no traffic after restart: %d rounds before, %d after", mid, rounds.Load())
	}
	t.Logf("agent restart: %d echo rounds, none failed", rounds.Load())
	if pidBefore == 0 || netctl.ProcessGone(pidBefore) {
		t.Errorf("device process %d not running after agent restart", pidBefore)
	}
	st, err := m2.Status(ctx)
	if err != nil || len(st.Interfaces) != 1 || st.Interfaces[0].Backend != "userspace" {
		t.Errorf("status after restart: %+v %v", st, err)
	}
	// The new agent's Cleanup stops the device it did not start.
	if err := m2.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if !netctl.ProcessGone(pidBefore) {
		t.Errorf("device process %d survives Cleanup by the restarted agent", pidBefore)
	}
}

// arpSeen is one ARP packet captured on the far side.
type arpSeen struct {
	op       uint16
	senderHW string
	senderIP netip.Addr
	targetIP netip.Addr
}

// capture reads frames of ethertype proto arriving on dev in ns (packet
// socket, SOCK_DGRAM: payload after the Ethernet header).
func capture(t *testing.T, ns *nstest.NS, dev string, proto uint16) <-chan []byte {
	t.Helper()
	var fd int
	ns.MustDo(t, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(proto)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index})
	})
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	out := make(chan []byte, 256)
	var done atomic.Bool
	stopped := make(chan struct{})
	t.Cleanup(func() { done.Store(true); <-stopped; unix.Close(fd) })
	go func() {
		defer close(stopped)
		buf := make([]byte, 1500)
		for !done.Load() {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			select {
			case out <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	return out
}

func captureARP(t *testing.T, ns *nstest.NS, dev string) <-chan arpSeen {
	frames := capture(t, ns, dev, unix.ETH_P_ARP)
	out := make(chan arpSeen, 64)
	go func() {
		for p := range frames {
			if len(p) < 28 {
				continue
			}
			s := arpSeen{op: uint16(p[6])<<8 | uint16(p[7]), senderHW: net.HardwareAddr(p[8:14]).String()}
			s.senderIP, _ = netip.AddrFromSlice(p[14:18])
			s.targetIP, _ = netip.AddrFromSlice(p[24:28])
			select {
			case out <- s:
			default:
			}
		}
	}()
	return out
}

// naSeen is an unsolicited neighbour advertisement captured on the far side.
type naSeen struct {
	dst, target netip.Addr
	override    bool
	lladdr      string
}

func captureNA(t *testing.T, ns *nstest.NS, dev string) <-chan naSeen {
	frames := capture(t, ns, dev, unix.ETH_P_IPV6)
	out := make(chan naSeen, 64)
	go func() {
		for p := range frames {
			// IPv6 header (40) + ICMPv6 NA: type 136, flags, target (16),
			// then options (type 2 = target link-layer address).
			if len(p) < 40+24 || p[6] != 58 || p[40] != 136 {
				continue
			}
			s := naSeen{override: p[44]&0x20 != 0}
			s.dst, _ = netip.AddrFromSlice(p[24:40])
			s.target, _ = netip.AddrFromSlice(p[48:64])
			if len(p) >= 72 && p[64] == 2 && p[65] == 1 {
				s.lladdr = net.HardwareAddr(p[66:72]).String()
			}
			select {
			case out <- s:
			default:
			}
		}
	}()
	return out
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func TestPrivilegedVIP(t *testing.T) {
	a, b := wire(t, 78)
	ha := a.Handle(t)
	nstest.AddAddr(t, a, "wire0", netip.MustParsePrefix("2001:db8:78::1/64"))
	nstest.AddAddr(t, b, "wire1", netip.MustParsePrefix("2001:db8:78::2/64"))
	before := renderNS(t, ha)
	dir := t.TempDir()
	na := startNode(t, a, filepath.Join(dir, "a.key"), filepath.Join(dir, "log"))
	ctx := context.Background()
	wire0, err := ha.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	mac := wire0.Attrs().HardwareAddr.String()
	arps := captureARP(t, b, "wire1")
	nas := captureNA(t, b, "wire1")
	listen(t, a, ":7001")

	vip := netctl.VIP{Name: "site", Addr: netip.MustParsePrefix("192.168.78.100/32"), Interface: "wire0"}
	vip6 := netctl.VIP{Name: "site6", Addr: netip.MustParsePrefix("2001:db8:78::100/128"), Interface: "wire0"}
	if err := na.m.MountVIP(ctx, vip); err != nil {
		t.Fatal(err)
	}
	if err := na.m.MountVIP(ctx, vip6); err != nil {
		t.Fatal(err)
	}
	// The gratuitous ARP (request and reply forms) arrives on the far side.
	var sawReq, sawRep bool
	deadline := time.After(5 * time.Second)
	for !(sawReq && sawRep) {
		select {
		case s := <-arps:
			if s.senderIP == vip.Addr.Addr() && s.targetIP == vip.Addr.Addr() && s.senderHW == mac {
				sawReq = sawReq || s.op == 1
				sawRep = sawRep || s.op == 2
			}
		case <-deadline:
			t.Fatalf("gratuitous ARP not seen: request=%v reply=%v", sawReq, sawRep)
		}
	}
	// The unsolicited NA for the IPv6 VIP (override, target link-layer
	// address) arrives too.
	naDeadline := time.After(5 * time.Second)
	for seen := false; !seen; {
		select {
		case s := <-nas:
			seen = s.target == vip6.Addr.Addr() && s.override && s.lladdr == mac && s.dst == netip.MustParseAddr("ff02::1")
		case <-naDeadline:
			t.Fatal("unsolicited neighbour advertisement not seen")
		}
	}
	if at, ok := na.m.LastAnnounce(vip.Addr.Addr()); !ok || at.IsZero() {
		t.Errorf("LastAnnounce = %v, %v", at, ok)
	}
	// The VIPs are reachable from the other namespace.
	for _, addr := range []string{"192.168.78.100:7001", "[2001:db8:78::100]:7001"} {
		c, err := dial(b, addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial VIP %s: %v", addr, err)
		}
		if err := echo(c, 4096, 5*time.Second); err != nil {
			t.Errorf("echo via VIP %s: %v", addr, err)
		}
		c.Close()
	}
	// The IPv6 VIP was added with NODAD and carries the marker.
	addrs, err := ha.AddrList(wire0, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range addrs {
		if x.IP.Equal(vip6.Addr.Addr().AsSlice()) {
			found = true
			if x.Flags&unix.IFA_F_NODAD == 0 || x.Flags&unix.IFA_F_TENTATIVE != 0 {
				t.Errorf("ipv6 vip flags %#x: want nodad, not tentative", x.Flags)
			}
		}
	}
	if !found {
		t.Error("ipv6 vip not on wire0")
	}
	st, err := na.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.VIPs) != 2 || !st.VIPs[0].MountedHere || st.VIPs[0].LastAnnounce.IsZero() || st.VIPs[0].Source != "ha" {
		t.Errorf("vip status: %+v", st.VIPs)
	}

	// An address someone else owns is not taken over.
	foreign := netip.MustParsePrefix("192.168.78.101/32")
	nstest.AddAddr(t, a, "wire0", foreign)
	if err := na.m.MountVIP(ctx, netctl.VIP{Name: "x", Addr: foreign, Interface: "wire0"}); !errors.Is(err, netctl.ErrAddressInUse) {
		t.Errorf("mount of a foreign address: %v, want ErrAddressInUse", err)
	}

	// Unmounted: no longer reachable.
	if err := na.m.UnmountVIP(ctx, vip.Addr); err != nil {
		t.Fatal(err)
	}
	if c, err := dial(b, "192.168.78.100:7001", time.Second); err == nil {
		c.Close()
		t.Error("VIP still answers after UnmountVIP")
	}
	if err := na.m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	// Cleanup removed our VIP6 but not the foreign address.
	after := renderNS(t, ha)
	want := before + "" // plus the foreign address we added ourselves
	wantLines := append(strings.Split(want, "\n"), "addr 192.168.78.101/32 dev wire0")
	sort.Strings(wantLines)
	if diff := cmp.Diff(strings.Join(wantLines, "\n"), after); diff != "" {
		t.Errorf("after Cleanup (-want +got):\n%s", diff)
	}
}

// TestPrivilegedDeviceWithoutCapability runs the device as an unprivileged
// user: it must fail with an error naming CAP_NET_ADMIN.
func TestPrivilegedDeviceWithoutCapability(t *testing.T) {
	a := nstest.New(t, "cap")
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := randName("fg-c")
	bin, err := copyExecutable(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = a.Do(func() error {
		cmd := execDevice(bin, name, &out)
		return cmd.Run()
	})
	if err == nil {
		t.Fatal("device started without CAP_NET_ADMIN")
	}
	t.Logf("device as nobody: %v: %s", err, out.String())
	if !strings.Contains(out.String(), "CAP_NET_ADMIN") {
		t.Errorf("error does not name the capability: %q", out.String())
	}
}

// TestPrivilegedPreflight: as root the checks pass; the device process as
// nobody is covered by TestPrivilegedDeviceWithoutCapability.
func TestPrivilegedPreflight(t *testing.T) {
	nstest.RequireRoot(t)
	if err := netctl.Preflight(netctl.BackendAuto); err != nil {
		t.Fatalf("Preflight as root: %v", err)
	}
}

// TestPrivilegedReconcileRealKernel runs the reconciler against the real
// kernel (userspace WireGuard): desired VIPs, peers with IPv4 and IPv6
// allowed IPs, a foreign route that collides with one of them; the second
// pass is a no-op, marks are visible in a raw dump, Cleanup restores the
// namespace.
func TestPrivilegedReconcileRealKernel(t *testing.T) {
	a, _ := wire(t, 81)
	h := a.Handle(t)
	// Someone else's route to an allowed IP of ours.
	w0, err := h.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	_, foreign, _ := net.ParseCIDR("10.81.9.0/24")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: w0.Attrs().Index, Dst: foreign, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	before := renderNS(t, h)
	dir := t.TempDir()
	n := startNode(t, a, filepath.Join(dir, "k.key"), filepath.Join(dir, "log"))
	name := randName("fg-k")
	cleanupAll(t, n, name)
	mp := netip.MustParsePrefix
	k1, _ := wgtypes.GeneratePrivateKey()
	k2, _ := wgtypes.GeneratePrivateKey()
	d := netctl.Desired{
		Interfaces: []netctl.Interface{{Name: name, ListenPort: 51900, MTU: 1400,
			Addresses: []netip.Prefix{mp("10.81.0.1/24"), mp("fd81::1/64")},
			Peers: []netctl.Peer{
				{PublicKey: k1.PublicKey().String(), Endpoint: netip.MustParseAddrPort("192.168.81.2:51900"),
					AllowedIPs: []netip.Prefix{mp("10.81.0.2/32"), mp("fd81::2/128")}, PersistentKeepalive: 25 * time.Second},
				{PublicKey: k2.PublicKey().String(), Endpoint: netip.MustParseAddrPort("[fd81::99]:51900"),
					AllowedIPs: []netip.Prefix{mp("10.81.9.0/24")}},
				{PublicKey: "bogus", AllowedIPs: []netip.Prefix{mp("10.81.7.0/24")}},
			}}},
		VIPs: []netctl.VIP{
			{Name: "v4", Addr: mp("192.168.81.100/32"), Interface: "wire0"},
			{Name: "v6", Addr: mp("fd81:1::100/128"), Interface: "wire0"},
			{Name: "gone", Addr: mp("192.168.81.101/32"), Interface: "nosuch0"},
		},
	}
	ctx := context.Background()
	r := n.m.Reconcile(ctx, d)
	var kinds []string
	for _, e := range r.Errors {
		kinds = append(kinds, e.Kind+":"+e.ID)
	}
	sort.Strings(kinds)
	want := []string{"peer:" + name + "/bogus", "route:" + name + "/10.81.9.0/24", "vip:gone"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("reported objects (-want +got):\n%s\n%v", diff, r.Err())
	}
	for _, e := range r.Errors {
		if e.Kind == "route" && !errors.Is(e, netctl.ErrAddressInUse) {
			t.Errorf("foreign route: %v, want ErrAddressInUse", e)
		}
		if e.Kind == "vip" && !errors.Is(e, netctl.ErrNoInterface) {
			t.Errorf("missing interface: %v, want ErrNoInterface", e)
		}
	}
	// Second pass: nothing to do but the same reports.
	r2 := n.m.Reconcile(ctx, d)
	if r2.Changes != 0 || len(r2.Errors) != len(r.Errors) {
		t.Errorf("second pass: changes=%d errors=%v", r2.Changes, r2.Err())
	}
	snap, err := n.nl.Dump()
	if err != nil {
		t.Fatal(err)
	}
	marked := map[string]bool{}
	for _, ad := range snap.Addrs {
		if ad.Marked() {
			marked[ad.Prefix.String()] = true
		}
	}
	wantMarked := map[string]bool{"10.81.0.1/24": true, "fd81::1/64": true, "192.168.81.100/32": true, "fd81:1::100/128": true}
	if diff := cmp.Diff(wantMarked, marked); diff != "" {
		t.Errorf("marked addresses (-want +got):\n%s", diff)
	}
	var routes []string
	for _, rt := range snap.Routes {
		routes = append(routes, rt.Dst.String())
	}
	sort.Strings(routes)
	if diff := cmp.Diff([]string{"10.81.0.2/32", "fd81::2/128"}, routes); diff != "" {
		t.Errorf("fedgate routes (-want +got):\n%s", diff)
	}
	l, err := h.LinkByName(name)
	if err != nil || l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("link %s: %v %+v", name, err, l)
	}
	if err := n.m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, renderNS(t, h)); diff != "" {
		t.Errorf("after Cleanup (-before +after):\n%s", diff)
	}
}

// TestPrivilegedRunRepairsVIP: Run reacts to kernel change events: a VIP
// address deleted from the outside is re-mounted (and re-announced) without
// waiting for the resync.
func TestPrivilegedRunRepairsVIP(t *testing.T) {
	a, b := wire(t, 83)
	h := a.Handle(t)
	dir := t.TempDir()
	key, err := netctl.LoadOrCreateKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netctl.NewNetlink(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	wg, err := netctl.NewWGClient(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	m, err := netctl.New(netctl.Config{WG: wg, Netlink: nl, Backend: netctl.BackendKernel, PrivateKey: key,
		Announcer: netctl.NewAnnouncer(a.Path()), Logger: testLogger(t), Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	arps := captureARP(t, b, "wire1")
	vip := netctl.VIP{Name: "site", Addr: netip.MustParsePrefix("192.168.83.100/32"), Interface: "wire0"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch := make(chan netctl.Desired, 1)
	ch <- netctl.Desired{VIPs: []netctl.VIP{vip}}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ch) }()
	defer func() {
		cancel()
		<-done
		_ = m.Cleanup(context.Background())
	}()
	mounted := func() bool {
		addrs, _ := h.AddrList(nil, netlink.FAMILY_V4)
		for _, x := range addrs {
			if x.IP.Equal(vip.Addr.Addr().AsSlice()) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !mounted() {
		if time.Now().After(deadline) {
			t.Fatal("VIP never mounted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, _ := h.LinkByName("wire0")
	a4, _ := netlink.ParseAddr("192.168.83.100/32")
	for len(arps) > 0 {
		<-arps
	}
	start := time.Now()
	if err := h.AddrDel(l, a4); err != nil {
		t.Fatal(err)
	}
	for !mounted() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("VIP not re-mounted after an outside delete")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("VIP re-mounted %v after an outside delete", time.Since(start))
	select {
	case <-arps:
	case <-time.After(5 * time.Second):
		t.Error("re-mounted VIP not re-announced")
	}
}

// TestPrivilegedDeviceSurvivesNetlinkFlood: a burst of address changes
// overflows the device's netlink listener (ENOBUFS) while it is busy (here:
// stopped); the userspace device must keep running and passing traffic.
// Upstream wireguard-go closes the device on that error.
func TestPrivilegedDeviceSurvivesNetlinkFlood(t *testing.T) {
	tu := setupTunnel(t, 85)
	c := tu.connect(t)
	pid := tu.na.launcher.Pids()[tu.ifA]
	if pid == 0 {
		t.Fatal("no device pid")
	}
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = unix.Kill(pid, unix.SIGCONT)
		}
	}()
	h := tu.a.Handle(t)
	l, err := h.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4000; i++ {
		a, _ := netlink.ParseAddr(fmt.Sprintf("172.20.%d.%d/32", i/250, i%250+1))
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Kill(pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	time.Sleep(500 * time.Millisecond)
	if netctl.ProcessGone(pid) {
		out, _ := os.ReadFile(filepath.Join(tu.na.logDir, "wg-"+tu.ifA+".log"))
		t.Fatalf("device process died after the netlink flood:\n%s", out)
	}
	if err := echo(c, 64<<10, 10*time.Second); err != nil {
		t.Fatalf("tunnel broken after the netlink flood: %v", err)
	}
	out, _ := os.ReadFile(filepath.Join(tu.na.logDir, "wg-"+tu.ifA+".log"))
	if !strings.Contains(string(out), "ENOBUFS") {
		t.Errorf("the flood did not overflow the device's netlink listener; test proves nothing:\n%s", out)
	}
}
