package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openTest(t testing.TB, dir string, mod func(*Config)) *Log {
	t.Helper()
	cfg := Config{Dir: dir, NodeID: "node-1", Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func rec(peer string, i int) Record {
	return Record{Action: ActionProxyRequest, FederationPeerID: peer, RemoteSubject: "user-" + fmt.Sprint(i),
		Decision: DecisionAllow, Method: "GET", Path: "/api/v1/x", Status: 200, CorrelationID: fmt.Sprintf("c-%d", i)}
}

func TestAppendReopenVerify(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, func(c *Config) { c.SegmentMaxBytes = 8192 })
	var wg sync.WaitGroup
	seqs := make(chan uint64, 400)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				s, err := l.Append(context.Background(), rec("peer-a", g*1000+i))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				seqs <- s
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d acknowledged twice", s)
		}
		seen[s] = true
	}
	if len(seen) != 400 {
		t.Fatalf("got %d seqs", len(seen))
	}
	st := l.Stats()
	if st.LastSeq != 400 || st.Segments < 3 {
		t.Fatalf("stats %+v", st)
	}
	v, err := l.Verify()
	if err != nil || !v.OK || v.Records != 400 {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	l.Close()
	l2 := openTest(t, dir, func(c *Config) { c.SegmentMaxBytes = 8192 })
	if got := l2.Stats(); got.LastSeq != 400 || !got.Writable {
		t.Fatalf("reopened stats %+v", got)
	}
	s, err := l2.Append(context.Background(), rec("peer-b", 1))
	if err != nil || s != 401 {
		t.Fatalf("Append after reopen = %d, %v", s, err)
	}
	v, _ = l2.Verify()
	if !v.OK || v.LastSeq != 401 {
		t.Fatalf("Verify after reopen %+v", v)
	}
	p, err := l2.Query(Query{Peer: "peer-b"})
	if err != nil || len(p.Records) != 1 || p.Records[0].Seq != 401 {
		t.Fatalf("Query = %+v, %v", p, err)
	}
	if diff := cmp.Diff("node-1", p.Records[0].NodeID); diff != "" {
		t.Fatal(diff)
	}
	if p.Records[0].Time.After(time.Now()) {
		t.Fatal("time in the future")
	}
}

// TestStartWait: records started together and waited for later are all
// durable, in the order Start queued them, and errors that Append reports
// before queueing come back from Wait.
func TestStartWait(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	ctx := context.Background()
	var ts []Ticket
	for i := range 20 {
		ts = append(ts, l.Start(ctx, rec("peer-s", i)))
	}
	var got []uint64
	for i := range ts {
		seq, err := ts[i].Wait(ctx)
		if err != nil {
			t.Fatalf("Wait %d: %v", i, err)
		}
		got = append(got, seq)
	}
	want := make([]uint64, 20)
	for i := range want {
		want[i] = got[0] + uint64(i)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sequence numbers (-want +got):\n%s", diff)
	}
	page, err := l.Query(Query{Peer: "peer-s", Order: OldestFirst})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 20 || page.Records[19].CorrelationID != "c-19" {
		t.Fatalf("query after Wait: %d records", len(page.Records))
	}
	if res, err := l.Verify(); err != nil || !res.OK || res.LastSeq != got[19] {
		t.Fatalf("verify: %+v %v", res, err)
	}

	bad := l.Start(ctx, Record{FederationPeerID: "p"})
	if _, err := bad.Wait(ctx); !errors.Is(err, ErrBadRequest) {
		t.Errorf("record without action: Wait = %v, want ErrBadRequest", err)
	}
	l.Close()
	closed := l.Start(ctx, rec("peer-s", 99))
	if _, err := closed.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: Wait = %v, want ErrClosed", err)
	}
}
