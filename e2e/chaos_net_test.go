package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"

	"github.com/powernode/fedgate/internal/nstest"
)

// The chaos topology: a "switch" namespace with bridge br0; three node
// namespaces, each with eth0 on the bridge (10.77.0.11-13/24) running one
// fedgated with netctl on and vip_interface eth0; a client namespace
// (10.77.0.100) that probes the VIP over TCP with its own, passive ARP
// cache, like a real client; and an observer namespace (10.77.0.101) that
// broadcasts ARP who-has for the VIP and records every MAC that answers.
// Each node namespace also runs a small TCP responder on 0.0.0.0:8080 (in
// the test process, so it outlives a killed or frozen fedgated: the
// harshest case, a backend that keeps answering for an agent that is gone)
// that answers with the node's name. Each node also serves fedgate's
// inbound proxy with one L7 route to a backend that names the node, and a
// second site in the client namespace calls it through the VIP
// (chaos_proxy_test.go).

const (
	chaosVIP       = "10.77.0.50"
	chaosVIPCIDR   = chaosVIP + "/32"
	chaosProbePort = 8080
	chaosClientIP  = "10.77.0.100"
	chaosObsIP     = "10.77.0.101"
)

type chaosNode struct {
	*node
	ns  *nstest.NS
	ip  string
	mac string
	id  string // node id, once started
}

type chaosNet struct {
	t      *testing.T
	sw     *nstest.NS
	client *nstest.NS
	obs    *nstest.NS
	nodes  []*chaosNode
	r      *recorder
	fed    *chaosFed // set by federate: the proxy probe's second site
}

func newChaosNet(t *testing.T, n int) *chaosNet {
	t.Helper()
	nstest.RequireRoot(t)
	c := &chaosNet{t: t}
	c.sw = nstest.New(t, "sw")
	hsw := c.sw.Handle(t)
	if err := hsw.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	br, err := hsw.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	if err := hsw.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	attach := func(ns *nstest.NS, port, ip string) string {
		nstest.Veth(t, ns, "eth0", c.sw, port)
		l, err := hsw.LinkByName(port)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsw.LinkSetMaster(l, br); err != nil {
			t.Fatalf("attach %s: %v", port, err)
		}
		nstest.AddAddr(t, ns, "eth0", netip.MustParsePrefix(ip+"/24"))
		el, err := ns.Handle(t).LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		return el.Attrs().HardwareAddr.String()
	}
	c.client = nstest.New(t, "cl")
	attach(c.client, "vcl", chaosClientIP)
	c.obs = nstest.New(t, "ob")
	attach(c.obs, "vob", chaosObsIP)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		ns := nstest.New(t, name)
		ip := fmt.Sprintf("10.77.0.%d", 10+i)
		cn := &chaosNode{ns: ns, ip: ip}
		cn.mac = attach(ns, "v"+name, ip)
		cn.node = newChaosProcess(t, name, ip, i == 1)
		appendConfig(t, cn.config, chaosSiteYAML())
		c.nodes = append(c.nodes, cn)
		startResponder(t, ns, name)
		startBackend(t, ns, name)
	}
	return c
}

// newChaosProcess writes the config of one node (not started yet).
func newChaosProcess(t *testing.T, name, ip string, bootstrap bool) *node {
	t.Helper()
	buildBinaries(t)
	dir := t.TempDir()
	n := &node{t: t, name: name, dir: dir, socket: filepath.Join(dir, "api.sock"),
		config: filepath.Join(dir, "fedgated.yaml"), raft: ip + ":7400", cluster: ip + ":7401"}
	cfg := fmt.Sprintf(`node:
  data_dir: %s
  site_name: chaos-site
log:
  level: info
api:
  socket: %s
raft:
  listen: %s
  bootstrap: %v
cluster:
  listen: %s
metrics:
  listen: ""
netctl:
  mode: "on"
  backend: userspace
  vip_interface: eth0
  device_log_dir: %s
`, filepath.Join(dir, "data"), n.socket, n.raft, bootstrap, n.cluster, filepath.Join(dir, "run"))
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.logs == nil {
			return
		}
		if d := os.Getenv("FEDGATE_CHAOS_LOGDIR"); d != "" {
			_ = os.WriteFile(filepath.Join(d, n.name+".log"), n.logs.Bytes(), 0o644)
		}
		if t.Failed() {
			t.Logf("--- %s log (last 8000 bytes) ---\n%s", n.name, tail(n.logs.String(), 8000))
		}
	})
	return n
}

// appendConfig adds YAML sections to a node's config file.
func appendConfig(t *testing.T, path, yaml string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(yaml); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// start runs fedgated inside the node's namespace (the child inherits the
// namespace of the locked thread that forks it) and waits for its API.
func (c *chaosNode) start() {
	n := c.node
	n.t.Helper()
	n.launch([]string{"--config", n.config}, func(cmd *exec.Cmd) error { return c.ns.Do(cmd.Start) })
	c.id = n.waitAPI().NodeID
}

// signal sends sig to the node's process group.
func (c *chaosNode) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		_ = syscall.Kill(-c.cmd.Process.Pid, sig)
	}
}

// wipe removes the node's data dir (a re-provisioned machine).
func (c *chaosNode) wipe() {
	if err := os.RemoveAll(filepath.Join(c.dir, "data")); err != nil {
		c.t.Fatal(err)
	}
}

// startResponder answers every TCP connection on 0.0.0.0:8080 in ns with
// name and a newline.
func startResponder(t *testing.T, ns *nstest.NS, name string) {
	t.Helper()
	var ln net.Listener
	ns.MustDo(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", chaosProbePort))
		return err
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// partition drops every IPv4 packet between ns and the given addresses
// (both directions) with an nftables table "fgchaos" inside ns. heal
// removes it. ARP is untouched, and so is the client.
func partition(t *testing.T, ns *nstest.NS, peers []string) (heal func()) {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.NsHandle())))
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	tab := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "fgchaos"})
	drop := nftables.ChainPolicyAccept
	in := conn.AddChain(&nftables.Chain{Name: "in", Table: tab, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	out := conn.AddChain(&nftables.Chain{Name: "out", Table: tab, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	for _, p := range peers {
		ip := netip.MustParseAddr(p).As4()
		for _, r := range []struct {
			ch     *nftables.Chain
			offset uint32 // 12: saddr, 16: daddr
		}{{in, 12}, {out, 16}} {
			conn.AddRule(&nftables.Rule{Table: tab, Chain: r.ch, Exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: r.offset, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	if err := conn.Flush(); err != nil {
		t.Fatalf("nftables partition in %s: %v", ns.Name, err)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		healed = true
		c2, err := nftables.New(nftables.WithNetNSFd(int(ns.NsHandle())))
		if err != nil {
			t.Errorf("nftables: %v", err)
			return
		}
		c2.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "fgchaos"})
		if err := c2.Flush(); err != nil {
			t.Errorf("nftables heal in %s: %v", ns.Name, err)
		}
	}
	t.Cleanup(heal)
	return heal
}

// vipOnLink reports whether the VIP is on eth0 in ns right now.
func vipOnLink(h *netlink.Handle) (bool, error) {
	l, err := h.LinkByName("eth0")
	if err != nil {
		return false, err
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if a.IP.String() == chaosVIP {
			return true, nil
		}
	}
	return false, nil
}
