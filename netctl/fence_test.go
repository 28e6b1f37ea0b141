package netctl_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/netctltest"
)

var eth1MAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}

func newFencedManager(t *testing.T, h *netctltest.Host, c netctl.Clock, lease time.Duration) *netctl.Manager {
	t.Helper()
	m, err := netctl.New(netctl.Config{
		WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(), Announcer: h.Announcer(), Fence: h.Fence(),
		Logger: testLogger(t), PrivateKey: nodeKey, Clock: c, VIPLease: lease,
		AnnounceBurst: 1, AnnounceRefresh: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newStepClock() *stepClock {
	return &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func wantJournal(t *testing.T, h *netctltest.Host, want ...string) {
	t.Helper()
	if diff := cmp.Diff(want, h.Journal()); diff != "" {
		t.Fatalf("journal (-want +got):\n%s", diff)
	}
	h.StartJournal()
}

func wantFence(t *testing.T, h *netctltest.Host, now time.Time, want string) {
	t.Helper()
	if diff := cmp.Diff(want, h.RenderFence(now)); diff != "" {
		t.Fatalf("fence (-want +got):\n%s", diff)
	}
}

// TestFenceLifecycle: an HA VIP is fenced and answered before its address
// goes up (and before it is announced), answered until its lease ends and
// renewed with it, silenced before its address is removed and released only
// after.
func TestFenceLifecycle(t *testing.T) {
	h := newHost(true)
	clk := newStepClock()
	m := newFencedManager(t, h, clk, 2*time.Second)
	ctx := context.Background()
	h.StartJournal()
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	wantJournal(t, h, "fence +192.0.2.100", "answer 192.0.2.100 on eth0",
		"addr-add 192.0.2.100/32 on eth0", "announce 192.0.2.100 on eth0")
	if err := m.MountVIP(ctx, vip6); err != nil {
		t.Fatal(err)
	}
	wantJournal(t, h, "fence +2001:db8::100", "answer 2001:db8::100 on eth0",
		"addr-add 2001:db8::100/128 on eth0", "announce 2001:db8::100 on eth0")
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth0 until=+2s\nfence 2001:db8::100 answered on eth0 until=+2s\n")

	// The answering deadline follows the lease: renewed with it, and a
	// reconcile pass neither extends nor drops it.
	clk.add(1500 * time.Millisecond)
	m.Reconcile(ctx, netctl.Desired{})
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth0 until=+500ms\nfence 2001:db8::100 answered on eth0 until=+500ms\n")
	if err := m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth0 until=+2s\nfence 2001:db8::100 answered on eth0 until=+2s\n")
	wantJournal(t, h) // renewals change no fenced address

	if err := m.UnmountVIP(ctx, vip1.Addr); err != nil {
		t.Fatal(err)
	}
	wantJournal(t, h, "silence 192.0.2.100", "addr-del 192.0.2.100/32 on eth0", "fence -192.0.2.100")
	wantFence(t, h, clk.Now(), "fence 2001:db8::100 answered on eth0 until=+2s\n")

	// Cleanup silences the held VIPs first, like UnmountVIP, and removes
	// the fence last, after the addresses.
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	wantJournal(t, h, "silence 2001:db8::100", "addr-del 2001:db8::100/128 on eth0", "fence removed")
	wantFence(t, h, clk.Now(), "")
}

// TestFenceUnmountFailure: an address whose removal fails stays fenced (and
// silent) until a later pass sees it gone.
func TestFenceUnmountFailure(t *testing.T) {
	h := newHost(true)
	clk := newStepClock()
	m := newFencedManager(t, h, clk, 2*time.Second)
	ctx := context.Background()
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	h.Fail("addr-del", "192.0.2.100", errBoom)
	h.StartJournal()
	if err := m.UnmountVIP(ctx, vip1.Addr); err == nil {
		t.Fatal("unmount with a failing delete: no error")
	}
	wantJournal(t, h, "silence 192.0.2.100")
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 fenced only\n")
	// Still failing: the pass keeps it fenced.
	m.Reconcile(ctx, netctl.Desired{})
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 fenced only\n")
	h.ClearFaults()
	h.StartJournal()
	m.Reconcile(ctx, netctl.Desired{})
	wantJournal(t, h, "addr-del 192.0.2.100/32 on eth0", "fence -192.0.2.100")

	// The kernel dropping a lapsed address releases it the same way.
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	h.Fail("addr-del", "192.0.2.100", errBoom)
	_ = m.UnmountVIP(ctx, vip1.Addr)
	h.ClearFaults()
	h.StartJournal()
	h.RemoveAddr("eth0", vip1.Addr)
	m.Reconcile(ctx, netctl.Desired{})
	wantJournal(t, h, "addr-gone 192.0.2.100/32 on eth0", "fence -192.0.2.100")
}

// TestFenceRestart: a leased VIP left on a link by a killed predecessor stays
// fenced (nobody answers) while it is there; the new process releases it
// only once it is gone, and claims it again when it mounts it.
func TestFenceRestart(t *testing.T) {
	h := newHost(true)
	clk := newStepClock()
	ctx := context.Background()
	old := newFencedManager(t, h, clk, 2*time.Second)
	if err := old.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	old.Close() // killed: the kernel keeps the address, the fence its claim

	m := newFencedManager(t, h, clk, 2*time.Second)
	h.Fail("addr-del", "192.0.2.100", errBoom) // collection of the stale VIP fails
	m.Reconcile(ctx, netctl.Desired{})
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 fenced only\n")
	h.ClearFaults()
	h.StartJournal()
	if err := m.MountVIP(ctx, vip1); err != nil { // this node holds it again
		t.Fatal(err)
	}
	wantJournal(t, h, "answer 192.0.2.100 on eth0", "announce 192.0.2.100 on eth0")
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth0 until=+2s\n")
}

// TestFenceFailsOpen: a fence that cannot be set never blocks a mount; it is
// retried on the next renewal.
func TestFenceFailsOpen(t *testing.T) {
	h := newHost(true)
	clk := newStepClock()
	m := newFencedManager(t, h, clk, 2*time.Second)
	ctx := context.Background()
	h.Fail("fence-set", "", errBoom)
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatalf("mount with a failing fence: %v", err)
	}
	if _, ok := h.AddrLifetime("eth0", vip1.Addr); !ok {
		t.Fatalf("VIP not mounted:\n%s", h.Render())
	}
	wantFence(t, h, clk.Now(), "")
	h.ClearFaults()
	if err := m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth0 until=+2s\n")
}

// TestFenceMountFailure: a VIP whose address cannot be added is released
// again.
func TestFenceMountFailure(t *testing.T) {
	h := newHost(true)
	clk := newStepClock()
	m := newFencedManager(t, h, clk, 2*time.Second)
	h.Fail("addr-add", "192.0.2.100", errBoom)
	h.StartJournal()
	if err := m.MountVIP(context.Background(), vip1); err == nil {
		t.Fatal("mount with a failing add: no error")
	}
	wantJournal(t, h, "fence +192.0.2.100", "answer 192.0.2.100 on eth0", "silence 192.0.2.100", "fence -192.0.2.100")
}

// TestFenceScope: static VIPs (Desired.VIPs) are never claimed, so the kernel
// keeps answering for them, also while the agent is down; without leases
// an HA VIP is answered without a deadline; a VIP moved to another link is
// answered there.
func TestFenceScope(t *testing.T) {
	h := newHost(true)
	h.AddLink("eth1", "veth", eth1MAC)
	clk := newStepClock()
	m := newFencedManager(t, h, clk, -1)
	ctx := context.Background()
	if r := m.Reconcile(ctx, netctl.Desired{VIPs: []netctl.VIP{vip6}}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	wantFence(t, h, clk.Now(), "")
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth0 until=-\n")
	moved := vip1
	moved.Interface = "eth1"
	h.StartJournal()
	if err := m.MountVIP(ctx, moved); err != nil {
		t.Fatal(err)
	}
	wantJournal(t, h, "answer 192.0.2.100 on eth1", "addr-add 192.0.2.100/32 on eth1",
		"announce 192.0.2.100 on eth1", "addr-del 192.0.2.100/32 on eth0")
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 answered on eth1 until=-\n")
	// An HA VIP also listed as static is the kernel's again.
	if r := m.Reconcile(ctx, netctl.Desired{VIPs: []netctl.VIP{vip6, moved}}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	wantFence(t, h, clk.Now(), "")
}

// TestFenceCleanupKeepsFenceOnFailure: Cleanup removes the fence only once
// every address is gone; one left behind stays fenced.
func TestFenceCleanupKeepsFenceOnFailure(t *testing.T) {
	h := newHost(true)
	clk := newStepClock()
	m := newFencedManager(t, h, clk, 2*time.Second)
	ctx := context.Background()
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	h.Fail("addr-del", "192.0.2.100", errBoom)
	if err := m.Cleanup(ctx); err == nil {
		t.Fatal("cleanup with a failing delete: no error")
	}
	wantFence(t, h, clk.Now(), "fence 192.0.2.100 fenced only\n")
	h.ClearFaults()
	h.StartJournal()
	if err := m.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	wantJournal(t, h, "addr-del 192.0.2.100/32 on eth0", "fence removed")
}
