package netctl_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/nstest"
	"github.com/powernode/fedgate/netctl"
)

// BenchmarkReconcile1000Kernel is BenchmarkReconcile1000 against the real
// kernel in a network namespace (userspace WireGuard device, VIPs on a
// veth), needs root. cold: from a cleaned namespace (the device process is
// already running, so its start-up is not counted); noop: converged.
func BenchmarkReconcile1000Kernel(b *testing.B) {
	nstest.RequireRoot(b)
	a, _ := wire(b, 84)
	dir := b.TempDir()
	n := startNode(b, a, filepath.Join(dir, "k"), filepath.Join(dir, "log"))
	d := bigDesired(1000)
	name := randName("fg-n")
	d.Interfaces[0].Name = name
	for i := range d.VIPs {
		d.VIPs[i].Interface = "wire0"
	}
	cleanupAll(b, n, name)
	ctx := context.Background()
	// Start the device once.
	if r := n.m.Reconcile(ctx, netctl.Desired{Interfaces: []netctl.Interface{{Name: name, ListenPort: 51820}}}); r.Err() != nil {
		b.Fatal(r.Err())
	}
	empty := netctl.Desired{Interfaces: []netctl.Interface{{Name: name, ListenPort: 51820}}}
	var cold, noop time.Duration
	b.Run("cold", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if r := n.m.Reconcile(ctx, empty); r.Err() != nil {
				b.Fatal(r.Err())
			}
			b.StartTimer()
			start := time.Now()
			r := n.m.Reconcile(ctx, d)
			total += time.Since(start)
			if r.Err() != nil {
				out, _ := os.ReadFile(filepath.Join(dir, "log", "wg-"+name+".log"))
				if len(out) > 3000 {
					out = out[len(out)-3000:]
				}
				b.Fatalf("%v\ndevice log tail:\n%s", r.Errors[0], out)
			}
		}
		cold = total / time.Duration(b.N)
		b.ReportMetric(float64(cold)/1e6, "cold_ms")
	})
	b.Run("noop", func(b *testing.B) {
		if r := n.m.Reconcile(ctx, d); r.Err() != nil {
			b.Fatal(r.Err())
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if r := n.m.Reconcile(ctx, d); r.Err() != nil || r.Changes != 0 {
				b.Fatalf("noop: changes=%d err=%v", r.Changes, r.Err())
			}
		}
		noop = b.Elapsed() / time.Duration(b.N)
		b.ReportMetric(float64(noop)/1e6, "noop_ms")
	})
	if cold > 0 && noop > 0 {
		fmt.Printf("kernel reconcile of 1000 peers + 1000 VIPs: cold %.1f ms, no-op %.1f ms (targets 2000 / 50)\n",
			float64(cold)/1e6, float64(noop)/1e6)
	}
}
