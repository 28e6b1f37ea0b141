package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/raftstore"
)

// netPart is netctl wired to the replicated state: WireGuard interfaces
// from config with peers from raft, and the site's VIPs mounted by the raft
// leader (see vips.go).
type netPart struct {
	m       *netctl.Manager
	updates chan netctl.Desired
	vips    *vipOwner
}

func (a *Agent) netKeyFile() string {
	if a.cfg.Net.KeyFile != "" {
		return a.cfg.Net.KeyFile
	}
	return a.dataPath("wireguard", "private.key")
}

// newNetManager builds netctl's manager on the real kernel seams.
func newNetManager(cfg Config, keyFile string, a *Agent) (*netctl.Manager, error) {
	key, err := netctl.LoadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	wg, err := netctl.NewWGClient("")
	if err != nil {
		return nil, fmt.Errorf("wireguard client: %w", err)
	}
	nl, err := netctl.NewNetlink("")
	if err != nil {
		wg.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	logDir := cfg.Net.DeviceLogDir
	launcher, err := netctl.NewProcessLauncher(netctl.LauncherConfig{LogDir: logDir, Logger: a.log.With("component", "wg-launcher")})
	if err != nil {
		return nil, err
	}
	nc := netctl.Config{WG: wg, Netlink: nl, Launcher: launcher, Announcer: netctl.NewAnnouncer(""),
		Fence:  netctl.NewFenceConfig(netctl.FenceConfig{Logger: a.log.With("component", "l2fence")}),
		Logger: a.log.With("component", "netctl"), PrivateKey: key, Backend: cfg.Net.Backend}
	if a.reg != nil {
		nc.Registerer = a.reg
	}
	return netctl.New(nc)
}

// startNet starts netctl when the config and the host allow it.
func (a *Agent) startNet(ctx context.Context) error {
	mode := a.cfg.Net.Mode
	if mode == "off" {
		a.log.Info("netctl is off: no WireGuard interfaces or VIPs on this node")
		return nil
	}
	if err := netctl.Preflight(a.cfg.Net.Backend); err != nil {
		if mode == "auto" {
			a.log.Warn("netctl disabled: this host does not allow it", LogKeyErr, err)
			return nil
		}
		return fmt.Errorf("netctl: %w (set netctl.mode: off to run without WireGuard and VIPs)", err)
	}
	m, err := newNetManager(a.cfg, a.netKeyFile(), a)
	if err != nil {
		if mode == "auto" {
			a.log.Warn("netctl disabled", LogKeyErr, err)
			return nil
		}
		return fmt.Errorf("netctl: %w", err)
	}
	s := a.store.Load()
	np := &netPart{m: m, updates: make(chan netctl.Desired, 1)}
	np.vips = newVIPOwner(a.nodeID, s, m, a.cfg.Net.VIPInterface, a.log.With("component", "vips"))
	a.net = np
	a.closers = append(a.closers, func() { _ = m.Close() })
	a.bg.Add(2)
	go func() {
		defer a.bg.Done()
		if err := m.Run(ctx, np.updates); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("netctl stopped", LogKeyErr, err)
		}
	}()
	a.feedNet(ctx, s, np)
	go func() { defer a.bg.Done(); np.vips.run(ctx) }()
	a.publishWGKey(ctx, s, m.PublicKey().String())
	return nil
}

// publishWGKey puts this node's WireGuard public key into the replicated
// state (the private key stays in its 0600 file).
func (a *Agent) publishWGKey(ctx context.Context, s *raftstore.Store, pub string) {
	if k, ok := s.State().WGKey(a.nodeID); ok && k.PublicKey == pub {
		return
	}
	if _, err := a.apply(ctx, raftstore.CmdWGKeyPut, raftstore.WGKeyPutPayload{NodeID: a.nodeID, PublicKey: pub}); err != nil {
		a.log.Warn("could not publish the WireGuard public key", LogKeyErr, err)
	}
}

// feedNet sends netctl a new Desired now and whenever the replicated
// state changes; netctl's Run keeps only the newest.
func (a *Agent) feedNet(ctx context.Context, s *raftstore.Store, np *netPart) {
	var mu sync.Mutex
	send := func() {
		mu.Lock()
		defer mu.Unlock()
		d := desiredNet(a.cfg.Net, s.State(), func(msg string, args ...any) { a.log.Warn(msg, args...) })
		select { // keep only the newest
		case <-np.updates:
		default:
		}
		np.updates <- d
	}
	send()
	a.onChange(ctx, send)
}

// desiredNet renders the configured interfaces with their peers from the
// replicated state. A peer whose fields do not parse is left out and
// reported; netctl refuses (and reports) what it cannot apply.
func desiredNet(cfg NetConfig, st *raftstore.State, warn func(string, ...any)) netctl.Desired {
	d := netctl.Desired{Interfaces: []netctl.Interface{}, VIPs: []netctl.VIP{}}
	peers := st.WGPeers()
	for _, ic := range cfg.Interfaces {
		ifc := netctl.Interface{Name: ic.Name, ListenPort: ic.ListenPort, MTU: ic.MTU, Peers: []netctl.Peer{}}
		if ifc.ListenPort == 0 {
			ifc.ListenPort = 51820
		}
		for _, a := range ic.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				ifc.Addresses = append(ifc.Addresses, p)
			}
		}
		for _, p := range peers {
			if p.Interface != ic.Name {
				continue
			}
			np := netctl.Peer{PublicKey: p.PublicKey, PersistentKeepalive: time.Duration(p.PersistentKeepalive) * time.Second}
			if p.Endpoint != "" {
				ep, err := netip.ParseAddrPort(p.Endpoint)
				if err != nil {
					warn("wireguard peer has an invalid endpoint: left out", "peer", p.Name, "endpoint", p.Endpoint)
					continue
				}
				np.Endpoint = ep
			}
			bad := false
			for _, s := range p.AllowedIPs {
				pf, err := netip.ParsePrefix(s)
				if err != nil {
					warn("wireguard peer has an invalid allowed IP: left out", "peer", p.Name, "allowed_ip", s)
					bad = true
					break
				}
				np.AllowedIPs = append(np.AllowedIPs, pf)
			}
			if !bad {
				ifc.Peers = append(ifc.Peers, np)
			}
		}
		d.Interfaces = append(d.Interfaces, ifc)
	}
	return d
}

type tunnelsResponse struct {
	Enabled bool          `json:"enabled"`
	Status  netctl.Status `json:"status"`
}

func (a *Agent) handleTunnels(w http.ResponseWriter, r *http.Request) error {
	if a.net == nil {
		writeJSON(w, http.StatusOK, tunnelsResponse{Status: netctl.Status{Interfaces: []netctl.InterfaceStatus{}, VIPs: []netctl.VIPStatus{}}})
		return nil
	}
	st, err := a.net.m.Status(r.Context())
	if err != nil {
		return err
	}
	if st.Interfaces == nil {
		st.Interfaces = []netctl.InterfaceStatus{}
	}
	writeJSON(w, http.StatusOK, tunnelsResponse{Enabled: true, Status: st})
	return nil
}

// vipView is one VIP as `fedgate vips` shows it: the replicated record and
// this node's view of the mount.
type vipView struct {
	raftstore.VIP
	MountedHere  bool      `json:"mounted_here"`
	LastAnnounce time.Time `json:"last_announce,omitzero"`
	Error        string    `json:"error,omitempty"`
}

func (a *Agent) handleVIPs(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	local := map[string]netctl.VIPStatus{}
	if a.net != nil {
		if ns, err := a.net.m.Status(r.Context()); err == nil {
			for _, v := range ns.VIPs {
				local[v.Name] = v
			}
		}
	}
	out := []vipView{}
	for _, v := range st.VIPs() {
		lv := local[v.Name]
		out = append(out, vipView{VIP: v, MountedHere: lv.MountedHere, LastAnnounce: lv.LastAnnounce, Error: lv.Error})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *Agent) handleVIPAdd(w http.ResponseWriter, r *http.Request) error {
	var p raftstore.VIPPutPayload
	if err := decodeBody(r, &p); err != nil {
		return err
	}
	pfx, err := netip.ParsePrefix(p.CIDR)
	if err != nil || !pfx.IsSingleIP() {
		return errStatus(http.StatusBadRequest, "bad_vip", "cidr %q must be a /32 or /128", p.CIDR)
	}
	st, err := a.state()
	if err != nil {
		return err
	}
	for _, v := range st.VIPs() {
		if v.CIDR == pfx.String() && v.Name != p.Name {
			return errStatus(http.StatusConflict, "duplicate_vip", "%s is already VIP %q", p.CIDR, v.Name)
		}
	}
	if len(p.HolderNodeIDs)+len(p.FailoverNodeIDs) > 0 {
		ms, err := a.storeMust().Members(r.Context())
		if err != nil {
			return err
		}
		for _, id := range append(slices.Clone(p.HolderNodeIDs), p.FailoverNodeIDs...) {
			if !slices.ContainsFunc(ms, func(m raftstore.ClusterMember) bool { return m.NodeID == id }) {
				return errStatus(http.StatusUnprocessableEntity, "unknown_node", "node %s is not a member of this cluster", id)
			}
		}
	}
	p.CIDR = pfx.String()
	if _, err := a.apply(r.Context(), raftstore.CmdVIPPut, p); err != nil {
		return err
	}
	v, _ := a.storeMust().State().VIP(p.Name)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (a *Agent) handleVIPDelete(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, err := a.apply(r.Context(), raftstore.CmdVIPDelete, raftstore.VIPDeletePayload{Name: name}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
	return nil
}
