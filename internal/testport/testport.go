// Package testport hands tests loopback addresses for a server that is
// started later (a child process, or a library that binds by itself).
//
// A port from "127.0.0.1:0" is ephemeral: between closing the probe
// listener and the server's bind, any outgoing connection on the host
// (raft, HTTP clients of tests running in parallel) may take it, and the
// server fails with EADDRINUSE — seen under load. Addr picks from below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
// default), where no outgoing connection ever lands, and never hands out a
// port twice in one process.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Range is where ports come from: [Low, Low+Size).
const (
	Low  = 20000
	Size = 12000
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Addr returns "127.0.0.1:PORT" with a port that was free a moment ago.
func Addr(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := Low + rand.IntN(Size)
		if used[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // another process holds it
		}
		ln.Close()
		used[p] = true
		return ln.Addr().String()
	}
	t.Fatalf("testport: no free loopback port in %d-%d", Low, Low+Size-1)
	return ""
}
