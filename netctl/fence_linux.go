package netctl

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// FenceTable is the name of the nftables tables the L2 fence owns, one in
// family arp and one in family ip6. The name is the ownership mark: only
// tables of this name are ever changed or removed, whole.
const FenceTable = "fedgate"

// Names inside the fence tables.
const (
	fenceChain   = "output"
	fenceSet4    = "vips4"
	fenceSet6    = "vips6"
	fenceComment = "fedgate: the kernel never answers for an HA VIP; its holder process does"
	// arpHookOut is NF_ARP_OUT: every ARP packet the kernel sends passes it
	// (arp_xmit); frames sent on AF_PACKET sockets do not.
	arpHookOut = 1
	// fenceVerifyEvery: Set rewrites the tables at least this often, so an
	// outside `nft flush ruleset` is repaired.
	fenceVerifyEvery = 30 * time.Second
)

// FenceConfig configures NewFence. Zero values take defaults.
type FenceConfig struct {
	// Netns is a network namespace path; "" is the process's own.
	Netns string
	// StallAfter: when this process was not running for longer (SIGSTOP,
	// a paused VM; measured by a ticker and on every received request),
	// it stops answering for every claim with a deadline until that
	// claim's deadline is extended (the next renewal, which follows a
	// confirmation of ownership). Default 250ms; negative disables.
	StallAfter time.Duration
	Logger     *slog.Logger
}

// FenceStats counts the responder's work since NewFence.
type FenceStats struct {
	// ARPReplies and NAReplies were sent for claimed addresses.
	ARPReplies, NAReplies uint64
	// Suppressed requests were for a claim whose deadline had passed or
	// that was stalled.
	Suppressed uint64
	// Stalls counts the times this process found it had not run for
	// StallAfter.
	Stalls uint64
	// SendErrors counts replies that could not be sent.
	SendErrors uint64
}

// FenceKernelState is what the kernel holds of the fence.
type FenceKernelState struct {
	// ARP and IP6 report whether each table exists.
	ARP, IP6 bool
	// Addrs are the fenced addresses (both sets), sorted.
	Addrs []netip.Addr
	// DroppedARP and DroppedNA count the kernel's own replies dropped
	// since the rules were last written.
	DroppedARP, DroppedNA uint64
}

// L2Fence is the real Fence: nftables tables that drop the kernel's own ARP
// replies (sender IP) and neighbour advertisements (target address) for
// claimed addresses, and an AF_PACKET responder per link that answers ARP
// who-has and neighbour solicitations for them from this process.
type L2Fence struct {
	cfg FenceConfig
	log *slog.Logger

	mu        sync.Mutex // Set, Remove, Close
	links     map[int]*l2Link
	applied   map[netip.Addr]bool // in the kernel sets as of appliedAt; nil: unknown
	appliedAt time.Time
	closed    bool
	tickStop  chan struct{}
	tickDone  chan struct{}

	st       sync.Mutex // answers and lastTick; read by the responders
	answers  map[int]map[netip.Addr]*answer
	lastTick time.Time

	arpReplies, naReplies, suppressed, stalls, sendErrors atomic.Uint64
}

type answer struct {
	until time.Time
	// stalled: not answered until until moves past stallUntil.
	stalled    bool
	stallUntil time.Time
}

// l2Link holds the responder's sockets on one link.
type l2Link struct {
	link    Link
	arp, nd *packet.Conn
	wg      sync.WaitGroup
	dead    atomic.Bool // a responder stopped on a read error: reopen
}

// NewFence returns an L2 fence for the namespace at nsPath ("" = current)
// with default settings. It touches nothing until the first Set.
func NewFence(nsPath string) *L2Fence {
	return NewFenceConfig(FenceConfig{Netns: nsPath})
}

// NewFenceConfig returns an L2 fence configured by cfg.
func NewFenceConfig(cfg FenceConfig) *L2Fence {
	if cfg.StallAfter == 0 {
		cfg.StallAfter = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &L2Fence{cfg: cfg, log: cfg.Logger, links: map[int]*l2Link{}, answers: map[int]map[netip.Addr]*answer{}}
}

// ErrFenceClosed is returned by Set after Close.
var ErrFenceClosed = errors.New("l2 fence closed")

// Set implements Fence.
func (f *L2Fence) Set(claims []Claim) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrFenceClosed
	}
	var errs []error
	// Responders: one per link with answered claims.
	byLink := map[int][]Claim{}
	for _, c := range claims {
		if c.Link.Index > 0 && len(c.Link.HardwareAddr) == 6 {
			byLink[c.Link.Index] = append(byLink[c.Link.Index], c)
		}
	}
	for i, l := range f.links {
		if cs, ok := byLink[i]; !ok || l.dead.Load() || cs[0].Link.Name != l.link.Name || cs[0].Link.HardwareAddr.String() != l.link.HardwareAddr.String() {
			l.close()
			delete(f.links, i)
		}
	}
	failed := map[netip.Addr]bool{}
	for i, cs := range byLink {
		l := f.links[i]
		if l == nil {
			l = &l2Link{link: cs[0].Link}
			f.links[i] = l
		}
		need4, need6 := false, false
		for _, c := range cs {
			need4 = need4 || c.Addr.Is4()
			need6 = need6 || c.Addr.Is6()
		}
		if err := f.listen(l, need4, need6); err != nil {
			errs = append(errs, err)
			for _, c := range cs {
				if (c.Addr.Is4() && l.arp == nil) || (c.Addr.Is6() && l.nd == nil) {
					failed[c.Addr] = true
				}
			}
		}
	}
	// What the responders answer.
	now := time.Now()
	f.st.Lock()
	f.checkStall(now)
	next := map[int]map[netip.Addr]*answer{}
	for i, cs := range byLink {
		for _, c := range cs {
			if failed[c.Addr] {
				continue
			}
			a := &answer{until: c.Until}
			if prev := f.lookup(c.Addr); prev != nil && prev.stalled && !c.Until.After(prev.stallUntil) {
				a.stalled, a.stallUntil = true, prev.stallUntil
			}
			if next[i] == nil {
				next[i] = map[netip.Addr]*answer{}
			}
			next[i][c.Addr] = a
		}
	}
	f.answers = next
	f.st.Unlock()
	if len(f.links) > 0 && f.tickStop == nil && f.cfg.StallAfter > 0 {
		f.tickStop, f.tickDone = make(chan struct{}), make(chan struct{})
		go f.tick(f.tickStop, f.tickDone)
	}
	// The kernel sets: every claimed address whose answering works (or
	// that is fenced only).
	want := map[netip.Addr]bool{}
	for _, c := range claims {
		if !failed[c.Addr] {
			want[c.Addr] = true
		}
	}
	if !sameAddrs(want, f.applied) || now.Sub(f.appliedAt) > fenceVerifyEvery {
		if err := f.apply(want); err != nil {
			f.applied = nil
			errs = append(errs, err)
		} else {
			f.applied, f.appliedAt = want, now
		}
	}
	return errors.Join(errs...)
}

func sameAddrs(a, b map[netip.Addr]bool) bool {
	if b == nil || len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// lookup finds the answer for addr on any link. Called with f.st held.
func (f *L2Fence) lookup(addr netip.Addr) *answer {
	for _, m := range f.answers {
		if a := m[addr]; a != nil {
			return a
		}
	}
	return nil
}

// checkStall notices that this process did not run for StallAfter (since
// the last tick, request or Set) and stalls every claim with a deadline.
// Called with f.st held, before anything else that could answer.
func (f *L2Fence) checkStall(now time.Time) {
	if f.cfg.StallAfter <= 0 {
		return
	}
	if !f.lastTick.IsZero() && now.Sub(f.lastTick) > f.cfg.StallAfter {
		n := 0
		for _, m := range f.answers {
			for _, a := range m {
				if !a.until.IsZero() && !a.stalled {
					a.stalled, a.stallUntil = true, a.until
					n++
				}
			}
		}
		if n > 0 {
			f.stalls.Add(1)
			f.log.Warn("netctl L2 fence: this process did not run for a while; silent until the VIPs are renewed",
				"gap", now.Sub(f.lastTick), "claims", n)
		}
	}
	f.lastTick = now
}

func (f *L2Fence) tick(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(max(f.cfg.StallAfter/5, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			f.st.Lock()
			f.checkStall(time.Now())
			f.st.Unlock()
		}
	}
}

// claimed reports whether the responder on link answers for addr now.
func (f *L2Fence) claimed(link int, addr netip.Addr) bool {
	now := time.Now()
	f.st.Lock()
	defer f.st.Unlock()
	f.checkStall(now)
	a := f.answers[link][addr]
	if a == nil {
		return false
	}
	if a.stalled || (!a.until.IsZero() && !now.Before(a.until)) {
		f.suppressed.Add(1)
		return false
	}
	return true
}

// listen opens the sockets l needs and closes the ones it no longer does.
func (f *L2Fence) listen(l *l2Link, need4, need6 bool) error {
	var errs []error
	open := func(proto int, filter []bpf.RawInstruction) (*packet.Conn, error) {
		var c *packet.Conn
		err := inNetns(f.cfg.Netns, func() error {
			ifi, err := net.InterfaceByIndex(l.link.Index)
			if err != nil {
				return err
			}
			c, err = packet.Listen(ifi, packet.Raw, proto, &packet.Config{Filter: filter})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("l2 fence: responder on %s: %w", l.link.Name, mapErr(err))
		}
		l.wg.Add(1)
		go f.serve(l, c)
		return c, nil
	}
	var err error
	switch {
	case need4 && l.arp == nil:
		if l.arp, err = open(unix.ETH_P_ARP, arpRequestFilter); err != nil {
			errs = append(errs, err)
		}
	case !need4 && l.arp != nil:
		l.arp.Close()
		l.arp = nil
	}
	switch {
	case need6 && l.nd == nil:
		if l.nd, err = open(unix.ETH_P_IPV6, nsFilter); err != nil {
			errs = append(errs, err)
		}
	case !need6 && l.nd != nil:
		l.nd.Close()
		l.nd = nil
	}
	return errors.Join(errs...)
}

// serve answers requests read from c until c is closed.
func (f *L2Fence) serve(l *l2Link, c *packet.Conn) {
	defer l.wg.Done()
	hw, idx := l.link.HardwareAddr, l.link.Index
	claimed := func(a netip.Addr) bool { return f.claimed(idx, a) }
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, unix.ENETDOWN) {
				// The link went down: the socket reports it once and
				// receives again once the link is back up.
				f.log.Debug("netctl L2 fence: link down", "link", l.link.Name)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			// Anything else ends this socket. The next Set (the holder
			// renews several times a second) opens a new one, or takes
			// the link's addresses out of the fence if it cannot (fail
			// open).
			f.log.Warn("netctl L2 fence: responder stopped", "link", l.link.Name, "err", err)
			l.dead.Store(true)
			return
		}
		reply, addr := l2Reply(buf[:n], hw, claimed)
		if reply == nil {
			continue
		}
		if _, err := c.WriteTo(reply, &packet.Addr{HardwareAddr: net.HardwareAddr(reply[0:6])}); err != nil {
			f.sendErrors.Add(1)
			f.log.Debug("netctl L2 fence: reply failed", "link", l.link.Name, "addr", addr, "err", err)
			continue
		}
		if addr.Is4() {
			f.arpReplies.Add(1)
		} else {
			f.naReplies.Add(1)
		}
	}
}

func (l *l2Link) close() {
	if l.arp != nil {
		l.arp.Close()
		l.arp = nil
	}
	if l.nd != nil {
		l.nd.Close()
		l.nd = nil
	}
	l.wg.Wait()
}

// Stats returns the responder's counters.
func (f *L2Fence) Stats() FenceStats {
	return FenceStats{ARPReplies: f.arpReplies.Load(), NAReplies: f.naReplies.Load(),
		Suppressed: f.suppressed.Load(), Stalls: f.stalls.Load(), SendErrors: f.sendErrors.Load()}
}

// Remove implements Fence: the responders stop and both tables go.
func (f *L2Fence) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopResponders()
	f.applied = nil
	return f.withConn(func(c *nftables.Conn) error {
		var errs []error
		for _, fam := range []nftables.TableFamily{nftables.TableFamilyARP, nftables.TableFamilyIPv6} {
			ts, err := c.ListTablesOfFamily(fam)
			if err != nil {
				if nftUnsupported(err) {
					continue // no nf_tables here: nothing of ours either
				}
				errs = append(errs, fmt.Errorf("l2 fence: list %s tables: %w", familyName(fam), mapErr(err)))
				continue
			}
			for _, t := range ts {
				if t.Name != FenceTable {
					continue
				}
				c.DelTable(t)
				if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("l2 fence: remove %s table: %w", familyName(fam), mapErr(err)))
				}
			}
		}
		return errors.Join(errs...)
	})
}

// nftUnsupported reports an error that means the kernel has no nf_tables
// (or not for this family).
func nftUnsupported(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT)
}

func (f *L2Fence) stopResponders() {
	for i, l := range f.links {
		l.close()
		delete(f.links, i)
	}
	f.st.Lock()
	f.answers = map[int]map[netip.Addr]*answer{}
	f.st.Unlock()
}

// Close implements Fence: the responders stop; the tables stay (an agent
// restart must not let the kernel answer for a VIP the next process may
// still hold).
func (f *L2Fence) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.stopResponders()
	if f.tickStop != nil {
		close(f.tickStop)
		<-f.tickDone
	}
	return nil
}

// withConn runs fn with an nftables connection in the fence's namespace
// (a fresh one each time: a failed batch leaves nothing queued).
func (f *L2Fence) withConn(fn func(c *nftables.Conn) error) error {
	var opts []nftables.ConnOption
	if f.cfg.Netns != "" {
		h, err := netns.GetFromPath(f.cfg.Netns)
		if err != nil {
			return fmt.Errorf("l2 fence: open netns %s: %w", f.cfg.Netns, err)
		}
		defer h.Close()
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("l2 fence: nftables: %w", mapErr(err))
	}
	return fn(c)
}

// apply writes both tables with want as their sets, each in one atomic
// transaction (table, chain, set, the rule rewritten, the set refilled):
// the fence is never absent or half-written while it runs.
func (f *L2Fence) apply(want map[netip.Addr]bool) error {
	var v4, v6 []nftables.SetElement
	for a := range want {
		if a.Is4() {
			b := a.As4()
			v4 = append(v4, nftables.SetElement{Key: b[:]})
		} else {
			b := a.As16()
			v6 = append(v6, nftables.SetElement{Key: b[:]})
		}
	}
	return f.withConn(func(c *nftables.Conn) error {
		var errs []error
		for _, fam := range []struct {
			family nftables.TableFamily
			elems  []nftables.SetElement
		}{{nftables.TableFamilyARP, v4}, {nftables.TableFamilyIPv6, v6}} {
			if err := writeFenceTable(c, fam.family, fam.elems, false); err != nil {
				// A table of our name with other contents (an older
				// layout): replace it whole, still in one transaction.
				if err2 := writeFenceTable(c, fam.family, fam.elems, true); err2 != nil {
					errs = append(errs, fmt.Errorf("l2 fence: write %s table: %w", familyName(fam.family), mapErr(errors.Join(err, err2))))
				}
			}
		}
		return errors.Join(errs...)
	})
}

func familyName(f nftables.TableFamily) string {
	if f == nftables.TableFamilyARP {
		return "arp"
	}
	return "ip6"
}

func writeFenceTable(c *nftables.Conn, fam nftables.TableFamily, elems []nftables.SetElement, replace bool) error {
	t := &nftables.Table{Name: FenceTable, Family: fam}
	c.AddTable(t)
	if replace {
		c.DelTable(t)
		c.AddTable(t)
	}
	hook, setName, keyType := nftables.ChainHookRef(arpHookOut), fenceSet4, nftables.TypeIPAddr
	if fam == nftables.TableFamilyIPv6 {
		hook, setName, keyType = nftables.ChainHookOutput, fenceSet6, nftables.TypeIP6Addr
	}
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: fenceChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	s := &nftables.Set{Table: t, Name: setName, KeyType: keyType}
	if err := c.AddSet(s, nil); err != nil {
		return err
	}
	c.FlushChain(ch)
	for _, r := range fenceRules(fam, s) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r,
			UserData: userdata.AppendString(nil, userdata.TypeComment, fenceComment)})
	}
	c.FlushSet(s)
	if len(elems) > 0 {
		if err := c.SetAddElements(s, elems); err != nil {
			return err
		}
	}
	return c.Flush()
}

// fenceRules are, in nft syntax,
//
//	arp: arp htype 1 ptype ip hlen 6 plen 4 operation reply saddr ip @vips4 counter drop
//	     arp htype 1 ptype ip hlen 6 plen 4 operation request daddr ip @vips4 counter drop
//	ip6: meta l4proto icmpv6 icmpv6 type nd-neighbor-advert
//	     @th,64,128 (the NA's target) @vips6 counter drop
//
// The second ARP rule drops the kernel's own who-has for a VIP: with
// sender = target = VIP that is a gratuitous announcement (arp_notify on
// link up, NETDEV_NOTIFY_PEERS after a bond failover or a VM migration),
// which a silenced old holder must not send; the kernel never needs to ask
// for an address it holds. The holder's announcements go out on AF_PACKET.
func fenceRules(fam nftables.TableFamily, s *nftables.Set) [][]expr.Any {
	if fam == nftables.TableFamilyARP {
		arp := func(op byte, ipOff uint32) []expr.Any {
			return []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 6},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 1, 0x08, 0x00, 6, 4}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, op}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipOff, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}
		}
		return [][]expr.Any{arp(2, 14), arp(1, 24)} // reply by sender IP; request by target IP
	}
	return [][]expr.Any{{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoICMPv6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmp6NA}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
}

// Kernel reads the fence's tables back from the kernel.
func (f *L2Fence) Kernel() (FenceKernelState, error) {
	var st FenceKernelState
	err := f.withConn(func(c *nftables.Conn) error {
		for _, fam := range []nftables.TableFamily{nftables.TableFamilyARP, nftables.TableFamilyIPv6} {
			ts, err := c.ListTablesOfFamily(fam)
			if err != nil {
				return fmt.Errorf("l2 fence: list tables: %w", mapErr(err))
			}
			var t *nftables.Table
			for _, x := range ts {
				if x.Name == FenceTable {
					t = x
				}
			}
			if t == nil {
				continue
			}
			setName := fenceSet4
			if fam == nftables.TableFamilyARP {
				st.ARP = true
			} else {
				st.IP6, setName = true, fenceSet6
			}
			s, err := c.GetSetByName(t, setName)
			if err != nil {
				return fmt.Errorf("l2 fence: read set %s: %w", setName, err)
			}
			elems, err := c.GetSetElements(s)
			if err != nil {
				return fmt.Errorf("l2 fence: read set %s: %w", setName, err)
			}
			for _, e := range elems {
				if a, ok := netip.AddrFromSlice(e.Key); ok {
					st.Addrs = append(st.Addrs, a)
				}
			}
			rules, err := c.GetRules(t, &nftables.Chain{Name: fenceChain, Table: t})
			if err != nil {
				return fmt.Errorf("l2 fence: read rules: %w", err)
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					if cnt, ok := e.(*expr.Counter); ok {
						if fam == nftables.TableFamilyARP {
							st.DroppedARP += cnt.Packets
						} else {
							st.DroppedNA += cnt.Packets
						}
					}
				}
			}
		}
		return nil
	})
	slices.SortFunc(st.Addrs, netip.Addr.Compare)
	return st, err
}
