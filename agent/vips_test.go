package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/raftstore"
)

// fakeStore is a stateful single-process stand-in for raftstore.Store: a
// real raftstore.State with commands applied in order, leadership and
// lease set by the test, and members whose reachability the test sets.
type fakeStore struct {
	mu        sync.Mutex
	st        *raftstore.State
	index     uint64
	watchers  []chan raftstore.Event
	leaderSub []chan bool
	leader    bool
	barrier   error
	verify    error
	block     chan struct{} // VerifyLeader blocks on it when set
	lastCont  time.Time
	members   []raftstore.ClusterMember
	applied   []raftstore.VIPAssignPayload
}

func newFakeStore(t *testing.T, nodes ...string) *fakeStore {
	f := &fakeStore{st: raftstore.NewState(100)}
	for i, n := range nodes {
		f.mustApply(t, raftstore.CmdMemberPut, raftstore.MemberPutPayload{NodeID: n, RaftAddr: fmt.Sprintf("10.0.0.%d:7400", i+1)})
		f.members = append(f.members, raftstore.ClusterMember{NodeID: n, Suffrage: "voter", Reachable: true})
	}
	return f
}

func (f *fakeStore) mustApply(t *testing.T, typ string, p any) raftstore.Result {
	t.Helper()
	res, err := f.Apply(context.Background(), raftstore.MustCommand(typ, p))
	if err != nil {
		t.Fatalf("apply %s: %v", typ, err)
	}
	return res
}

func (f *fakeStore) Apply(_ context.Context, cmd raftstore.Command) (raftstore.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	cmd.ID = fmt.Sprintf("cmd-%d", f.index)
	cmd.At = time.Unix(1_800_000_000, 0).Add(time.Duration(f.index) * time.Second)
	next, res, err := f.st.Apply(f.index, cmd)
	if err != nil {
		return res, err
	}
	f.st = next
	if cmd.Type == raftstore.CmdVIPAssign {
		var p raftstore.VIPAssignPayload
		_ = jsonUnmarshal(cmd.Payload, &p)
		f.applied = append(f.applied, p)
	}
	for _, w := range f.watchers {
		select {
		case w <- raftstore.Event{Index: f.index, Type: cmd.Type}:
		default:
		}
	}
	return res, nil
}

func (f *fakeStore) State() *raftstore.State { f.mu.Lock(); defer f.mu.Unlock(); return f.st }
func (f *fakeStore) Watch() (<-chan raftstore.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan raftstore.Event, 64)
	f.watchers = append(f.watchers, ch)
	return ch, func() {}
}
func (f *fakeStore) LeadershipChanges() <-chan bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan bool, 16)
	ch <- f.leader
	f.leaderSub = append(f.leaderSub, ch)
	return ch
}
func (f *fakeStore) setLeader(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader = v
	for _, s := range f.leaderSub {
		s <- v
	}
}
func (f *fakeStore) Barrier(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.barrier
}
func (f *fakeStore) VerifyLeader() error {
	f.mu.Lock()
	block, err := f.block, f.verify
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	return err
}
func (f *fakeStore) set(fn func(f *fakeStore)) { f.mu.Lock(); defer f.mu.Unlock(); fn(f) }
func (f *fakeStore) Status() raftstore.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leader {
		return raftstore.Status{State: "leader"}
	}
	return raftstore.Status{State: "follower", LastContact: f.lastCont}
}
func (f *fakeStore) Members(context.Context) ([]raftstore.ClusterMember, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.members)
	for i := range out {
		if out[i].Reachable {
			out[i].AppliedIndex = f.index
		}
	}
	return out, nil
}
func (f *fakeStore) setReachable(id string, v bool) {
	f.set(func(f *fakeStore) {
		for i := range f.members {
			if f.members[i].NodeID == id {
				f.members[i].Reachable = v
			}
		}
	})
}

// fakeMounter records mounts like netctl's kernel state: a set of addresses.
type fakeMounter struct {
	mu       sync.Mutex
	mounted  map[netip.Prefix]string
	log      []string
	fail     error
	renewals int
}

func (m *fakeMounter) MountVIP(_ context.Context, v netctl.VIP) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.mounted == nil {
		m.mounted = map[netip.Prefix]string{}
	}
	m.mounted[v.Addr] = v.Interface
	m.log = append(m.log, "mount "+v.Addr.String())
	return nil
}

// RenewVIPs counts renewals (the kernel lease is netctl's business).
func (m *fakeMounter) RenewVIPs(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewals++
	return nil
}

func (m *fakeMounter) UnmountVIP(_ context.Context, p netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mounted, p)
	m.log = append(m.log, "unmount "+p.String())
	return nil
}

// render is the mount table as sorted text.
func (m *fakeMounter) render() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lines []string
	for p, i := range m.mounted {
		lines = append(lines, p.String()+" on "+i)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = tWriter{}

const (
	n1 = "0190a000-0000-7000-8000-000000000001"
	n2 = "0190a000-0000-7000-8000-000000000002"
	n3 = "0190a000-0000-7000-8000-000000000003"
)

func startOwner(t *testing.T, f *fakeStore, self string) (*vipOwner, *fakeMounter) {
	t.Helper()
	m := &fakeMounter{}
	o := newVIPOwner(self, f, m, "eth0", testLogger(t))
	o.leaseEvery = 10 * time.Millisecond
	o.assignEvery = 10 * time.Millisecond
	o.holderLease = 200 * time.Millisecond
	o.failoverAfter = 400 * time.Millisecond
	o.renewEvery = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return o, m
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantMounts(t *testing.T, m *fakeMounter, want string) {
	t.Helper()
	var got string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got = m.render(); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mounts (-want +got):\n%s", cmp.Diff(want, got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLeaderHeldVIPFollowsLeadership: mounted only after a barrier,
// dropped on leadership loss and on a failed lease check, with the holder
// history recorded.
func TestLeaderHeldVIPFollowsLeadership(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.50/32", Interface: "eth0"})
	f.set(func(f *fakeStore) { f.barrier = errors.New("no quorum") })
	_, m := startOwner(t, f, n1)
	f.setLeader(true)
	time.Sleep(50 * time.Millisecond)
	wantMounts(t, m, "") // no barrier, no mount
	f.set(func(f *fakeStore) { f.barrier = nil })
	wantMounts(t, m, "10.9.0.50/32 on eth0") // the lease tick retries the barrier
	waitFor(t, "holder recorded", func() bool { v, _ := f.State().VIP("site"); return v.Holder == n1 })
	if h := f.State().VIPHistory("site"); len(h) != 1 || h[0].Reason != raftstore.ReasonInitial {
		t.Fatalf("history = %+v, want one initial entry", h)
	}

	f.set(func(f *fakeStore) { f.verify = errors.New("lease lost") })
	wantMounts(t, m, "")
	f.set(func(f *fakeStore) { f.verify = nil })
	wantMounts(t, m, "10.9.0.50/32 on eth0")
	f.setLeader(false)
	wantMounts(t, m, "")
}

func (m *fakeMounter) renewed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewals
}

// wantNoRenewals checks that m gets no lease renewal for a while.
func wantNoRenewals(t *testing.T, m *fakeMounter) {
	t.Helper()
	before := m.renewed()
	time.Sleep(150 * time.Millisecond)
	if got := m.renewed(); got != before {
		t.Fatalf("%d lease renewals while ownership was not confirmed", got-before)
	}
}

// TestVIPLeaseRenewedOnlyWhileConfirmed: the kernel lease of mounted VIPs is
// renewed on confirmed lease checks (leader) or while in touch with the
// leader (holder list), and never once that confirmation fails.
func TestVIPLeaseRenewedOnlyWhileConfirmed(t *testing.T) {
	t.Run("leader", func(t *testing.T) {
		f := newFakeStore(t, n1, n2, n3)
		f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.50/32", Interface: "eth0"})
		_, m := startOwner(t, f, n1)
		f.setLeader(true)
		wantMounts(t, m, "10.9.0.50/32 on eth0")
		start := m.renewed()
		waitFor(t, "renewals while leader", func() bool { return m.renewed() >= start+3 })
		// A stuck or failed lease check: unmounted, and no renewal either.
		f.set(func(f *fakeStore) { f.verify = errors.New("lease lost") })
		wantMounts(t, m, "")
		wantNoRenewals(t, m)
	})
	t.Run("holder list", func(t *testing.T) {
		f := newFakeStore(t, n1, n2, n3)
		f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0", HolderNodeIDs: []string{n2}})
		f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "api", NodeID: n2, Reason: raftstore.ReasonInitial})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // heartbeats from the leader
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
					f.set(func(f *fakeStore) { f.lastCont = time.Now() })
				}
			}
		}()
		_, m := startOwner(t, f, n2)
		wantMounts(t, m, "10.9.0.51/32 on eth0")
		start := m.renewed()
		waitFor(t, "renewals while in touch", func() bool { return m.renewed() >= start+3 })
		close(stop) // partitioned
		wg.Wait()
		wantMounts(t, m, "")
		wantNoRenewals(t, m)
	})
}

// TestLeaderHeldVIPHistoryReasons: a new leader records sensor_failover
// after another holder, manual_failover after a requested move.
func TestLeaderHeldVIPHistoryReasons(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.50/32", Interface: "eth0"})
	f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "site", NodeID: n2, Reason: raftstore.ReasonInitial})
	_, m := startOwner(t, f, n1)
	f.setLeader(true)
	wantMounts(t, m, "10.9.0.50/32 on eth0")
	waitFor(t, "holder recorded", func() bool { v, _ := f.State().VIP("site"); return v.Holder == n1 })
	f.setLeader(false)
	wantMounts(t, m, "")
	f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "site", Reason: raftstore.ReasonManualFailover, State: raftstore.VIPFailingOver})
	f.setLeader(true)
	waitFor(t, "holder recorded", func() bool { v, _ := f.State().VIP("site"); return v.Holder == n1 })
	var reasons []string
	for _, h := range f.State().VIPHistory("site") {
		reasons = append(reasons, h.Reason)
	}
	want := []string{"initial", "sensor_failover", "manual_failover", "manual_failover"}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Fatalf("history reasons (-want +got):\n%s", diff)
	}
}

// TestHolderListVIPNeedsContact: a follower holder mounts while it hears
// from the leader and drops the VIP when that contact goes stale.
func TestHolderListVIPNeedsContact(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0", HolderNodeIDs: []string{n2}, FailoverNodeIDs: []string{n3}})
	f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "api", NodeID: n2, Reason: raftstore.ReasonInitial})
	f.set(func(f *fakeStore) { f.lastCont = time.Now() })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // heartbeats from the leader
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				f.set(func(f *fakeStore) { f.lastCont = time.Now() })
			}
		}
	}()
	_, m := startOwner(t, f, n2)
	wantMounts(t, m, "10.9.0.51/32 on eth0")
	close(stop) // partitioned: no more heartbeats
	wg.Wait()
	wantMounts(t, m, "")
	f.set(func(f *fakeStore) { f.lastCont = time.Now() })
	wantMounts(t, m, "10.9.0.51/32 on eth0")
	// Assigned elsewhere: dropped at once.
	f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "api", NodeID: n3, Reason: raftstore.ReasonManualFailover})
	wantMounts(t, m, "")
}

// TestAssignerFailsOverHolderList runs the leader's assigner against the
// fake: initial assignment, sticky while the holder answers, sensor
// failover only after failoverAfter of silence, no flap back.
func TestAssignerFailsOverHolderList(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0", HolderNodeIDs: []string{n2}, FailoverNodeIDs: []string{n3}})
	o, _ := startOwner(t, f, n1)
	f.setLeader(true)
	waitFor(t, "initial", func() bool { v, _ := f.State().VIP("api"); return v.Holder == n2 })
	f.setReachable(n2, false)
	lost := time.Now()
	waitFor(t, "sensor failover", func() bool { v, _ := f.State().VIP("api"); return v.Holder == n3 })
	// The last probe that saw n2 was at most one assign round before lost.
	if took := time.Since(lost); took < o.failoverAfter-o.assignEvery {
		t.Fatalf("failed over after %s, before failoverAfter %s: the old holder's lease may not have run out", took, o.failoverAfter)
	}
	f.setReachable(n2, true)
	time.Sleep(100 * time.Millisecond)
	if v, _ := f.State().VIP("api"); v.Holder != n3 {
		t.Fatalf("holder flapped back to %s", v.Holder)
	}
	var reasons []string
	for _, h := range f.State().VIPHistory("api") {
		reasons = append(reasons, h.From+">"+h.To+":"+h.Reason)
	}
	want := []string{">" + n2 + ":initial", n2 + ">" + n3 + ":sensor_failover"}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Fatalf("history (-want +got):\n%s", diff)
	}
}

// TestManualFailoverHolderList: a manual move is two steps and refuses
// bad targets.
func TestManualFailoverHolderList(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0", HolderNodeIDs: []string{n2}, FailoverNodeIDs: []string{n3}})
	f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "api", NodeID: n2, Reason: raftstore.ReasonInitial})
	apply := func(ctx context.Context, typ string, p any) (raftstore.Result, error) {
		return f.Apply(ctx, raftstore.MustCommand(typ, p))
	}
	v, _ := f.State().VIP("api")
	ctx := context.Background()
	for _, tc := range []struct{ to, reason string }{{n1, "not_a_holder"}, {n2, "already_holder"}} {
		_, err := failoverHolderList(ctx, f, v, tc.to, apply)
		var he *httpError
		if !errors.As(err, &he) || he.reason != tc.reason {
			t.Errorf("failover to %s: %v, want %s", tc.to, err, tc.reason)
		}
	}
	f.setReachable(n3, false)
	if _, err := failoverHolderList(ctx, f, v, "", apply); err == nil || !strings.Contains(err.Error(), "no other holder") {
		t.Fatalf("failover with no reachable candidate: %v", err)
	}
	f.setReachable(n3, true)
	res, err := failoverHolderList(ctx, f, v, "", apply)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != n2 || res.To != n3 {
		t.Fatalf("moved %+v", res)
	}
	var got []string
	for _, h := range f.State().VIPHistory("api") {
		got = append(got, h.From+">"+h.To+":"+h.Reason)
	}
	want := []string{">" + n2 + ":initial", n2 + ">:manual_failover", ">" + n3 + ":manual_failover"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("history (-want +got):\n%s", diff)
	}
}

// TestPlanVIPs checks the leader's plan as state diffs, then replays the
// cases in random order (the plan must not depend on history of calls).
func TestPlanVIPs(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	seen := func(d time.Duration) time.Time { return now.Add(-d) }
	type tc struct {
		name  string
		setup func(t *testing.T, f *fakeStore)
		reach []string
		last  map[string]time.Time
		want  string
	}
	put := func(f *fakeStore, t *testing.T, holders, fails []string) {
		f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0", HolderNodeIDs: holders, FailoverNodeIDs: fails})
	}
	assign := func(f *fakeStore, t *testing.T, to, reason, state string) {
		f.mustApply(t, raftstore.CmdVIPAssign, raftstore.VIPAssignPayload{Name: "api", NodeID: to, Reason: reason, State: state})
	}
	all := map[string]time.Time{n1: now, n2: now, n3: now}
	cases := []tc{
		{name: "initial to primary", setup: func(t *testing.T, f *fakeStore) { put(f, t, []string{n2}, []string{n3}) },
			reach: []string{n1, n2, n3}, last: all, want: "api>n2:initial"},
		{name: "initial skips an unreachable primary", setup: func(t *testing.T, f *fakeStore) { put(f, t, []string{n2}, []string{n3}) },
			reach: []string{n1, n3}, last: all, want: "api>n3:initial"},
		{name: "nobody reachable: nothing", setup: func(t *testing.T, f *fakeStore) { put(f, t, []string{n2}, []string{n3}) },
			reach: []string{n1}, last: all, want: ""},
		{name: "sticky on a failover node", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n3, "sensor_failover", "")
		}, reach: []string{n1, n2, n3}, last: all, want: ""},
		{name: "silent holder within failoverAfter: wait", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n2, "initial", "")
		}, reach: []string{n1, n3}, last: map[string]time.Time{n1: now, n2: seen(time.Second), n3: now}, want: ""},
		{name: "silent holder past failoverAfter: sensor_failover", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n2, "initial", "")
		}, reach: []string{n1, n3}, last: map[string]time.Time{n1: now, n2: seen(2 * time.Second), n3: now}, want: "api>n3:sensor_failover"},
		{name: "holder dropped from the lists: step one", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n2, "initial", "")
			put(f, t, []string{n3}, []string{n1})
		}, reach: []string{n1, n2, n3}, last: all, want: "api>:holder_changed:failing_over"},
		{name: "holder_changed step two after the old holder applied", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n2, "initial", "")
			put(f, t, []string{n3}, []string{n1})
			assign(f, t, "", "holder_changed", "failing_over")
		}, reach: []string{n1, n2, n3}, last: all, want: "api>n3:holder_changed"},
		{name: "holder_changed waits for a silent old holder", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n2, "initial", "")
			put(f, t, []string{n3}, []string{n1})
			assign(f, t, "", "holder_changed", "failing_over")
		}, reach: []string{n1, n3}, last: map[string]time.Time{n1: now, n2: seen(time.Second), n3: now}, want: ""},
		{name: "manual move left to its API call within the grace", setup: func(t *testing.T, f *fakeStore) {
			put(f, t, []string{n2}, []string{n3})
			assign(f, t, n2, "initial", "")
			assign(f, t, "", "manual_failover", "failing_over")
		}, reach: []string{n1, n2, n3}, last: all, want: ""},
		{name: "error state is left alone", setup: func(t *testing.T, f *fakeStore) {
			f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0", HolderNodeIDs: []string{n2}, State: "error"})
		}, reach: []string{n1, n2, n3}, last: all, want: ""},
		{name: "leader-held VIPs are not planned", setup: func(t *testing.T, f *fakeStore) {
			f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "api", CIDR: "10.9.0.51/32", Interface: "eth0"})
		}, reach: []string{n1, n2, n3}, last: all, want: ""},
	}
	short := strings.NewReplacer(n1, "n1", n2, "n2", n3, "n3")
	run := func(t *testing.T, c tc) {
		f := newFakeStore(t, n1, n2, n3)
		c.setup(t, f)
		st := f.State()
		view := liveView{now: now, failoverAfter: 1500 * time.Millisecond, reachable: map[string]bool{}, applied: map[string]uint64{}, lastSeen: c.last}
		if len(st.VIPHistory("api")) > 0 {
			// History entries carry the fake's command time; plan at that time.
			h := st.VIPHistory("api")
			view.now = h[len(h)-1].At.Add(manualGrace / 2)
			for id, ts := range c.last {
				view.lastSeen = cloneTimes(view.lastSeen)
				view.lastSeen[id] = view.now.Add(ts.Sub(now))
			}
		}
		for _, id := range c.reach {
			view.reachable[id] = true
			view.applied[id] = 1 << 40
		}
		var got []string
		for _, p := range planVIPs(st, view) {
			s := p.Name + ">" + p.NodeID + ":" + p.Reason
			if p.State != "" {
				s += ":" + p.State
			}
			got = append(got, short.Replace(s))
		}
		if diff := cmp.Diff(c.want, strings.Join(got, "\n")); diff != "" {
			t.Errorf("%s: plan (-want +got):\n%s", c.name, diff)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { run(t, c) })
	}
	perm := rand.Perm(len(cases))
	for _, i := range perm {
		run(t, cases[i])
	}
}

func cloneTimes(m map[string]time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestTwoNodeWarning(t *testing.T) {
	for _, tc := range []struct {
		voters, nonvoters int
		warn              bool
	}{{1, 0, false}, {2, 0, true}, {2, 1, true}, {3, 0, false}} {
		var ms []raftstore.ClusterMember
		for i := 0; i < tc.voters; i++ {
			ms = append(ms, raftstore.ClusterMember{Suffrage: "voter"})
		}
		for i := 0; i < tc.nonvoters; i++ {
			ms = append(ms, raftstore.ClusterMember{Suffrage: "nonvoter"})
		}
		if got := twoNodeWarning(ms) != ""; got != tc.warn {
			t.Errorf("%d voters + %d non-voters: warn=%v, want %v", tc.voters, tc.nonvoters, got, tc.warn)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestStaleLeaderViewNeverMounts: raft said "leader" but the node is no
// longer one (a partitioned old leader; Barrier is forwarded to the real
// leader and succeeds): without a confirmed lease nothing is mounted.
func TestStaleLeaderViewNeverMounts(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.50/32", Interface: "eth0"})
	f.set(func(f *fakeStore) { f.verify = errors.New("node is not the leader") })
	_, m := startOwner(t, f, n1)
	f.setLeader(true)
	time.Sleep(100 * time.Millisecond) // ten lease ticks
	m.mu.Lock()
	log := slices.Clone(m.log)
	m.mu.Unlock()
	if len(log) != 0 {
		t.Fatalf("mounted on a stale leader view: %v", log)
	}
}

// fenceStore adds the disk-stall fence to the fake.
type fenceStore struct {
	*fakeStore
	stall    time.Duration
	isolated int
}

func (f *fenceStore) LogWriteStall() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stall
}

func (f *fenceStore) Isolate() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.isolated++
	f.leader = false
	return nil
}

// TestStuckLeaseCheckUnmounts: a leader whose lease check never returns
// (leader loop blocked on a stalled disk) drops its VIPs within the bound.
func TestStuckLeaseCheckUnmounts(t *testing.T) {
	f := newFakeStore(t, n1, n2, n3)
	f.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.50/32", Interface: "eth0"})
	_, m := startOwner(t, f, n1)
	f.setLeader(true)
	wantMounts(t, m, "10.9.0.50/32 on eth0")
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	f.set(func(f *fakeStore) { f.block = block })
	wantMounts(t, m, "")
}

// TestDiskStallFencesLeader: a raft log write stuck past diskStallAfter on
// the leader unmounts every VIP, then isolates the node, once; it never
// mounts again.
func TestDiskStallFencesLeader(t *testing.T) {
	fs := &fenceStore{fakeStore: newFakeStore(t, n1, n2, n3)}
	fs.mustApply(t, raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.50/32", Interface: "eth0"})
	m := &fakeMounter{}
	o := newVIPOwner(n1, fs, m, "eth0", testLogger(t))
	o.leaseEvery, o.assignEvery, o.diskStallAfter = 10*time.Millisecond, 10*time.Millisecond, 300*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	fs.setLeader(true)
	wantMounts(t, m, "10.9.0.50/32 on eth0")
	fs.mu.Lock()
	fs.stall = 100 * time.Millisecond // a slow write, below the threshold
	fs.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	wantMounts(t, m, "10.9.0.50/32 on eth0")
	fs.mu.Lock()
	fs.stall = 2 * time.Second
	fs.mu.Unlock()
	wantMounts(t, m, "")
	waitFor(t, "isolated", func() bool { fs.mu.Lock(); defer fs.mu.Unlock(); return fs.isolated == 1 })
	fs.setLeader(true) // even if raft claimed leadership again
	time.Sleep(50 * time.Millisecond)
	wantMounts(t, m, "")
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.isolated != 1 {
		t.Fatalf("isolated %d times, want once", fs.isolated)
	}
}
