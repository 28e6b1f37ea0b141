package netctl_test

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/netctltest"
)

// bigDesired: one interface with n peers (one /32 each) and n VIPs.
func bigDesired(n int) netctl.Desired {
	in := netctl.Interface{Name: "fg-bench", ListenPort: 51820, Addresses: []netip.Prefix{netip.MustParsePrefix("10.200.0.1/16")}}
	d := netctl.Desired{}
	for i := 0; i < n; i++ {
		var k wgtypes.Key
		binary.BigEndian.PutUint32(k[:], uint32(i+1))
		k[31] = 0x40
		in.Peers = append(in.Peers, netctl.Peer{
			PublicKey:           k.String(),
			Endpoint:            netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, byte(2 + i/250), byte(i%250 + 1)}), 51820),
			AllowedIPs:          []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 201, byte(i / 250), byte(i%250 + 1)}), 32)},
			PersistentKeepalive: 25 * time.Second,
		})
		d.VIPs = append(d.VIPs, netctl.VIP{
			Name:      "vip" + string(rune('a'+i%26)) + netip.AddrFrom4([4]byte{0, 0, byte(i >> 8), byte(i)}).String(),
			Addr:      netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, byte(i / 250), byte(i%250 + 1)}), 32),
			Interface: "eth0",
		})
	}
	d.Interfaces = []netctl.Interface{in}
	return d
}

func benchManager(b *testing.B, h *netctltest.Host) *netctl.Manager {
	m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(),
		Announcer: h.Announcer(), PrivateKey: nodeKey, AnnounceRefresh: -1, AnnounceBurst: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkReconcile1000 measures a reconcile of 1,000 WireGuard peers and
// 1,000 VIPs on the fakes: from cold (empty host) and as a no-op on the
// converged state. The baseline, in the same run, is the cost of merely
// reading the converged state through the same seams (one dump and one
// device read); ratios are reported as x_baseline. Targets: cold < 2 s,
// no-op < 50 ms (cold_ms and noop_ms metrics).
func BenchmarkReconcile1000(b *testing.B) {
	const n = 1000
	d := bigDesired(n)
	if err := d.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	converged := func(b *testing.B) (*netctltest.Host, *netctl.Manager) {
		h := newHost(false)
		m := benchManager(b, h)
		if r := m.Reconcile(ctx, d); r.Err() != nil {
			b.Fatal(r.Err())
		}
		return h, m
	}
	var baseline time.Duration
	b.Run("baseline_read", func(b *testing.B) {
		h, _ := converged(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := h.Netlink().Dump(); err != nil {
				b.Fatal(err)
			}
			if _, err := h.WG().Device("fg-bench"); err != nil {
				b.Fatal(err)
			}
		}
		baseline = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("cold", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			h := newHost(false)
			m := benchManager(b, h)
			b.StartTimer()
			start := time.Now()
			r := m.Reconcile(ctx, d)
			total += time.Since(start)
			if r.Err() != nil || r.Changes < 3*n {
				b.Fatalf("cold: changes=%d err=%v", r.Changes, r.Err())
			}
		}
		per := total / time.Duration(b.N)
		b.ReportMetric(float64(per)/1e6, "cold_ms")
		if baseline > 0 {
			b.ReportMetric(float64(per)/float64(baseline), "x_baseline")
		}
	})
	b.Run("noop", func(b *testing.B) {
		h, m := converged(b)
		h.ResetOps()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if r := m.Reconcile(ctx, d); r.Err() != nil || r.Changes != 0 {
				b.Fatalf("noop: changes=%d err=%v", r.Changes, r.Err())
			}
		}
		per := b.Elapsed() / time.Duration(b.N)
		b.ReportMetric(float64(per)/1e6, "noop_ms")
		if baseline > 0 {
			b.ReportMetric(float64(per)/float64(baseline), "x_baseline")
		}
		if ops := h.Ops(); len(ops) != 0 {
			b.Fatalf("no-op reconcile mutated: %v", ops)
		}
	})
}
