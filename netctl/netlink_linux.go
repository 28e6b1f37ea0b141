package netctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifaProto is IFA_PROTO (linux/if_addr.h, Linux >= 5.18).
const ifaProto = 11

// RealNetlink implements Netlink on rtnetlink, bound to one network
// namespace for its whole life.
type RealNetlink struct {
	ns string
	h  *netlink.Handle
	mu sync.Mutex
	rt map[int]*nl.SocketHandle // raw route socket for IFA_PROTO address calls
}

// NewNetlink opens rtnetlink sockets in the network namespace at nsPath
// (e.g. /run/netns/x); "" means the calling thread's namespace.
func NewNetlink(nsPath string) (*RealNetlink, error) {
	ns := netns.None()
	if nsPath != "" {
		var err error
		if ns, err = netns.GetFromPath(nsPath); err != nil {
			return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", mapErr(err))
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink socket: %w", mapErr(err))
	}
	return &RealNetlink{ns: nsPath, h: h, rt: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}}, nil
}

// Close releases the sockets.
func (r *RealNetlink) Close() error {
	r.h.Close()
	for _, s := range r.rt {
		s.Close()
	}
	return nil
}

// mapErr turns errnos into the package's sentinels where one applies.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

// Dump reads links, addresses (with IFA_PROTO) and fedgate's routes. An
// interrupted dump returns netlink.ErrDumpInterrupted; the caller retries.
func (r *RealNetlink) Dump() (*Snapshot, error) {
	s := &Snapshot{}
	links, err := r.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("dump links: %w", mapErr(err))
	}
	for _, l := range links {
		a := l.Attrs()
		s.Links = append(s.Links, Link{Name: a.Name, Index: a.Index, Kind: l.Type(), MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, HardwareAddr: a.HardwareAddr})
	}
	if s.Addrs, err = r.dumpAddrs(); err != nil {
		return nil, err
	}
	routes, err := r.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("dump routes: %w", mapErr(err))
	}
	for _, rt := range routes {
		if rt.Dst == nil {
			continue
		}
		p, ok := netipPrefix(*rt.Dst)
		if !ok {
			continue
		}
		s.Routes = append(s.Routes, Route{LinkIndex: rt.LinkIndex, Dst: p, Protocol: int(rt.Protocol)})
	}
	return s, nil
}

func netipPrefix(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 32 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, ones), true
}

func (r *RealNetlink) request(typ, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(typ, flags)
	req.Sockets = r.rt
	return req
}

func (r *RealNetlink) dumpAddrs() ([]Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	req := r.request(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, fmt.Errorf("dump addresses: %w", mapErr(err))
	}
	out := make([]Addr, 0, len(msgs))
	for _, m := range msgs {
		if len(m) < unix.SizeofIfAddrmsg {
			continue
		}
		ifa := nl.DeserializeIfAddrmsg(m)
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
		if err != nil {
			return nil, fmt.Errorf("parse address: %w", err)
		}
		var local, address []byte
		a := Addr{LinkIndex: int(ifa.Index)}
		flags := uint32(ifa.Flags)
		for _, at := range attrs {
			switch at.Attr.Type {
			case unix.IFA_LOCAL:
				local = at.Value
			case unix.IFA_ADDRESS:
				address = at.Value
			case unix.IFA_FLAGS:
				if len(at.Value) >= 4 {
					flags = nl.NativeEndian().Uint32(at.Value)
				}
			case ifaProto:
				if len(at.Value) >= 1 {
					a.Protocol = at.Value[0]
				}
			case unix.IFA_CACHEINFO:
				if len(at.Value) >= 8 {
					if v := nl.NativeEndian().Uint32(at.Value[4:]); v != math.MaxUint32 {
						a.ValidLft = time.Duration(v) * time.Second
					}
				}
			}
		}
		raw := local
		if raw == nil {
			raw = address
		}
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		a.Prefix = netip.PrefixFrom(ip, int(ifa.Prefixlen))
		a.NoDAD = flags&unix.IFA_F_NODAD != 0
		a.NoPrefixRoute = flags&unix.IFA_F_NOPREFIXROUTE != 0
		out = append(out, a)
	}
	return out, nil
}

// AddLink creates a link; only KindWireguard is supported.
func (r *RealNetlink) AddLink(name, kind string, mtu int) error {
	if kind != KindWireguard {
		return fmt.Errorf("add link %s: kind %q not supported", name, kind)
	}
	err := r.h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("add link %s: %w: %w", name, ErrKernelUnsupported, err)
	}
	if err != nil {
		return fmt.Errorf("add link %s: %w", name, mapErr(err))
	}
	return nil
}

// SetLink sets the MTU (when > 0) and brings the link up.
func (r *RealNetlink) SetLink(name string, mtu int) error {
	l, err := r.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("set link %s: %w", name, mapErr(err))
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := r.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set mtu %s: %w", name, mapErr(err))
		}
	}
	if err := r.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set up %s: %w", name, mapErr(err))
	}
	return nil
}

// DeleteLink removes the link name.
func (r *RealNetlink) DeleteLink(name string) error {
	l, err := r.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("delete link %s: %w", name, fs.ErrNotExist)
		}
		return fmt.Errorf("delete link %s: %w", name, mapErr(err))
	}
	if err := r.h.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, mapErr(err))
	}
	return nil
}

// Addr adds or deletes an address, stamping IFA_PROTO on additions,
// IFA_F_NODAD when asked and IFA_CACHEINFO when a.ValidLft > 0.
func (r *RealNetlink) Addr(add bool, a Addr) error {
	if !add {
		return r.addr(unix.RTM_DELADDR, unix.NLM_F_ACK, "delete", a)
	}
	return r.addr(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, "add", a)
}

// ReplaceAddr adds a or updates the existing one in place (NLM_F_REPLACE),
// with the same attributes as Addr: it renews a's lifetime.
func (r *RealNetlink) ReplaceAddr(a Addr) error {
	return r.addr(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK, "replace", a)
}

// lifetimeSecs is d in whole seconds, rounded up, at least 1 and below the
// kernel's "forever" (0xffffffff).
func lifetimeSecs(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	switch {
	case s < 1:
		return 1
	case s >= math.MaxUint32:
		return math.MaxUint32 - 1
	}
	return uint32(s)
}

func (r *RealNetlink) addr(typ, flags int, verb string, a Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	req := r.request(typ, flags)
	fam := unix.AF_INET
	if a.Prefix.Addr().Is6() {
		fam = unix.AF_INET6
	}
	msg := nl.NewIfAddrmsg(fam)
	msg.Index = uint32(a.LinkIndex)
	msg.Prefixlen = uint8(a.Prefix.Bits())
	req.AddData(msg)
	ip := a.Prefix.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	if typ == unix.RTM_NEWADDR {
		var f uint32
		if a.NoDAD {
			f |= unix.IFA_F_NODAD
		}
		if a.NoPrefixRoute {
			f |= unix.IFA_F_NOPREFIXROUTE
		}
		req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(f)))
		if a.Protocol != 0 {
			req.AddData(nl.NewRtAttr(ifaProto, []byte{a.Protocol}))
		}
		if a.ValidLft > 0 {
			// struct ifa_cacheinfo {ifa_prefered, ifa_valid, cstamp, tstamp}
			secs := lifetimeSecs(a.ValidLft)
			ci := make([]byte, 16)
			nl.NativeEndian().PutUint32(ci[0:], secs)
			nl.NativeEndian().PutUint32(ci[4:], secs)
			req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci))
		}
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("%s address %s: %w", verb, a.Prefix, mapErr(err))
	}
	return nil
}

// Route adds or deletes a link-scoped route with r.Protocol.
func (r *RealNetlink) Route(add bool, rt Route) error {
	dst := prefixToIPNet(rt.Dst)
	nr := &netlink.Route{LinkIndex: rt.LinkIndex, Dst: &dst, Protocol: netlink.RouteProtocol(rt.Protocol), Table: unix.RT_TABLE_MAIN}
	if rt.Dst.Addr().Is4() {
		nr.Scope = netlink.SCOPE_LINK
	}
	var err error
	if add {
		err = r.h.RouteAdd(nr)
	} else {
		err = r.h.RouteDel(nr)
	}
	if err != nil {
		verb := "delete"
		if add {
			verb = "add"
		}
		return fmt.Errorf("%s route %s: %w", verb, rt.Dst, mapErr(err))
	}
	return nil
}

// Watch subscribes to link and address changes (RTNLGRP_LINK, IPV4/IPV6
// address groups) in the handle's namespace.
func (r *RealNetlink) Watch(ctx context.Context) (<-chan struct{}, error) {
	var nsp *netns.NsHandle
	if r.ns != "" {
		ns, err := netns.GetFromPath(r.ns)
		if err != nil {
			return nil, fmt.Errorf("watch: open netns %s: %w", r.ns, err)
		}
		defer ns.Close() // the subscriptions hold their own sockets
		nsp = &ns
	}
	done := make(chan struct{})
	lch := make(chan netlink.LinkUpdate, 64)
	ach := make(chan netlink.AddrUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(lch, done, netlink.LinkSubscribeOptions{Namespace: nsp}); err != nil {
		close(done)
		return nil, fmt.Errorf("watch links: %w", mapErr(err))
	}
	if err := netlink.AddrSubscribeWithOptions(ach, done, netlink.AddrSubscribeOptions{Namespace: nsp}); err != nil {
		close(done)
		return nil, fmt.Errorf("watch addresses: %w", mapErr(err))
	}
	out := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		close(done)
	}()
	go func() {
		defer close(out)
		signal := func() {
			select {
			case out <- struct{}{}:
			default:
			}
		}
		for lch != nil || ach != nil {
			select {
			case _, ok := <-lch:
				if !ok {
					lch = nil
					continue
				}
				signal()
			case _, ok := <-ach:
				if !ok {
					ach = nil
					continue
				}
				signal()
			}
		}
	}()
	return out, nil
}
