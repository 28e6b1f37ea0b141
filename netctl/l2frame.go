package netctl

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"

	"golang.org/x/net/bpf"
)

// Ethernet frames for the L2 fence's responder and the announcer, built and
// parsed by hand: they go out on AF_PACKET sockets, below the netfilter
// hooks the fence drops the kernel's own answers in. Parsers read frames
// from the wire (outside input): they check every length and return
// ok=false on anything malformed (FuzzL2Reply).

const (
	ethHdrLen     = 14
	ethTypeARP    = 0x0806
	ethTypeIPv6   = 0x86dd
	arpLen        = 28
	ip6HdrLen     = 40
	protoICMPv6   = 58
	icmp6NS       = 135
	icmp6NA       = 136
	ndOptSrcLL    = 1
	ndOptTargetLL = 2
	naFlagSolic   = 0x40
	naFlagOverr   = 0x20
	naLen         = 24 + 8 // header + target + target link-layer option
)

// ethAllNodes is the Ethernet group of ff02::1 (RFC 2464).
var ethAllNodes = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

// arpRequest is the part of an ARP request (Ethernet, IPv4) a responder
// looks at.
type arpRequest struct {
	senderHW net.HardwareAddr
	senderIP netip.Addr
	targetIP netip.Addr
}

// parseARPRequest parses an Ethernet frame holding an ARP request for an
// IPv4 address.
func parseARPRequest(f []byte) (arpRequest, bool) {
	if len(f) < ethHdrLen+arpLen || binary.BigEndian.Uint16(f[12:14]) != ethTypeARP {
		return arpRequest{}, false
	}
	a := f[ethHdrLen:]
	// htype Ethernet, ptype IPv4, hlen 6, plen 4, operation request.
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:8]) != 1 {
		return arpRequest{}, false
	}
	return arpRequest{
		senderHW: net.HardwareAddr(a[8:14]),
		senderIP: netip.AddrFrom4([4]byte(a[14:18])),
		targetIP: netip.AddrFrom4([4]byte(a[24:28])),
	}, true
}

// arpFrame builds an Ethernet ARP frame (IPv4 over Ethernet).
func arpFrame(op uint16, ethDst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	f := make([]byte, ethHdrLen+arpLen)
	copy(f[0:6], ethDst)
	copy(f[6:12], sha)
	binary.BigEndian.PutUint16(f[12:14], ethTypeARP)
	a := f[ethHdrLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sha)
	s4 := spa.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], tha)
	t4 := tpa.As4()
	copy(a[24:28], t4[:])
	return f
}

// arpReply answers req for the address it asks about with hw, sent back
// to the requester (RFC 826; a probe's sender IP 0.0.0.0 is answered the
// same way, as Linux does).
func arpReply(req arpRequest, hw net.HardwareAddr) []byte {
	return arpFrame(2, req.senderHW, hw, req.targetIP, req.senderHW, req.senderIP)
}

// nsRequest is the part of a neighbour solicitation a responder looks at.
type nsRequest struct {
	srcHW  net.HardwareAddr // Ethernet source
	srcIP  netip.Addr       // :: for duplicate address detection
	target netip.Addr
	// srcLL is the source link-layer address option (nil without one).
	srcLL net.HardwareAddr
}

// parseNS parses an Ethernet frame holding an IPv6 neighbour solicitation
// and validates it as RFC 4861 7.1.1 asks (hop limit 255, code 0, a
// correct checksum, a unicast target, no source link-layer option from
// the unspecified address).
func parseNS(f []byte) (nsRequest, bool) {
	if len(f) < ethHdrLen+ip6HdrLen+24 || binary.BigEndian.Uint16(f[12:14]) != ethTypeIPv6 {
		return nsRequest{}, false
	}
	ip := f[ethHdrLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 || plen < 24 || ethHdrLen+ip6HdrLen+plen > len(f) {
		return nsRequest{}, false
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	icmp := ip[ip6HdrLen : ip6HdrLen+plen]
	if icmp[0] != icmp6NS || icmp[1] != 0 || icmp6Checksum(src, dst, icmp) != 0 {
		return nsRequest{}, false
	}
	r := nsRequest{srcHW: net.HardwareAddr(f[6:12]), srcIP: src, target: netip.AddrFrom16([16]byte(icmp[8:24]))}
	if r.target.IsMulticast() || r.target.Is4In6() {
		return nsRequest{}, false
	}
	for opts := icmp[24:]; len(opts) > 0; {
		if len(opts) < 8 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return nsRequest{}, false
		}
		n := int(opts[1]) * 8
		if opts[0] == ndOptSrcLL && n == 8 {
			r.srcLL = net.HardwareAddr(opts[2:8])
		}
		opts = opts[n:]
	}
	if src.IsUnspecified() && r.srcLL != nil {
		return nsRequest{}, false
	}
	return r, true
}

// naFrame builds an Ethernet frame holding a neighbour advertisement for
// target from hw (the override flag and a target link-layer address
// option always; the solicited flag when asked), IPv6 source target,
// hop limit 255.
func naFrame(ethDst, hw net.HardwareAddr, dst, target netip.Addr, solicited bool) []byte {
	f := make([]byte, ethHdrLen+ip6HdrLen+naLen)
	copy(f[0:6], ethDst)
	copy(f[6:12], hw)
	binary.BigEndian.PutUint16(f[12:14], ethTypeIPv6)
	ip := f[ethHdrLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], naLen)
	ip[6], ip[7] = protoICMPv6, 255
	s16, d16 := target.As16(), dst.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	icmp := ip[ip6HdrLen:]
	icmp[0] = icmp6NA
	icmp[4] = naFlagOverr
	if solicited {
		icmp[4] |= naFlagSolic
	}
	copy(icmp[8:24], s16[:])
	icmp[24], icmp[25] = ndOptTargetLL, 1
	copy(icmp[26:32], hw)
	binary.BigEndian.PutUint16(icmp[2:4], icmp6Checksum(target, dst, icmp))
	return f
}

// naReply answers req with a solicited advertisement to its sender, or,
// for duplicate address detection (source ::), an unsolicited one to
// ff02::1 (RFC 4861 7.2.4).
func naReply(req nsRequest, hw net.HardwareAddr) []byte {
	if req.srcIP.IsUnspecified() {
		return naFrame(ethAllNodes, hw, allNodes, req.target, false)
	}
	dst := req.srcLL
	if dst == nil {
		dst = req.srcHW
	}
	return naFrame(dst, hw, req.srcIP, req.target, true)
}

// unsolicitedNA is the announcement: an NA with the override flag for addr
// to ff02::1.
func unsolicitedNA(hw net.HardwareAddr, addr netip.Addr) []byte {
	return naFrame(ethAllNodes, hw, allNodes, addr, false)
}

// icmp6Checksum is the Internet checksum of b over the IPv6 pseudo-header
// (RFC 8200 8.1). Over a message with its checksum filled in it is 0.
func icmp6Checksum(src, dst netip.Addr, b []byte) uint16 {
	var sum uint32
	add := func(p []byte) {
		for len(p) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(p))
			p = p[2:]
		}
		if len(p) == 1 {
			sum += uint32(p[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var ph [8]byte
	binary.BigEndian.PutUint32(ph[0:4], uint32(len(b)))
	ph[7] = protoICMPv6
	add(ph[:])
	add(b)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// l2Reply is the responder's decision on one received frame: the answer
// to send (nil for none) and the address it answered for. claimed reports
// whether this process answers for an address now.
func l2Reply(f []byte, hw net.HardwareAddr, claimed func(netip.Addr) bool) ([]byte, netip.Addr) {
	if len(f) < ethHdrLen || len(hw) != 6 || bytes.Equal(f[6:12], hw) {
		return nil, netip.Addr{} // short, or our own frame looped back
	}
	if f[0]&1 == 0 && !bytes.Equal(f[0:6], hw) {
		// Unicast to another host (the link is promiscuous: a bridge
		// port, tcpdump): the kernel ignores it, and so do we.
		return nil, netip.Addr{}
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case ethTypeARP:
		req, ok := parseARPRequest(f)
		// A request whose sender is its target is an announcement by
		// someone else, not a question.
		if !ok || req.senderIP == req.targetIP || !claimed(req.targetIP) {
			return nil, netip.Addr{}
		}
		return arpReply(req, hw), req.targetIP
	case ethTypeIPv6:
		req, ok := parseNS(f)
		if !ok || !claimed(req.target) {
			return nil, netip.Addr{}
		}
		return naReply(req, hw), req.target
	}
	return nil, netip.Addr{}
}

// BPF filters for the responder's sockets (offsets from the Ethernet
// header): only what it answers is copied to userspace.
var (
	// arpRequestFilter passes ARP requests for IPv4 over Ethernet.
	arpRequestFilter = mustAssemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ethTypeARP, SkipTrue: 5},
		bpf.LoadAbsolute{Off: ethHdrLen + 2, Size: 4}, // ptype, hlen, plen
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x08000604, SkipTrue: 3},
		bpf.LoadAbsolute{Off: ethHdrLen + 6, Size: 2}, // operation
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 1, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	// nsFilter passes IPv6 packets whose first header is ICMPv6 of type
	// neighbour solicitation with hop limit 255.
	nsFilter = mustAssemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ethTypeIPv6, SkipTrue: 7},
		bpf.LoadAbsolute{Off: ethHdrLen + 6, Size: 2}, // next header, hop limit
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6<<8 | 255, SkipTrue: 5},
		bpf.LoadAbsolute{Off: ethHdrLen + ip6HdrLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmp6NS, SkipTrue: 3},
		bpf.LoadAbsolute{Off: ethHdrLen + ip6HdrLen + 1, Size: 1}, // code
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	// dropAllFilter keeps a send-only socket's receive queue empty.
	dropAllFilter = mustAssemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
)

func mustAssemble(p []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(p)
	if err != nil {
		panic("netctl: bad bpf program: " + err.Error())
	}
	return raw
}
