package netctl_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/netctltest"
)

// stepClock is a fake clock moved by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newLeaseManager(t *testing.T, h *netctltest.Host, c netctl.Clock, lease time.Duration) *netctl.Manager {
	t.Helper()
	m, err := netctl.New(netctl.Config{
		WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(), Announcer: h.Announcer(),
		Logger: testLogger(t), PrivateKey: nodeKey, Clock: c, VIPLease: lease,
		AnnounceBurstInterval: 20 * time.Millisecond, AnnounceRefresh: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func wantLifetime(t *testing.T, h *netctltest.Host, p string, want time.Duration) {
	t.Helper()
	got, ok := h.AddrLifetime("eth0", mp(p))
	if !ok {
		t.Fatalf("%s not mounted:\n%s", p, h.Render())
	}
	if got != want {
		t.Fatalf("%s lifetime = %v, want %v", p, got, want)
	}
}

// TestVIPLease: HA VIPs are mounted with the kernel lease, RenewVIPs
// renews it in place, Reconcile re-adds a dropped one only for what is
// left of its lease, and a lapsed lease is neither repaired nor announced
// until the next renewal.
func TestVIPLease(t *testing.T) {
	h := newHost(true)
	clk := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newLeaseManager(t, h, clk, 2*time.Second)
	ctx := context.Background()
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	if err := m.MountVIP(ctx, vip6); err != nil {
		t.Fatal(err)
	}
	wantLifetime(t, h, "192.0.2.100/32", 2*time.Second)
	wantLifetime(t, h, "2001:db8::100/128", 2*time.Second)

	// Renewed in place (NLM_F_REPLACE), one call per VIP.
	clk.add(time.Second)
	h.ResetOps()
	if err := m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"addr-replace": 2}, h.Ops()); diff != "" {
		t.Fatalf("renew ops (-want +got):\n%s", diff)
	}
	// Lease now runs to +3s. Dropped at +1.5s: re-added for the 1.5s left.
	clk.add(500 * time.Millisecond)
	h.RemoveAddr("eth0", vip1.Addr)
	if r := m.Reconcile(ctx, netctl.Desired{}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	wantLifetime(t, h, "192.0.2.100/32", 1500*time.Millisecond)
	wantLifetime(t, h, "2001:db8::100/128", 2*time.Second) // untouched

	// The holder froze: the lease ran out and the kernel dropped the
	// addresses. A pass (the resumed process's repair) re-adds nothing and
	// removes nothing, and no announcement goes out.
	clk.add(2 * time.Second)
	h.RemoveAddr("eth0", vip1.Addr)
	h.RemoveAddr("eth0", vip6.Addr)
	sent := len(h.Announcements())
	h.ResetOps()
	if r := m.Reconcile(ctx, netctl.Desired{}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if ops := h.Ops(); len(ops) != 0 {
		t.Fatalf("a pass after the lease ran out changed the host: %v", ops)
	}
	if strings.Contains(h.Render(), "192.0.2.100") {
		t.Fatalf("lapsed VIP re-added:\n%s", h.Render())
	}
	time.Sleep(200 * time.Millisecond) // the burst loop would send now
	if n := len(h.Announcements()); n != sent {
		t.Fatalf("%d announcements for lapsed VIPs", n-sent)
	}

	// Ownership re-confirmed: the renewal mounts them again and announces.
	if err := m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	wantLifetime(t, h, "192.0.2.100/32", 2*time.Second)
	wantLifetime(t, h, "2001:db8::100/128", 2*time.Second)
	if n := len(h.Announcements()); n < sent+2 {
		t.Fatalf("announcements after the renewal: %d, want >= 2", n-sent)
	}

	// Unmounted: no more renewals.
	if err := m.UnmountVIP(ctx, vip1.Addr); err != nil {
		t.Fatal(err)
	}
	if err := m.UnmountVIP(ctx, vip6.Addr); err != nil {
		t.Fatal(err)
	}
	h.ResetOps()
	if err := m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	if ops := h.Ops(); len(ops) != 0 {
		t.Fatalf("renew after unmount: %v", ops)
	}
}

// TestVIPLeaseAnnounceStopsAtExpiry: the announcement burst stops once the
// lease runs out without a renewal (a resumed holder sends no stale GARP).
func TestVIPLeaseAnnounceStopsAtExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
		want    int
	}{
		{"within lease", 500 * time.Millisecond, 3},
		{"lapsed", 3 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(true)
			clk := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			m := newLeaseManager(t, h, clk, 2*time.Second)
			if err := m.MountVIP(context.Background(), vip1); err != nil {
				t.Fatal(err)
			}
			clk.add(tc.advance)
			time.Sleep(150 * time.Millisecond) // > 2 ticks of the loop
			clk.add(tc.advance / 10)
			time.Sleep(150 * time.Millisecond)
			if n := len(h.Announcements()); n != tc.want {
				t.Fatalf("announcements = %d, want %d", n, tc.want)
			}
		})
	}
}

// TestVIPLeaseDisabled: a negative VIPLease mounts forever and renews
// nothing.
func TestVIPLeaseDisabled(t *testing.T) {
	h := newHost(true)
	m := newLeaseManager(t, h, &stepClock{t: time.Now()}, -1)
	ctx := context.Background()
	if err := m.MountVIP(ctx, vip1); err != nil {
		t.Fatal(err)
	}
	wantLifetime(t, h, "192.0.2.100/32", 0)
	h.ResetOps()
	if err := m.RenewVIPs(ctx); err != nil {
		t.Fatal(err)
	}
	if ops := h.Ops(); len(ops) != 0 {
		t.Fatalf("renew with leases disabled: %v", ops)
	}
}
