package raftstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// throughput runs total writes from workers goroutines against s and
// returns writes per second.
func throughput(b *testing.B, s *raftstore.Store, workers, total int) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n.Add(1) <= int64(total) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := s.Apply(ctx, kvPut(fmt.Sprintf("tp/%d", w), "0123456789abcdef"))
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// BenchmarkReplicatedWrite measures one Apply (fsync on, mTLS on loopback)
// on a single-node cluster (the baseline) and on a three-node cluster, in
// the same run: on the leader, and forwarded from a follower.
func BenchmarkReplicatedWrite(b *testing.B) {
	opts := raftstoretest.Options{LogLevel: slog.LevelError}
	one := raftstoretest.NewCluster(b, 1, opts)
	three := raftstoretest.NewCluster(b, 3, opts)
	s1 := one.Nodes[0].Store
	lead := three.Nodes[three.Leader(5*time.Second)].Store
	fol := three.Nodes[three.Follower()].Store
	var lat1, lat3, latF []time.Duration
	val := "0123456789abcdef0123456789abcdef"
	ctx := context.Background()
	i := 0
	b.ResetTimer()
	for b.Loop() {
		for _, x := range []struct {
			s   *raftstore.Store
			lat *[]time.Duration
		}{{s1, &lat1}, {lead, &lat3}, {fol, &latF}} {
			start := time.Now()
			if _, err := x.s.Apply(ctx, kvPut(fmt.Sprint("bench/", i%64), val)); err != nil {
				b.Fatal(err)
			}
			*x.lat = append(*x.lat, time.Since(start))
		}
		i++
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(lat1, 0.5)), "1node-p50-ms")
	b.ReportMetric(ms(percentile(lat1, 0.99)), "1node-p99-ms")
	b.ReportMetric(ms(percentile(lat3, 0.5)), "3node-p50-ms")
	b.ReportMetric(ms(percentile(lat3, 0.99)), "3node-p99-ms")
	b.ReportMetric(ms(percentile(latF, 0.5)), "3node-fwd-p50-ms")
	b.ReportMetric(ms(percentile(latF, 0.99)), "3node-fwd-p99-ms")
	b.ReportMetric(float64(percentile(lat3, 0.5))/float64(percentile(lat1, 0.5)), "3node/1node-p50")
	const workers, total = 16, 2000
	tp1 := throughput(b, s1, workers, total)
	tp3 := throughput(b, lead, workers, total)
	b.ReportMetric(tp1, "1node-writes/s")
	b.ReportMetric(tp3, "3node-writes/s")
	b.ReportMetric(tp3/tp1, "3node/1node-throughput")
}
