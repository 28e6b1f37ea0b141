package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHTTP1Server compares the proxy's HTTP/1 connection loop with
// net/http's server, same handler, same run: keep-alive GETs from parallel
// raw clients over loopback. cpu-us/req is the process's user + system CPU
// per request; client and server share the process, so the client's part
// is the same in both and the difference is the servers'. cpu-vs-nethttp
// is the ratio to net/http measured in the same run.
//
//	go test -run '^$' -bench HTTP1Server -benchtime 3s ./proxy/
func BenchmarkHTTP1Server(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "3")
		io.WriteString(w, "ok\n")
	})
	l := Limits{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 1 << 20}
	serve := map[string]func(ln net.Listener) func(){
		"h1loop": func(ln net.Listener) func() {
			s := newH1Server(h, l, slog.New(slog.DiscardHandler))
			go s.serve(ln)
			return func() { ln.Close(); s.shutdown(context.Background()) }
		},
		"nethttp": func(ln net.Listener) func() {
			s := &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout}
			go s.Serve(ln)
			return func() { s.Shutdown(context.Background()) }
		},
	}
	cpu := map[string]float64{}
	for _, name := range []string{"nethttp", "h1loop"} {
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			stop := serve[name](ln)
			defer stop()
			addr := ln.Addr().String()
			req := []byte("GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
			var u0, u1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &u0)
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &u1)
			us := float64(u1.Utime.Nano()+u1.Stime.Nano()-u0.Utime.Nano()-u0.Stime.Nano()) / 1e3 / float64(b.N)
			cpu[name] = us
			b.ReportMetric(us, "cpu-us/req")
			if base := cpu["nethttp"]; name != "nethttp" && base > 0 {
				b.ReportMetric(us/base, "cpu-vs-nethttp")
			}
		})
	}
}
