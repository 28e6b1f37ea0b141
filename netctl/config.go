package netctl

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Backends.
const (
	BackendAuto      = "auto"
	BackendKernel    = "kernel"
	BackendUserspace = "userspace"
)

// Config configures a Manager. Zero values take the defaults below.
type Config struct {
	// WG and Netlink are the OS seams (required). See NewWGClient and
	// NewNetlink for the real ones, netctltest for fakes.
	WG      WGClient
	Netlink Netlink
	// Launcher hosts userspace devices; required unless Backend is kernel.
	Launcher DeviceLauncher
	// Announcer sends gratuitous ARP / unsolicited NA; nil sends nothing.
	Announcer Announcer
	// Fence ties L2 answers for VIPs mounted by MountVIP to this process
	// (see Fence and NewFence); nil leaves answering to the kernel.
	Fence  Fence
	Logger *slog.Logger
	Clock  Clock
	// PrivateKey is the node's WireGuard key (LoadOrCreateKey), used for
	// every interface (required).
	PrivateKey wgtypes.Key
	// Backend is auto (kernel when the wireguard link type exists, else
	// userspace), kernel or userspace. Default auto.
	Backend string
	// AnnounceBurst rounds are sent AnnounceBurstInterval apart after a
	// mount (default 3, 250ms); then one round every AnnounceRefresh
	// (default 10s; negative disables the refresh).
	AnnounceBurst         int
	AnnounceBurstInterval time.Duration
	AnnounceRefresh       time.Duration
	// VIPLease is the kernel lifetime of addresses mounted by MountVIP
	// (default 2s; negative: no lifetime, mounted forever). The holder must
	// call RenewVIPs more often than this, or the kernel drops the
	// addresses by itself and announcements for them stop: a killed or
	// frozen holder loses its VIPs within VIPLease (rounded up to whole
	// seconds by the kernel).
	VIPLease time.Duration
	// RetryMin/RetryMax bound Run's backoff after a failed object (default
	// 250ms, 30s). Resync re-reads the kernel this often even without
	// change (default 30s).
	RetryMin, RetryMax time.Duration
	Resync             time.Duration
	// DeviceTimeout bounds each wgctrl call (default 5s).
	DeviceTimeout time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Backend == "" {
		c.Backend = BackendAuto
	}
	if c.AnnounceBurst == 0 {
		c.AnnounceBurst = 3
	}
	if c.AnnounceBurstInterval == 0 {
		c.AnnounceBurstInterval = 250 * time.Millisecond
	}
	if c.AnnounceRefresh == 0 {
		c.AnnounceRefresh = 10 * time.Second
	}
	if c.VIPLease == 0 {
		c.VIPLease = 2 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 250 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.Resync == 0 {
		c.Resync = 30 * time.Second
	}
	if c.DeviceTimeout == 0 {
		c.DeviceTimeout = 5 * time.Second
	}
}

// Validate reports a Config that cannot work.
func (c *Config) Validate() error {
	if c.WG == nil || c.Netlink == nil {
		return fmt.Errorf("netctl config: WG and Netlink are required")
	}
	if c.PrivateKey == (wgtypes.Key{}) {
		return fmt.Errorf("netctl config: PrivateKey is required")
	}
	switch c.Backend {
	case BackendAuto, BackendKernel, BackendUserspace:
	default:
		return fmt.Errorf("netctl config: backend %q (auto, kernel, userspace)", c.Backend)
	}
	if c.Backend != BackendKernel && c.Launcher == nil {
		return fmt.Errorf("netctl config: backend %s needs a Launcher", c.Backend)
	}
	if c.AnnounceBurst < 1 || c.AnnounceBurstInterval < 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		return fmt.Errorf("netctl config: bad announce or retry timing")
	}
	return nil
}
