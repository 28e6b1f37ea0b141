package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/nstest"
)

// nsSite is a lifecycle site whose fedgated runs inside a network
// namespace, with netctl on (userspace WireGuard on interface fg-fed0).
type nsSite struct {
	*chaosNode
	underlay, overlay string
	outbound          string
	wgIface           string
}

func newNSSite(t *testing.T, ns *nstest.NS, name, underlay, overlay, peerOverlay, backend string) *nsSite {
	t.Helper()
	sfx := make([]byte, 3)
	rand.Read(sfx)
	iface := fmt.Sprintf("fg-%x-%s", sfx, strings.ToLower(name[len(name)-1:]))
	// Userspace devices run in their own session (they outlive the agent)
	// and their UAPI sockets live in the shared file system: stop ours
	// after the agent, found by the socket's peer credentials.
	t.Cleanup(func() { stopDevice(t, iface) })
	n := newChaosProcess(t, name, underlay, true)
	s := &nsSite{chaosNode: &chaosNode{node: n, ns: ns, ip: underlay}, underlay: underlay, overlay: overlay, outbound: "127.0.0.1:8081",
		wgIface: iface}
	routes := ""
	if backend != "" {
		routes = fmt.Sprintf("  routes:\n    - name: workspaces\n      path_prefix: /\n      backend: %s\n      resource_kind: workspace\n", backend)
	}
	cfg := fmt.Sprintf(`node:
  data_dir: %s
  site_name: %s
log:
  level: debug
api:
  socket: %s
raft:
  listen: %s:7400
  bootstrap: true
cluster:
  listen: %s:7401
metrics:
  listen: ""
netctl:
  mode: "on"
  backend: userspace
  device_log_dir: %s
  interfaces:
    - name: %s
      listen_port: 51820
      addresses: [%s/24]
proxy:
  inbound: 0.0.0.0:8443
  outbound: %s
  resource_kinds: [workspace]
%slifecycle:
  bootstrap_listen: %s:7443
  listen: %s:7444
  operator_contact: ops@%s.example
  jurisdiction: EU
  last_known_good_release: v1.0.0
  data_residency: eu-west
  heartbeat_interval: 500ms
  stale_after: 10s
  heartbeat_rate: 20
  heartbeat_burst: 20
  notice_timeout: 2s
  wireguard_interface: %s
  wireguard_endpoint: %s:51820
  wireguard_allowed_ips: [%s/32]
  endpoints:
    - url: https://%s:8443
      scope: sdwan
      priority: 1
`, filepath.Join(n.dir, "data"), name, n.socket, underlay, underlay, filepath.Join(n.dir, "run"), s.wgIface, overlay, s.outbound, routes,
		underlay, underlay, name, s.wgIface, underlay, overlay, overlay)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = peerOverlay
	s.start()
	s.waitReady(30 * time.Second)
	return s
}

// stopDevice kills the userspace WireGuard device serving iface (the pid
// behind its UAPI socket) and removes the socket.
func stopDevice(t *testing.T, iface string) {
	sock := "/var/run/wireguard/" + iface + ".sock"
	c, err := net.Dial("unix", sock)
	if err != nil {
		os.Remove(sock)
		return
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return
	}
	var cred *syscall.Ucred
	_ = raw.Control(func(fd uintptr) { cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED) })
	if cred != nil && cred.Pid > 1 {
		_ = syscall.Kill(int(cred.Pid), syscall.SIGTERM)
		for i := 0; i < 50 && syscall.Kill(int(cred.Pid), 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(int(cred.Pid), syscall.SIGKILL)
	}
	os.Remove(sock)
	t.Logf("stopped userspace device %s", iface)
}

// nsClient dials from inside ns.
func nsClient(ns *nstest.NS) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
}

type tunnelPeer struct {
	PublicKey string   `json:"public_key"`
	Endpoint  string   `json:"endpoint"`
	Allowed   []string `json:"allowed_ips"`
	RxBytes   int64    `json:"rx_bytes"`
	TxBytes   int64    `json:"tx_bytes"`
	Health    string   `json:"health"`
}

func (s *nsSite) tunnelPeers(t *testing.T) []tunnelPeer {
	t.Helper()
	var tr struct {
		Status struct {
			Interfaces []struct {
				Name  string       `json:"name"`
				Peers []tunnelPeer `json:"peers"`
			} `json:"interfaces"`
		} `json:"status"`
	}
	if err := s.cliJSON(&tr, "tunnels"); err != nil {
		t.Fatal(err)
	}
	for _, i := range tr.Status.Interfaces {
		if i.Name == s.wgIface {
			return i.Peers
		}
	}
	return nil
}

// TestPrivilegedLifecycleWireGuard: two sites in their own namespaces
// joined by a veth underlay federate through invite/accept; the handshake
// exchanges WireGuard keys, netctl builds the tunnel, the proxy calls go
// over it (the only declared endpoint is the peer's overlay address), and
// the revocation removes the tunnel on both sides and refuses calls.
func TestPrivilegedLifecycleWireGuard(t *testing.T) {
	nstest.RequireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buildBinaries(t)
	nsA, nsB := nstest.New(t, "lca"), nstest.New(t, "lcb")
	nstest.Veth(t, nsA, "eth0", nsB, "eth0")
	nstest.AddAddr(t, nsA, "eth0", netip.MustParsePrefix("192.168.77.1/24"))
	nstest.AddAddr(t, nsB, "eth0", netip.MustParsePrefix("192.168.77.2/24"))
	var ln net.Listener
	nsB.MustDo(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:9000")
		return err
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from B to %s via %s", r.Header.Get("X-Federation-Peer-Id"), r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	a := newNSSite(t, nsA, "siteA", "192.168.77.1", "10.78.0.1", "10.78.0.2", "")
	b := newNSSite(t, nsB, "siteB", "192.168.77.2", "10.78.0.2", "10.78.0.1", "http://127.0.0.1:9000")

	tf := filepath.Join(t.TempDir(), "token")
	var inv struct {
		PeerID string `json:"peer_id"`
		URL    string `json:"url"`
	}
	if err := a.cliJSON(&inv, "peers", "invite", "--token-file", tf); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inv.URL, "https://192.168.77.1:7443/") {
		t.Fatalf("invite URL %s", inv.URL)
	}
	var pb lcPeer
	if err := b.cliJSON(&pb, "peers", "accept", inv.URL, "--token-file", tf, "--contract-version", "1"); err != nil {
		t.Fatal(err)
	}
	idAB, idBA := inv.PeerID, pb.ID
	la := &lcSite{node: a.node}
	lb := &lcSite{node: b.node}
	la.waitStatus(t, idAB, "active", 30*time.Second)
	lb.waitStatus(t, idBA, "active", 30*time.Second)

	// The tunnel: each side has the other's WireGuard peer.
	for _, s := range []*nsSite{a, b} {
		eventually(t, 20*time.Second, s.name+" WireGuard peer", func() error {
			if ps := s.tunnelPeers(t); len(ps) != 1 {
				return fmt.Errorf("%d peers on the interface", len(ps))
			}
			return nil
		})
	}
	// A call through A's outbound proxy reaches B's backend over the tunnel.
	c := nsClient(nsA)
	var body string
	eventually(t, 30*time.Second, "call A -> B over WireGuard", func() error {
		req, _ := http.NewRequest("GET", "http://"+a.outbound+"/v1/workspaces/1", nil)
		req.Host = idAB + ".peer.fedgate"
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d: %s", resp.StatusCode, bb)
		}
		body = string(bb)
		return nil
	})
	if !strings.Contains(body, idBA) {
		t.Fatalf("backend answer %q lacks the verified peer id %s", body, idBA)
	}
	if ps := b.tunnelPeers(t); ps[0].RxBytes == 0 || ps[0].Health != "active" {
		t.Fatalf("B's tunnel carried nothing: %+v", ps[0])
	}
	la.waitAudit(t, idAB, "proxy.request", func(r auditRec) bool { return r.Decision == "allow" })
	lb.waitAudit(t, idBA, "proxy.request", func(r auditRec) bool { return r.Decision == "allow" })

	// Revoke: final notice, then the tunnel goes on both sides; calls refused.
	if code := la.localPost(t, "/v1/peers/"+idAB+"/revoke-notify", map[string]string{"reason": "privileged e2e"}, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	lb.waitStatus(t, idBA, "revoked", 15*time.Second)
	for _, s := range []*nsSite{a, b} {
		eventually(t, 20*time.Second, s.name+" tunnel removed", func() error {
			if ps := s.tunnelPeers(t); len(ps) != 0 {
				return fmt.Errorf("%d peers left on the interface", len(ps))
			}
			return nil
		})
	}
	req, _ := http.NewRequest("GET", "http://"+a.outbound+"/v1/workspaces/1", nil)
	req.Host = idAB + ".peer.fedgate"
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("call allowed after revocation")
		}
	}
	if len(la.audits(t, idAB, "proxy.request")) == 0 || len(lb.audits(t, idBA, "proxy.request")) == 0 {
		t.Fatal("audit lost after revocation")
	}
}
