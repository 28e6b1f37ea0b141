package netctl

import "errors"

// Sentinel errors. Per-object failures in a Result wrap one of these, so the
// agent can map them with errors.Is.
var (
	// ErrInvalid marks a desired object refused at validation.
	ErrInvalid = errors.New("invalid desired object")
	// ErrNameTooLong marks an interface name longer than IFNAMSIZ-1 bytes.
	ErrNameTooLong = errors.New("interface name too long")
	// ErrAddressInUse marks an address (or route) that exists without
	// fedgate's marker: it belongs to someone else and is not taken over.
	ErrAddressInUse = errors.New("address owned by something else")
	// ErrNoInterface marks a VIP whose configured interface does not exist.
	ErrNoInterface = errors.New("interface not found")
	// ErrNoTUN means /dev/net/tun is missing or unusable (userspace backend).
	ErrNoTUN = errors.New("tun device unavailable: needs /dev/net/tun (character device 10,200) and CAP_NET_ADMIN")
	// ErrPermission means the process lacks CAP_NET_ADMIN.
	ErrPermission = errors.New("operation not permitted: needs CAP_NET_ADMIN")
	// ErrKeyFileMode means the private key file is readable by group or others.
	ErrKeyFileMode = errors.New("private key file mode too open: want 0600")
	// ErrKernelUnsupported means the kernel has no wireguard link type.
	ErrKernelUnsupported = errors.New("kernel wireguard not supported")
	// ErrDeviceTimeout marks a WireGuard device that did not answer within
	// Config.DeviceTimeout (e.g. a stopped userspace device process).
	ErrDeviceTimeout = errors.New("wireguard device did not answer in time")
	// ErrDeviceStart means the userspace device process did not come up.
	ErrDeviceStart = errors.New("userspace wireguard device did not start")
)
