package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/powernode/fedgate/internal/nstest"
)

// Probe cadence.
const (
	tcpProbeEvery  = 20 * time.Millisecond
	arpProbeEvery  = 50 * time.Millisecond
	kernProbeEvery = 10 * time.Millisecond
)

// probe names a prober whose answers the recorder keeps as tcpSamples.
type probe int

const (
	// probeTCP: a plain TCP connect to the node's responder on the VIP.
	probeTCP probe = iota
	// probeProxy: an mTLS request through the fedgate proxy on the VIP.
	probeProxy
)

type tcpSample struct {
	at  time.Time
	who string // node name, "" when nothing answered
	why string // proxy probe: why nothing answered ("timeout", "refused", ...)
}

type multiSample struct {
	at  time.Time
	who []string // sorted node names
}

// recorder keeps every observation with its time.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	tcp   []tcpSample
	proxy []tcpSample   // sorted by start time (the proxy prober runs probes in parallel)
	arp   []multiSample // ARP who-has rounds: nodes whose MAC answered
	kern  []multiSample // kernel samples: nodes with the VIP on eth0
	garp  []tcpSample   // gratuitous ARP for the VIP seen on the wire, by sender
}

func (r *recorder) addTCP(s tcpSample) { r.mu.Lock(); r.tcp = append(r.tcp, s); r.mu.Unlock() }

// addProxy inserts s in start-time order: parallel probes finish out of order.
func (r *recorder) addProxy(s tcpSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := len(r.proxy)
	for i > 0 && r.proxy[i-1].at.After(s.at) {
		i--
	}
	r.proxy = slices.Insert(r.proxy, i, s)
}
func (r *recorder) addARP(s multiSample) { r.mu.Lock(); r.arp = append(r.arp, s); r.mu.Unlock() }
func (r *recorder) addKern(s multiSample) {
	r.mu.Lock()
	r.kern = append(r.kern, s)
	r.mu.Unlock()
}

// lockInto locks the calling goroutine's thread into ns for good: the
// goroutine must exit without unlocking, so the thread is discarded.
func lockInto(ns *nstest.NS) error {
	runtime.LockOSThread()
	return netns.Set(ns.NsHandle())
}

// startProbes runs the TCP prober (client namespace), the proxy prober
// (client namespace, once federate has run), the ARP observer (observer
// namespace) and the kernel observer (every node namespace) until the test
// ends.
func (c *chaosNet) startProbes() *recorder {
	t := c.t
	r := &recorder{start: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Add(3)
	go func() { defer wg.Done(); errc <- tcpProber(ctx, c.client, r) }()
	if c.fed != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- proxyProber(ctx, c.client, c.fed.client, r) }()
	}
	macs := map[string]string{}
	for _, n := range c.nodes {
		macs[n.mac] = n.name
	}
	go func() { defer wg.Done(); errc <- arpProber(ctx, c.obs, macs, r) }()
	handles := map[string]*netlink.Handle{}
	for _, n := range c.nodes {
		handles[n.name] = n.ns.Handle(t)
	}
	go func() { defer wg.Done(); errc <- kernObserver(ctx, handles, r) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				t.Errorf("probe: %v", err)
			}
		}
	})
	return r
}

func tcpProber(ctx context.Context, ns *nstest.NS, r *recorder) error {
	if err := lockInto(ns); err != nil {
		return err
	}
	addr := fmt.Sprintf("%s:%d", chaosVIP, chaosProbePort)
	next := time.Now()
	for ctx.Err() == nil {
		at := time.Now()
		who := ""
		d := net.Dialer{Timeout: 2 * tcpProbeEvery}
		if c, err := d.DialContext(ctx, "tcp4", addr); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * tcpProbeEvery))
			line, _ := bufio.NewReader(c).ReadString('\n')
			who = strings.TrimSpace(line)
			c.Close()
		}
		r.addTCP(tcpSample{at: at, who: who})
		next = next.Add(tcpProbeEvery)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else {
			next = time.Now()
		}
	}
	return nil
}

func arpProber(ctx context.Context, ns *nstest.NS, macs map[string]string, r *recorder) error {
	if err := lockInto(ns); err != nil {
		return err
	}
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	cl, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("arp: %w", err)
	}
	defer cl.Close()
	vip := netip.MustParseAddr(chaosVIP)
	for ctx.Err() == nil {
		at := time.Now()
		if err := cl.Request(vip); err != nil {
			return fmt.Errorf("arp request: %w", err)
		}
		seen := map[string]bool{}
		_ = cl.SetReadDeadline(at.Add(arpProbeEvery - 5*time.Millisecond))
		for {
			p, _, err := cl.Read()
			if err != nil {
				break
			}
			if p.SenderIP != vip {
				continue
			}
			name, ok := macs[p.SenderHardwareAddr.String()]
			if !ok {
				name = "?" + p.SenderHardwareAddr.String()
			}
			if p.Operation == arp.OperationRequest || p.TargetIP == vip {
				// Gratuitous: an announcement, not an answer to us.
				r.mu.Lock()
				r.garp = append(r.garp, tcpSample{at: time.Now(), who: name})
				r.mu.Unlock()
				continue
			}
			seen[name] = true
		}
		r.addARP(multiSample{at: at, who: sortedKeys(seen)})
		if d := time.Until(at.Add(arpProbeEvery)); d > 0 {
			time.Sleep(d)
		}
	}
	return nil
}

func kernObserver(ctx context.Context, hs map[string]*netlink.Handle, r *recorder) error {
	t := time.NewTicker(kernProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		at := time.Now()
		var who []string
		for name, h := range hs {
			if ok, err := vipOnLink(h); err == nil && ok {
				who = append(who, name)
			}
		}
		sort.Strings(who)
		r.addKern(multiSample{at: at, who: who})
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- analysis over a window [from, to) ----

// in returns p's samples that started in [from, to).
func (r *recorder) in(p probe, from, to time.Time) []tcpSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := r.tcp
	if p == probeProxy {
		all = r.proxy
	}
	var out []tcpSample
	for _, s := range all {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) multiIn(kern bool, from, to time.Time) []multiSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := r.arp
	if kern {
		all = r.kern
	}
	var out []multiSample
	for _, s := range all {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) arpIn(from, to time.Time) []multiSample  { return r.multiIn(false, from, to) }
func (r *recorder) kernIn(from, to time.Time) []multiSample { return r.multiIn(true, from, to) }

// firstAnswerFrom returns p's first answer at or after from by a node
// other than not (any node when not is "").
func (r *recorder) firstAnswerFrom(p probe, from time.Time, not string) (tcpSample, bool) {
	for _, s := range r.in(p, from, time.Now().Add(time.Hour)) {
		if s.who != "" && s.who != not {
			return s, true
		}
	}
	return tcpSample{}, false
}

// dualARP counts ARP rounds that two nodes answered.
func (r *recorder) dualARP(from, to time.Time) int {
	n := 0
	for _, s := range r.arpIn(from, to) {
		if len(s.who) > 1 {
			n++
		}
	}
	return n
}

// dualKernel returns how long (summed sample spacing) two kernels had the
// VIP at once.
func (r *recorder) dualKernel(from, to time.Time) time.Duration {
	var d time.Duration
	ks := r.kernIn(from, to)
	for i, s := range ks {
		if len(s.who) > 1 && i+1 < len(ks) {
			d += ks[i+1].at.Sub(s.at)
		}
	}
	return d
}

// answers counts p's answers by name in the window.
func (r *recorder) answers(p probe, name string, from, to time.Time) int {
	n := 0
	for _, s := range r.in(p, from, to) {
		if s.who == name {
			n++
		}
	}
	return n
}

// answeredBy lists the nodes that answered p's probes in the window.
func (r *recorder) answeredBy(p probe, from, to time.Time) []string {
	m := map[string]bool{}
	for _, s := range r.in(p, from, to) {
		if s.who != "" {
			m[s.who] = true
		}
	}
	return sortedKeys(m)
}

// held reports the kernel samples in which name had the VIP.
func (r *recorder) held(name string, from, to time.Time) int {
	n := 0
	for _, s := range r.kernIn(from, to) {
		for _, w := range s.who {
			if w == name {
				n++
			}
		}
	}
	return n
}

// firstDrop returns when name's kernel was first seen without the VIP at
// or after from.
func (r *recorder) firstDrop(name string, from time.Time) (time.Time, bool) {
	for _, s := range r.kernIn(from, time.Now().Add(time.Hour)) {
		found := false
		for _, w := range s.who {
			found = found || w == name
		}
		if !found {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// maxGap is the longest stretch without an answer to p in the window.
func (r *recorder) maxGap(p probe, from, to time.Time) time.Duration {
	last := from
	var gap time.Duration
	for _, s := range r.in(p, from, to) {
		if s.who == "" {
			continue
		}
		if d := s.at.Sub(last); d > gap {
			gap = d
		}
		last = s.at
	}
	if d := to.Sub(last); d > gap {
		gap = d
	}
	return gap
}

// kernHolder returns the single node holding the VIP at the last kernel
// sample ("" when none or several).
func (r *recorder) kernHolder() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.kern) == 0 {
		return ""
	}
	w := r.kern[len(r.kern)-1].who
	if len(w) != 1 {
		return ""
	}
	return w[0]
}

// waitFor polls f every 10ms until true or timeout; it reports success.
func waitFor(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f()
}

var _ = testing.Verbose

// timeline renders p's answers in the window as runs: "n1 0-540ms (27),
// - 560-600ms (3), n2 620-2000ms (70)" (times from from; "-" is no
// answer, "-timeout" a proxy probe that got none for that reason).
func (r *recorder) timeline(p probe, from, to time.Time) string {
	var b strings.Builder
	ss := r.in(p, from, to)
	key := func(s tcpSample) string {
		if s.who != "" {
			return s.who
		}
		return "-" + s.why
	}
	for i := 0; i < len(ss); {
		j := i
		for j+1 < len(ss) && key(ss[j+1]) == key(ss[i]) {
			j++
		}
		who := key(ss[i])
		fmt.Fprintf(&b, "%s %d-%dms (%d), ", who, ss[i].at.Sub(from).Milliseconds(), ss[j].at.Sub(from).Milliseconds(), j-i+1)
		i = j + 1
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// multiTimeline renders kernel (kern) or ARP samples as runs of holder sets.
func (r *recorder) multiTimeline(kern bool, from, to time.Time) string {
	var b strings.Builder
	ss := r.multiIn(kern, from, to)
	key := func(s multiSample) string {
		if len(s.who) == 0 {
			return "-"
		}
		return strings.Join(s.who, "+")
	}
	for i := 0; i < len(ss); {
		j := i
		for j+1 < len(ss) && key(ss[j+1]) == key(ss[i]) {
			j++
		}
		fmt.Fprintf(&b, "%s %d-%dms, ", key(ss[i]), ss[i].at.Sub(from).Milliseconds(), ss[j].at.Sub(from).Milliseconds())
		i = j + 1
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// garpsBy counts gratuitous ARPs for the VIP sent by name in the window.
func (r *recorder) garpsBy(name string, from, to time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.garp {
		if s.who == name && !s.at.Before(from) && s.at.Before(to) {
			n++
		}
	}
	return n
}

// switchBacks counts p's answers that go back to a node the VIP had moved
// away from within the window (A, B, A): a client seeing two holders.
// Samples are in probe start order, so for the parallel proxy prober an
// answer by A counts when its connection started after one that B served.
func (r *recorder) switchBacks(p probe, from, to time.Time) int {
	left := map[string]bool{}
	cur, n := "", 0
	for _, s := range r.in(p, from, to) {
		if s.who == "" || s.who == cur {
			continue
		}
		if left[s.who] {
			n++
		}
		if cur != "" {
			left[cur] = true
		}
		cur = s.who
	}
	return n
}
