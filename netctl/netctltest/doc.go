// Package netctltest holds stateful in-memory fakes of netctl's OS seams: a
// Host with links, addresses, routes and WireGuard devices, viewed as a
// netctl.Netlink, a netctl.WGClient, a netctl.DeviceLauncher, a
// netctl.Announcer and a netctl.Fence. Render (and RenderFence) print the
// state as stable text for go-cmp comparisons; Journal records the order of
// address, announcement and fence changes; Fail and InterruptDumps inject
// faults.
package netctltest
