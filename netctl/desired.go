package netctl

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// InterfacePrefix starts the name of every WireGuard interface netctl owns.
const InterfacePrefix = "fg-"

// maxIfName is IFNAMSIZ (16) minus the terminating NUL.
const maxIfName = 15

// DefaultMTU is the WireGuard MTU the platform uses.
const DefaultMTU = 1420

// Desired is the state netctl converges the host to. The agent builds it from
// the replicated state; netctl owns the type.
type Desired struct {
	Interfaces []Interface `json:"interfaces"`
	// VIPs this node should hold now through the reconciler. VIPs driven by
	// the HA code through MountVIP/UnmountVIP must not be listed here.
	VIPs []VIP `json:"vips"`
}

// Interface is one WireGuard interface (one overlay network).
type Interface struct {
	// Name starts with "fg-" and is at most 15 bytes.
	Name       string `json:"name"`
	ListenPort int    `json:"listen_port"`
	// MTU defaults to 1420 when zero.
	MTU       int            `json:"mtu"`
	Addresses []netip.Prefix `json:"addresses"`
	Peers     []Peer         `json:"peers"`
}

// Peer is one WireGuard peer of an interface.
type Peer struct {
	// PublicKey is the peer's base64 Curve25519 public key.
	PublicKey string `json:"public_key"`
	// Endpoint is optional (zero value: none, the peer roams to us).
	Endpoint            netip.AddrPort `json:"endpoint"`
	AllowedIPs          []netip.Prefix `json:"allowed_ips"`
	PersistentKeepalive time.Duration  `json:"persistent_keepalive"`
}

// VIP is a virtual IP mounted as a host address on an existing interface.
type VIP struct {
	Name string `json:"name"`
	// Addr is a /32 or /128.
	Addr      netip.Prefix `json:"addr"`
	Interface string       `json:"interface"`
}

// ObjectError names one refused or failed object.
type ObjectError struct {
	// Kind is "interface", "peer", "address", "route" or "vip".
	Kind string `json:"kind"`
	// ID names the object: interface name, "iface/pubkey", "iface/prefix",
	// VIP name.
	ID  string `json:"id"`
	Err error  `json:"-"`
}

func (e *ObjectError) Error() string { return fmt.Sprintf("%s %s: %v", e.Kind, e.ID, e.Err) }
func (e *ObjectError) Unwrap() error { return e.Err }

func objErr(kind, id string, err error) *ObjectError {
	return &ObjectError{Kind: kind, ID: id, Err: err}
}

// ValidateName checks an interface name: "fg-" prefix, at most 15 bytes, no
// '/', whitespace or NUL.
func ValidateName(name string) error {
	if !strings.HasPrefix(name, InterfacePrefix) {
		return fmt.Errorf("%w: name %q lacks prefix %q", ErrInvalid, name, InterfacePrefix)
	}
	if len(name) > maxIfName {
		return fmt.Errorf("%w: %q is %d bytes, at most %d", ErrNameTooLong, name, len(name), maxIfName)
	}
	if len(name) == len(InterfacePrefix) || strings.ContainsAny(name, "/ \t\n\x00:") {
		return fmt.Errorf("%w: bad interface name %q", ErrInvalid, name)
	}
	return nil
}

// Validate checks one peer.
func (p Peer) Validate() error {
	k, err := wgtypes.ParseKey(p.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrInvalid, err)
	}
	if k == (wgtypes.Key{}) {
		return fmt.Errorf("%w: public key is all zero", ErrInvalid)
	}
	if p.Endpoint.IsValid() {
		a := p.Endpoint.Addr()
		if p.Endpoint.Port() == 0 || a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("%w: endpoint %s", ErrInvalid, p.Endpoint)
		}
	} else if p.Endpoint != (netip.AddrPort{}) {
		return fmt.Errorf("%w: endpoint %s", ErrInvalid, p.Endpoint)
	}
	for _, a := range p.AllowedIPs {
		if !a.IsValid() || a != a.Masked() {
			return fmt.Errorf("%w: allowed ip %s is not a canonical prefix", ErrInvalid, a)
		}
	}
	if p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535*time.Second || p.PersistentKeepalive%time.Second != 0 {
		return fmt.Errorf("%w: persistent keepalive %s (whole seconds, 0..65535)", ErrInvalid, p.PersistentKeepalive)
	}
	return nil
}

// Validate checks an interface without its peers (each peer is validated on
// its own so that one bad peer does not refuse the interface).
func (i Interface) Validate() error {
	if err := ValidateName(i.Name); err != nil {
		return err
	}
	if i.ListenPort < 0 || i.ListenPort > 65535 {
		return fmt.Errorf("%w: listen port %d", ErrInvalid, i.ListenPort)
	}
	if i.MTU != 0 && (i.MTU < 1280 || i.MTU > 9000) {
		return fmt.Errorf("%w: mtu %d (1280..9000)", ErrInvalid, i.MTU)
	}
	for _, a := range i.Addresses {
		if !a.IsValid() {
			return fmt.Errorf("%w: address %s", ErrInvalid, a)
		}
	}
	return nil
}

// Validate checks a VIP.
func (v VIP) Validate() error {
	if v.Name == "" {
		return fmt.Errorf("%w: vip without name", ErrInvalid)
	}
	if !v.Addr.IsValid() || v.Addr.Bits() != v.Addr.Addr().BitLen() {
		return fmt.Errorf("%w: vip address %s must be a /32 or /128", ErrInvalid, v.Addr)
	}
	a := v.Addr.Addr()
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.Is4In6() {
		return fmt.Errorf("%w: vip address %s", ErrInvalid, v.Addr)
	}
	if v.Interface == "" || len(v.Interface) > maxIfName {
		return fmt.Errorf("%w: vip interface %q", ErrInvalid, v.Interface)
	}
	return nil
}

// Validate checks the whole desired state and returns every problem, each an
// *ObjectError naming the bad object. Reconcile applies everything else.
func (d Desired) Validate() error {
	_, errs, _ := d.sanitize()
	return errors.Join(errs...)
}

// sanitize returns the valid subset of d (with defaults filled), an error
// per refused object, and per interface the parseable keys of refused peers
// (an existing peer with such a key is left as it is, not removed).
func (d Desired) sanitize() (Desired, []error, map[string]map[wgtypes.Key]bool) {
	var out Desired
	var errs []error
	refused := map[string]map[wgtypes.Key]bool{}
	names := map[string]bool{}
	for _, in := range d.Interfaces {
		if err := in.Validate(); err != nil {
			errs = append(errs, objErr("interface", in.Name, err))
			continue
		}
		if names[in.Name] {
			errs = append(errs, objErr("interface", in.Name, fmt.Errorf("%w: duplicate interface", ErrInvalid)))
			continue
		}
		names[in.Name] = true
		clean := in
		if clean.MTU == 0 {
			clean.MTU = DefaultMTU
		}
		clean.Addresses = append([]netip.Prefix(nil), in.Addresses...)
		clean.Peers = nil
		keys := make(map[string]bool, len(in.Peers))
		allowed := make(map[netip.Prefix]string, len(in.Peers))
		refuse := func(p Peer) {
			if k, err := wgtypes.ParseKey(p.PublicKey); err == nil {
				if refused[in.Name] == nil {
					refused[in.Name] = map[wgtypes.Key]bool{}
				}
				refused[in.Name][k] = true
			}
		}
		for _, p := range in.Peers {
			id := in.Name + "/" + p.PublicKey
			if err := p.Validate(); err != nil {
				errs = append(errs, objErr("peer", id, err))
				refuse(p)
				continue
			}
			if keys[p.PublicKey] {
				errs = append(errs, objErr("peer", id, fmt.Errorf("%w: duplicate peer", ErrInvalid)))
				continue
			}
			var dup error
			for _, a := range p.AllowedIPs {
				if o, ok := allowed[a]; ok {
					dup = fmt.Errorf("%w: allowed ip %s already belongs to peer %s", ErrInvalid, a, o)
					break
				}
			}
			if dup != nil {
				errs = append(errs, objErr("peer", id, dup))
				refuse(p)
				continue
			}
			keys[p.PublicKey] = true
			for _, a := range p.AllowedIPs {
				allowed[a] = p.PublicKey
			}
			clean.Peers = append(clean.Peers, p)
		}
		out.Interfaces = append(out.Interfaces, clean)
	}
	vipNames := map[string]bool{}
	vipAddrs := map[netip.Addr]bool{}
	for _, in := range out.Interfaces {
		for _, a := range in.Addresses {
			vipAddrs[a.Addr()] = true // a VIP may not reuse an interface address
		}
	}
	for _, v := range d.VIPs {
		if err := v.Validate(); err != nil {
			errs = append(errs, objErr("vip", v.Name, err))
			continue
		}
		if vipNames[v.Name] || vipAddrs[v.Addr.Addr()] {
			errs = append(errs, objErr("vip", v.Name, fmt.Errorf("%w: duplicate vip name or address %s", ErrInvalid, v.Addr)))
			continue
		}
		vipNames[v.Name], vipAddrs[v.Addr.Addr()] = true, true
		out.VIPs = append(out.VIPs, v)
	}
	return out, errs, refused
}
