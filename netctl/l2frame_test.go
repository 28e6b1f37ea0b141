package netctl

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
)

var (
	ourMAC   = net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 1}
	theirMAC = net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 2}
	vip4     = netip.MustParseAddr("192.0.2.100")
	vip6     = netip.MustParseAddr("2001:db8::100")
	their4   = netip.MustParseAddr("192.0.2.7")
	their6   = netip.MustParseAddr("2001:db8::7")
)

func claimedVIP(a netip.Addr) bool { return a == vip4 || a == vip6 }

// arpRequestFrame builds a who-has with mdlayher/arp (an independent
// encoder).
func arpRequestFrame(t testing.TB, sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(arp.OperationRequest, sha, spa, ethernet.Broadcast, tpa)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := p.MarshalBinary()
	f, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// nsFrame builds a neighbour solicitation with mdlayher/ndp (checksum
// included) in a hand-made IPv6 header.
func nsFrame(t testing.TB, srcHW net.HardwareAddr, src, target netip.Addr, withSLLA bool) []byte {
	t.Helper()
	m := &ndp.NeighborSolicitation{TargetAddress: target}
	if withSLLA {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: srcHW}}
	}
	dst, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		t.Fatal(err)
	}
	icmp, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, ethHdrLen+ip6HdrLen, ethHdrLen+ip6HdrLen+len(icmp))
	d16 := dst.As16()
	copy(f[0:6], []byte{0x33, 0x33, d16[12], d16[13], d16[14], d16[15]})
	copy(f[6:12], srcHW)
	binary.BigEndian.PutUint16(f[12:14], ethTypeIPv6)
	ip := f[ethHdrLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = protoICMPv6, 255
	s16 := src.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	return append(f, icmp...)
}

// parsedNA is a neighbour advertisement as an independent decoder
// (mdlayher/ndp) reads it, with the headers around it.
type parsedNA struct {
	EthDst, EthSrc      string
	Src, Dst            netip.Addr
	HopLimit            uint8
	Solicited, Override bool
	Target              netip.Addr
	TargetLL            string
	ChecksumOK          bool
}

func parseNA(t testing.TB, f []byte) parsedNA {
	t.Helper()
	if len(f) < ethHdrLen+ip6HdrLen || binary.BigEndian.Uint16(f[12:14]) != ethTypeIPv6 {
		t.Fatalf("not an IPv6 frame: % x", f)
	}
	ip := f[ethHdrLen:]
	icmp := ip[ip6HdrLen : ip6HdrLen+int(binary.BigEndian.Uint16(ip[4:6]))]
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		t.Fatalf("parse NA: %v", err)
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		t.Fatalf("not an NA: %T", m)
	}
	p := parsedNA{EthDst: net.HardwareAddr(f[0:6]).String(), EthSrc: net.HardwareAddr(f[6:12]).String(),
		Src: netip.AddrFrom16([16]byte(ip[8:24])), Dst: netip.AddrFrom16([16]byte(ip[24:40])), HopLimit: ip[7],
		Solicited: na.Solicited, Override: na.Override, Target: na.TargetAddress}
	for _, o := range na.Options {
		if ll, ok := o.(*ndp.LinkLayerAddress); ok && ll.Direction == ndp.Target {
			p.TargetLL = ll.Addr.String()
		}
	}
	// Recompute with ndp's own checksum code and compare.
	want, err := ndp.MarshalMessageChecksum(na, p.Src, p.Dst)
	if err != nil {
		t.Fatal(err)
	}
	p.ChecksumOK = bytes.Equal(want[2:4], icmp[2:4])
	return p
}

func TestL2ReplyARP(t *testing.T) {
	req := arpRequestFrame(t, theirMAC, their4, vip4)
	reply, addr := l2Reply(req, ourMAC, claimedVIP)
	if addr != vip4 {
		t.Fatalf("answered for %v, want %v", addr, vip4)
	}
	var fr ethernet.Frame
	if err := fr.UnmarshalBinary(reply); err != nil {
		t.Fatal(err)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(fr.Payload); err != nil {
		t.Fatal(err)
	}
	type got struct {
		EthDst, EthSrc, SHA, THA string
		Op                       arp.Operation
		SPA, TPA                 netip.Addr
	}
	want := got{EthDst: theirMAC.String(), EthSrc: ourMAC.String(), SHA: ourMAC.String(), THA: theirMAC.String(),
		Op: arp.OperationReply, SPA: vip4, TPA: their4}
	if diff := cmp.Diff(want, got{fr.Destination.String(), fr.Source.String(), p.SenderHardwareAddr.String(),
		p.TargetHardwareAddr.String(), p.Operation, p.SenderIP, p.TargetIP}, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("reply (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"not claimed", arpRequestFrame(t, theirMAC, their4, netip.MustParseAddr("192.0.2.101"))},
		{"someone's announcement", arpRequestFrame(t, theirMAC, vip4, vip4)},
		{"our own request looped back", arpRequestFrame(t, ourMAC, vip4, their4)},
		{"truncated", req[:30]},
		// A promiscuous link (bridge port, tcpdump) passes frames for
		// other hosts up; the kernel ignores them, and so do we.
		{"unicast to another host", withDst(req, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99})},
	} {
		if r, _ := l2Reply(tc.frame, ourMAC, claimedVIP); r != nil {
			t.Errorf("%s: answered % x", tc.name, r)
		}
	}
	if r, _ := l2Reply(withDst(req, ourMAC), ourMAC, claimedVIP); r == nil {
		t.Error("a who-has sent unicast to our MAC was not answered")
	}
	// A probe (sender 0.0.0.0) is answered, to the prober's MAC.
	probe := arpRequestFrame(t, theirMAC, netip.IPv4Unspecified(), vip4)
	if r, _ := l2Reply(probe, ourMAC, claimedVIP); r == nil || !bytes.Equal(r[0:6], theirMAC) {
		t.Errorf("probe answered with % x", r)
	}
}

func TestL2ReplyNS(t *testing.T) {
	cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	for _, tc := range []struct {
		name  string
		frame []byte
		want  parsedNA
	}{
		{"with source link-layer option", nsFrame(t, theirMAC, their6, vip6, true), parsedNA{
			EthDst: theirMAC.String(), EthSrc: ourMAC.String(), Src: vip6, Dst: their6, HopLimit: 255,
			Solicited: true, Override: true, Target: vip6, TargetLL: ourMAC.String(), ChecksumOK: true}},
		{"without: to the frame's source", nsFrame(t, theirMAC, their6, vip6, false), parsedNA{
			EthDst: theirMAC.String(), EthSrc: ourMAC.String(), Src: vip6, Dst: their6, HopLimit: 255,
			Solicited: true, Override: true, Target: vip6, TargetLL: ourMAC.String(), ChecksumOK: true}},
		{"duplicate address detection: to all nodes", nsFrame(t, theirMAC, netip.IPv6Unspecified(), vip6, false), parsedNA{
			EthDst: "33:33:00:00:00:01", EthSrc: ourMAC.String(), Src: vip6, Dst: allNodes, HopLimit: 255,
			Override: true, Target: vip6, TargetLL: ourMAC.String(), ChecksumOK: true}},
	} {
		reply, addr := l2Reply(tc.frame, ourMAC, claimedVIP)
		if reply == nil || addr != vip6 {
			t.Fatalf("%s: no answer (%v)", tc.name, addr)
		}
		if diff := cmp.Diff(tc.want, parseNA(t, reply), cmpAddr); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, diff)
		}
	}
	good := nsFrame(t, theirMAC, their6, vip6, true)
	badSum := append([]byte(nil), good...)
	badSum[ethHdrLen+ip6HdrLen+2] ^= 0xff
	hop := append([]byte(nil), good...)
	hop[ethHdrLen+7] = 64
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"not claimed", nsFrame(t, theirMAC, their6, netip.MustParseAddr("2001:db8::101"), true)},
		{"bad checksum", badSum},
		{"hop limit not 255", hop},
		{"source link-layer option from ::", nsFrame(t, theirMAC, netip.IPv6Unspecified(), vip6, true)},
		{"truncated", good[:len(good)-9]},
		{"our own", nsFrame(t, ourMAC, their6, vip6, true)},
	} {
		if r, _ := l2Reply(tc.frame, ourMAC, claimedVIP); r != nil {
			t.Errorf("%s: answered", tc.name)
		}
	}
}

// TestUnsolicitedNA: the announcement decodes as an unsolicited NA with the
// override flag from the VIP to ff02::1.
func TestUnsolicitedNA(t *testing.T) {
	got := parseNA(t, unsolicitedNA(ourMAC, vip6))
	want := parsedNA{EthDst: "33:33:00:00:00:01", EthSrc: ourMAC.String(), Src: vip6, Dst: allNodes, HopLimit: 255,
		Override: true, Target: vip6, TargetLL: ourMAC.String(), ChecksumOK: true}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// TestL2Filters runs the responder's BPF programs in x/net/bpf's VM: they
// pass what the responder answers and nothing else.
func TestL2Filters(t *testing.T) {
	run := func(prog []bpf.RawInstruction, f []byte) bool {
		t.Helper()
		ins, ok := bpf.Disassemble(prog)
		if !ok {
			t.Fatal("disassemble")
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		n, err := vm.Run(f)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	reply := arpReply(arpRequest{senderHW: theirMAC, senderIP: their4, targetIP: vip4}, ourMAC)
	ns := nsFrame(t, theirMAC, their6, vip6, true)
	na := unsolicitedNA(ourMAC, vip6)
	req := arpRequestFrame(t, theirMAC, their4, vip4)
	for _, tc := range []struct {
		name   string
		prog   []bpf.RawInstruction
		frame  []byte
		passes bool
	}{
		{"arp: request", arpRequestFilter, req, true},
		{"arp: reply", arpRequestFilter, reply, false},
		{"arp: ns", arpRequestFilter, ns, false},
		{"nd: ns", nsFilter, ns, true},
		{"nd: na", nsFilter, na, false},
		{"nd: arp", nsFilter, req, false},
		{"drop all", dropAllFilter, req, false},
	} {
		if got := run(tc.prog, tc.frame); got != tc.passes {
			t.Errorf("%s: passes=%v, want %v", tc.name, got, tc.passes)
		}
	}
}

// FuzzL2Reply feeds arbitrary frames (from the wire) to the responder: no
// panic, and any answer is a well-formed reply for a claimed address that
// the independent decoders accept.
func FuzzL2Reply(f *testing.F) {
	f.Add(arpRequestFrame(f, theirMAC, their4, vip4))
	f.Add(arpRequestFrame(f, theirMAC, netip.IPv4Unspecified(), vip4))
	f.Add(nsFrame(f, theirMAC, their6, vip6, true))
	f.Add(nsFrame(f, theirMAC, netip.IPv6Unspecified(), vip6, false))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		reply, addr := l2Reply(frame, ourMAC, claimedVIP)
		if reply == nil {
			return
		}
		if !claimedVIP(addr) {
			t.Fatalf("answered for unclaimed %v", addr)
		}
		if addr.Is4() {
			var fr ethernet.Frame
			var p arp.Packet
			if fr.UnmarshalBinary(reply) != nil || p.UnmarshalBinary(fr.Payload) != nil ||
				p.Operation != arp.OperationReply || p.SenderIP != addr || !bytes.Equal(p.SenderHardwareAddr, ourMAC) {
				t.Fatalf("bad arp reply % x", reply)
			}
			return
		}
		if na := parseNA(t, reply); na.Target != addr || !na.ChecksumOK || na.HopLimit != 255 {
			t.Fatalf("bad na %+v", na)
		}
	})
}

// withDst is a copy of frame f sent to dst.
func withDst(f []byte, dst net.HardwareAddr) []byte {
	g := append([]byte(nil), f...)
	copy(g[0:6], dst)
	return g
}
