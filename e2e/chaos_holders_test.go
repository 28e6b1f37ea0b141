package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestPrivilegedHolderListVIP: a VIP with holder lists is mounted by its
// primary, moves to the failover node when the primary dies (not before
// the primary's holder lease ran out), stays there when the primary comes
// back (sticky), and moves back by hand with `fedgate vips failover`.
func TestPrivilegedHolderListVIP(t *testing.T) {
	c := newChaosNet(t, 3)
	c.formCluster()
	c.r = c.startProbes()
	c.settle()
	l := c.leader()
	fs := c.others(l)
	primary, backup := fs[0], fs[1]
	const api = "10.77.0.51"
	holders := func() []string {
		var out []string
		for _, n := range c.nodes {
			h := n.ns.Handle(t)
			lk, err := h.LinkByName("eth0")
			if err != nil {
				continue
			}
			as, _ := h.AddrList(lk, netlink.FAMILY_V4)
			for _, a := range as {
				if a.IP.String() == api {
					out = append(out, n.name)
				}
			}
		}
		return out
	}
	wantHolders := func(timeout time.Duration, want ...string) time.Duration {
		t.Helper()
		start := time.Now()
		var got []string
		if !waitFor(timeout, func() bool { got = holders(); return slices.Equal(got, want) }) {
			t.Fatalf("VIP api held by %v, want %v", got, want)
		}
		return time.Since(start)
	}
	type vipRec struct {
		Holder string `json:"holder"`
		State  string `json:"state"`
	}
	holderIs := func(id string) {
		t.Helper()
		eventually(t, 5*time.Second, "holder record", func() error {
			var vs []struct {
				Name string `json:"name"`
				vipRec
			}
			if err := l.cliJSON(&vs, "vips"); err != nil {
				return err
			}
			for _, v := range vs {
				if v.Name == "api" && v.Holder == id && v.State == "active" {
					return nil
				}
			}
			return fmt.Errorf("vips = %+v, want api on %s", vs, id)
		})
	}

	l.mustCLI("vips", "add", "api", api+"/32", "--interface", "eth0", "--holder", primary.id, "--failover", backup.id)
	wantHolders(10*time.Second, primary.name)
	holderIs(primary.id)

	// The primary dies: the backup takes over once the primary's lease is
	// over; the dead primary's kernel keeps the address (no process left
	// to remove it) until it restarts.
	t0 := time.Now()
	primary.kill()
	var got []string
	if !waitFor(10*time.Second, func() bool { got = holders(); return slices.Contains(got, backup.name) }) {
		t.Fatalf("backup never mounted api (holders %v)", got)
	}
	took := time.Since(t0)
	t.Logf("holder-list sensor failover: %s", took.Round(time.Millisecond))
	if took < 1500*time.Millisecond-200*time.Millisecond {
		t.Errorf("backup mounted %s after the primary died: before the primary's holder lease could run out", took)
	}
	holderIs(backup.id)

	// The primary comes back: sticky, the VIP stays on the backup, and the
	// restarted primary collects its stale copy.
	primary.start()
	eventually(t, 30*time.Second, "primary back", func() error { return wantState(primary.node, "follower") })
	wantHolders(10*time.Second, backup.name)
	time.Sleep(time.Second)
	wantHolders(time.Second, backup.name)

	// Manual failover back to the primary, from a follower.
	if _, err := backup.cli("vips", "failover", "api", "--to", l.id); err == nil {
		t.Error("failover to a node outside the holder lists was accepted")
	}
	t1 := time.Now()
	backup.mustCLI("vips", "failover", "api")
	wantHolders(10*time.Second, primary.name)
	t.Logf("holder-list manual failover: %s", time.Since(t1).Round(time.Millisecond))
	holderIs(primary.id)
}
