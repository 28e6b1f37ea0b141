package netctl

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/powernode/fedgate/netctl/wgdevice"
)

// Capabilities netctl needs in its effective set.
const (
	capNetAdmin = 12 // CAP_NET_ADMIN: links, addresses, routes, WireGuard, TUN
	capNetRaw   = 13 // CAP_NET_RAW: gratuitous ARP / unsolicited NA sockets
)

// Preflight checks, before the agent starts netctl, that the process holds
// CAP_NET_ADMIN and CAP_NET_RAW and — when userspace WireGuard may be
// needed (backend auto or userspace) — that /dev/net/tun is usable. Each
// error names what is missing (ErrPermission, ErrNoTUN).
func Preflight(backend string) error {
	var errs []error
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		errs = append(errs, fmt.Errorf("read capabilities: %w", err))
	} else {
		has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
		if !has(capNetAdmin) {
			errs = append(errs, fmt.Errorf("%w (missing from the effective set)", ErrPermission))
		}
		if !has(capNetRaw) {
			errs = append(errs, fmt.Errorf("operation not permitted: VIP announcements need CAP_NET_RAW (missing from the effective set)"))
		}
	}
	if backend != BackendKernel {
		if err := wgdevice.Check(); err != nil {
			if errors.Is(err, wgdevice.ErrPermission) {
				errs = append(errs, fmt.Errorf("%w: %v", ErrPermission, err))
			} else {
				errs = append(errs, fmt.Errorf("%w: %v", ErrNoTUN, err))
			}
		}
	}
	return errors.Join(errs...)
}
