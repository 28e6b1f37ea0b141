package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchDir is where benchmarks write; FEDGATE_BENCH_DIR picks a file
// system (the default, the test temp dir, must not be tmpfs to mean
// anything).
func benchDir(b *testing.B) string {
	if d := os.Getenv("FEDGATE_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "auditbench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

func benchRecord(i int) Record {
	return Record{Action: ActionProxyRequest, FederationPeerID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		RemoteSubject: "user:alice@example.org", Decision: DecisionAllow, Method: "GET", Path: "/api/v1/federation/resources/42",
		Status: 200, BytesIn: 512, BytesOut: 4096, DurationNS: 1_250_000, TLSVersion: "1.3", Resumed: true,
		CertSerial: "5f:3a:91:0c", CertSPKISHA256: "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c",
		GrantID: "0193a1b2-0000-7000-8000-000000000001", CorrelationID: fmt.Sprintf("req-%d", i)}
}

// measureBaseline times one write + one fdatasync per record, serially, on
// the same file system, right before the benchmark it is compared with (the
// shared disk drifts too much for one measurement per process).
func measureBaseline(b *testing.B, n int) (rate float64, p99lat time.Duration) {
	{
		dir := benchDir(b)
		f, err := os.OpenFile(filepath.Join(dir, "baseline"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		r := benchRecord(0)
		line, _ := r.MarshalJSON()
		line = append(line, '\n')
		lat := make([]time.Duration, 0, n)
		start := time.Now()
		for range n {
			t0 := time.Now()
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
			if err := (osFile{f}).Sync(); err != nil { // fdatasync, as the log uses
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		return float64(n) / time.Since(start).Seconds(), p99(lat)
	}
}

func p99(lat []time.Duration) time.Duration { return quantile(lat, 0.99) }

// quantile sorts lat in place and returns its q quantile.
func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[int(float64(len(lat)-1)*q)]
}

// BenchmarkAppend measures durable appends/s and p99 Append latency with
// 1, 16 and 256 concurrent appenders, beside a baseline of one write+fsync
// per record measured in the same run (x_baseline = records/s ÷ baseline).
func BenchmarkAppend(b *testing.B) {
	b.Run("baseline=write+fsync-per-record", func(b *testing.B) {
		rate, lat := measureBaseline(b, b.N)
		b.ReportMetric(rate, "records/s")
		b.ReportMetric(float64(lat.Microseconds())/1000, "p99_ms")
	})
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
			baseRate, _ := measureBaseline(b, 300)
			l, err := Open(Config{Dir: benchDir(b), NodeID: "bench-node"})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			lats := make([][]time.Duration, n)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						t0 := time.Now()
						if _, err := l.Append(ctx, benchRecord(int(i))); err != nil {
							b.Error(err)
							return
						}
						lats[g] = append(lats[g], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for _, l := range lats {
				all = append(all, l...)
			}
			rate := float64(b.N) / el.Seconds()
			b.ReportMetric(rate, "records/s")
			b.ReportMetric(float64(p99(all).Microseconds())/1000, "p99_ms")
			b.ReportMetric(rate/baseRate, "x_baseline")
			b.ReportMetric(float64(quantile(all, 0.5).Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(quantile(all, 0.999).Microseconds())/1000, "p99.9_ms")
		})
	}
}

// BenchmarkEncode is the CPU side of one record (caller's body encoding plus
// the writer's head, tail and SHA-256 seal) beside encoding/json + SHA-256
// of the same record in the same run.
func BenchmarkEncode(b *testing.B) {
	r := benchRecord(1)
	r.NodeID = "bench-node"
	r.normalize()
	var reflectNs float64
	b.Run("baseline=encoding/json+sha256", func(b *testing.B) {
		rr := r
		rr.Seq, rr.Time, rr.PrevHash = 1, time.Now().UTC(), ZeroHash
		for b.Loop() {
			line, _ := json.Marshal(plain(rr))
			_ = sha256.Sum256(line)
		}
		reflectNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	// What Start does on the caller's goroutine, for a record like the
	// proxy's (three metadata keys).
	b.Run("caller-side=normalize+body", func(b *testing.B) {
		body := make([]byte, 0, 1024)
		md := map[string]string{"direction": "inbound", "remote_addr": "127.0.0.1:40000", "route": "api"}
		for b.Loop() {
			rr := r
			rr.Metadata = md
			rr.normalize()
			body = rr.appendBody(body[:0])
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		var prev [64]byte
		copy(prev[:], ZeroHash)
		buf := make([]byte, 0, 1024)
		body := make([]byte, 0, 1024)
		now := time.Now()
		for b.Loop() {
			body = r.appendBody(body[:0])
			buf = appendHead(buf[:0], 1, now)
			buf = append(buf, body...)
			buf = appendTailHex(buf, &prev)
			buf = sealInto(buf, 0, &prev)
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if reflectNs > 0 {
			b.ReportMetric(reflectNs/ns, "x_faster_than_baseline")
		}
	})
}
