// Package netctltest holds stateful in-memory fakes of netctl's OS seams: a
// Host with links, addresses, routes and WireGuard devices, viewed as a
// netctl.Netlink, a netctl.WGClient, a netctl.DeviceLauncher and a
// netctl.Announcer. Render prints the whole state as stable text for go-cmp
// comparisons; Fail and InterruptDumps inject faults.
package netctltest
