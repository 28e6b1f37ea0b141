package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/powernode/fedgate/internal/nstest"
)

// TestPrivilegedVIPBadInput: on a two-node site in network namespaces, a
// VIP naming a node outside the cluster and a second VIP on a taken
// address are refused; the two-voter cluster is warned about; a VIP whose
// interface disappears is re-mounted when the interface comes back.
func TestPrivilegedVIPBadInput(t *testing.T) {
	c := newChaosNet(t, 2)
	c.formCluster()
	c.r = c.startProbes()
	l := c.leader()
	if l == nil {
		t.Fatal("no leader")
	}

	// A node that is not a member.
	stranger := "0190a000-0000-7000-8000-0000000000ff"
	if out, err := l.cli("vips", "add", "bad", "10.77.0.60/32", "--interface", "eth0", "--holder", stranger); err == nil ||
		!strings.Contains(err.Error(), "not a member") {
		t.Errorf("VIP held by a non-member: %q, %v", out, err)
	}
	// The same address twice.
	if out, err := l.cli("vips", "add", "site2", chaosVIPCIDR, "--interface", "eth0"); err == nil ||
		!strings.Contains(err.Error(), "already VIP") {
		t.Errorf("duplicate VIP address: %q, %v", out, err)
	}
	// Neither refused command left a trace.
	var vs []struct {
		Name string `json:"name"`
	}
	if err := l.cliJSON(&vs, "vips"); err != nil || len(vs) != 1 || vs[0].Name != "site" {
		t.Errorf("vips after refusals = %+v, %v; want only site", vs, err)
	}

	// Two voters: no fault tolerance, said in the leader's log.
	eventually(t, 20*time.Second, "two-voter warning", func() error {
		if !strings.Contains(l.logText(), "cluster of two voters") { // agent's HA warning (vipassign.go)
			return fmt.Errorf("no warning in %s's log", l.name)
		}
		return nil
	})

	// An interface that disappears under a mounted VIP.
	h := l.ns.Handle(t)
	mkExt := func() {
		nstest.Veth(t, l.ns, "ext0", c.sw, "vext-"+l.name)
	}
	mkExt()
	l.mustCLI("vips", "add", "ext", "10.77.1.50/32", "--interface", "ext0")
	extOn := func() bool {
		lk, err := h.LinkByName("ext0")
		if err != nil {
			return false
		}
		as, _ := h.AddrList(lk, netlink.FAMILY_V4)
		for _, a := range as {
			if p, ok := netip.AddrFromSlice(a.IP); ok && p.Unmap() == netip.MustParseAddr("10.77.1.50") {
				return true
			}
		}
		return false
	}
	if !waitFor(10*time.Second, extOn) {
		t.Fatal("VIP ext not mounted on ext0")
	}
	lk, err := h.LinkByName("ext0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(lk); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	time.Sleep(500 * time.Millisecond)
	mkExt()
	back := time.Now()
	if !waitFor(15*time.Second, extOn) {
		t.Fatalf("VIP ext not re-mounted within 15s of ext0 coming back")
	}
	t.Logf("ext0 deleted, re-created after %s; VIP re-mounted %s after that", back.Sub(gone).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	// The site VIP was never disturbed.
	if got := c.r.answeredBy(probeTCP, gone, time.Now()); len(got) != 1 || got[0] != l.name {
		t.Errorf("site VIP answered by %v while ext0 came and went", got)
	}
}
