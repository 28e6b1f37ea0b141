package proxy_test

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/powernode/fedgate/proxy"
)

// measureRPS drives get from conc goroutines for d and returns requests/s.
func measureRPS(b *testing.B, conc int, d time.Duration, get func() error) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if err := get(); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

func benchGet(c *http.Client, url, host string) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return &statusErr{resp.StatusCode}
	}
	return nil
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return http.StatusText(e.code) }

// BenchmarkPair measures the two-hop federation path in process (A
// outbound → mTLS → B inbound → httptest backend, durable audit on both
// sites, keep-alive, 32 concurrent callers) and, in the same run, the
// backend directly; it reports pair req/s and the pair/direct ratio.
func BenchmarkPair(b *testing.B) {
	// The audit log itself is the Auditor, as in fedgated (durable, and
	// overlapped with the forward for GET).
	pr := newPairWith(b, func(pr *pair, c *proxy.Config) {
		c.Logger, c.Auditor = slog.New(slog.DiscardHandler), pr.a.audit.log
	}, func(pr *pair, c *proxy.Config) {
		c.Logger, c.Auditor = slog.New(slog.DiscardHandler), pr.b.audit.log
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	const conc = 32
	direct := measureRPS(b, conc, time.Second, func() error { return benchGet(c, pr.be.srv.URL+"/api/status", "") })
	peerHost := proxy.PeerHost(pr.idB)
	url := pr.url("/api/status")
	if err := benchGet(c, url, peerHost); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism((conc + 1) / 2) // ×GOMAXPROCS (2 here) ≈ conc callers
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := benchGet(c, url, peerHost); err != nil {
				b.Error(err)
				return
			}
		}
	})
	pair := float64(b.N) / time.Since(start).Seconds()
	// CPU per call (both sites, client and backend in this process) is
	// steadier than req/s on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu_us/req")
	b.ReportMetric(pair, "pair_req/s")
	b.ReportMetric(direct, "direct_req/s")
	b.ReportMetric(pair/direct, "pair/direct")
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHeaderEncoding is the per-connection cost of the Traefik
// certificate headers (computed once per connection, not per request).
func BenchmarkHeaderEncoding(b *testing.B) {
	pr := newPair(b, nil, nil)
	chain := []*x509Cert{pr.certA.Leaf}
	b.ReportAllocs()
	for b.Loop() {
		proxy.EncodeClientCert(chain)
		proxy.EncodeClientCertInfo(chain)
	}
}
