package raftstore

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

type memSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { m.closed = true; return nil }

func testMetrics(t testing.TB) *metrics {
	m, err := newMetrics(nil, func() Status { return Status{} })
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func logOf(t testing.TB, index uint64, c Command) *raft.Log {
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: b}
}

func TestFSMApplySnapshotRestore(t *testing.T) {
	var events []Event
	f := newFSM(100, testMetrics(t), func(e Event) { events = append(events, e) })
	cmds := randomCommands(3, 200)
	var refused, dups int
	for i, c := range cmds {
		resp := f.Apply(logOf(t, uint64(i+1), c)).(*fsmResponse)
		switch {
		case resp.err != nil:
			refused++
			if !errors.Is(resp.err, ErrRefused) {
				t.Fatalf("non-refusal error %v", resp.err)
			}
		case resp.res.Duplicate:
			dups++
		}
	}
	if applied := len(cmds) - refused - dups; len(events) != applied {
		t.Fatalf("%d events for %d applied commands", len(events), applied)
	}
	// Non-command entries are ignored; a garbage envelope is refused.
	if r := f.Apply(&raft.Log{Index: 1000, Type: raft.LogNoop}); r != nil {
		t.Fatalf("noop returned %v", r)
	}
	if r := f.Apply(&raft.Log{Index: 1001, Type: raft.LogCommand, Data: []byte("{garbage")}).(*fsmResponse); !errors.Is(r.err, ErrRefused) {
		t.Fatalf("garbage envelope: %v", r.err)
	}
	if r := f.Apply(&raft.Log{Index: 1002, Type: raft.LogCommand, Data: []byte(`{"v":1,"id":"x","type":"kv.put","at":"2026-01-01T00:00:00Z","payload":{"key":"k"},"extra":1}`)}).(*fsmResponse); !errors.Is(r.err, ErrRefused) {
		t.Fatalf("envelope with unknown field: %v", r.err)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applying after the snapshot was taken does not change what it persists.
	want := mustJSON(t, f.state.Load())
	f.Apply(logOf(t, 2000, Command{V: 1, ID: "late", Type: CmdKVPut, At: t0, Payload: json.RawMessage(`{"key":"late","value":""}`)}))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v closed=%v", err, sink.closed)
	}
	snap.Release()
	if sink.String() != want {
		t.Fatal("snapshot does not match the state it was taken from")
	}
	var restored []Event
	g := newFSM(100, testMetrics(t), func(e Event) { restored = append(restored, e) })
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()))); err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, g.state.Load()); got != want {
		t.Fatalf("restored state differs:\n%s", cmp.Diff(want, got))
	}
	if !cmp.Equal(restored, []Event{{Type: EventRestore}}) {
		t.Fatalf("restore events %v", restored)
	}
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()[:100]))); err == nil {
		t.Fatal("restored a truncated snapshot")
	}
	if got := mustJSON(t, g.state.Load()); got != want {
		t.Fatal("a failed restore changed the state")
	}
}

func TestWatchHubCoalescesAndNeverBlocks(t *testing.T) {
	h := newWatchHub(testMetrics(t))
	fast, cancelFast := h.watch()
	slow, cancelSlow := h.watch()
	defer cancelSlow()
	done := make(chan struct{})
	var got []Event
	go func() {
		defer close(done)
		for e := range fast {
			got = append(got, e)
			if e.Index == 1000 {
				return
			}
		}
	}()
	for i := uint64(1); i <= 1000; i++ {
		h.publish(Event{Index: i, Type: CmdKVPut, Key: "kv/k"}) // must not block on slow
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("fast watcher stalled")
	}
	// The fast reader saw increasing indexes ending at 1000 (possibly with
	// a resync if it was scheduled out); the slow one gets a resync.
	for i := 1; i < len(got); i++ {
		if got[i].Index <= got[i-1].Index {
			t.Fatalf("out of order: %v then %v", got[i-1], got[i])
		}
	}
	e := <-slow
	if e.Type != EventResync {
		t.Fatalf("slow watcher's first event %+v", e)
	}
	for e.Index < 1000 {
		e = <-slow
	}
	cancelFast()
	h.close()
	if _, ok := <-slow; ok {
		t.Fatal("slow watcher open after close")
	}
	cancelSlow() // after close: no panic
}

func TestLeaderFanoutDeliversEveryChange(t *testing.T) {
	f := newLeaderFanout()
	ch := f.subscribe()
	seq := []bool{true, false, true, false, true}
	for _, v := range seq {
		f.set(v) // nobody reads yet: nothing may be dropped
	}
	want := append([]bool{false}, seq...) // first value: the state at subscribe
	for i, w := range want {
		select {
		case v := <-ch:
			if v != w {
				t.Fatalf("value %d = %v, want %v", i, v, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("value %d missing", i)
		}
	}
	late := f.subscribe()
	if v := <-late; v != true {
		t.Fatal("late subscriber did not get the current value")
	}
	f.close()
	if _, ok := <-ch; ok {
		t.Fatal("open after close")
	}
}

func TestHclogBridge(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), hclog.Info)
	n := l.Named("raft").With("peer", "a")
	n.Debug("hidden")
	n.Warn("heartbeat", "error", errors.New("boom"), "odd")
	l.StandardLogger(nil).Print("std line")
	out := buf.String()
	for _, want := range []string{`level=WARN msg=heartbeat component=raft peer=a error=boom extra=odd`, `msg="std line"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "hidden") || n.IsDebug() || !n.IsWarn() {
		t.Error("level not honoured")
	}
	n.SetLevel(hclog.Debug)
	if !l.IsDebug() {
		t.Error("named loggers do not share the level")
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{
			NodeID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0",
			ServerTLS: &tls.Config{ClientAuth: tls.RequireAnyClientCert, Certificates: []tls.Certificate{{}},
				VerifyConnection: func(tls.ConnectionState) error { return nil }},
			ClientTLS: &tls.Config{Certificates: []tls.Certificate{{}}},
		}
	}
	c := good()
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if c.LeaderLeaseTimeout >= c.HeartbeatTimeout {
		t.Fatal("default lease not below heartbeat")
	}
	for name, mod := range map[string]func(*Config){
		"no node id":         func(c *Config) { c.NodeID = "" },
		"no data dir":        func(c *Config) { c.DataDir = "" },
		"bad bind":           func(c *Config) { c.BindAddr = "nowhere" },
		"no server tls":      func(c *Config) { c.ServerTLS = nil },
		"no client auth":     func(c *Config) { c.ServerTLS.ClientAuth = tls.VerifyClientCertIfGiven },
		"any cert, no check": func(c *Config) { c.ServerTLS.VerifyConnection = nil },
		"no client cert":     func(c *Config) { c.ClientTLS.Certificates = nil },
		"lease >= heartbeat": func(c *Config) { c.LeaderLeaseTimeout = c.HeartbeatTimeout },
		"election < hb":      func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 },
		"advertise unspec":   func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" },
	} {
		c := good()
		c.setDefaults()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Setting only the heartbeat keeps the other timeouts consistent.
	c = good()
	c.HeartbeatTimeout = time.Second
	c.setDefaults()
	if err := c.Validate(); err != nil || c.ElectionTimeout != time.Second || c.LeaderLeaseTimeout != 125*time.Millisecond {
		t.Errorf("heartbeat-only config: %v %+v", err, c)
	}
	if _, err := Open(Config{NodeID: "x"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Open with a bad config: %v", err)
	}
}

func TestRPCErrorsRoundTrip(t *testing.T) {
	for _, err := range []error{
		&RefusedError{Type: CmdKVPut, Reason: "no"},
		&RefusedError{Type: CmdKVDelete, Reason: "gone", NotFound: true},
		ErrNotLeader, ErrNoLeader, ErrClosed, ErrNotFound,
	} {
		back := toRPCError(err).toError()
		for _, s := range []error{ErrRefused, ErrNotFound, ErrNotLeader, ErrNoLeader} {
			if errors.Is(err, s) != errors.Is(back, s) {
				t.Errorf("%v → %v: errors.Is(%v) changed", err, back, s)
			}
		}
	}
	if !retryable(toRPCError(ErrClosed).toError()) || retryable(toRPCError(&RefusedError{}).toError()) {
		t.Error("retryable classification")
	}
}
