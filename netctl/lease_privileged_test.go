package netctl_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/powernode/fedgate/netctl"
)

// findAddr returns the address p on link idx as the kernel reports it.
func findAddr(t *testing.T, nl *netctl.RealNetlink, idx int, p netip.Prefix) (netctl.Addr, bool) {
	t.Helper()
	s, err := nl.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Addrs {
		if a.LinkIndex == idx && a.Prefix == p {
			return a, true
		}
	}
	return netctl.Addr{}, false
}

// TestPrivilegedAddrLifetime: the real kernel takes IFA_CACHEINFO lifetimes
// for IPv4 and IPv6 addresses; one left alone disappears by itself, one
// renewed with ReplaceAddr stays (marker and NODAD kept), one without a
// lifetime is forever.
func TestPrivilegedAddrLifetime(t *testing.T) {
	a, _ := wire(t, 84)
	nl, err := netctl.NewNetlink(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	l, err := a.Handle(t).LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	mk := func(s string, lft time.Duration) netctl.Addr {
		p := netip.MustParsePrefix(s)
		return netctl.Addr{LinkIndex: idx, Prefix: p, Protocol: netctl.AddrProtocol, NoDAD: p.Addr().Is6(), ValidLft: lft}
	}
	expiring := []netctl.Addr{mk("192.168.84.200/32", 2*time.Second), mk("2001:db8:84::200/128", 2*time.Second)}
	renewed := []netctl.Addr{mk("192.168.84.201/32", 2*time.Second), mk("2001:db8:84::201/128", 2*time.Second)}
	forever := []netctl.Addr{mk("192.168.84.202/32", 0), mk("2001:db8:84::202/128", 0)}
	start := time.Now()
	for _, x := range [][]netctl.Addr{expiring, renewed, forever} {
		for _, ad := range x {
			if err := nl.Addr(true, ad); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ad := range append(append([]netctl.Addr{}, expiring...), renewed...) {
		got, ok := findAddr(t, nl, idx, ad.Prefix)
		if !ok || got.ValidLft <= 0 || got.ValidLft > 2*time.Second || !got.Marked() {
			t.Fatalf("%s as dumped: %+v (present %v), want a marked address with a lifetime <= 2s", ad.Prefix, got, ok)
		}
	}
	gone := map[netip.Prefix]time.Duration{}
	for time.Since(start) < 4500*time.Millisecond {
		time.Sleep(250 * time.Millisecond)
		for _, ad := range renewed {
			if err := nl.ReplaceAddr(ad); err != nil {
				t.Fatalf("renew %s: %v", ad.Prefix, err)
			}
		}
		for _, ad := range expiring {
			if _, ok := findAddr(t, nl, idx, ad.Prefix); !ok && gone[ad.Prefix] == 0 {
				gone[ad.Prefix] = time.Since(start)
			}
		}
	}
	for _, ad := range expiring {
		if gone[ad.Prefix] == 0 {
			t.Errorf("%s with a 2s lifetime still there after %v", ad.Prefix, time.Since(start))
		} else {
			t.Logf("%s expired by itself after %v", ad.Prefix, gone[ad.Prefix])
		}
	}
	for _, ad := range renewed {
		got, ok := findAddr(t, nl, idx, ad.Prefix)
		if !ok {
			t.Errorf("renewed %s expired", ad.Prefix)
			continue
		}
		if !got.Marked() || got.NoDAD != ad.NoDAD || got.ValidLft <= 0 || got.ValidLft > 2*time.Second {
			t.Errorf("renewed %s as dumped: %+v", ad.Prefix, got)
		}
	}
	for _, ad := range forever {
		if got, ok := findAddr(t, nl, idx, ad.Prefix); !ok || got.ValidLft != 0 {
			t.Errorf("%s without a lifetime: %+v (present %v)", ad.Prefix, got, ok)
		}
	}
}

// TestPrivilegedVIPLease: on the real kernel, a VIP mounted by MountVIP
// whose holder stops renewing (killed, frozen) disappears by itself within
// the lease; one renewed with RenewVIPs stays.
func TestPrivilegedVIPLease(t *testing.T) {
	a, _ := wire(t, 85)
	dir := t.TempDir()
	na := startNode(t, a, filepath.Join(dir, "a.key"), filepath.Join(dir, "log"))
	ctx := context.Background()
	l, err := a.Handle(t).LinkByName("wire0")
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	vips := []netctl.VIP{
		{Name: "v4", Addr: netip.MustParsePrefix("192.168.85.100/32"), Interface: "wire0"},
		{Name: "v6", Addr: netip.MustParsePrefix("2001:db8:85::100/128"), Interface: "wire0"},
	}
	start := time.Now()
	for _, v := range vips {
		if err := na.m.MountVIP(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	// Renewed for 4s: stays.
	for time.Since(start) < 4*time.Second {
		time.Sleep(500 * time.Millisecond)
		if err := na.m.RenewVIPs(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vips {
		if _, ok := findAddr(t, na.nl, idx, v.Addr); !ok {
			t.Fatalf("renewed VIP %s expired", v.Addr)
		}
	}
	// The holder stops renewing: gone by itself within the lease (2s,
	// plus the kernel's one-second timer granularity).
	stopped := time.Now()
	for _, v := range vips {
		for {
			if _, ok := findAddr(t, na.nl, idx, v.Addr); !ok {
				break
			}
			if time.Since(stopped) > 4*time.Second {
				t.Fatalf("VIP %s still mounted %v after the last renewal", v.Addr, time.Since(stopped))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("VIP %s gone %v after the last renewal", v.Addr, time.Since(stopped))
	}
}
