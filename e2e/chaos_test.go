package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultResult is one fault, measured.
type faultResult struct {
	fault string
	// failover: fault to the first TCP answer from another node (0 when the
	// VIP is not supposed to move).
	failover time.Duration
	moved    bool
	// outage: the longest stretch without any TCP answer.
	outage time.Duration
	// dualTCP: TCP answers from a node the VIP had already moved away from
	// (A, B, A): the client saw two holders (must be 0).
	dualTCP int
	// pfailover, poutage, dualProxy: the same, measured by requests
	// through the fedgate proxy on the VIP (mTLS as a federated peer).
	pfailover time.Duration
	poutage   time.Duration
	dualProxy int
	proxied   bool // the proxy probe ran
	// dualARP: ARP who-has rounds answered by two MACs.
	dualARP int
	// dualKern: time two kernels had the VIP on eth0 at once.
	dualKern time.Duration
	note     string
}

// TestPrivilegedChaos runs a three-node site in network namespaces and
// injects faults while a client probes the VIP, by TCP connect and by an
// mTLS request through fedgate's proxy as a federated second site. FEDGATE_CHAOS_RUNS repeats
// the fault sequence (default 1); FEDGATE_CHAOS_TABLE names a file for the
// failover table (scripts/failover-bench.sh sets both).
func TestPrivilegedChaos(t *testing.T) {
	runs := 1
	if s := os.Getenv("FEDGATE_CHAOS_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FEDGATE_CHAOS_RUNS=%q: want a positive number", s)
		}
		runs = n
	}
	c := newChaosNet(t, 3)
	c.formCluster()
	c.federate()
	r := c.startProbes()
	c.r = r
	c.settle()
	var results []faultResult
	for run := 1; run <= runs; run++ {
		for _, f := range []struct {
			name string
			fn   func() []faultResult
		}{
			{"leader SIGSTOP/SIGCONT", c.faultStop},
			{"leader partitioned", c.faultPartitionLeader},
			{"follower cut off", c.faultCutFollower},
			{"manual failover", c.faultManual},
			{"leader SIGKILL + restart", c.faultKill},
			{"leader SIGTERM + restart", c.faultRestart},
			{"member removed + re-added", c.faultRemoveReadd},
		} {
			if !selected(f.name) {
				continue
			}
			t.Logf("run %d: %s", run, f.name)
			rs := f.fn()
			for _, res := range rs {
				t.Logf("  %-30s failover=%-8s proxy=%-8s moved=%-5v outage=%-8s proxy-outage=%-8s dualTCP=%d dualProxy=%d dualARP=%d dualKernel=%s %s",
					res.fault, ms(res.failover), ms(res.pfailover), res.moved, ms(res.outage), ms(res.poutage), res.dualTCP, res.dualProxy,
					res.dualARP, ms(res.dualKern), res.note)
				if res.dualTCP != 0 {
					t.Errorf("%s: %d TCP answers switched back to a node the VIP had left", res.fault, res.dualTCP)
				}
				if res.dualProxy != 0 {
					t.Errorf("%s: %d answers through the proxy switched back to a node the VIP had left", res.fault, res.dualProxy)
				}
				// The L2 fence: a dead or frozen holder's kernel may still
				// have the address until its lease ends, but only the holder
				// process answers ARP for it.
				if res.dualARP != 0 {
					t.Errorf("%s: %d ARP rounds answered by two nodes", res.fault, res.dualARP)
				}
			}
			results = append(results, rs...)
			if t.Failed() {
				break
			}
			c.settle()
		}
		if t.Failed() {
			break
		}
	}
	table := failoverTable(results, runs)
	t.Log("\n" + table)
	t.Logf("proxy probe TLS handshakes: %d, of which resumed %d", c.fed.client.handshakes.Load(), c.fed.client.resumed.Load())
	if p := os.Getenv("FEDGATE_CHAOS_TABLE"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// selected reports whether FEDGATE_CHAOS_FAULTS (comma-separated name
// fragments; empty: all) selects the fault.
func selected(name string) bool {
	sel := os.Getenv("FEDGATE_CHAOS_FAULTS")
	if sel == "" {
		return true
	}
	for _, s := range strings.Split(sel, ",") {
		if s != "" && strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// ---- cluster ----

func (c *chaosNet) formCluster() {
	t := c.t
	n1 := c.nodes[0]
	n1.start()
	eventually(t, 30*time.Second, "n1 leader", func() error { return wantState(n1.node, "leader") })
	for _, n := range c.nodes[1:] {
		n.start()
		c.join(n1, n)
	}
	eventually(t, 30*time.Second, "all voters", func() error { return wantVoters(n1.node, len(c.nodes)) })
	n1.mustCLI("vips", "add", "site", chaosVIPCIDR, "--interface", "eth0")
}

// join adds n (started, empty) through via's invitation.
func (c *chaosNet) join(via, n *chaosNode) {
	t := c.t
	tok := filepath.Join(t.TempDir(), "join.token")
	var inv struct {
		JoinURL string `json:"join_url"`
	}
	if err := via.cliJSON(&inv, "cluster", "invite", "--out", tok); err != nil {
		t.Fatal(err)
	}
	n.mustCLI("cluster", "join", inv.JoinURL, "--token-file", tok)
	s, err := n.status()
	if err != nil {
		t.Fatal(err)
	}
	n.id = s.NodeID
}

// leader returns the node that reports itself leader (nil if none).
func (c *chaosNet) leader() *chaosNode {
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		if wantState(n.node, "leader") == nil {
			return n
		}
	}
	return nil
}

func (c *chaosNet) byName(name string) *chaosNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// settle waits for a healthy site: three voters, exactly one kernel holding
// the VIP, it is the leader, and the client gets answers from it.
func (c *chaosNet) settle() *chaosNode {
	t := c.t
	var holder *chaosNode
	eventually(t, 45*time.Second, "healthy site", func() error {
		l := c.leader()
		if l == nil {
			return fmt.Errorf("no leader")
		}
		if err := wantVoters(l.node, 3); err != nil {
			return err
		}
		for _, n := range c.nodes {
			if s, err := n.status(); err != nil || !s.Ready {
				return fmt.Errorf("%s not ready: %v", n.name, err)
			}
		}
		if h := c.r.kernHolder(); h != l.name {
			return fmt.Errorf("kernel holder %q, leader %s", h, l.name)
		}
		now := time.Now()
		time.Sleep(200 * time.Millisecond)
		if err := c.onlyAnswered(now, time.Now(), l.name); err != nil {
			return err
		}
		if c.fed != nil {
			// Every node's proxy can serve the peer: a failover measures
			// the move, not a node that was never ready.
			for _, n := range c.nodes {
				if err := c.proxyDirect(n); err != nil {
					return fmt.Errorf("%s's proxy: %v", n.name, err)
				}
			}
		}
		holder = l
		return nil
	})
	return holder
}

// onlyAnswered checks that want, and no other node, answered the TCP
// probe and (when federated) the proxy probe in [from, to).
func (c *chaosNet) onlyAnswered(from, to time.Time, want string) error {
	if got := c.r.answeredBy(probeTCP, from, to); !slices.Equal(got, []string{want}) {
		return fmt.Errorf("TCP answered by %v, want only %s", got, want)
	}
	if c.fed == nil {
		return nil
	}
	if got := c.r.answeredBy(probeProxy, from, to); !slices.Equal(got, []string{want}) {
		return fmt.Errorf("proxy answered by %v, want only %s", got, want)
	}
	return nil
}

// answeredBy describes who answered each probe in [from, to).
func (c *chaosNet) answeredBy(from, to time.Time) string {
	s := fmt.Sprintf("TCP answered by %v", c.r.answeredBy(probeTCP, from, to))
	if c.fed != nil {
		s += fmt.Sprintf(", proxy by %v", c.r.answeredBy(probeProxy, from, to))
	}
	return s
}

func (c *chaosNet) others(x *chaosNode) []*chaosNode {
	var out []*chaosNode
	for _, n := range c.nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// window fills the common measurements of [from, to).
func (c *chaosNet) window(name string, from, to time.Time) faultResult {
	proxyLine := ""
	res := faultResult{fault: name, outage: c.r.maxGap(probeTCP, from, to), dualTCP: c.r.switchBacks(probeTCP, from, to),
		dualARP: c.r.dualARP(from, to), dualKern: c.r.dualKernel(from, to)}
	if c.fed != nil {
		proxyLine = "\n    proxy:  " + c.r.timeline(probeProxy, from, to)
		res.proxied = true
		res.poutage, res.dualProxy = c.r.maxGap(probeProxy, from, to), c.r.switchBacks(probeProxy, from, to)
	}
	c.t.Logf("  %s\n    tcp:    %s%s\n    kernel: %s\n    arp:    %s", name, c.r.timeline(probeTCP, from, to), proxyLine,
		c.r.multiTimeline(true, from, to), c.r.multiTimeline(false, from, to))
	return res
}

// failover is a fault's move as each probe saw it.
type failover struct {
	tcp, proxy  time.Duration // fault to the first answer from another node
	to, proxyTo string        // that node ("" when none answered)
	start       time.Time     // the fault
}

// waitFailover waits up to 10 s for an answer from a node other than old,
// by TCP and (when federated) through the proxy; both must name the same
// node.
func (c *chaosNet) waitFailover(t0 time.Time, old string) failover {
	f := failover{start: t0}
	wait := func(p probe) (time.Duration, string) {
		var s tcpSample
		if !waitFor(10*time.Second, func() bool { var ok bool; s, ok = c.r.firstAnswerFrom(p, t0, old); return ok }) {
			c.t.Errorf("no node other than %s answered the %s probe within 10s of the fault", old, p)
			return 0, ""
		}
		return s.at.Sub(t0), s.who
	}
	f.tcp, f.to = wait(probeTCP)
	if c.fed != nil {
		f.proxy, f.proxyTo = wait(probeProxy)
		if f.to != "" && f.proxyTo != "" && f.proxyTo != f.to {
			c.t.Errorf("after the fault TCP moved to %s but the proxy to %s", f.to, f.proxyTo)
		}
	}
	return f
}

// chaosHold is how long a fault is observed (old leader frozen, cut off or
// dead) after it was injected: longer than the kernel lease of a VIP
// (netctl's VIPLease, 2 s) so the ARP and kernel columns show whether a
// holder that can no longer renew still answers at L2 after failover.
const chaosHold = 3 * time.Second

// hold sleeps until chaosHold after the fault and at least a second after
// both probes saw the move.
func (f failover) hold() {
	until := f.start.Add(max(chaosHold, f.tcp+time.Second, f.proxy+time.Second))
	time.Sleep(time.Until(until))
}

// set copies the move into res.
func (f failover) set(res *faultResult) {
	res.failover, res.moved, res.pfailover = f.tcp, f.to != "", f.proxy
}

func (p probe) String() string {
	if p == probeProxy {
		return "proxy"
	}
	return "TCP"
}

// ---- faults ----

func (c *chaosNet) faultStop() []faultResult {
	t := c.t
	l := c.settle()
	t0 := time.Now()
	l.signal(syscall.SIGSTOP)
	fo := c.waitFailover(t0, l.name)
	fo.hold()
	resume := time.Now()
	l.signal(syscall.SIGCONT)
	drop, ok := time.Time{}, waitFor(5*time.Second, func() bool { var ok bool; _, ok = c.r.firstDrop(l.name, resume); return ok })
	if ok {
		drop, _ = c.r.firstDrop(l.name, resume)
	} else {
		t.Errorf("resumed old leader %s still has the VIP 5s after SIGCONT", l.name)
	}
	time.Sleep(1500 * time.Millisecond)
	end := time.Now()
	res := c.window("leader SIGSTOP/SIGCONT", t0, end)
	fo.set(&res)
	for _, p := range []probe{probeTCP, probeProxy} {
		if n := c.r.answers(p, l.name, resume, end); n > 0 {
			t.Errorf("the frozen-then-resumed old leader %s answered %d %s probes after SIGCONT", l.name, n, p)
		}
	}
	if n := c.r.held(l.name, drop, end); n > 0 {
		t.Errorf("the resumed old leader %s mounted the VIP again after dropping it", l.name)
	}
	frozenHeld := c.r.dualKernel(t0, resume)
	dropped := fmt.Sprintf("dropped VIP %s after SIGCONT", ms(drop.Sub(resume)))
	if lapse, ok := c.r.firstDrop(l.name, t0); ok && lapse.Before(resume) {
		dropped = fmt.Sprintf("kernel dropped VIP %s after the fault, while frozen (lease)", ms(lapse.Sub(t0)))
	}
	res.note = fmt.Sprintf("frozen %s; old leader %s; %d gratuitous ARPs from it after resume; overlap while frozen %s; answers after resume %d TCP, %d proxy; outage after resume %s TCP, %s proxy",
		ms(resume.Sub(t0)), dropped, c.r.garpsBy(l.name, resume, end), ms(frozenHeld),
		c.r.answers(probeTCP, l.name, resume, end), c.r.answers(probeProxy, l.name, resume, end),
		ms(c.r.maxGap(probeTCP, resume, end)), ms(c.r.maxGap(probeProxy, resume, end)))
	if d := c.r.dualKernel(resume.Add(time.Second), end); d > 0 {
		t.Errorf("two kernels held the VIP for %s after the resumed leader settled", d)
	}
	return []faultResult{res}
}

func (c *chaosNet) faultPartitionLeader() []faultResult {
	t := c.t
	l := c.settle()
	var peers []string
	for _, o := range c.others(l) {
		peers = append(peers, o.ip)
	}
	t0 := time.Now()
	heal := partition(t, l.ns, peers)
	fo := c.waitFailover(t0, l.name)
	fo.hold()
	healAt := time.Now()
	drop, dropped := c.r.firstDrop(l.name, t0)
	if !dropped {
		t.Errorf("partitioned old leader %s never dropped the VIP", l.name)
	}
	if n := c.r.held(l.name, drop, healAt); dropped && n > 0 {
		t.Errorf("partitioned minority %s mounted the VIP again (%d samples)", l.name, n)
	}
	heal()
	time.Sleep(2 * time.Second)
	end := time.Now()
	res := c.window("leader partitioned", t0, healAt)
	fo.set(&res)
	res.note = fmt.Sprintf("minority dropped VIP after %s; healed after %s", ms(drop.Sub(t0)), ms(healAt.Sub(t0)))
	if res.dualKern > 0 {
		t.Errorf("partition: two kernels held the VIP for %s", res.dualKern)
	}
	after := c.window("  healed", healAt, end)
	if err := c.onlyAnswered(healAt, end, fo.to); err != nil {
		t.Errorf("after the partition healed the VIP moved: %v", err)
		after.moved = true
	}
	after.note = c.answeredBy(healAt, end)
	return []faultResult{res, after}
}

func (c *chaosNet) faultCutFollower() []faultResult {
	t := c.t
	h := c.settle()
	f := c.others(h)[0]
	var peers []string
	for _, o := range c.others(f) {
		peers = append(peers, o.ip)
	}
	t0 := time.Now()
	heal := partition(t, f.ns, peers)
	time.Sleep(3 * time.Second)
	heal()
	time.Sleep(2 * time.Second)
	end := time.Now()
	res := c.window("follower cut off", t0, end)
	if err := c.onlyAnswered(t0, end, h.name); err != nil {
		t.Errorf("follower cut: %v", err)
		res.moved = true
	}
	if n := c.r.held(f.name, t0, end); n > 0 {
		t.Errorf("cut-off follower %s mounted the VIP", f.name)
	}
	if res.dualKern > 0 {
		t.Errorf("follower cut: two kernels held the VIP for %s", res.dualKern)
	}
	res.note = "VIP stays on the leader"
	return []faultResult{res}
}

func (c *chaosNet) faultManual() []faultResult {
	t := c.t
	l := c.settle()
	t0 := time.Now()
	out, err := l.cli("vips", "failover", "site")
	if err != nil {
		t.Errorf("vips failover: %v", err)
		return nil
	}
	fo := c.waitFailover(t0, l.name)
	fo.hold()
	end := time.Now()
	res := c.window("manual failover", t0, end)
	fo.set(&res)
	res.note = strings.TrimSpace(out)
	if res.dualKern > 0 {
		t.Errorf("manual failover: two kernels held the VIP for %s", res.dualKern)
	}
	var vs []struct {
		Holder string `json:"holder"`
		State  string `json:"state"`
	}
	if fo.to != "" {
		nn := c.byName(fo.to)
		eventually(t, 5*time.Second, "holder recorded", func() error {
			if err := nn.cliJSON(&vs, "vips"); err != nil {
				return err
			}
			if len(vs) != 1 || vs[0].Holder != nn.id || vs[0].State != "active" {
				return fmt.Errorf("vips = %+v, want holder %s active", vs, nn.id)
			}
			return nil
		})
	}
	return []faultResult{res}
}

func (c *chaosNet) faultKill() []faultResult {
	t := c.t
	l := c.settle()
	t0 := time.Now()
	l.kill()
	fo := c.waitFailover(t0, l.name)
	fo.hold()
	restart := time.Now()
	res := c.window("leader SIGKILL", t0, restart)
	fo.set(&res)
	res.note = fmt.Sprintf("killed node's kernel kept the VIP: overlap %s, ARP answered by both in %d rounds; restarted after %s", ms(res.dualKern), res.dualARP, ms(restart.Sub(t0)))
	l.start()
	eventually(t, 30*time.Second, "killed node back", func() error { return wantState(l.node, "follower") })
	collected := waitFor(10*time.Second, func() bool { return c.r.held(l.name, time.Now().Add(-50*time.Millisecond), time.Now()) == 0 })
	time.Sleep(1500 * time.Millisecond)
	end := time.Now()
	back := c.window("  killed node restarted", restart, end)
	if err := c.onlyAnswered(restart, end, fo.to); err != nil {
		t.Errorf("restart of the killed node: %v", err)
		back.moved = true
	}
	back.note = fmt.Sprintf("stale VIP collected on restart: %v", collected)
	if !collected {
		t.Errorf("the restarted node %s kept its stale VIP", l.name)
	}
	return []faultResult{res, back}
}

func (c *chaosNet) faultRestart() []faultResult {
	t := c.t
	l := c.settle()
	t0 := time.Now()
	if err := l.stop(); err != nil {
		t.Error(err)
	}
	fo := c.waitFailover(t0, l.name)
	fo.hold()
	restart := time.Now()
	res := c.window("leader SIGTERM", t0, restart)
	fo.set(&res)
	if res.dualKern > 0 {
		t.Errorf("SIGTERM: two kernels held the VIP for %s", res.dualKern)
	}
	l.start()
	eventually(t, 30*time.Second, "stopped node back", func() error { return wantState(l.node, "follower") })
	time.Sleep(1500 * time.Millisecond)
	end := time.Now()
	back := c.window("  stopped node restarted", restart, end)
	if err := c.onlyAnswered(restart, end, fo.to); err != nil {
		t.Errorf("restart: %v", err)
		back.moved = true
	}
	return []faultResult{res, back}
}

func (c *chaosNet) faultRemoveReadd() []faultResult {
	t := c.t
	h := c.settle()
	var f *chaosNode
	for _, o := range c.others(h) {
		if o.name != "n1" { // n1's config bootstraps a new site when empty
			f = o
		}
	}
	t0 := time.Now()
	h.mustCLI("cluster", "remove", f.id)
	f.kill()
	f.wipe()
	f.start()
	c.join(c.nodes[0], f) // invitations come from the CA node
	eventually(t, 30*time.Second, "re-added member votes", func() error { return wantVoters(h.node, 3) })
	time.Sleep(time.Second)
	end := time.Now()
	res := c.window("member removed + re-added", t0, end)
	if err := c.onlyAnswered(t0, end, h.name); err != nil {
		t.Errorf("remove/re-add: %v", err)
		res.moved = true
	}
	if c.r.held(f.name, t0, end) > 0 {
		t.Errorf("the re-added member %s mounted the VIP", f.name)
	}
	res.note = fmt.Sprintf("took %s", ms(end.Sub(t0)))
	return []faultResult{res}
}

// ---- table ----

func ms(d time.Duration) string {
	return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + "ms"
}

// failoverTable renders the results per fault: median and max failover
// and outage, and the dual-answer counts summed over the runs.
func failoverTable(rs []faultResult, runs int) string {
	type agg struct {
		fo, out, pfo, pout          []time.Duration
		dualTCP, dualProxy, dualARP int
		dualKern                    time.Duration
		moved                       int
		n                           int
		proxy                       bool
	}
	var order []string
	by := map[string]*agg{}
	for _, r := range rs {
		a, ok := by[r.fault]
		if !ok {
			a = &agg{}
			by[r.fault] = a
			order = append(order, r.fault)
		}
		a.n++
		if r.failover > 0 {
			a.fo = append(a.fo, r.failover)
		}
		a.out = append(a.out, r.outage)
		if r.pfailover > 0 {
			a.pfo = append(a.pfo, r.pfailover)
		}
		if r.proxied {
			a.pout = append(a.pout, r.poutage)
			a.proxy = true
		}
		a.dualTCP += r.dualTCP
		a.dualProxy += r.dualProxy
		a.dualARP += r.dualARP
		a.dualKern += r.dualKern
		if r.moved {
			a.moved++
		}
	}
	med := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		s := slices.Clone(ds)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return ms(s[len(s)/2])
	}
	maxd := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return ms(slices.Max(ds))
	}
	dual := func(n int, ok bool) string {
		if !ok {
			return "-"
		}
		return strconv.Itoa(n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HA failover, 3 nodes in netns, VIP %s, %d run(s); TCP probe every %s, proxy probe every %s (mTLS, new connection, timeout %s), ARP every %s, kernel every %s; faults held %s\n",
		chaosVIPCIDR, runs, tcpProbeEvery, proxyProbeEvery, proxyProbeTimeout, arpProbeEvery, kernProbeEvery, chaosHold)
	fmt.Fprintf(&b, "%39s|%-41s|%-34s|%s\n", "", " TCP connect", " request through the proxy", " L2")
	fmt.Fprintf(&b, "%-28s %3s %5s | %7s %7s %7s %7s %7s | %7s %7s %7s %8s | %7s %8s\n", "fault", "n", "moved",
		"fo-med", "fo-max", "out-med", "out-max", "dualTCP", "fo-med", "fo-max", "out-max", "dualPrx", "dualARP", "fenced")
	for _, k := range order {
		a := by[k]
		fmt.Fprintf(&b, "%-28s %3d %5d | %7s %7s %7s %7s %7d | %7s %7s %7s %8s | %7d %8s\n", k, a.n, a.moved,
			med(a.fo), maxd(a.fo), med(a.out), maxd(a.out), a.dualTCP,
			med(a.pfo), maxd(a.pfo), maxd(a.pout), dual(a.dualProxy, a.proxy), a.dualARP, ms(a.dualKern))
	}
	b.WriteString("fo = fault to the first answer from another node (median, max over runs); out = longest stretch without an answer;\n" +
		"TCP connect: to a responder on the VIP; request through the proxy: HTTPS with the federated peer's certificate through\n" +
		"fedgate's inbound proxy on the VIP to the node's backend; dualTCP/dualPrx = answers switching back to a node the VIP\n" +
		"had left (must be 0); dualARP = ARP who-has rounds answered by two MACs (summed, must be 0); fenced = time an\n" +
		"old holder's kernel still had the VIP on eth0 beside the new holder's (summed): its kernel lease had not run out, but\n" +
		"the L2 fence kept it from answering ARP or NS for it\n")
	return b.String()
}
