package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/audit/audittest"
)

type tw struct{ t testing.TB }

func (w tw) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func open(t *testing.T, dir string, fs audit.FS, mod func(*audit.Config)) *audit.Log {
	t.Helper()
	// Preallocation off: writes must reach the fault-injecting FS directly
	// (TestPreallocatedSpaceOutlastsFullDisk turns it on).
	cfg := audit.Config{Dir: dir, NodeID: "node-f", FS: fs, Logger: slog.New(slog.NewTextHandler(tw{t}, nil)), PreallocBytes: -1}
	if mod != nil {
		mod(&cfg)
	}
	l, err := audit.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func r(i int) audit.Record {
	return audit.Record{Action: audit.ActionProxyRequest, FederationPeerID: "peer-x", Decision: audit.DecisionAllow, CorrelationID: fmt.Sprint(i)}
}

func mustVerify(t *testing.T, l *audit.Log, lastSeq uint64) {
	t.Helper()
	v, err := l.Verify()
	if err != nil || !v.OK || v.LastSeq != lastSeq {
		t.Fatalf("Verify = %+v, %v; want ok through seq %d", v, err, lastSeq)
	}
}

func TestDiskFullFailClosed(t *testing.T) {
	fs := audittest.New()
	l := open(t, t.TempDir(), fs, nil)
	ctx := context.Background()
	for i := range 3 {
		if _, err := l.Append(ctx, r(i)); err != nil {
			t.Fatal(err)
		}
	}
	fs.SetSpace(100) // the next batch is cut short mid-record
	for i := range 3 {
		_, err := l.Append(ctx, r(10+i))
		if !errors.Is(err, audit.ErrDiskFull) || !errors.Is(err, audit.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append on full disk = %v, want ErrDiskFull", err)
		}
	}
	if st := l.Stats(); st.Writable || st.LastSeq != 3 {
		t.Fatalf("stats on full disk %+v", st)
	}
	mustVerify(t, l, 3) // the partial write was cut back
	fs.SetSpace(-1)
	s, err := l.Append(ctx, r(20))
	if err != nil || s != 4 {
		t.Fatalf("Append after space returned = %d, %v", s, err)
	}
	if st := l.Stats(); !st.Writable {
		t.Fatalf("not writable after recovery: %+v", st)
	}
	mustVerify(t, l, 4)
}

func TestDiskFullDropPolicyWritesDroppedRecord(t *testing.T) {
	fs := audittest.New()
	reg := prometheus.NewRegistry()
	l := open(t, t.TempDir(), fs, func(c *audit.Config) { c.Policy = audit.PolicyDrop; c.Registerer = reg })
	ctx := context.Background()
	if _, err := l.Append(ctx, r(0)); err != nil {
		t.Fatal(err)
	}
	fs.SetSpace(0)
	for i := range 5 {
		if _, err := l.Append(ctx, r(i)); !errors.Is(err, audit.ErrDropped) || errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("Append under drop policy = %v, want ErrDropped", err)
		}
	}
	if got := l.Stats().Dropped; got != 5 {
		t.Fatalf("Stats.Dropped = %d, want 5", got)
	}
	fs.SetSpace(-1)
	s, err := l.Append(ctx, r(99))
	if err != nil || s != 3 {
		t.Fatalf("Append after space returned = %d, %v (want seq 3 after the audit.dropped record)", s, err)
	}
	p, err := l.Query(audit.Query{Action: audit.ActionDropped})
	if err != nil || len(p.Records) != 1 {
		t.Fatalf("audit.dropped records = %+v, %v", p, err)
	}
	if d := p.Records[0]; d.Seq != 2 || d.Metadata["dropped"] != "5" {
		t.Fatalf("dropped record = %+v", d)
	}
	if got := metricValue(t, reg, "fedgate_audit_dropped_total"); got != 5 {
		t.Fatalf("dropped metric = %v", got)
	}
	mustVerify(t, l, 3)
}

// metricValue reads a registered counter or gauge.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestReadOnlyDirAtOpen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, nil, nil)
	for i := range 4 {
		if _, err := l.Append(context.Background(), r(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()

	fs := audittest.New()
	fs.SetReadOnly(true)
	l2 := open(t, dir, fs, nil)
	st := l2.Stats()
	if st.Writable || st.LastSeq != 4 {
		t.Fatalf("read-only open stats %+v", st)
	}
	if _, err := l2.Append(context.Background(), r(5)); !errors.Is(err, audit.ErrReadOnly) || !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append on read-only dir = %v, want ErrReadOnly", err)
	}
	p, err := l2.Query(audit.Query{Peer: "peer-x"})
	if err != nil || len(p.Records) != 4 {
		t.Fatalf("query on read-only log = %d records, %v", len(p.Records), err)
	}
	mustVerify(t, l2, 4)
	fs.SetReadOnly(false) // remounted read-write
	if s, err := l2.Append(context.Background(), r(6)); err != nil || s != 5 {
		t.Fatalf("Append after remount = %d, %v", s, err)
	}
}

func TestReadOnlyAtRuntimeAndSyncFailure(t *testing.T) {
	fs := audittest.New()
	l := open(t, t.TempDir(), fs, nil)
	ctx := context.Background()
	if _, err := l.Append(ctx, r(0)); err != nil {
		t.Fatal(err)
	}
	fs.SetReadOnly(true)
	if _, err := l.Append(ctx, r(1)); !errors.Is(err, audit.ErrReadOnly) {
		t.Fatalf("Append = %v, want ErrReadOnly", err)
	}
	fs.SetReadOnly(false)
	fs.FailSync(syscall.EIO)
	if _, err := l.Append(ctx, r(2)); !errors.Is(err, audit.ErrWrite) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append with failing sync = %v, want ErrWrite", err)
	}
	fs.FailSync(nil)
	if s, err := l.Append(ctx, r(3)); err != nil || s != 2 {
		t.Fatalf("Append after recovery = %d, %v", s, err)
	}
	mustVerify(t, l, 2)
}

func TestQueueFull(t *testing.T) {
	for _, policy := range []audit.Policy{audit.PolicyFailClosed, audit.PolicyDrop} {
		t.Run(policy.String(), func(t *testing.T) {
			fs := audittest.New()
			fs.SetSyncDelay(100 * time.Millisecond)
			l := open(t, t.TempDir(), fs, func(c *audit.Config) {
				c.QueueSize, c.QueueWait, c.MaxBatch, c.Policy = 2, -1, 1, policy
			})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var ok, full, dropped int
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := l.Append(context.Background(), r(i))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, audit.ErrQueueFull):
						full++
					case errors.Is(err, audit.ErrDropped):
						dropped++
					default:
						t.Errorf("unexpected error %v", err)
					}
				}()
			}
			wg.Wait()
			if ok == 0 || ok+full+dropped != 20 {
				t.Fatalf("ok=%d full=%d dropped=%d", ok, full, dropped)
			}
			if policy == audit.PolicyFailClosed && (full == 0 || dropped != 0) {
				t.Fatalf("fail-closed: full=%d dropped=%d", full, dropped)
			}
			if policy == audit.PolicyDrop && (dropped == 0 || full != 0 || l.Stats().Dropped != uint64(dropped)) {
				t.Fatalf("drop: full=%d dropped=%d stats=%+v", full, dropped, l.Stats())
			}
		})
	}
}

// With preallocation, records keep going into space that was reserved
// before the disk filled; once it is used up, appends fail closed.
func TestPreallocatedSpaceOutlastsFullDisk(t *testing.T) {
	fs := audittest.New()
	l := open(t, t.TempDir(), fs, func(c *audit.Config) { c.PreallocBytes = 64 << 10 })
	ctx := context.Background()
	if _, err := l.Append(ctx, r(0)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the background preallocation land
	fs.SetSpace(0)
	n := 0
	var err error
	for n < 10000 {
		if _, err = l.Append(ctx, r(n)); err != nil {
			break
		}
		n++
	}
	if !errors.Is(err, audit.ErrDiskFull) || n == 0 {
		t.Fatalf("after %d appends into preallocated space: %v, want ErrDiskFull eventually", n, err)
	}
	mustVerify(t, l, uint64(n+1))
	fs.SetSpace(-1)
	if _, err := l.Append(ctx, r(0)); err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := open(t, t.TempDir(), nil, func(c *audit.Config) { c.Registerer = reg })
	for i := range 5 {
		if _, err := l.Append(context.Background(), r(i)); err != nil {
			t.Fatal(err)
		}
	}
	if v := metricValue(t, reg, "fedgate_audit_appends_total"); v != 5 {
		t.Fatalf("appends_total = %v", v)
	}
	if v := metricValue(t, reg, "fedgate_audit_last_seq"); v != 5 {
		t.Fatalf("last_seq = %v", v)
	}
	if v := metricValue(t, reg, "fedgate_audit_written_bytes_total"); v < 5*200 {
		t.Fatalf("written_bytes_total = %v", v)
	}
	mfs, _ := reg.Gather()
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() == "fedgate_audit_fsync_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
			t.Fatal("no fsync latency observed")
		}
	}
	for _, n := range []string{"fedgate_audit_queue_depth", "fedgate_audit_fsync_seconds", "fedgate_audit_batch_records", "fedgate_audit_segments"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	l.Close()
	// Close unregisters, so a reopened log can register again.
	l2 := open(t, t.TempDir(), nil, func(c *audit.Config) { c.Registerer = reg })
	l2.Close()
}

// Sync failures while many batches are in flight: no failed record is
// acknowledged, every acknowledged one is present with its content, and the
// chain stays intact once syncs work again.
func TestSyncFailureUnderLoad(t *testing.T) {
	fs := audittest.New()
	l := open(t, t.TempDir(), fs, func(c *audit.Config) { c.PreallocBytes = 0 })
	var mu sync.Mutex
	acked := map[uint64]string{}
	var failed int
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cid := fmt.Sprintf("%d-%d", g, i)
				rec := r(i)
				rec.CorrelationID = cid
				s, err := l.Append(context.Background(), rec)
				mu.Lock()
				if err == nil {
					acked[s] = cid
				} else if errors.Is(err, audit.ErrUnavailable) {
					failed++
				} else {
					t.Errorf("unexpected %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	for range 5 {
		time.Sleep(20 * time.Millisecond)
		fs.FailSync(syscall.EIO)
		time.Sleep(10 * time.Millisecond)
		fs.FailSync(nil)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed == 0 || len(acked) == 0 {
		t.Fatalf("acked=%d failed=%d: the faults did not bite", len(acked), failed)
	}
	st := l.Stats()
	v, err := l.Verify()
	if err != nil || !v.OK || v.LastSeq != st.LastSeq {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	found := 0
	q := audit.Query{Order: audit.OldestFirst, Limit: audit.MaxQueryLimit}
	for {
		p, err := l.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range p.Records {
			if cid, ok := acked[rec.Seq]; ok {
				if cid != rec.CorrelationID {
					t.Fatalf("seq %d holds %q, acknowledged as %q", rec.Seq, rec.CorrelationID, cid)
				}
				found++
			}
		}
		if p.NextCursor == "" {
			break
		}
		q.Cursor = p.NextCursor
	}
	if found != len(acked) {
		t.Fatalf("found %d of %d acknowledged records", found, len(acked))
	}
}
