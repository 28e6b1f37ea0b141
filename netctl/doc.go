// Package netctl puts fedgate's overlay on the host: WireGuard interfaces and
// peers (through wgctrl), their addresses and routes, and the site's VIPs
// (through rtnetlink), reconciled from a Desired state by minimal diff.
//
// The agent builds a Manager from real seams and feeds it Desired values:
//
//	key, _ := netctl.LoadOrCreateKey("/var/lib/fedgate/wireguard.key")
//	nl, _ := netctl.NewNetlink("")              // current network namespace
//	wg, _ := netctl.NewWGClient()
//	m, _ := netctl.New(netctl.Config{
//		WG: wg, Netlink: nl, PrivateKey: key,
//		Launcher:  netctl.NewProcessLauncher(netctl.LauncherConfig{}),
//		Announcer: netctl.NewAnnouncer(""),
//		Logger: log, Registerer: reg,
//	})
//	go m.Run(ctx, desiredUpdates)              // or m.Reconcile(ctx, d)
//	st, _ := m.Status(ctx)                      // JSON for `fedgate tunnels`/`vips`
//	m.MountVIP(ctx, vip); m.UnmountVIP(ctx, vip.Addr) // HA
//	m.Cleanup(ctx)                              // `fedgated --cleanup`
//
// Everything netctl creates is marked — links by the "fg-" name prefix (and
// a WireGuard kind), addresses by ifa_proto AddrProtocol, routes by
// rtm_protocol RouteProtocol — and only marked objects are ever removed.
// Userspace WireGuard runs in a separate process (package wgdevice) so the
// data plane survives an agent restart. See DESIGN.md for the invariants.
package netctl
