package netctl_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/nstest"
)

// BenchmarkTunnelThroughput: TCP throughput through the fedgate-managed
// userspace WireGuard tunnel between two namespaces, beside the raw veth
// between the same namespaces in the same run (needs root; skips
// otherwise). Reports MB/s per path and wg_over_veth.
func BenchmarkTunnelThroughput(b *testing.B) {
	nstest.RequireRoot(b)
	tu := setupTunnel(b, 82)
	sink := func(addr string) {
		var ln net.Listener
		tu.b.MustDo(b, func() (err error) { ln, err = net.Listen("tcp", addr); return err })
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
			}
		}()
	}
	sink("192.168.82.2:7100")
	sink("10.82.0.2:7100")
	const chunk = 1 << 20
	buf := make([]byte, 64<<10)
	rates := map[string]float64{}
	for _, path := range []struct{ name, addr string }{{"veth", "192.168.82.2:7100"}, {"wireguard", "10.82.0.2:7100"}} {
		b.Run(path.name, func(b *testing.B) {
			c, err := dial(tu.a, path.addr, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(chunk)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				for n := 0; n < chunk; n += len(buf) {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
			mbps := float64(b.N) * chunk / b.Elapsed().Seconds() / 1e6
			rates[path.name] = mbps
			b.ReportMetric(mbps, "MB/s")
		})
	}
	if rates["veth"] > 0 {
		b.ReportMetric(rates["wireguard"]/rates["veth"], "wg_over_veth")
		fmt.Printf("tunnel throughput: veth %.0f MB/s, userspace wireguard %.0f MB/s (%.2fx)\n",
			rates["veth"], rates["wireguard"], rates["wireguard"]/rates["veth"])
	}
}
