package netctl

import (
	"context"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Peer health as the platform counts it, from the latest handshake age.
const (
	HealthActive       = "active"       // handshake < 3 min ago
	HealthDegraded     = "degraded"     // < 5 min
	HealthDisconnected = "disconnected" // older or never
)

// Health classifies a handshake age (negative: never).
func Health(age time.Duration) string {
	switch {
	case age < 0:
		return HealthDisconnected
	case age < 3*time.Minute:
		return HealthActive
	case age < 5*time.Minute:
		return HealthDegraded
	}
	return HealthDisconnected
}

// Status is what the agent serves for `fedgate tunnels` / `fedgate vips`.
type Status struct {
	Interfaces []InterfaceStatus `json:"interfaces"`
	VIPs       []VIPStatus       `json:"vips"`
	// Errors of the last reconcile pass.
	Errors []string `json:"errors,omitempty"`
}

// InterfaceStatus describes one fedgate WireGuard interface.
type InterfaceStatus struct {
	Name       string       `json:"name"`
	Backend    string       `json:"backend"` // kernel or userspace
	ListenPort int          `json:"listen_port"`
	PublicKey  string       `json:"public_key"`
	MTU        int          `json:"mtu"`
	Up         bool         `json:"up"`
	Addresses  []string     `json:"addresses"`
	Peers      []PeerStatus `json:"peers"`
	Error      string       `json:"error,omitempty"`
}

// PeerStatus describes one peer.
type PeerStatus struct {
	PublicKey                  string    `json:"public_key"`
	Endpoint                   string    `json:"endpoint,omitempty"`
	AllowedIPs                 []string  `json:"allowed_ips"`
	PersistentKeepaliveSeconds int       `json:"persistent_keepalive_seconds"`
	LatestHandshake            time.Time `json:"latest_handshake,omitzero"`
	// HandshakeAgeSeconds is -1 when there was never a handshake.
	HandshakeAgeSeconds float64 `json:"handshake_age_seconds"`
	RxBytes             int64   `json:"rx_bytes"`
	TxBytes             int64   `json:"tx_bytes"`
	Health              string  `json:"health"`
}

// VIPStatus describes one VIP netctl manages on this node.
type VIPStatus struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"`
	Interface string `json:"interface"`
	// Source is "desired" (Reconcile) or "ha" (MountVIP).
	Source       string    `json:"source"`
	MountedHere  bool      `json:"mounted_here"`
	LastAnnounce time.Time `json:"last_announce,omitzero"`
	Error        string    `json:"error,omitempty"`
}

// Status reads the kernel and WireGuard now. It reports every fg- WireGuard
// link (desired or not) and every VIP netctl is asked to hold.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	// Copy the in-memory state under mu, then read the kernel and the
	// devices without it: a hung device must never block MountVIP.
	type annCopy struct {
		last time.Time
		err  error
	}
	m.mu.Lock()
	var st Status
	var vipErrs = map[string]string{}
	for _, e := range m.last.Errors {
		st.Errors = append(st.Errors, e.Error())
		if e.Kind == "vip" {
			vipErrs[e.ID] = e.Err.Error()
		}
	}
	desired := append([]VIP(nil), m.desired.VIPs...)
	var ha []VIP
	for _, v := range m.haVIPs {
		if !slices.ContainsFunc(desired, func(x VIP) bool { return x.Addr == v.Addr }) {
			ha = append(ha, v)
		}
	}
	ann := make(map[netip.Addr]annCopy, len(m.ann))
	for a, s := range m.ann {
		ann[a] = annCopy{s.last, s.lastErr}
	}
	m.mu.Unlock()

	snap, err := m.dump()
	if err != nil {
		return st, err
	}
	ix := newIndex(snap)
	now := m.cfg.Clock.Now()
	health := map[string]int{HealthActive: 0, HealthDegraded: 0, HealthDisconnected: 0}
	for _, l := range snap.Links {
		if !strings.HasPrefix(l.Name, InterfacePrefix) || !isWGKind(l.Kind) {
			continue
		}
		is := InterfaceStatus{Name: l.Name, MTU: l.MTU, Up: l.Up, Backend: BackendKernel, Addresses: []string{}, Peers: []PeerStatus{}}
		if l.Kind == KindTuntap {
			is.Backend = BackendUserspace
		}
		for _, a := range snap.Addrs {
			if a.LinkIndex == l.Index {
				is.Addresses = append(is.Addresses, a.Prefix.String())
			}
		}
		sort.Strings(is.Addresses)
		dev, err := m.wgDevice(l.Name)
		if err != nil {
			is.Error = err.Error()
			st.Interfaces = append(st.Interfaces, is)
			continue
		}
		is.ListenPort = dev.ListenPort
		is.PublicKey = dev.PublicKey.String()
		for _, p := range dev.Peers {
			ps := peerStatus(p, now)
			health[ps.Health]++
			is.Peers = append(is.Peers, ps)
		}
		sort.Slice(is.Peers, func(i, j int) bool { return is.Peers[i].PublicKey < is.Peers[j].PublicKey })
		st.Interfaces = append(st.Interfaces, is)
	}
	for h, n := range health {
		m.m.peers.WithLabelValues(h).Set(float64(n))
	}
	add := func(v VIP, source string) {
		vs := VIPStatus{Name: v.Name, Addr: v.Addr.String(), Interface: v.Interface, Source: source}
		if l, ok := ix.byName[v.Interface]; ok {
			vs.MountedHere = slices.ContainsFunc(ix.addrs[v.Addr.Addr()], func(a Addr) bool {
				return a.Marked() && a.LinkIndex == l.Index
			})
		}
		if a, ok := ann[v.Addr.Addr()]; ok {
			vs.LastAnnounce = a.last
			if a.err != nil {
				vs.Error = a.err.Error()
			}
		}
		if e, ok := vipErrs[v.Name]; ok {
			vs.Error = e
		}
		st.VIPs = append(st.VIPs, vs)
	}
	for _, v := range desired {
		add(v, "desired")
	}
	for _, v := range ha {
		add(v, "ha")
	}
	sort.Slice(st.VIPs, func(i, j int) bool { return st.VIPs[i].Name < st.VIPs[j].Name })
	return st, nil
}

func peerStatus(p wgtypes.Peer, now time.Time) PeerStatus {
	ps := PeerStatus{
		PublicKey:                  p.PublicKey.String(),
		PersistentKeepaliveSeconds: int(p.PersistentKeepaliveInterval / time.Second),
		RxBytes:                    p.ReceiveBytes,
		TxBytes:                    p.TransmitBytes,
		HandshakeAgeSeconds:        -1,
		AllowedIPs:                 []string{},
	}
	if p.Endpoint != nil {
		ap := p.Endpoint.AddrPort()
		ps.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	for _, a := range p.AllowedIPs {
		ps.AllowedIPs = append(ps.AllowedIPs, ipNetToPrefix(a).String())
	}
	age := time.Duration(-1)
	if !p.LastHandshakeTime.IsZero() {
		ps.LatestHandshake = p.LastHandshakeTime
		age = now.Sub(p.LastHandshakeTime)
		if age < 0 {
			age = 0
		}
		ps.HandshakeAgeSeconds = age.Seconds()
	}
	ps.Health = Health(age)
	return ps
}
