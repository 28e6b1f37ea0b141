package netctltest_test

import (
	"errors"
	"io/fs"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/netctltest"
)

// The fake keeps the kernel's contract that netctl relies on.
func TestHostContract(t *testing.T) {
	h := netctltest.NewHost(false)
	nl := h.Netlink()
	if err := nl.AddLink("fg-x", netctl.KindWireguard, 1420); !errors.Is(err, netctl.ErrKernelUnsupported) {
		t.Fatalf("kernel wireguard on a host without it: %v", err)
	}
	idx := h.AddLink("eth0", "veth", nil)
	a := netctl.Addr{LinkIndex: idx, Prefix: netip.MustParsePrefix("192.0.2.1/32"), Protocol: netctl.AddrProtocol}
	if err := nl.Addr(true, a); err != nil {
		t.Fatal(err)
	}
	if err := nl.Addr(true, a); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second add: %v, want EEXIST", err)
	}
	if err := nl.Addr(false, a); err != nil {
		t.Fatal(err)
	}
	if err := nl.Addr(false, a); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second delete: %v, want ENOENT", err)
	}
	r := netctl.Route{LinkIndex: idx, Dst: netip.MustParsePrefix("10.0.0.0/8"), Protocol: netctl.RouteProtocol}
	if err := nl.Route(true, r); err != nil {
		t.Fatal(err)
	}
	if err := nl.Route(true, r); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second route add: %v", err)
	}
	if err := nl.DeleteLink("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("delete missing link: %v", err)
	}
	h.InterruptDumps(1)
	if _, err := nl.Dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatalf("interrupted dump: %v", err)
	}
	if s, err := nl.Dump(); err != nil || len(s.Routes) != 1 {
		t.Fatalf("dump: %+v %v", s, err)
	}
	boom := errors.New("boom")
	h.Fail("route-del", "10.0.0.0/8", boom)
	if err := nl.Route(false, r); !errors.Is(err, boom) {
		t.Fatalf("injected fault: %v", err)
	}
	want := map[string]int{"addr-add": 2, "addr-del": 2, "route-add": 2, "link-del": 1}
	if diff := cmp.Diff(want, h.Ops()); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	// Deleting a link takes its addresses and routes with it.
	h.RemoveLink("eth0")
	if s, _ := nl.Dump(); len(s.Routes) != 0 {
		t.Errorf("routes survive their link: %+v", s.Routes)
	}
}
