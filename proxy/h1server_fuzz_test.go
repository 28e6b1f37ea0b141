package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FuzzH1Server writes arbitrary bytes to a served connection (then
// half-closes it) and checks what comes back: a sequence of well-framed
// HTTP/1.x responses, one per request the handler saw plus at most one
// error answer, no panic logged, and the connection's goroutine gone.
func FuzzH1Server(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloHEAD /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"POST /trailer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /flush HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET /flush HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
		"PUT / HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\nContent-Length: 2\r\n\r\nok",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 6<<10) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
		"GET http://peer.example/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
		"POST /close HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET /len HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nPOST /close HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
	} {
		f.Add([]byte(s))
	}

	rec := &logRec{}
	var mu sync.Mutex
	var methods []string // of the requests the handler saw, in order
	s := newH1Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		switch r.URL.Path {
		case "/flush":
			io.WriteString(w, "flushed ")
			w.(http.Flusher).Flush()
		case "/close":
			// Read a little and close: the rest is drained or the
			// connection closed.
			b := make([]byte, 3)
			n, _ := io.ReadFull(r.Body, b)
			r.Body.Close()
			w.Write(b[:n])
			return
		case "/len":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
			return
		}
		io.Copy(w, r.Body)
		if r.URL.Path == "/trailer" {
			w.Header().Set(http.TrailerPrefix+"X-Echo", "done")
		}
	}), Limits{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 4 << 10}, slog.New(rec))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.serve(ln)
	}()
	f.Cleanup(func() {
		ln.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.shutdown(ctx)
	})

	f.Fuzz(func(t *testing.T, in []byte) {
		mu.Lock()
		methods = methods[:0]
		mu.Unlock()
		panics := len(rec.matching("panic serving"))

		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			c.Write(in) // fails once the server has closed: fine
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read: %v (got %q)", err, out)
		}
		<-wrote

		// The connection's goroutine must end (the server saw EOF).
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			s.mu.Lock()
			n := len(s.conns)
			s.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connection(s) still served after the client went away", n)
			}
		}
		if got := rec.matching("panic serving"); len(got) != panics {
			t.Fatalf("panic: %q", got[panics:])
		}

		mu.Lock()
		seen := append([]string(nil), methods...)
		mu.Unlock()
		br := bufio.NewReader(bytes.NewReader(out))
		final := 0
		for {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			method := http.MethodGet // an error answer follows the handled requests
			if final < len(seen) {
				method = seen[final]
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("response %d: %v\nall output: %q", final, err, out)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("response %d (%d) body: %v\nall output: %q", final, resp.StatusCode, err, out)
			}
			if resp.StatusCode >= 200 {
				final++
			}
		}
		if final < len(seen) || final > len(seen)+1 {
			t.Fatalf("%d final responses for %d handled requests %q\nall output: %q", final, len(seen), seen, out)
		}
	})
}
