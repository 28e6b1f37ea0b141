// Command loadgen is the proxy benchmarks' load generator for what wrk
// cannot do: present a client certificate, open a new TLS connection per
// request (full or resumed handshakes), send at a fixed rate (open loop,
// latency measured from the intended send time), and measure a server's
// memory per idle mTLS connection.
//
// It prints one line of key=value pairs, e.g.
//
//	mode=full requests=1234 errors=0 rps=246.8 p50_ms=3.912 p99_ms=9.120
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("url", "", "request URL (required)")
	host := flag.String("host", "", "Host header to send")
	certFile := flag.String("cert", "", "client certificate chain (PEM)")
	keyFile := flag.String("key", "", "client key (PEM)")
	mode := flag.String("mode", "keepalive", "keepalive | full (new connection, no resumption) | resumed (new connection, session resumption) | rate (open loop at -rate) | idle")
	conc := flag.Int("c", 16, "concurrent workers (closed loop)")
	dur := flag.Duration("d", 5*time.Second, "duration")
	rps := flag.Int("rate", 1000, "requests per second in rate mode")
	warm := flag.Duration("warmup", time.Second, "rate mode: send at the rate this long first, not measured (connections and TLS sessions get set up)")
	idleN := flag.Int("idle", 500, "idle mode: connections to open")
	pid := flag.Int("pid", 0, "idle mode: server process whose RSS to sample")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true} // the servers present fed:<id> names; identity is not what is measured
	if *certFile != "" {
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		tlsCfg.Certificates = []tls.Certificate{c}
	}
	var err error
	switch *mode {
	case "keepalive", "full", "resumed":
		err = closedLoop(*mode, *target, *host, tlsCfg, *conc, *dur)
	case "rate":
		err = openLoop(*target, *host, tlsCfg, *rps, *warm, *dur)
	case "idle":
		err = idle(*target, tlsCfg, *idleN, *pid)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func client(mode string, cfg *tls.Config, conc int) *http.Client {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		MaxIdleConnsPerHost: conc * 2,
		DisableCompression:  true,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	switch mode {
	case "full":
		tr.DisableKeepAlives = true
		cfg.SessionTicketsDisabled = true
	case "resumed":
		tr.DisableKeepAlives = true
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(conc * 4)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, url, host string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func report(mode string, lat []time.Duration, errs int64, elapsed time.Duration, extra string) {
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	fmt.Printf("mode=%s requests=%d errors=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f%s\n",
		mode, len(lat), errs, float64(len(lat))/elapsed.Seconds(), q(0.50), q(0.99), q(0.999), q(1), extra)
}

func closedLoop(mode, url, host string, cfg *tls.Config, conc int, dur time.Duration) error {
	c := client(mode, cfg, conc)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				if err := get(c, url, host); err != nil {
					if errs.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "loadgen: first error:", err)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	report(mode, lat, errs.Load(), time.Since(start), "")
	return nil
}

// openLoop sends at a fixed rate; each latency counts from the moment the
// request was due, so a stall is not hidden (no coordinated omission). The
// first warm seconds are sent the same way but not measured: the client
// opens its connections (TLS handshakes) while the rate ramps up, and those
// would otherwise be counted as the server's latency.
func openLoop(url, host string, cfg *tls.Config, rate int, warm, dur time.Duration) error {
	c := client("keepalive", cfg, 256)
	skip := int(float64(rate) * warm.Seconds())
	n := skip + int(float64(rate)*dur.Seconds())
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := get(c, url, host); err != nil {
				if errs.Add(1) == 1 {
					fmt.Fprintln(os.Stderr, "loadgen: first error:", err)
				}
				lat[i] = -1
				return
			}
			lat[i] = time.Since(due)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start.Add(warm))
	ok := lat[:0]
	for _, l := range lat[skip:] {
		if l >= 0 {
			ok = append(ok, l)
		}
	}
	report("rate", ok, errs.Load(), elapsed, " target_rps="+strconv.Itoa(rate))
	return nil
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// idle opens n mTLS connections, completes a request on each (so the
// server holds a fully set-up keep-alive connection), and reports how much
// the server's RSS grew per connection.
func idle(url string, cfg *tls.Config, n, pid int) error {
	if pid == 0 {
		return fmt.Errorf("idle mode needs -pid")
	}
	addr := strings.TrimPrefix(url, "https://")
	if i := strings.IndexByte(addr, '/'); i >= 0 {
		addr = addr[:i]
	}
	before, err := rssKiB(pid)
	if err != nil {
		return err
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	after, err := rssKiB(pid)
	if err != nil {
		return err
	}
	fmt.Printf("mode=idle conns=%d rss_before_kib=%d rss_after_kib=%d kib_per_conn=%.1f\n", n, before, after, float64(after-before)/float64(n))
	return nil
}
