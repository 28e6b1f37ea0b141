package netctl_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/netctltest"
)

// key returns a deterministic key whose base64 starts with a recognisable
// byte pattern.
func key(b byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func pub(b byte) string { return key(b).String() }

var errBoom = errors.New("boom")

var nodeKey = func() wgtypes.Key { k := key(0x42); return k }()

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newManager(t testing.TB, h *netctltest.Host) *netctl.Manager {
	t.Helper()
	m, err := netctl.New(netctl.Config{
		WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(), Announcer: h.Announcer(),
		Logger: testLogger(t), PrivateKey: nodeKey, AnnounceRefresh: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var eth0MAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}

func newHost(kernel bool) *netctltest.Host {
	h := netctltest.NewHost(kernel)
	h.AddLink("eth0", "veth", eth0MAC)
	return h
}

func mp(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func ifaceA(peers ...netctl.Peer) netctl.Interface {
	return netctl.Interface{Name: "fg-a", ListenPort: 51820, Addresses: []netip.Prefix{mp("10.90.0.1/24")}, Peers: peers}
}

var (
	peer1 = netctl.Peer{PublicKey: pub(1), Endpoint: netip.MustParseAddrPort("192.0.2.1:51820"),
		AllowedIPs: []netip.Prefix{mp("10.90.0.2/32"), mp("10.91.0.0/16")}, PersistentKeepalive: 25 * time.Second}
	peer2 = netctl.Peer{PublicKey: pub(2), AllowedIPs: []netip.Prefix{mp("10.90.0.3/32"), mp("fd00:90::3/128")}}
	vip1  = netctl.VIP{Name: "site", Addr: mp("192.0.2.100/32"), Interface: "eth0"}
	vip6  = netctl.VIP{Name: "site6", Addr: mp("2001:db8::100/128"), Interface: "eth0"}
)

const baseLinks = "link eth0 veth mtu=1500 up\nlink lo device mtu=1500 up\n"

type state struct {
	name    string
	desired netctl.Desired
	want    string // Render() after reconcile
	errs    []string
}

var states = []state{
	{
		name: "empty",
		want: baseLinks,
	},
	{
		name:    "one interface, one peer",
		desired: netctl.Desired{Interfaces: []netctl.Interface{ifaceA(peer1)}},
		want: baseLinks[:len("link eth0 veth mtu=1500 up\n")] + `link fg-a tuntap mtu=1420 up
  addr 10.90.0.1/24 fedgate
  route 10.90.0.2/32 proto=0xfe
  route 10.91.0.0/16 proto=0xfe
  wg pub=` + nodeKey.PublicKey().String()[:8] + ` port=51820
    peer AQEBAQEB endpoint=192.0.2.1:51820 allowed=10.90.0.2/32,10.91.0.0/16 keepalive=25s
link lo device mtu=1500 up
`,
	},
	{
		name: "two peers, vips, custom mtu",
		desired: netctl.Desired{
			Interfaces: []netctl.Interface{func() netctl.Interface { i := ifaceA(peer1, peer2); i.MTU = 1380; return i }()},
			VIPs:       []netctl.VIP{vip1, vip6},
		},
		want: `link eth0 veth mtu=1500 up
  addr 192.0.2.100/32 fedgate
  addr 2001:db8::100/128 fedgate nodad
link fg-a tuntap mtu=1380 up
  addr 10.90.0.1/24 fedgate
  route 10.90.0.2/32 proto=0xfe
  route 10.90.0.3/32 proto=0xfe
  route 10.91.0.0/16 proto=0xfe
  route fd00:90::3/128 proto=0xfe
  wg pub=` + nodeKey.PublicKey().String()[:8] + ` port=51820
    peer AQEBAQEB endpoint=192.0.2.1:51820 allowed=10.90.0.2/32,10.91.0.0/16 keepalive=25s
    peer AgICAgIC endpoint=- allowed=10.90.0.3/32,fd00:90::3/128 keepalive=0s
link lo device mtu=1500 up
`,
	},
	{
		name: "bad peer refused, rest applied; bad interface refused",
		desired: netctl.Desired{Interfaces: []netctl.Interface{
			ifaceA(peer2, netctl.Peer{PublicKey: "not-a-key"}, netctl.Peer{PublicKey: pub(3), Endpoint: netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), 1)}),
			{Name: "fg-much-too-long-name", ListenPort: 1},
		}},
		want: `link eth0 veth mtu=1500 up
link fg-a tuntap mtu=1420 up
  addr 10.90.0.1/24 fedgate
  route 10.90.0.3/32 proto=0xfe
  route fd00:90::3/128 proto=0xfe
  wg pub=` + nodeKey.PublicKey().String()[:8] + ` port=51820
    peer AgICAgIC endpoint=- allowed=10.90.0.3/32,fd00:90::3/128 keepalive=0s
link lo device mtu=1500 up
`,
		errs: []string{
			"peer fg-a/not-a-key: invalid desired object",
			"peer fg-a/AwMD",
			"interface fg-much-too-long-name: interface name too long",
		},
	},
	{
		name: "interface address widened, ipv6 address added",
		desired: netctl.Desired{Interfaces: []netctl.Interface{{Name: "fg-a", ListenPort: 51820,
			Addresses: []netip.Prefix{mp("10.90.0.1/16"), mp("fd00:90::1/64")}, Peers: []netctl.Peer{peer1}}}},
		want: `link eth0 veth mtu=1500 up
link fg-a tuntap mtu=1420 up
  addr 10.90.0.1/16 fedgate
  addr fd00:90::1/64 fedgate nodad
  route 10.90.0.2/32 proto=0xfe
  route 10.91.0.0/16 proto=0xfe
  wg pub=` + nodeKey.PublicKey().String()[:8] + ` port=51820
    peer AQEBAQEB endpoint=192.0.2.1:51820 allowed=10.90.0.2/32,10.91.0.0/16 keepalive=25s
link lo device mtu=1500 up
`,
	},
	{
		name: "second interface, vip moved",
		desired: netctl.Desired{
			Interfaces: []netctl.Interface{ifaceA(peer1), {Name: "fg-b", ListenPort: 51821, Peers: []netctl.Peer{peer2}}},
			VIPs:       []netctl.VIP{{Name: "site", Addr: mp("192.0.2.100/32"), Interface: "fg-b"}},
		},
		want: `link eth0 veth mtu=1500 up
link fg-a tuntap mtu=1420 up
  addr 10.90.0.1/24 fedgate
  route 10.90.0.2/32 proto=0xfe
  route 10.91.0.0/16 proto=0xfe
  wg pub=` + nodeKey.PublicKey().String()[:8] + ` port=51820
    peer AQEBAQEB endpoint=192.0.2.1:51820 allowed=10.90.0.2/32,10.91.0.0/16 keepalive=25s
link fg-b tuntap mtu=1420 up
  addr 192.0.2.100/32 fedgate
  route 10.90.0.3/32 proto=0xfe
  route fd00:90::3/128 proto=0xfe
  wg pub=` + nodeKey.PublicKey().String()[:8] + ` port=51821
    peer AgICAgIC endpoint=- allowed=10.90.0.3/32,fd00:90::3/128 keepalive=0s
link lo device mtu=1500 up
`,
	},
}

func errStrings(r netctl.Result) []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, e.Error())
	}
	return out
}

func checkState(t *testing.T, h *netctltest.Host, m *netctl.Manager, s state) {
	t.Helper()
	res := m.Reconcile(context.Background(), s.desired)
	if diff := cmp.Diff(s.want, h.Render()); diff != "" {
		t.Errorf("state %q: render mismatch (-want +got):\n%s", s.name, diff)
	}
	got := errStrings(res)
	if len(got) != len(s.errs) {
		t.Errorf("state %q: errors %q, want prefixes %q", s.name, got, s.errs)
	} else {
		for i := range got {
			if !strings.HasPrefix(got[i], s.errs[i]) {
				t.Errorf("state %q: error %d = %q, want prefix %q", s.name, i, got[i], s.errs[i])
			}
		}
	}
	// A second pass is a no-op.
	h.ResetOps()
	res2 := m.Reconcile(context.Background(), s.desired)
	if ops := h.Ops(); len(ops) != 0 || res2.Changes != 0 {
		t.Errorf("state %q: second pass not a no-op: ops=%v changes=%d", s.name, ops, res2.Changes)
	}
}

func TestReconcileStates(t *testing.T) {
	h := newHost(false)
	m := newManager(t, h)
	for _, s := range states {
		checkState(t, h, m, s)
	}
	// Replay in random orders: the result depends only on the desired state.
	for round := 0; round < 5; round++ {
		order := rand.Perm(len(states))
		t.Logf("order %v", order)
		for _, i := range order {
			checkState(t, h, m, states[i])
		}
	}
	checkState(t, h, m, states[0])
}

func TestReconcileAdoptsAfterRestart(t *testing.T) {
	h := newHost(true)
	d := states[2].desired
	m1 := newManager(t, h)
	if r := m1.Reconcile(context.Background(), d); len(r.Errors) != 0 {
		t.Fatal(r.Err())
	}
	m1.Close()
	before := h.Render()
	h.ResetOps()
	m2 := newManager(t, h)
	r := m2.Reconcile(context.Background(), d)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if diff := cmp.Diff(before, h.Render()); diff != "" {
		t.Errorf("restart changed state:\n%s", diff)
	}
	if ops := h.Ops(); len(ops) != 0 {
		t.Errorf("restart issued mutations: %v", ops)
	}
	if !strings.Contains(before, "fg-a wireguard") {
		t.Errorf("kernel backend not used:\n%s", before)
	}
}

func TestReconcileMinimalPeerDiff(t *testing.T) {
	h := newHost(true)
	m := newManager(t, h)
	ctx := context.Background()
	var peers []netctl.Peer
	for i := 1; i <= 20; i++ {
		peers = append(peers, netctl.Peer{PublicKey: pub(byte(i)), AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 90, 1, byte(i)}), 32)}})
	}
	d := netctl.Desired{Interfaces: []netctl.Interface{ifaceA(peers...)}}
	if r := m.Reconcile(ctx, d); r.Err() != nil {
		t.Fatal(r.Err())
	}
	// Change one peer, remove one.
	peers[3].Endpoint = netip.MustParseAddrPort("[2001:db8::7]:4000")
	d.Interfaces[0].Peers = append(peers[:10:10], peers[11:]...)
	h.ResetOps()
	r := m.Reconcile(ctx, d)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	want := map[string]int{"wg-config": 1, "route-del": 1}
	if diff := cmp.Diff(want, h.Ops()); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	if r.Changes != 3 { // one update + one remove peer + one route
		t.Errorf("changes = %d, want 3", r.Changes)
	}
}

func TestReconcileFailureIsolated(t *testing.T) {
	h := newHost(false)
	m := newManager(t, h)
	ctx := context.Background()
	boom := errors.New("boom")
	h.Fail("wg-config", pub(2), boom)
	h.Fail("addr-add", "192.0.2.100", boom)
	d := states[2].desired
	r := m.Reconcile(ctx, d)
	got := errStrings(r)
	want := []string{"peer fg-a/" + pub(2) + ": configure peer: boom", "vip site: add address: boom"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("errors (-want +got):\n%s", diff)
	}
	out := h.Render()
	if !strings.Contains(out, "peer AQEBAQEB") || strings.Contains(out, "peer AgIC") || !strings.Contains(out, "2001:db8::100/128") {
		t.Errorf("failure not isolated:\n%s", out)
	}
	if strings.Contains(out, "10.90.0.3/32 proto") {
		t.Errorf("routes of a failed peer installed:\n%s", out)
	}
	// Faults gone: the next pass converges to the same state as a clean run.
	h.ClearFaults()
	if r := m.Reconcile(ctx, d); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if diff := cmp.Diff(states[2].want, h.Render()); diff != "" {
		t.Errorf("after retry (-want +got):\n%s", diff)
	}
	// A failed update of a running peer keeps its routes.
	h.Fail("wg-config", pub(1), boom)
	d2 := states[2].desired
	d2.Interfaces = []netctl.Interface{d2.Interfaces[0]}
	d2.Interfaces[0].Peers = []netctl.Peer{peer1, peer2}
	d2.Interfaces[0].Peers[0].PersistentKeepalive = 10 * time.Second
	if r := m.Reconcile(ctx, d2); len(r.Errors) != 1 {
		t.Fatalf("errors: %v", r.Err())
	}
	if diff := cmp.Diff(states[2].want, h.Render()); diff != "" {
		t.Errorf("failed peer update changed state (-want +got):\n%s", diff)
	}
}

func TestReconcileForeignObjectsUntouched(t *testing.T) {
	h := newHost(true)
	h.AddForeignAddr("eth0", mp("192.0.2.100/32"))
	h.AddForeignAddr("eth0", mp("192.0.2.5/24"))
	h.AddLink("fg-other", "veth", nil) // fg- name but not WireGuard: never ours
	m := newManager(t, h)
	r := m.Reconcile(context.Background(), netctl.Desired{VIPs: []netctl.VIP{vip1, vip6}})
	if len(r.Errors) != 1 || !errors.Is(r.Errors[0], netctl.ErrAddressInUse) || r.Errors[0].ID != "site" {
		t.Fatalf("errors = %v, want one ErrAddressInUse for site", r.Err())
	}
	want := `link eth0 veth mtu=1500 up
  addr 192.0.2.100/32
  addr 192.0.2.5/24
  addr 2001:db8::100/128 fedgate nodad
link fg-other veth mtu=1500 up
link lo device mtu=1500 up
`
	if diff := cmp.Diff(want, h.Render()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(want, "  addr 2001:db8::100/128 fedgate nodad\n", "", 1)
	if diff := cmp.Diff(want, h.Render()); diff != "" {
		t.Errorf("after cleanup (-want +got):\n%s", diff)
	}
}

func TestReconcileDumpInterrupted(t *testing.T) {
	h := newHost(true)
	m := newManager(t, h)
	h.InterruptDumps(3)
	if r := m.Reconcile(context.Background(), states[1].desired); r.Err() != nil {
		t.Fatal(r.Err())
	}
	h.InterruptDumps(100)
	r := m.Reconcile(context.Background(), states[1].desired)
	if len(r.Errors) != 1 || r.Errors[0].Kind != "dump" {
		t.Fatalf("errors = %v", r.Err())
	}
}

func TestMountVIP(t *testing.T) {
	h := newHost(true)
	m := newManager(t, h)
	ctx := context.Background()
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	if got := h.Announcements(); len(got) != 1 || got[0].Addr != vip1.Addr.Addr() {
		t.Fatalf("announcements after mount: %v", got)
	}
	if at, ok := m.LastAnnounce(vip1.Addr.Addr()); !ok || at.IsZero() {
		t.Fatalf("LastAnnounce = %v %v", at, ok)
	}
	// Reconcile with an empty desired state keeps the HA-held VIP, and
	// re-mounts it after an outside removal.
	if r := m.Reconcile(ctx, netctl.Desired{}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if !strings.Contains(h.Render(), "192.0.2.100/32 fedgate") {
		t.Fatalf("HA VIP collected:\n%s", h.Render())
	}
	if err := m.UnmountVIP(ctx, vip1.Addr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.Render(), "192.0.2.100") {
		t.Fatalf("still mounted:\n%s", h.Render())
	}
	if _, ok := m.LastAnnounce(vip1.Addr.Addr()); ok {
		t.Error("LastAnnounce after unmount reports mounted")
	}
	if err := m.UnmountVIP(ctx, vip1.Addr); err != nil {
		t.Fatalf("second unmount: %v", err)
	}
	// Burst: the loop sends the remaining rounds.
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(h.Announcements()) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(h.Announcements()); n != 4 {
		t.Errorf("announcements = %d, want 1 + a burst of 3", n)
	}
	// Someone else's address is not taken over.
	h.AddForeignAddr("eth0", mp("192.0.2.101/32"))
	err := m.MountVIP(ctx, netctl.VIP{Name: "x", Addr: mp("192.0.2.101/32"), Interface: "eth0"})
	if !errors.Is(err, netctl.ErrAddressInUse) {
		t.Fatalf("foreign mount: %v", err)
	}
	if err := m.UnmountVIP(ctx, mp("192.0.2.101/32")); !errors.Is(err, netctl.ErrAddressInUse) {
		t.Fatalf("foreign unmount: %v", err)
	}
	if !strings.Contains(h.Render(), "addr 192.0.2.101/32\n") {
		t.Fatal("foreign address removed")
	}
}

func TestStatus(t *testing.T) {
	h := newHost(false)
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(),
		PrivateKey: nodeKey, Clock: fixedClock(now)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	d := states[2].desired
	if r := m.Reconcile(context.Background(), d); r.Err() != nil {
		t.Fatal(r.Err())
	}
	h.SetHandshake("fg-a", key(1), now.Add(-4*time.Minute), 100, 200)
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].Backend != "userspace" || len(st.Interfaces[0].Peers) != 2 {
		t.Fatalf("status: %+v", st)
	}
	p := st.Interfaces[0].Peers[0]
	want := netctl.PeerStatus{PublicKey: pub(1), Endpoint: "192.0.2.1:51820", AllowedIPs: []string{"10.90.0.2/32", "10.91.0.0/16"},
		PersistentKeepaliveSeconds: 25, LatestHandshake: now.Add(-4 * time.Minute), HandshakeAgeSeconds: 240,
		RxBytes: 100, TxBytes: 200, Health: "degraded"}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("peer status (-want +got):\n%s", diff)
	}
	if st.Interfaces[0].Peers[1].Health != "disconnected" || st.Interfaces[0].Peers[1].HandshakeAgeSeconds != -1 {
		t.Errorf("never-handshaken peer: %+v", st.Interfaces[0].Peers[1])
	}
	if len(st.VIPs) != 2 || !st.VIPs[0].MountedHere || st.VIPs[0].Source != "desired" {
		t.Errorf("vips: %+v", st.VIPs)
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

func TestHealth(t *testing.T) {
	for _, c := range []struct {
		age  time.Duration
		want string
	}{{-1, "disconnected"}, {0, "active"}, {179 * time.Second, "active"}, {3 * time.Minute, "degraded"},
		{299 * time.Second, "degraded"}, {5 * time.Minute, "disconnected"}} {
		if got := netctl.Health(c.age); got != c.want {
			t.Errorf("Health(%v) = %s, want %s", c.age, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		d    netctl.Desired
		want error
		id   string
	}{
		{"name prefix", netctl.Desired{Interfaces: []netctl.Interface{{Name: "wg0"}}}, netctl.ErrInvalid, "wg0"},
		{"name too long", netctl.Desired{Interfaces: []netctl.Interface{{Name: "fg-0123456789abc"}}}, netctl.ErrNameTooLong, "fg-0123456789abc"},
		{"port", netctl.Desired{Interfaces: []netctl.Interface{{Name: "fg-a", ListenPort: 70000}}}, netctl.ErrInvalid, "fg-a"},
		{"vip /24", netctl.Desired{VIPs: []netctl.VIP{{Name: "v", Addr: mp("192.0.2.0/24"), Interface: "eth0"}}}, netctl.ErrInvalid, "v"},
		{"dup vip", netctl.Desired{VIPs: []netctl.VIP{vip1, {Name: "w", Addr: vip1.Addr, Interface: "eth0"}}}, netctl.ErrInvalid, "w"},
		{"keepalive fraction", netctl.Desired{Interfaces: []netctl.Interface{ifaceA(netctl.Peer{PublicKey: pub(1), PersistentKeepalive: 1500 * time.Millisecond})}}, netctl.ErrInvalid, "fg-a/" + pub(1)},
		{"dup allowed ip", netctl.Desired{Interfaces: []netctl.Interface{ifaceA(peer1, netctl.Peer{PublicKey: pub(9), AllowedIPs: peer1.AllowedIPs[:1]})}}, netctl.ErrInvalid, "fg-a/" + pub(9)},
		{"non-canonical allowed ip", netctl.Desired{Interfaces: []netctl.Interface{ifaceA(netctl.Peer{PublicKey: pub(1), AllowedIPs: []netip.Prefix{mp("10.0.0.1/8")}})}}, netctl.ErrInvalid, "fg-a/" + pub(1)},
		{"ok", states[2].desired, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.d.Validate()
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var oe *netctl.ObjectError
			if !errors.Is(err, c.want) || !errors.As(err, &oe) || oe.ID != c.id {
				t.Fatalf("Validate() = %v, want %v naming %q", err, c.want, c.id)
			}
		})
	}
}

func ExampleManager_Reconcile() {
	h := netctltest.NewHost(false)
	m, _ := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(), PrivateKey: key(7)})
	defer m.Close()
	res := m.Reconcile(context.Background(), netctl.Desired{Interfaces: []netctl.Interface{
		{Name: "fg-demo", ListenPort: 51820, Addresses: []netip.Prefix{mp("10.99.0.1/24")}},
	}})
	fmt.Println(res.Err(), res.Changes)
	fmt.Print(h.Render())
	// Output:
	// <nil> 4
	// link fg-demo tuntap mtu=1420 up
	//   addr 10.99.0.1/24 fedgate
	//   wg pub=E75P6ury port=51820
	// link lo device mtu=1500 up
}

// TestMountVIPNotBlockedByDeviceStart: the HA path never waits for a slow
// userspace device process being started by a reconcile.
func TestMountVIPNotBlockedByDeviceStart(t *testing.T) {
	h := newHost(false)
	m := newManager(t, h)
	started, release := h.BlockLaunches()
	defer release()
	done := make(chan netctl.Result, 1)
	go func() { done <- m.Reconcile(context.Background(), states[1].desired) }()
	<-started // the reconcile now sits in Launcher.Start
	if err := m.MountVIP(context.Background(), vip1); err != nil {
		t.Fatal(err)
	}
	if err := m.UnmountVIP(context.Background(), vip1.Addr); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	release()
	if r := <-done; r.Err() != nil {
		t.Fatal(r.Err())
	}
	if diff := cmp.Diff(states[1].want, h.Render()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestRefusedUpdateKeepsExisting: a refused update of an existing peer or
// interface leaves what runs untouched instead of tearing it down.
func TestRefusedUpdateKeepsExisting(t *testing.T) {
	h := newHost(false)
	m := newManager(t, h)
	ctx := context.Background()
	if r := m.Reconcile(ctx, states[2].desired); r.Err() != nil {
		t.Fatal(r.Err())
	}
	want := h.Render()
	// peer1 now carries a bad endpoint: refused, the running peer1 stays.
	bad := peer1
	bad.Endpoint = netip.MustParseAddrPort("[::]:0")
	d := netctl.Desired{Interfaces: []netctl.Interface{func() netctl.Interface {
		i := ifaceA(bad, peer2)
		i.MTU = 1380
		return i
	}()}, VIPs: states[2].desired.VIPs}
	r := m.Reconcile(ctx, d)
	if len(r.Errors) != 1 || r.Errors[0].Kind != "peer" || r.Changes != 0 {
		t.Fatalf("changes=%d errors=%v", r.Changes, r.Err())
	}
	if diff := cmp.Diff(want, h.Render()); diff != "" {
		t.Errorf("refused peer update changed state (-want +got):\n%s", diff)
	}
	// The whole interface is refused (bad port): link, addresses, routes
	// and peers stay.
	d = netctl.Desired{Interfaces: []netctl.Interface{func() netctl.Interface {
		i := ifaceA(peer1)
		i.ListenPort = -1
		return i
	}()}, VIPs: states[2].desired.VIPs}
	r = m.Reconcile(ctx, d)
	if len(r.Errors) != 1 || r.Errors[0].Kind != "interface" || r.Changes != 0 {
		t.Fatalf("changes=%d errors=%v", r.Changes, r.Err())
	}
	if diff := cmp.Diff(want, h.Render()); diff != "" {
		t.Errorf("refused interface changed state (-want +got):\n%s", diff)
	}
}

// TestHungDevice: a device that never answers (stopped process) is reported
// after DeviceTimeout and blocks neither Status, the VIP path nor the other
// objects of the pass.
func TestHungDevice(t *testing.T) {
	h := newHost(false)
	m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(),
		Announcer: h.Announcer(), PrivateKey: nodeKey, Logger: testLogger(t), DeviceTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if r := m.Reconcile(ctx, states[1].desired); r.Err() != nil {
		t.Fatal(r.Err())
	}
	release := h.HangDevice("fg-a")
	defer release()
	st, err := m.Status(ctx)
	if err != nil || len(st.Interfaces) != 1 || !strings.Contains(st.Interfaces[0].Error, "did not answer") {
		t.Fatalf("status with a hung device: %+v %v", st, err)
	}
	d := states[1].desired
	d.VIPs = []netctl.VIP{vip1}
	r := m.Reconcile(ctx, d)
	if len(r.Errors) != 1 || !errors.Is(r.Errors[0], netctl.ErrDeviceTimeout) {
		t.Fatalf("reconcile with a hung device: %v", r.Err())
	}
	if !strings.Contains(h.Render(), "192.0.2.100/32 fedgate") {
		t.Error("VIP not mounted while a device hangs")
	}
	if !strings.Contains(h.Render(), "route 10.91.0.0/16 proto=0xfe") {
		t.Errorf("routes of a hung device removed:\n%s", h.Render())
	}
	if err := m.MountVIP(ctx, vip6); err != nil {
		t.Fatal(err)
	}
}
