package netctl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// PacketAnnouncer implements Announcer with two send-only AF_PACKET sockets
// per link (ARP, and IPv6 for the unsolicited neighbour advertisement),
// opened lazily in one network namespace and kept open. Frames sent on
// AF_PACKET pass no netfilter hook, so the L2 fence (which drops the
// kernel's own ARP replies and advertisements for HA VIPs) never drops an
// announcement.
type PacketAnnouncer struct {
	netns string
	mu    sync.Mutex
	arp   map[int]*packet.Conn
	ndp   map[int]*packet.Conn
}

// NewAnnouncer returns an announcer for the namespace at nsPath ("" =
// current).
func NewAnnouncer(nsPath string) *PacketAnnouncer {
	return &PacketAnnouncer{netns: nsPath, arp: map[int]*packet.Conn{}, ndp: map[int]*packet.Conn{}}
}

// Announce sends one round for addr on link. IPv4: an ARP announcement
// (request, sender = target = addr, RFC 5227) and a gratuitous ARP reply,
// both to ff:ff:ff:ff:ff:ff. IPv6: an unsolicited NA with the override flag
// and the target link-layer address, from addr to ff02::1 (as the kernel
// sends its own).
func (a *PacketAnnouncer) Announce(l Link, addr netip.Addr) error {
	if len(l.HardwareAddr) != 6 {
		return nil // not Ethernet: nothing to announce
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if addr.Is4() {
		return a.garp(l, addr)
	}
	return a.una(l, addr)
}

func (a *PacketAnnouncer) garp(l Link, addr netip.Addr) error {
	c := a.arp[l.Index]
	if c == nil {
		err := inNetns(a.netns, func() error {
			ifi, err := net.InterfaceByIndex(l.Index)
			if err != nil {
				return err
			}
			c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: dropAllFilter})
			return err
		})
		if err != nil {
			return fmt.Errorf("garp on %s: %w", l.Name, mapErr(err))
		}
		a.arp[l.Index] = c
	}
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	for _, f := range []struct {
		op    arp.Operation
		dstHW net.HardwareAddr
	}{{arp.OperationRequest, zero}, {arp.OperationReply, ethernet.Broadcast}} {
		p, err := arp.NewPacket(f.op, l.HardwareAddr, addr, f.dstHW, addr)
		if err != nil {
			return fmt.Errorf("garp on %s: %w", l.Name, err)
		}
		pb, _ := p.MarshalBinary()
		fr := &ethernet.Frame{Destination: ethernet.Broadcast, Source: l.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
		fb, err := fr.MarshalBinary()
		if err != nil {
			return fmt.Errorf("garp on %s: %w", l.Name, err)
		}
		if _, err := c.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			a.dropARP(l.Index)
			return fmt.Errorf("garp on %s: %w", l.Name, err)
		}
	}
	return nil
}

func (a *PacketAnnouncer) dropARP(i int) {
	if c := a.arp[i]; c != nil {
		c.Close()
		delete(a.arp, i)
	}
}

var allNodes = netip.MustParseAddr("ff02::1")

func (a *PacketAnnouncer) una(l Link, addr netip.Addr) error {
	c := a.ndp[l.Index]
	if c == nil {
		err := inNetns(a.netns, func() error {
			ifi, err := net.InterfaceByIndex(l.Index)
			if err != nil {
				return err
			}
			c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: dropAllFilter})
			return err
		})
		if err != nil {
			return fmt.Errorf("unsolicited na on %s: %w", l.Name, mapErr(err))
		}
		a.ndp[l.Index] = c
	}
	if _, err := c.WriteTo(unsolicitedNA(l.HardwareAddr, addr), &packet.Addr{HardwareAddr: ethAllNodes}); err != nil {
		c.Close()
		delete(a.ndp, l.Index)
		return fmt.Errorf("unsolicited na on %s: %w", l.Name, err)
	}
	return nil
}

// Close closes every socket.
func (a *PacketAnnouncer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for i, c := range a.arp {
		errs = append(errs, c.Close())
		delete(a.arp, i)
	}
	for i, c := range a.ndp {
		errs = append(errs, c.Close())
		delete(a.ndp, i)
	}
	return errors.Join(errs...)
}
