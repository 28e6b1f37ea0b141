package nstest_test

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/nstest"
)

func TestPrivilegedNamespaces(t *testing.T) {
	var path string
	t.Run("create", func(t *testing.T) {
		a, b := nstest.New(t, "a"), nstest.New(t, "b")
		path = a.Path()
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		nstest.Veth(t, a, "v0", b, "v1")
		nstest.AddAddr(t, a, "v0", netip.MustParsePrefix("192.168.250.1/24"))
		nstest.AddAddr(t, b, "v1", netip.MustParsePrefix("192.168.250.2/24"))
		var ln net.Listener
		b.MustDo(t, func() (err error) { ln, err = net.Listen("tcp", "192.168.250.2:0"); return err })
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		a.MustDo(t, func() error {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		// A process started in b sees b's links.
		if err := b.Do(exec.Command("grep", "-q", "v1:", "/proc/net/dev").Run); err != nil {
			t.Errorf("process started in b does not see v1: %v", err)
		}
		// Start: killed on cleanup.
		done := b.Start(t, exec.Command("sleep", "60"), time.Second)
		select {
		case <-done:
			t.Fatal("sleep exited early")
		default:
		}
		// The caller's own namespace does not see the veth.
		if _, err := net.InterfaceByName("v0"); err == nil {
			t.Error("veth leaked into the host namespace")
		}
	})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("namespace %s not removed by cleanup: %v", path, err)
	}
}
