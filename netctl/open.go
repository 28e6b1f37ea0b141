package netctl

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// HostConfig is what the agent configures; Open builds the real seams from
// it. Zero values take defaults.
type HostConfig struct {
	// KeyFile holds the node's WireGuard private key (created 0600 on first
	// use). Required.
	KeyFile string
	// Netns is a network namespace path; "" is the agent's own.
	Netns string
	// Backend: auto (default), kernel or userspace.
	Backend string
	// DeviceCommand runs a userspace device (iface appended). Default:
	// this executable followed by "wg-device".
	DeviceCommand []string
	// DeviceEnv is added to the device process's environment.
	DeviceEnv []string
	// DeviceLogDir receives wg-<iface>.log (default /run/fedgate).
	DeviceLogDir string
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	// Tuning is applied on top (its seams, key, logger and registerer are
	// ignored).
	Tuning Config
}

// Open loads (or creates) the node key and builds a Manager on rtnetlink,
// wgctrl, the device-process launcher, the packet announcer and the L2
// fence. Close
// releases all of them; it never touches the kernel state.
func Open(hc HostConfig) (*Manager, error) {
	if hc.KeyFile == "" {
		return nil, errors.New("netctl: HostConfig.KeyFile is required")
	}
	key, err := LoadOrCreateKey(hc.KeyFile)
	if err != nil {
		return nil, err
	}
	nl, err := NewNetlink(hc.Netns)
	if err != nil {
		return nil, err
	}
	wg, err := NewWGClient(hc.Netns)
	if err != nil {
		nl.Close()
		return nil, err
	}
	l, err := NewProcessLauncher(LauncherConfig{Command: hc.DeviceCommand, Env: hc.DeviceEnv, Netns: hc.Netns,
		LogDir: hc.DeviceLogDir, Logger: hc.Logger})
	if err != nil {
		nl.Close()
		wg.Close()
		return nil, err
	}
	cfg := hc.Tuning
	cfg.WG, cfg.Netlink, cfg.Launcher = wg, nl, l
	cfg.Announcer = NewAnnouncer(hc.Netns)
	cfg.Fence = NewFenceConfig(FenceConfig{Netns: hc.Netns, Logger: hc.Logger})
	cfg.PrivateKey, cfg.Logger, cfg.Registerer = key, hc.Logger, hc.Registerer
	if hc.Backend != "" {
		cfg.Backend = hc.Backend
	}
	m, err := New(cfg)
	if err != nil {
		nl.Close()
		wg.Close()
		return nil, fmt.Errorf("netctl: %w", err)
	}
	m.closers = []io.Closer{nl, wg}
	return m, nil
}
