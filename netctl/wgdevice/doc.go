// Package wgdevice hosts one userspace WireGuard device (wireguard-go on a
// TUN interface) for the lifetime of a process. The agent exposes Run as
// `fedgated wg-device <iface>`; netctl's ProcessLauncher starts that
// command, so the data plane lives in its own process and survives an agent
// restart. The device is configured only through its UAPI socket
// /var/run/wireguard/<iface>.sock, which wgctrl finds on its own.
//
// The process ends when ctx is cancelled (SIGTERM in the command), when the
// TUN interface is deleted (netctl's Cleanup and garbage collection delete
// the link), or when the UAPI socket file is removed.
package wgdevice
