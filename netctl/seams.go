package netctl

import (
	"context"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// RouteProtocol is the rtm_protocol fedgate stamps on every route it adds
// (RTPROT 0xfe; `ip route show proto 254`). Only routes with it are collected.
const RouteProtocol = 0xfe

// AddrProtocol is the ifa_proto (IFA_PROTO, Linux >= 5.18) fedgate stamps on
// every address it adds, IPv4 and IPv6 alike (`ip addr` shows "proto 0xfe").
// Only addresses with it are collected.
const AddrProtocol = 0xfe

// Link kinds as netlink reports them.
const (
	KindWireguard = "wireguard"
	KindTuntap    = "tuntap"
)

// Link is the part of a kernel link netctl looks at.
type Link struct {
	Name         string
	Index        int
	Kind         string
	MTU          int
	Up           bool
	HardwareAddr net.HardwareAddr
}

// Addr is one interface address.
type Addr struct {
	LinkIndex int
	Prefix    netip.Prefix
	// Protocol is ifa_proto; AddrProtocol marks fedgate's.
	Protocol uint8
	// NoDAD asks for IFA_F_NODAD (IPv6).
	NoDAD bool
	// NoPrefixRoute asks for IFA_F_NOPREFIXROUTE: the kernel adds no prefix
	// route for the address. Leased IPv6 VIPs use it: the kernel leaves the
	// prefix route of a deleted address with a lifetime in place until that
	// lifetime ends, and a /128 needs none.
	NoPrefixRoute bool
	// ValidLft is the address's lifetime (IFA_CACHEINFO, whole seconds,
	// rounded up; preferred = valid): the kernel deletes the address by
	// itself once it runs out unless ReplaceAddr renews it. 0 is forever.
	// Dump reports the remaining lifetime.
	ValidLft time.Duration
}

// Marked reports whether fedgate created a.
func (a Addr) Marked() bool { return a.Protocol == AddrProtocol }

// Route is one main-table unicast route out of a link.
type Route struct {
	LinkIndex int
	Dst       netip.Prefix
	Protocol  int
}

// Snapshot is one consistent read of links, addresses and fedgate's routes.
type Snapshot struct {
	Links []Link
	Addrs []Addr
	// Routes holds only routes with Protocol == RouteProtocol.
	Routes []Route
}

// Netlink is netctl's seam over rtnetlink.
//
// Errors: a dump interrupted by a concurrent change returns an error
// matching netlink.ErrDumpInterrupted (the caller retries); adding what
// exists returns an error matching fs.ErrExist, deleting what is gone one
// matching fs.ErrNotExist; a kind the kernel lacks returns
// ErrKernelUnsupported; missing capability ErrPermission.
type Netlink interface {
	// Dump reads all links, all addresses and fedgate's routes.
	Dump() (*Snapshot, error)
	// AddLink creates a link of kind (only KindWireguard is used) with mtu.
	AddLink(name, kind string, mtu int) error
	// SetLink sets mtu (when > 0) and brings the link up.
	SetLink(name string, mtu int) error
	// DeleteLink removes a link by name.
	DeleteLink(name string) error
	// Addr adds (add=true) or deletes a.
	Addr(add bool, a Addr) error
	// ReplaceAddr adds a, or replaces the flags and lifetime of the equal
	// address that exists (RTM_NEWADDR with NLM_F_REPLACE): the renewal of
	// a leased address.
	ReplaceAddr(a Addr) error
	// Route adds (add=true) or deletes r.
	Route(add bool, r Route) error
}

// Watcher is optionally implemented by a Netlink: the returned channel
// receives a (coalesced) signal whenever links or addresses change, and is
// closed when watching stops (ctx done or the subscription failed). Run uses
// it to repair outside changes (a VIP address deleted, an interface gone
// and back) at once instead of at the next resync.
type Watcher interface {
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// WGClient is netctl's seam over wgctrl; *wgctrl.Client satisfies it.
type WGClient interface {
	// Device returns the device's current state; an error matching
	// os.ErrNotExist when no WireGuard device has that name.
	Device(name string) (*wgtypes.Device, error)
	// ConfigureDevice applies cfg incrementally (ReplacePeers is never set).
	ConfigureDevice(name string, cfg wgtypes.Config) error
	Close() error
}

// DeviceLauncher hosts userspace WireGuard devices outside the agent.
type DeviceLauncher interface {
	// Start creates the TUN interface name and returns once WireGuard
	// answers on it, or an error (ErrNoTUN, ErrPermission, ErrDeviceStart).
	Start(ctx context.Context, name string) error
	// Stop ends the device process of name; the link goes with it.
	Stop(ctx context.Context, name string) error
}

// Announcer sends one round of neighbour announcements for addr on the link.
type Announcer interface {
	// Announce sends, for IPv4, a gratuitous ARP request and a gratuitous ARP
	// reply; for IPv6 an unsolicited neighbour advertisement to ff02::1.
	Announce(link Link, addr netip.Addr) error
	Close() error
}

// Claim is one HA VIP the Fence covers.
type Claim struct {
	Addr netip.Addr
	// Link is where this process answers ARP who-has (IPv4) or neighbour
	// solicitations (IPv6) for Addr. A zero Link (Index 0) fences Addr
	// without answering: nobody on this host answers for it (an address
	// being unmounted, or one an earlier process left behind).
	Link Link
	// Until ends the answering (by the real clock): the holder's lease.
	// Zero answers until the claim is withdrawn.
	Until time.Time
}

// Fence makes L2 answers for HA VIPs depend on the holder process: the
// kernel's own ARP replies and neighbour advertisements for a claimed
// address are dropped, and the process answers instead, so a killed or
// frozen holder goes silent at once while its kernel still has the address.
type Fence interface {
	// Set makes claims the complete fenced state: every claimed address
	// is fenced, claims with a Link are answered on it until their Until,
	// and addresses not listed are released. Idempotent. An address whose
	// answering could not be set up is left unfenced (the kernel answers:
	// fail open) and reported in the error.
	Set(claims []Claim) error
	// Remove releases every claim and deletes the kernel objects (cleanup).
	Remove() error
	// Close stops answering and releases sockets; the kernel objects stay.
	Close() error
}

// Clock is the time source (real or fake).
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
