package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddr: addresses are distinct, outside the ephemeral range, and
// bindable.
func TestAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		a := Addr(t)
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		if p < Low || p >= Low+Size {
			t.Fatalf("port %d outside %d-%d", p, Low, Low+Size-1)
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s: %v", a, err)
		}
		ln.Close()
	}
}
