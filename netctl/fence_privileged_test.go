package netctl_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/powernode/fedgate/internal/nstest"
	"github.com/powernode/fedgate/netctl"
)

// fencedNode is an agent's netctl with the real L2 fence in a namespace.
type fencedNode struct {
	m     *netctl.Manager
	fence *netctl.L2Fence
	nl    *netctl.RealNetlink
}

func startFenced(t *testing.T, ns *nstest.NS, lease time.Duration) *fencedNode {
	t.Helper()
	nl, err := netctl.NewNetlink(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	wg, err := netctl.NewWGClient(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	f := netctl.NewFenceConfig(netctl.FenceConfig{Netns: ns.Path(), Logger: testLogger(t)})
	m, err := netctl.New(netctl.Config{WG: wg, Netlink: nl, Backend: netctl.BackendKernel,
		Announcer: netctl.NewAnnouncer(ns.Path()), Fence: f, Logger: testLogger(t), PrivateKey: nodeKey,
		VIPLease: lease, AnnounceBurstInterval: 100 * time.Millisecond, AnnounceRefresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	n := &fencedNode{m: m, fence: f, nl: nl}
	t.Cleanup(func() { m.Close(); nl.Close(); wg.Close() })
	return n
}

// frame is one Ethernet frame seen on a link.
type frame struct {
	at time.Time
	b  []byte
}

// sniffer records every frame on a link of a namespace and sends frames
// there.
type sniffer struct {
	c      *packet.Conn
	hw     net.HardwareAddr
	mu     sync.Mutex
	frames []frame
}

func sniff(t *testing.T, ns *nstest.NS, dev string) *sniffer {
	t.Helper()
	s := &sniffer{}
	ns.MustDo(t, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		s.hw = ifi.HardwareAddr
		s.c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := s.c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.frames = append(s.frames, frame{time.Now(), append([]byte(nil), buf[:n]...)})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.c.Close(); <-done })
	return s
}

func (s *sniffer) send(t *testing.T, f []byte) {
	t.Helper()
	if _, err := s.c.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
		t.Fatal(err)
	}
}

func (s *sniffer) since(t0 time.Time) []frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []frame
	for _, f := range s.frames {
		if !f.at.Before(t0) {
			out = append(out, f)
		}
	}
	return out
}

// l2Event is an ARP or neighbour-discovery frame about addr, as the
// observer classifies it.
type l2Event struct {
	kind string // "arp-reply", "garp", "na", "unsolicited-na"
	from string // Ethernet source
}

func classify(f []byte, addr netip.Addr) (l2Event, bool) {
	var fr ethernet.Frame
	if fr.UnmarshalBinary(f) != nil {
		return l2Event{}, false
	}
	switch fr.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if p.UnmarshalBinary(fr.Payload) != nil || p.SenderIP != addr {
			return l2Event{}, false
		}
		if p.Operation == arp.OperationRequest || p.TargetIP == addr {
			return l2Event{"garp", fr.Source.String()}, true
		}
		return l2Event{"arp-reply", fr.Source.String()}, true
	case ethernet.EtherTypeIPv6:
		ip := fr.Payload
		if len(ip) < 40 || ip[6] != 58 {
			return l2Event{}, false
		}
		m, err := ndp.ParseMessage(ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:6]))])
		if err != nil {
			return l2Event{}, false
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != addr {
			return l2Event{}, false
		}
		if na.Solicited {
			return l2Event{"na", fr.Source.String()}, true
		}
		return l2Event{"unsolicited-na", fr.Source.String()}, true
	}
	return l2Event{}, false
}

// answers returns who answered (ARP replies or solicited NAs) for addr in
// frames seen since t0, sorted, with repeats.
func (s *sniffer) answers(t0 time.Time, addr netip.Addr) []string {
	var out []string
	for _, f := range s.since(t0) {
		if e, ok := classify(f.b, addr); ok && (e.kind == "arp-reply" || e.kind == "na") {
			out = append(out, e.from)
		}
	}
	sort.Strings(out)
	return out
}

func (s *sniffer) announcements(t0 time.Time, addr netip.Addr) []string {
	var out []string
	for _, f := range s.since(t0) {
		if e, ok := classify(f.b, addr); ok && (e.kind == "garp" || e.kind == "unsolicited-na") {
			out = append(out, e.kind+" "+e.from)
		}
	}
	return out
}

// quiet waits until no announcement for addr has been seen for d (a
// burst on a loaded machine can run late), at most 5 s.
func (s *sniffer) quiet(t *testing.T, addr netip.Addr, d time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		time.Sleep(d / 4)
		if time.Since(start) >= d && len(s.announcements(time.Now().Add(-d), addr)) == 0 {
			return
		}
	}
	t.Fatalf("announcements for %s never stopped: %v", addr, s.announcements(start, addr))
}

// ask sends one who-has (IPv4, through mdlayher/arp's client) or one
// neighbour solicitation (IPv6) for addr from b, and returns who answered
// within wait.
func ask(t *testing.T, b *nstest.NS, s *sniffer, src, addr netip.Addr, wait time.Duration) []string {
	t.Helper()
	t0 := time.Now()
	if addr.Is4() {
		var cl *arp.Client
		b.MustDo(t, func() error {
			ifi, err := net.InterfaceByName("wire1")
			if err != nil {
				return err
			}
			cl, err = arp.Dial(ifi)
			return err
		})
		defer cl.Close()
		if err := cl.Request(addr); err != nil {
			t.Fatal(err)
		}
	} else {
		s.send(t, nsRequestFrame(t, s.hw, src, addr))
	}
	time.Sleep(wait)
	return s.answers(t0, addr)
}

// nsRequestFrame is a neighbour solicitation for target from src, with a
// source link-layer address option, to target's solicited-node group.
func nsRequestFrame(t *testing.T, hw net.HardwareAddr, src, target netip.Addr) []byte {
	t.Helper()
	dst, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		t.Fatal(err)
	}
	m := &ndp.NeighborSolicitation{TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: hw}}}
	icmp, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	ip := make([]byte, 40, 40+len(icmp))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = 58, 255
	s16, d16 := src.As16(), dst.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	fr := ethernet.Frame{Destination: net.HardwareAddr{0x33, 0x33, d16[12], d16[13], d16[14], d16[15]},
		Source: hw, EtherType: ethernet.EtherTypeIPv6, Payload: append(ip, icmp...)}
	b, err := fr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nftTables(t *testing.T, ns *nstest.NS) []string {
	t.Helper()
	var out []string
	ns.MustDo(t, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		ts, err := c.ListTables()
		if err != nil {
			return err
		}
		for _, x := range ts {
			out = append(out, x.Name)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// TestPrivilegedFence: on the real kernel, with a VIP mounted in namespace a
// and asked for from namespace b over a veth pair:
//   - the holder process answers (one ARP reply, one solicited NA, from a's
//     MAC) while the kernel's own replies are dropped (the rule's counter);
//     addresses that are not HA VIPs are answered by the kernel as before;
//   - the gratuitous ARP and unsolicited NA announcements get through;
//   - with the responder gone (the process killed or frozen) nobody answers
//     although the address is still on the link;
//   - a restarted process that mounts the VIP answers again; unmounting
//     removes the set elements; cleanup removes the tables and leaves the
//     namespace as it was.
func TestPrivilegedFence(t *testing.T) {
	a, b := wire(t, 86)
	nstest.AddAddr(t, a, "wire0", mp("2001:db8:86::1/64"))
	nstest.AddAddr(t, b, "wire1", mp("2001:db8:86::2/64"))
	ha, hb := a.Handle(t), b.Handle(t)
	before := renderNS(t, ha)
	la, err := ha.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	aMAC := la.Attrs().HardwareAddr.String()
	s := sniff(t, b, "wire1")
	src4, src6 := netip.MustParseAddr("192.168.86.2"), netip.MustParseAddr("2001:db8:86::2")
	own4, own6 := netip.MustParseAddr("192.168.86.1"), netip.MustParseAddr("2001:db8:86::1")
	v4 := netctl.VIP{Name: "v4", Addr: mp("192.168.86.100/32"), Interface: "wire0"}
	v6 := netctl.VIP{Name: "v6", Addr: mp("2001:db8:86::100/128"), Interface: "wire0"}
	const wait = 300 * time.Millisecond
	ctx := context.Background()
	_ = hb

	// The probe works: the kernel answers for a's own addresses.
	for _, own := range []netip.Addr{own4, own6} {
		src := src4
		if own.Is6() {
			src = src6
		}
		if got := ask(t, b, s, src, own, wait); !cmp.Equal(got, []string{aMAC}) {
			t.Fatalf("who-has %s (not a VIP): answered by %v, want the kernel of a (%s)", own, got, aMAC)
		}
	}

	n1 := startFenced(t, a, 30*time.Second)
	t0 := time.Now()
	for _, v := range []netctl.VIP{v4, v6} {
		if err := n1.m.MountVIP(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(wait)
	for _, v := range []netctl.VIP{v4, v6} {
		want := "garp " + aMAC
		if v.Addr.Addr().Is6() {
			want = "unsolicited-na " + aMAC
		}
		if got := s.announcements(t0, v.Addr.Addr()); len(got) == 0 || got[0] != want {
			t.Errorf("announcements of %s: %v, want %s first", v.Addr, got, want)
		}
	}
	k, err := n1.fence.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{v4.Addr.Addr(), v6.Addr.Addr()}, k.Addrs, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" || !k.ARP || !k.IP6 {
		t.Fatalf("fence in the kernel: %+v (-want +got addrs):\n%s", k, diff)
	}

	// The holder answers, exactly once; the kernel's reply is dropped.
	if got := ask(t, b, s, src4, v4.Addr.Addr(), wait); !cmp.Equal(got, []string{aMAC}) {
		t.Errorf("who-has %s: answered by %v, want once by a (%s)", v4.Addr, got, aMAC)
	}
	if got := ask(t, b, s, src6, v6.Addr.Addr(), wait); !cmp.Equal(got, []string{aMAC}) {
		t.Errorf("NS for %s: answered by %v, want once by a (%s)", v6.Addr, got, aMAC)
	}
	st := n1.fence.Stats()
	k1, err := n1.fence.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("responder %+v; kernel drops arp=%d na=%d", st, k1.DroppedARP, k1.DroppedNA)
	if st.ARPReplies == 0 || st.NAReplies == 0 || k1.DroppedARP == 0 || k1.DroppedNA == 0 {
		t.Errorf("want replies from the responder and drops of the kernel's own: %+v, %+v", st, k1)
	}
	// Not VIPs: still the kernel's.
	if got := ask(t, b, s, src4, own4, wait); !cmp.Equal(got, []string{aMAC}) {
		t.Errorf("who-has %s with the fence up: %v", own4, got)
	}

	// Killed or frozen: the responder is gone, the address and the fence
	// stay. Nobody answers.
	n1.m.Close()
	for _, v := range []netctl.VIP{v4, v6} {
		src := src4
		if v.Addr.Addr().Is6() {
			src = src6
		}
		if got := ask(t, b, s, src, v.Addr.Addr(), 2*wait); len(got) != 0 {
			t.Errorf("%s with its holder's responder gone: answered by %v", v.Addr, got)
		}
		if _, ok := findAddr(t, n1.nl, la.Attrs().Index, v.Addr); !ok {
			t.Fatalf("%s no longer on the link: the test proves nothing", v.Addr)
		}
	}
	k2, err := n1.fence.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if k2.DroppedARP <= k1.DroppedARP || k2.DroppedNA <= k1.DroppedNA {
		t.Errorf("the kernel did not try to answer (drops %+v then %+v)", k1, k2)
	}

	// A restarted process mounts the VIPs again and answers.
	n2 := startFenced(t, a, 30*time.Second)
	for _, v := range []netctl.VIP{v4, v6} {
		if err := n2.m.MountVIP(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if got := ask(t, b, s, src4, v4.Addr.Addr(), wait); !cmp.Equal(got, []string{aMAC}) {
		t.Errorf("after the restart, who-has %s: %v", v4.Addr, got)
	}
	if got := ask(t, b, s, src6, v6.Addr.Addr(), wait); !cmp.Equal(got, []string{aMAC}) {
		t.Errorf("after the restart, NS for %s: %v", v6.Addr, got)
	}
	// Unmounting removes the set elements (the tables stay).
	if err := n2.m.UnmountVIP(ctx, v4.Addr); err != nil {
		t.Fatal(err)
	}
	k3, err := n2.fence.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(k3.Addrs, []netip.Addr{v6.Addr.Addr()}, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })) || !k3.ARP {
		t.Errorf("after unmounting %s: %+v", v4.Addr, k3)
	}
	if err := n2.m.UnmountVIP(ctx, v6.Addr); err != nil {
		t.Fatal(err)
	}
	if k4, err := n2.fence.Kernel(); err != nil || len(k4.Addrs) != 0 {
		t.Errorf("after unmounting both: %+v, %v", k4, err)
	}
	// Cleanup: the tables go and the namespace is as it was.
	if err := n2.m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := nftTables(t, a); len(got) != 0 {
		t.Errorf("nftables tables after cleanup: %v", got)
	}
	if diff := cmp.Diff(before, renderNS(t, ha)); diff != "" {
		t.Errorf("namespace after cleanup (-before +after):\n%s", diff)
	}
	if err := n2.m.Cleanup(ctx); err != nil { // idempotent
		t.Errorf("second cleanup: %v", err)
	}
}

// holder is a VIP holder process (runHolder) in a namespace.
type holder struct {
	cmd  *exec.Cmd
	out  *bufio.Scanner
	done <-chan struct{}
}

func startHolder(t *testing.T, ns *nstest.NS, iface string, vips ...netip.Prefix) *holder {
	t.Helper()
	var list []string
	for _, v := range vips {
		list = append(list, v.String())
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], iface, strings.Join(list, ","))
	cmd.Env = append(os.Environ(), holderEnv+"=1")
	cmd.Stdout, cmd.Stderr = pw, tLogWriter{t}
	h := &holder{cmd: cmd, out: bufio.NewScanner(pr)}
	h.done = ns.Start(t, cmd, 3*time.Second)
	pw.Close()
	t.Cleanup(func() { pr.Close() })
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT) }) // before Start's SIGTERM
	h.expect(t, "ready")
	return h
}

func (h *holder) expect(t *testing.T, line string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if h.out.Scan() {
			got <- h.out.Text()
		}
		close(got)
	}()
	select {
	case l := <-got:
		if l != line {
			t.Fatalf("holder said %q, want %q", l, line)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("holder did not say %q", line)
	}
}

func (h *holder) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := h.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedFenceSignals: a real holder process. SIGSTOPped, nobody
// answers for its VIPs although they stay on the link (its kernel's replies
// are dropped, its responder does not run); after SIGCONT it stays silent
// (it did not run for longer than StallAfter) until its next renewal,
// although its lease has time left. SIGKILLed, nobody answers either.
func TestPrivilegedFenceSignals(t *testing.T) {
	a, b := wire(t, 87)
	nstest.AddAddr(t, b, "wire1", mp("2001:db8:87::2/64"))
	la, err := a.Handle(t).LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	aMAC := la.Attrs().HardwareAddr.String()
	nl, err := netctl.NewNetlink(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	s := sniff(t, b, "wire1")
	v4, v6 := mp("192.168.87.100/32"), mp("2001:db8:87::100/128")
	src := map[bool]netip.Addr{false: netip.MustParseAddr("192.168.87.2"), true: netip.MustParseAddr("2001:db8:87::2")}
	h := startHolder(t, a, "wire0", v4, v6)
	const wait = 300 * time.Millisecond
	answered := func(when string, want []string) {
		t.Helper()
		for _, v := range []netip.Prefix{v4, v6} {
			if got := ask(t, b, s, src[v.Addr().Is6()], v.Addr(), wait); !cmp.Equal(got, want) {
				t.Errorf("%s: %s answered by %v, want %v", when, v.Addr(), got, want)
			}
			if _, ok := findAddr(t, nl, la.Attrs().Index, v); !ok {
				t.Fatalf("%s: %s not on the link", when, v)
			}
		}
	}
	answered("running", []string{aMAC})
	h.signal(t, syscall.SIGSTOP)
	answered("stopped", nil)
	h.signal(t, syscall.SIGCONT)
	answered("resumed", nil)
	h.signal(t, syscall.SIGUSR1)
	h.expect(t, "renewed")
	answered("renewed", []string{aMAC})
	h.signal(t, syscall.SIGKILL)
	<-h.done
	answered("killed", nil)
}

// TestPrivilegedFenceLinkFlap: the VIP's link goes down and up under a
// held VIP. The responder's socket reports the link down once and must go
// on answering afterwards — before, it stopped for good while the fence
// kept dropping the kernel's replies, and nobody answered for the VIP.
func TestPrivilegedFenceLinkFlap(t *testing.T) {
	a, b := wire(t, 87)
	ha := a.Handle(t)
	la, err := ha.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	aMAC := la.Attrs().HardwareAddr.String()
	s := sniff(t, b, "wire1")
	src := netip.MustParseAddr("192.168.87.2")
	v := netctl.VIP{Name: "v4", Addr: mp("192.168.87.100/32"), Interface: "wire0"}
	const wait = 300 * time.Millisecond
	n := startFenced(t, a, 30*time.Second)
	if err := n.m.MountVIP(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, b, s, src, v.Addr.Addr(), wait); !cmp.Equal(got, []string{aMAC}) {
		t.Fatalf("before the flap: answered by %v, want %s", got, aMAC)
	}
	for i := range 3 {
		if err := ha.LinkSetDown(la); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if err := ha.LinkSetUp(la); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // carrier back on the veth pair
		before := n.fence.Stats().ARPReplies
		if got := ask(t, b, s, src, v.Addr.Addr(), wait); !cmp.Equal(got, []string{aMAC}) {
			t.Fatalf("after flap %d: answered by %v, want %s (the holder's responder)", i+1, got, aMAC)
		}
		if after := n.fence.Stats().ARPReplies; after <= before {
			t.Fatalf("after flap %d: the answer did not come from the responder (%d replies before, %d after)", i+1, before, after)
		}
	}
}

// TestPrivilegedFenceMACChange: the VIP's link gets a new MAC on the same
// index (a bond with fail_over_mac, `ip link set address`). After the next
// reconcile pass the holder announces and answers with the new MAC — not
// the old one the NIC no longer accepts, while the kernel's replies (with
// the right MAC) are dropped.
func TestPrivilegedFenceMACChange(t *testing.T) {
	a, b := wire(t, 88)
	ha := a.Handle(t)
	la, err := ha.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	s := sniff(t, b, "wire1")
	src := netip.MustParseAddr("192.168.88.2")
	v := netctl.VIP{Name: "v4", Addr: mp("192.168.88.100/32"), Interface: "wire0"}
	const wait = 300 * time.Millisecond
	ctx := context.Background()
	n := startFenced(t, a, 30*time.Second)
	if err := n.m.MountVIP(ctx, v); err != nil {
		t.Fatal(err)
	}
	old := la.Attrs().HardwareAddr.String()
	if got := ask(t, b, s, src, v.Addr.Addr(), wait); !cmp.Equal(got, []string{old}) {
		t.Fatalf("before: answered by %v, want %s", got, old)
	}
	newMAC := net.HardwareAddr{0x02, 0x88, 0, 0, 0, 0x42}
	if err := ha.LinkSetHardwareAddr(la, newMAC); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	n.m.Reconcile(ctx, netctl.Desired{}) // what the netlink link event triggers
	if err := n.m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait)
	if got := s.announcements(t0, v.Addr.Addr()); len(got) == 0 || got[0] != "garp "+newMAC.String() {
		t.Errorf("announcements after the MAC change: %v, want garp %s first", got, newMAC)
	}
	if got := ask(t, b, s, src, v.Addr.Addr(), wait); !cmp.Equal(got, []string{newMAC.String()}) {
		t.Fatalf("after the MAC change: answered by %v, want %s", got, newMAC)
	}
}

// TestPrivilegedFenceKernelAnnouncement: with arp_notify set, the kernel
// broadcasts a gratuitous who-has for a link's first IPv4 address when the
// link comes up — here the held VIP (the link has no other IPv4 address).
// A silenced holder's kernel must not re-claim the VIP that way: the fence
// drops ARP requests for a fenced address, and counts them.
func TestPrivilegedFenceKernelAnnouncement(t *testing.T) {
	a, b := nstest.New(t, "a"), nstest.New(t, "b")
	nstest.Veth(t, a, "wire0", b, "wire1")
	ha := a.Handle(t)
	la, err := ha.LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	s := sniff(t, b, "wire1")
	v := netctl.VIP{Name: "v4", Addr: mp("192.168.89.100/32"), Interface: "wire0"}
	n := startFenced(t, a, 30*time.Second)
	if err := n.m.MountVIP(context.Background(), v); err != nil {
		t.Fatal(err)
	}
	a.MustDo(t, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/wire0/arp_notify", []byte("1"), 0o644)
	})
	s.quiet(t, v.Addr.Addr(), 400*time.Millisecond) // the mount's own announcements are over
	k0, err := n.fence.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := ha.LinkSetDown(la); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := ha.LinkSetUp(la); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := s.announcements(t0, v.Addr.Addr()); len(got) != 0 {
		t.Errorf("gratuitous ARP for the fenced VIP after link up: %v, want none", got)
	}
	k1, err := n.fence.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if k1.DroppedARP <= k0.DroppedARP {
		t.Errorf("the kernel's arp_notify request was not dropped by the fence (dropped %d before, %d after)", k0.DroppedARP, k1.DroppedARP)
	}
}
