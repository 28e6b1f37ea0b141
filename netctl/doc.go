// Package netctl puts fedgate's overlay on the host: WireGuard interfaces and
// peers (through wgctrl), their addresses and routes, and the site's VIPs
// (through rtnetlink), reconciled from a Desired state by minimal diff.
//
// The agent builds a Manager from real seams and feeds it Desired values:
//
//	if err := netctl.Preflight(netctl.BackendAuto); err != nil { ... } // names the capability
//	m, err := netctl.Open(netctl.HostConfig{
//		KeyFile: "/var/lib/fedgate/wireguard.key", // 0600, created on first use
//		Logger: log, Registerer: reg,
//	})                                           // device command: <self> wg-device <iface>
//	defer m.Close()                              // leaves the kernel state as is
//	pub := m.PublicKey()                         // replicate this, never the private key
//	go m.Run(ctx, desiredUpdates)              // or m.Reconcile(ctx, d)
//	st, _ := m.Status(ctx)                      // JSON for `fedgate tunnels`/`vips`
//	m.MountVIP(ctx, vip); m.UnmountVIP(ctx, vip.Addr) // HA
//	m.Cleanup(ctx)                              // `fedgated --cleanup`
//
// Everything netctl creates is marked — links by the "fg-" name prefix (and
// a WireGuard kind), addresses by ifa_proto AddrProtocol, routes by
// rtm_protocol RouteProtocol, the L2 fence's nftables tables by their name
// FenceTable — and only marked objects are ever removed. With a Fence
// (NewFence), only the holder process answers ARP/NS for the VIPs it
// mounted through MountVIP: a killed or frozen holder is silent at once.
// Userspace WireGuard runs in a separate process (package wgdevice) so the
// data plane survives an agent restart. See DESIGN.md for the invariants.
package netctl
