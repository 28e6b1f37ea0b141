package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// logRec is a slog.Handler that keeps every message (with its attributes)
// and copies it to the test log.
type logRec struct {
	t    testing.TB
	mu   sync.Mutex
	msgs []string
}

func (l *logRec) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRec) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRec) WithGroup(string) slog.Handler            { return l }

func (l *logRec) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "stack" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	if l.t != nil {
		l.t.Log(b.String())
	}
	return nil
}

// matching returns the logged messages that contain s.
func (l *logRec) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

func h1TestLimits() Limits {
	return Limits{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 8 << 10}
}

// startH1 serves h on a loopback listener until the test ends; shutdown
// must find every connection finished (nothing may be left busy).
func startH1(t *testing.T, l Limits, h http.HandlerFunc) (*h1Server, string, *logRec) {
	t.Helper()
	rec := &logRec{t: t}
	s := newH1Server(h, l, slog.New(rec))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.shutdown(ctx); err != nil {
			t.Errorf("shutdown at cleanup: %v (a connection was still busy)", err)
		}
	})
	return s, ln.Addr().String(), rec
}

// h1Client is a raw client connection; every read fails after 2 s so a
// broken server fails the test instead of hanging it.
type h1Client struct {
	net.Conn
	br *bufio.Reader
}

func dialH1(t *testing.T, addr string) *h1Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(2 * time.Second))
	return &h1Client{Conn: c, br: bufio.NewReader(c)}
}

func (c *h1Client) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// response reads one response (to a request with the given method) and
// its whole body.
func (c *h1Client) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %d response: %v", resp.StatusCode, err)
	}
	return resp, string(b)
}

// head returns the next response head as sent (not consumed), for what
// http.ReadResponse hides (it drops Content-Length from a chunked one).
func (c *h1Client) head(t *testing.T) string {
	t.Helper()
	for n := 1; ; n++ {
		b, err := c.br.Peek(n)
		if err != nil {
			t.Fatalf("read head: %v", err)
		}
		if strings.HasSuffix(string(b), "\r\n\r\n") {
			return string(b)
		}
	}
}

// closed fails unless the server closes the connection (EOF or reset)
// without sending anything more.
func (c *h1Client) closed(t *testing.T) {
	t.Helper()
	b, err := c.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := c.br.Peek(c.br.Buffered())
		t.Fatalf("connection still open, got %q", append([]byte{b}, rest...))
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		t.Fatalf("connection not closed: %v", err)
	}
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
}

func TestH1ServerPipelined(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), echoHandler)
	c := dialH1(t, addr)
	c.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"+
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"+
		"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"GET /a ", "POST /b xyz", "POST /c hi", "GET /d "} {
		resp, body := c.response(t, "GET")
		if resp.StatusCode != 200 || body != want || resp.Close {
			t.Fatalf("got %d %q close=%v, want 200 %q on a kept connection", resp.StatusCode, body, resp.Close, want)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("response to %q has no Date header", want)
		}
	}
	c.send(t, "GET /e HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response(t, "GET"); body != "GET /e " {
		t.Fatalf("request after the pipeline: got %q", body)
	}
}

func TestH1ServerHTTP10(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1 ")
		if r.URL.Path == "/flush" {
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "part2")
	})

	t.Run("close by default", func(t *testing.T) {
		c := dialH1(t, addr)
		c.send(t, "GET / HTTP/1.0\r\n\r\n")
		resp, body := c.response(t, "GET")
		if resp.Proto != "HTTP/1.0" || resp.ContentLength != 11 || body != "part1 part2" || !resp.Close {
			t.Fatalf("got %s length %d %q close=%v, want HTTP/1.0 length 11 and close", resp.Proto, resp.ContentLength, body, resp.Close)
		}
		c.closed(t)
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := dialH1(t, addr)
		for range 2 {
			c.send(t, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c.response(t, "GET")
			if resp.Header.Get("Connection") != "keep-alive" || resp.ContentLength != 11 || body != "part1 part2" {
				t.Fatalf("got Connection %q length %d %q, want keep-alive with a length", resp.Header.Get("Connection"), resp.ContentLength, body)
			}
		}
	})
	t.Run("unknown length ends with the close", func(t *testing.T) {
		c := dialH1(t, addr)
		c.send(t, "GET /flush HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body := c.response(t, "GET")
		if len(resp.TransferEncoding) != 0 || resp.ContentLength != -1 || !resp.Close || body != "part1 part2" {
			t.Fatalf("got TE %q length %d close=%v %q, want a close-delimited body", resp.TransferEncoding, resp.ContentLength, resp.Close, body)
		}
		c.closed(t)
	})
}

func TestH1ServerExpectContinue(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "" {
			t.Errorf("handler sees Expect %q", r.Header.Get("Expect"))
		}
		if r.URL.Path == "/ignore" {
			io.WriteString(w, "not reading")
			return
		}
		echoHandler(w, r)
	})

	t.Run("100 before the body", func(t *testing.T) {
		c := dialH1(t, addr)
		c.send(t, "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != http.StatusContinue {
			t.Fatalf("got %v %v before sending the body, want 100 Continue", resp, err)
		}
		c.send(t, "hello")
		resp, body := c.response(t, "PUT")
		if resp.StatusCode != 200 || body != "PUT /e hello" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		c.send(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := c.response(t, "GET"); body != "GET /next " {
			t.Fatalf("next request: got %q", body)
		}
	})
	t.Run("body never asked for", func(t *testing.T) {
		c := dialH1(t, addr)
		c.send(t, "PUT /ignore HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, body := c.response(t, "PUT")
		if resp.StatusCode != 200 || body != "not reading" || !resp.Close {
			t.Fatalf("got %d %q close=%v, want the final answer (no 100) and close", resp.StatusCode, body, resp.Close)
		}
		// The client may or may not send the body now: the connection
		// cannot be reused.
		c.closed(t)
	})
	t.Run("unknown expectation", func(t *testing.T) {
		c := dialH1(t, addr)
		c.send(t, "PUT /e HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n")
		resp, _ := c.response(t, "PUT")
		if resp.StatusCode != http.StatusExpectationFailed || !resp.Close {
			t.Fatalf("got %d close=%v, want 417 and close", resp.StatusCode, resp.Close)
		}
		c.closed(t)
	})
}

// TestH1ServerExpectContinueConcurrentRead reads the body on another
// goroutine while the handler answers, as the transport under
// httputil.ReverseProxy does: the automatic "100 Continue" is written by
// that goroutine and must be ordered with the handler's writes (the race
// detector tells).
func TestH1ServerExpectContinueConcurrentRead(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		read := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(r.Body)
			read <- b
		}()
		time.Sleep(20 * time.Millisecond) // the body is asked for first
		w.Header().Set("Content-Length", "7")
		io.WriteString(w, "answer ")
		w.(http.Flusher).Flush()
		if b := <-read; string(b) != "hello" {
			t.Errorf("body read: %q", b)
		}
	})
	c := dialH1(t, addr)
	c.send(t, "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Whether the 100 or the answer comes first, the client may send
	// the body now.
	c.send(t, "hello")
	if resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "answer " || err != nil {
		t.Fatalf("got %d %q %v", resp.StatusCode, b, err)
	}
	if resp.Close {
		c.closed(t)
		return
	}
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if resp, _ := c.response(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("next request: %d", resp.StatusCode)
	}
}

func TestH1ServerFlushAndTrailers(t *testing.T) {
	proceed := make(chan struct{})
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-proceed:
		case <-time.After(2 * time.Second):
			t.Error("the flushed part never reached the client")
		}
		io.WriteString(w, " second")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Late", "l")
	})
	c := dialH1(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
		t.Fatalf("flushed response: TE %q length %d, want chunked", resp.TransferEncoding, resp.ContentLength)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("first part: %q %v", first, err)
	}
	close(proceed)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != " second" {
		t.Fatalf("rest: %q %v", rest, err)
	}
	if got, want := resp.Trailer, (http.Header{"X-Declared": {"d"}, "X-Late": {"l"}}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("trailers %v, want %v", got, want)
	}
}

func TestH1ServerTrailersWithoutFlush(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "short")
		w.Header().Set("X-Sum", "42")
	})
	c := dialH1(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if body != "short" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("got %q trailer %v (length %d), want the declared trailer delivered", body, resp.Trailer, resp.ContentLength)
	}
}

func TestH1ServerFraming(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			io.WriteString(w, "hello")
		case "/none":
		case "/big":
			w.Write(make([]byte, 10<<10))
		case "/declared":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "0123456789")
		case "/late-length":
			// Header changes after WriteHeader have no effect
			// (http.ResponseWriter): the framing must not follow them.
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(200)
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "0123456789")
		case "/late-length-chunked":
			w.WriteHeader(200)
			w.Header().Set("Content-Length", "3")
			w.Write(make([]byte, 5<<10))
		case "/204":
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNoContent)
		}
	})
	for _, tc := range []struct {
		method, path string
		length       int64
		chunked      bool
		body         int
	}{
		{"GET", "/small", 5, false, 5},
		{"GET", "/none", 0, false, 0},
		{"GET", "/big", -1, true, 10 << 10},
		{"GET", "/declared", 10, false, 10},
		{"HEAD", "/declared", 10, false, 0},
		{"GET", "/late-length", 10, false, 10},
		{"GET", "/late-length-chunked", -1, true, 5 << 10},
		{"GET", "/204", 0, false, 0},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			c := dialH1(t, addr)
			// A second request right behind shows where the first
			// response really ends.
			c.send(t, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n")
			if head := c.head(t); strings.Count(head, "Content-Length:")+strings.Count(head, "Transfer-Encoding:") > 1 {
				t.Fatalf("head frames the body twice:\n%s", head)
			}
			resp, body := c.response(t, tc.method)
			if resp.ContentLength != tc.length || (len(resp.TransferEncoding) > 0) != tc.chunked || len(body) != tc.body {
				t.Fatalf("got length %d TE %q body %d bytes, want length %d chunked=%v body %d bytes",
					resp.ContentLength, resp.TransferEncoding, len(body), tc.length, tc.chunked, tc.body)
			}
			if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "hello" {
				t.Fatalf("next response: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestH1ServerShortBodyCloses(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello")
	})
	c := dialH1(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "hello" {
		t.Fatalf("got %q %v, want the 5 bytes and an unexpected EOF", b, err)
	}
}

func TestH1ServerBadRequests(t *testing.T) {
	l := h1TestLimits()
	l.MaxHeaderBytes = 2 << 10
	var mu sync.Mutex
	served := 0
	_, addr, _ := startH1(t, l, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		mu.Unlock()
	})
	for _, tc := range []struct {
		name, req string
		code      int
	}{
		{"unsupported transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"repeated transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc", 400},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"absolute form without Host", "GET http://x/ HTTP/1.1\r\n\r\n", 400},
		{"absolute form, malformed Host", "GET http://x/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"authority form, malformed Host", "CONNECT x:443 HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"negative length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400},
		{"HTTP/2 on HTTP/1", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"oversized header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431},
		{"many header lines", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 1000) + "\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH1(t, addr)
			c.send(t, tc.req)
			resp, _ := c.response(t, "GET")
			if resp.StatusCode != tc.code || !resp.Close {
				t.Fatalf("got %d close=%v, want %d and close", resp.StatusCode, resp.Close, tc.code)
			}
			c.closed(t)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if served != 0 {
		t.Fatalf("the handler saw %d bad requests", served)
	}
}

func TestH1ServerPanic(t *testing.T) {
	_, addr, rec := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			io.WriteString(w, "partial")
			panic("boom")
		case "/abort":
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "ok")
	})
	other := dialH1(t, addr)
	other.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	other.response(t, "GET")

	c := dialH1(t, addr)
	c.send(t, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	c.closed(t)
	if got := rec.matching("panic serving"); len(got) != 1 || !strings.Contains(got[0], "boom") {
		t.Fatalf("panic log: %q", got)
	}

	c = dialH1(t, addr)
	c.send(t, "GET /abort HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("aborted chunked response ended cleanly, want it cut")
	}
	if got := rec.matching("panic serving"); len(got) != 1 {
		t.Fatalf("http.ErrAbortHandler was logged: %q", got)
	}

	// The connection that was open all along, and a new one, still work.
	for _, c := range []*h1Client{other, dialH1(t, addr)} {
		c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("after the panics: %d %q", resp.StatusCode, body)
		}
	}
}

func TestH1ServerRequestBodyDrain(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/part":
			io.ReadFull(r.Body, make([]byte, 10))
		case "/close":
			// httputil.ReverseProxy and many handlers close the body.
			io.ReadFull(r.Body, make([]byte, 10))
			r.Body.Close()
		case "/all-close":
			io.ReadAll(r.Body)
			r.Body.Close()
		}
		io.WriteString(w, "answer "+r.URL.Path)
	})
	post := func(path string, n int) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("b", n)
	}
	for _, path := range []string{"/ignore", "/part", "/close", "/all-close"} {
		t.Run("small unread body is drained"+path, func(t *testing.T) {
			c := dialH1(t, addr)
			c.send(t, post(path, 100<<10)+"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			for _, want := range []string{"answer " + path, "answer /next"} {
				if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != want || resp.Close {
					t.Fatalf("got %d %q close=%v, want %q on a kept connection", resp.StatusCode, body, resp.Close, want)
				}
			}
		})
	}
	for _, path := range []string{"/ignore", "/close"} {
		t.Run("large unread body closes"+path, func(t *testing.T) {
			c := dialH1(t, addr)
			go io.WriteString(c, post(path, 300<<10)+"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.response(t, "POST")
			if resp.StatusCode != 200 || body != "answer "+path || !resp.Close {
				t.Fatalf("got %d %q close=%v, want the answer and Connection: close", resp.StatusCode, body, resp.Close)
			}
			c.closed(t)
		})
	}
	t.Run("closed body is not read to its end", func(t *testing.T) {
		// The client declares 64 MiB and sends a little: the answer
		// must not wait for the rest.
		c := dialH1(t, addr)
		c.send(t, "POST /close HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n"+strings.Repeat("b", 1000))
		resp, body := c.response(t, "POST")
		if resp.StatusCode != 200 || body != "answer /close" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		c.closed(t)
	})
}

func TestH1ServerReadHeaderTimeout(t *testing.T) {
	l := h1TestLimits()
	l.ReadHeaderTimeout = 300 * time.Millisecond
	l.IdleTimeout = 1500 * time.Millisecond
	_, addr, _ := startH1(t, l, echoHandler)
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first=%v", first), func(t *testing.T) {
			c := dialH1(t, addr)
			if !first {
				c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				c.response(t, "GET")
			}
			start := time.Now()
			c.send(t, "GET /slow HTTP/1.1\r\n")
			stop := make(chan struct{})
			dribbled := make(chan struct{})
			go func() {
				defer close(dribbled)
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := io.WriteString(c, "X-A: b\r\n"); err != nil {
						return
					}
				}
			}()
			c.closed(t)
			took := time.Since(start)
			close(stop)
			<-dribbled
			if took < 250*time.Millisecond || took > 1200*time.Millisecond {
				t.Fatalf("closed %v after the header began, want about the 300ms header timeout", took)
			}
		})
	}
}

func TestH1ServerIdleTimeout(t *testing.T) {
	l := h1TestLimits()
	l.IdleTimeout = 300 * time.Millisecond
	l.ReadHeaderTimeout = 1500 * time.Millisecond
	_, addr, _ := startH1(t, l, echoHandler)
	c := dialH1(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.response(t, "GET")
	start := time.Now()
	c.closed(t)
	if took := time.Since(start); took < 250*time.Millisecond || took > 1200*time.Millisecond {
		t.Fatalf("idle connection closed after %v, want about the 300ms idle timeout", took)
	}
}

func TestH1ServerShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	})
	idle := dialH1(t, addr)
	idle.send(t, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.response(t, "GET")
	busy := dialH1(t, addr)
	busy.send(t, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started

	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		errc <- s.shutdown(ctx)
	}()
	idle.closed(t)
	late := dialH1(t, addr)
	late.closed(t)
	select {
	case err := <-errc:
		t.Fatalf("shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	resp, body := busy.response(t, "GET")
	if body != "done /slow" || !resp.Close {
		t.Fatalf("busy connection got %q close=%v, want its answer with Connection: close", body, resp.Close)
	}
	busy.closed(t)
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestH1ServerShutdownDeadline(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	s, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(cancelled)
	})
	c := dialH1(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want the deadline", err)
	}
	<-cancelled
	c.closed(t)
}

func TestH1ServerHijack(t *testing.T) {
	l := h1TestLimits()
	l.ReadHeaderTimeout = 200 * time.Millisecond
	l.IdleTimeout = 200 * time.Millisecond
	l.WriteStallTimeout = 200 * time.Millisecond
	_, addr, _ := startH1(t, l, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		if _, _, err := w.(http.Hijacker).Hijack(); !errors.Is(err, http.ErrHijacked) {
			t.Errorf("second hijack: %v", err)
		}
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrHijacked) {
			t.Errorf("write after hijack: %v", err)
		}
		buffered := make([]byte, rw.Reader.Buffered())
		io.ReadFull(rw, buffered)
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nbuffered=%s\n", buffered)
		rw.Flush()
		// Past the header, idle and write-stall timeouts: the deadlines
		// are gone.
		line, err := rw.ReadString('\n')
		if err != nil {
			t.Errorf("read after hijack: %v", err)
			return
		}
		// Straight to the connection, as httputil.ReverseProxy copies.
		if _, err := fmt.Fprintf(conn, "echo=%s", line); err != nil {
			t.Errorf("write after hijack: %v", err)
		}
	})
	c := dialH1(t, addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly bytes")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("got %v %v", resp, err)
	}
	line, err := c.br.ReadString('\n')
	if err != nil || line != "buffered=early bytes\n" {
		t.Fatalf("got %q %v", line, err)
	}
	time.Sleep(400 * time.Millisecond)
	c.send(t, "later\n")
	line, err = c.br.ReadString('\n')
	if err != nil || line != "echo=later\n" {
		t.Fatalf("got %q %v", line, err)
	}
	c.closed(t)
}

// A client that declares a small body and never sends it is not served
// past the header timeout while its leftover body is drained (there is no
// ReadTimeout by default).
func TestH1ServerDrainBounded(t *testing.T) {
	l := h1TestLimits()
	l.ReadTimeout = 0
	l.ReadHeaderTimeout = 300 * time.Millisecond
	l.IdleTimeout = 5 * time.Second
	_, addr, _ := startH1(t, l, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "answered without the body")
	})
	c := dialH1(t, addr)
	c.send(t, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this")
	if resp, body := c.response(t, "POST"); resp.StatusCode != 200 || body != "answered without the body" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	start := time.Now()
	c.closed(t)
	if took := time.Since(start); took > 1200*time.Millisecond {
		t.Fatalf("connection held %v draining a body that never came, want about the 300ms header timeout", took)
	}
}

// A request with both Content-Length and Transfer-Encoding is read as
// chunked, the handler is told (LengthConflict), and the connection is
// closed after the response (RFC 9112 6.3), whether the header arrived in
// one piece or dribbled in.
func TestH1ServerLengthConflict(t *testing.T) {
	var conflict atomic.Bool
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		conflict.Store(w.(interface{ LengthConflict() bool }).LengthConflict())
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "body "+string(b))
	})
	req := "POST /a HTTP/1.1\r\nHost: x\r\nContent-length: 40\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, pieces := range []bool{false, true} {
		t.Run(fmt.Sprintf("pieces=%v", pieces), func(t *testing.T) {
			conflict.Store(false)
			c := dialH1(t, addr)
			if pieces {
				c.send(t, req[:30])
				time.Sleep(50 * time.Millisecond)
				c.send(t, req[30:])
			} else {
				c.send(t, req)
			}
			resp, body := c.response(t, "POST")
			if resp.StatusCode != 200 || body != "body hello" || !resp.Close || !conflict.Load() {
				t.Fatalf("got %d %q close=%v conflict=%v, want the chunked body, Connection: close and the conflict flagged", resp.StatusCode, body, resp.Close, conflict.Load())
			}
			c.closed(t) // the smuggled GET is never served
		})
	}
	t.Run("either alone is fine", func(t *testing.T) {
		conflict.Store(true)
		c := dialH1(t, addr)
		c.send(t, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		if resp, body := c.response(t, "POST"); body != "body ok" || resp.Close || conflict.Load() {
			t.Fatalf("got %q close=%v conflict=%v", body, resp.Close, conflict.Load())
		}
		// A body line that looks like a header field is not the header.
		c.send(t, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\nx\ntransfer-encoding: y")
		if resp, body := c.response(t, "POST"); body != "body x\ntransfer-encoding: y" || resp.Close || conflict.Load() {
			t.Fatalf("got %q close=%v conflict=%v", body, resp.Close, conflict.Load())
		}
	})
}

// RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty
// framing (net/http's parser ignores the field there).
func TestH1ServerHTTP10TransferEncoding(t *testing.T) {
	called := make(chan struct{}, 1)
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) { called <- struct{}{} })
	c := dialH1(t, addr)
	c.send(t, "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc")
	if resp, _ := c.response(t, "POST"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	c.closed(t)
	select {
	case <-called:
		t.Fatal("handler called")
	default:
	}
}

func TestRawFraming(t *testing.T) {
	for _, tc := range []struct {
		hdr          string
		cl, te, host bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, false, true},
		{"POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\nhOST:x\r\n\r\n", true, false, true},
		{"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n", false, true, false},
		{"POST /content-length: HTTP/1.1\r\nX-Content-Length: 1\r\nX: transfer-encoding:\r\nX-Host: y\r\n\r\n", false, false, false},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", true, true, false},
		{"GET http://host:80/ HTTP/1.1\r\nHostile: 1\r\n\r\n", false, false, false},
	} {
		end := headerEnd([]byte(tc.hdr))
		if end != len(tc.hdr) {
			t.Errorf("%q: header end %d, want %d", tc.hdr, end, len(tc.hdr))
			continue
		}
		if f := rawFraming([]byte(tc.hdr[:end])); f.cl != tc.cl || f.te != tc.te || f.host != tc.host || !f.known {
			t.Errorf("%q: got %+v, want cl=%v te=%v host=%v", tc.hdr, f, tc.cl, tc.te, tc.host)
		}
	}
	if headerEnd([]byte("GET / HTTP/1.1\r\nHost: x\r\n")) != -1 {
		t.Error("an unfinished header has an end")
	}
}

// A client that stops reading its response is cut after the write-stall
// timeout (slow-read attack): the handler's write fails with a timeout and
// the connection is closed, instead of both being held for good.
func TestH1ServerWriteStall(t *testing.T) {
	l := h1TestLimits()
	l.WriteStallTimeout = 300 * time.Millisecond
	type outcome struct {
		err   error
		wrote int64
		at    time.Duration
	}
	got := make(chan outcome, 1)
	var start time.Time
	_, addr, _ := startH1(t, l, func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		var wrote int64
		for wrote < 256<<20 {
			n, err := w.Write(chunk)
			wrote += int64(n)
			if err != nil {
				got <- outcome{err, wrote, time.Since(start)}
				return
			}
		}
		got <- outcome{nil, wrote, time.Since(start)}
	})
	c := dialH1(t, addr)
	start = time.Now()
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read nothing.
	var o outcome
	select {
	case o = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still writing to a client that reads nothing after 10s")
	}
	if !errors.Is(o.err, os.ErrDeadlineExceeded) {
		t.Fatalf("handler's write ended with %v after %d bytes, want a deadline error", o.err, o.wrote)
	}
	if o.at > 5*time.Second {
		t.Fatalf("stalled client held for %v, want about the 300ms stall timeout once the buffers were full", o.at)
	}
	// The server has closed the connection: reading what was buffered
	// ends in EOF or a reset, not a timeout.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.Conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open after the write stall")
	}
}

// The stall timeout follows progress: a client that reads slowly but keeps
// reading gets its whole response even when it takes longer than the
// timeout. (The kernel reports progress to a blocked writer once about half
// the send buffer has drained: 12.5 MiB/s here drains 2 MiB in 160 ms.)
func TestH1ServerSlowReaderNotCut(t *testing.T) {
	l := h1TestLimits()
	l.WriteStallTimeout = time.Second
	const size = 16 << 20 // more than the socket buffers hold
	_, addr, _ := startH1(t, l, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := bytes.Repeat([]byte("x"), 16<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				t.Errorf("write at %d: %v", n, err)
				return
			}
		}
	})
	c := dialH1(t, addr)
	c.Conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	c.send(t, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var total int64
	buf := make([]byte, 256<<10)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		total += int64(n)
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // 64 sleeps: at least 1.28 s in all
	}
	if total != size {
		t.Fatalf("read %d of %d bytes in %v", total, size, time.Since(start))
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("the read took %v: too fast to show anything about a 1s stall timeout", took)
	}
}

// A response sent while the client is still uploading a body the handler
// did not read reaches the client whole: the server half-closes and
// discards the rest of the upload (lingering close) instead of closing a
// socket with unread input, which resets the connection and drops the part
// of the response still in flight.
func TestH1ServerLingerClose(t *testing.T) {
	l := h1TestLimits()
	const respSize = 1 << 20
	_, addr, _ := startH1(t, l, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(respSize))
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write(bytes.Repeat([]byte("r"), respSize))
	})
	c := dialH1(t, addr)
	c.Conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	c.send(t, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
	go func() {
		// The upload goes on until the connection ends.
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	time.Sleep(200 * time.Millisecond) // the server has answered and closed by now
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || n != respSize || err != nil {
		t.Fatalf("got %d with %d of %d body bytes, err %v", resp.StatusCode, n, respSize, err)
	}
	if !resp.Close {
		t.Error("response does not say Connection: close")
	}
}

// An absolute-form HTTP/1.1 request without a Host field is refused also
// when its header arrives in pieces (the raw block is then copied as it is
// read), and one with a Host field is served.
func TestH1ServerAbsoluteFormHost(t *testing.T) {
	_, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "host="+r.Host)
	})
	c := dialH1(t, addr)
	c.send(t, "GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n")
	if resp, body := c.response(t, "GET"); resp.StatusCode != 200 || body != "host=a.example" {
		t.Fatalf("with Host: got %d %q", resp.StatusCode, body)
	}
	c.send(t, "GET http://a.example/x HTTP/1.1\r\nX-A: b\r\n")
	time.Sleep(50 * time.Millisecond)
	c.send(t, "X-B: c\r\n\r\n")
	if resp, _ := c.response(t, "GET"); resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Fatalf("without Host, in pieces: got %d close=%v, want 400 and close", resp.StatusCode, resp.Close)
	}
	c.closed(t)
}

// A connection accepted just before shutdown still gets its first request
// answered (with Connection: close): its client may have sent it already.
func TestH1ServerShutdownFreshConn(t *testing.T) {
	s, addr, _ := startH1(t, h1TestLimits(), func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "done")
	})
	c := dialH1(t, addr)
	time.Sleep(50 * time.Millisecond) // accepted and waiting for its request
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		errc <- s.shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	c.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response(t, "GET")
	if body != "done" || !resp.Close {
		t.Fatalf("got %q close=%v, want the answer with Connection: close", body, resp.Close)
	}
	c.closed(t)
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// pipeH1 serves one end of a net.Pipe (no buffer: every write waits for
// the other side to read, as a TCP connection does once a client that stops
// reading has filled the buffers); wrap, when set, turns the server's end
// into what is served. It returns the client's end and a channel that
// receives when the server has closed its connection.
func pipeH1(t *testing.T, s *h1Server, wrap func(net.Conn) net.Conn) (net.Conn, chan time.Time) {
	t.Helper()
	closed := make(chan time.Time, 1)
	s.onClose = func(net.Conn) { closed <- time.Now() }
	srv, cli := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	var c net.Conn = srv
	if wrap != nil {
		c = wrap(srv)
	}
	s.serveConn(c)
	return cli, closed
}

// h1TestTLS is a server configuration with a throwaway self-signed
// certificate (no session tickets: a ticket the client's handshake does not
// read would block the server's first flight on a pipe).
func h1TestTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		SessionTicketsDisabled: true, MinVersion: tls.VersionTLS13}
}

// An error answer to a client that does not read is given its one second
// (as before the write-stall timeout), not the much longer stall timeout:
// the first Write must not move the deadline replyError set.
func TestH1ServerErrorAnswerDeadline(t *testing.T) {
	l := h1TestLimits()
	l.WriteStallTimeout = 20 * time.Second
	s := newH1Server(http.NotFoundHandler(), l, slog.New(&logRec{t: t}))
	cli, closed := pipeH1(t, s, nil)
	start := time.Now()
	cli.SetWriteDeadline(start.Add(5 * time.Second))
	if _, err := io.WriteString(cli, "GET / HTTP/1.1\r\n\r\n"); err != nil { // no Host: 400
		t.Fatal(err)
	}
	// Read nothing: the 400 cannot be written.
	select {
	case at := <-closed:
		if d := at.Sub(start); d > 3*time.Second {
			t.Fatalf("connection held %v by an error answer nobody reads, want about 1s", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("connection still open 8s after an error answer nobody reads (want about 1s)")
	}
}

// A lingering close on TLS sends close_notify within lingerQuiet even when
// the client does not read (crypto/tls gives that write 5 s of its own),
// and a shutdown whose deadline passes meanwhile returns promptly (its
// Close of the tls.Conn waits for the same write).
func TestH1ServerLingerTLSClientNotReading(t *testing.T) {
	for _, shut := range []bool{false, true} {
		t.Run(fmt.Sprintf("shutdown=%v", shut), func(t *testing.T) {
			s := newH1Server(http.NotFoundHandler(), h1TestLimits(), slog.New(&logRec{t: t}))
			cfg := h1TestTLS(t)
			cli, closed := pipeH1(t, s, func(c net.Conn) net.Conn { return tls.Server(c, cfg) })
			tc := tls.Client(cli, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\n\r\n"); err != nil { // no Host: 400, lingering close
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %d, want 400", resp.StatusCode)
			}
			// Read nothing more: the server's close_notify cannot be sent.
			start := time.Now()
			if shut {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				s.shutdown(ctx)
				if d := time.Since(start); d > 3*time.Second {
					t.Fatalf("shutdown with a 100ms deadline took %v", d)
				}
			}
			select {
			case at := <-closed:
				if d := at.Sub(start); d > 3*time.Second {
					t.Fatalf("lingering close held the connection %v after the answer, want about %v", d, lingerQuiet)
				}
			case <-time.After(8 * time.Second):
				t.Fatal("connection still open 8s after the answer")
			}
		})
	}
}

// The Host field's value is checked in the raw block only when the target
// is not in origin form (ReadRequest then drops the field); it is trimmed
// as textproto trims it.
func TestRawFramingHostValue(t *testing.T) {
	for _, tc := range []struct {
		hdr string
		bad bool
	}{
		{"GET http://x/ HTTP/1.1\r\nHost: a b\r\n\r\n", true},
		{"CONNECT x:443 HTTP/1.1\nhost: a/b\n\n", true},
		{"GET http://x/ HTTP/1.1\r\nHost:  a.b:80 \t\r\n\r\n", false},
		{"GET http://x/ HTTP/1.1\r\nHost:\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false}, // origin form: checkRequest checks r.Host
	} {
		if f := rawFraming([]byte(tc.hdr)); f.badHost != tc.bad || !f.host {
			t.Errorf("%q: got %+v, want badHost=%v", tc.hdr, f, tc.bad)
		}
	}
}

// A Hijack that fails (an earlier write to the client failed, so the
// buffered writer cannot be flushed) leaves the connection with the server,
// which closes it: the handler got no connection to close.
func TestH1ServerHijackFailsConnClosed(t *testing.T) {
	l := h1TestLimits()
	l.WriteStallTimeout = 200 * time.Millisecond
	hijackErr := make(chan error, 1)
	s := newH1Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints) // the client does not read: cut after the stall timeout
		_, _, err := w.(http.Hijacker).Hijack()
		hijackErr <- err
	}), l, slog.New(&logRec{t: t}))
	cli, _ := pipeH1(t, s, nil)
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(cli, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-hijackErr; err == nil {
		t.Fatal("hijack after a failed write succeeded")
	}
	// Nothing can be written any more; the server must close its end.
	cli.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := cli.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the failed hijack: %v, want EOF (the server closed the connection)", err)
	}
}

// Shutdown closes an idle TLS connection whose client does not read without
// waiting for the close_notify alert (crypto/tls gives that write 5 s), so a
// few such clients cannot hold a shutdown, or a failover, past its deadline.
func TestH1ServerShutdownIdleTLSClientNotReading(t *testing.T) {
	s := newH1Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		h1TestLimits(), slog.New(&logRec{t: t}))
	cfg := h1TestTLS(t)
	cli, closed := pipeH1(t, s, func(c net.Conn) net.Conn { return tls.Server(c, cfg) })
	tc := tls.Client(cli, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	// Idle now, and the client reads nothing more.
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("shutdown took %v closing one idle connection", d)
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("connection still open after shutdown")
	}
}

// Cutting a peer's connection (revocation, suspension) returns at once even
// when the peer does not read: the close_notify alert is not waited for.
func TestInConnCloseClientNotReading(t *testing.T) {
	cfg := h1TestTLS(t)
	srv, cli := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	sc := tls.Server(srv, cfg)
	go func() {
		tc := tls.Client(cli, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		tc.Handshake() // then reads nothing
	}()
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := sc.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc.SetDeadline(time.Time{})
	ic := &inConn{conn: sc}
	start := time.Now()
	ic.close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("closing the connection of a peer that does not read took %v", d)
	}
}

// Closing a pooled connection to a peer that does not read returns at once.
func TestUpConnCloseServerNotReading(t *testing.T) {
	cfg := h1TestTLS(t)
	srv, cli := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	go tls.Server(srv, cfg).Handshake() // then reads nothing
	cc := tls.Client(cli, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cc.SetDeadline(time.Time{})
	uc := &upConn{c: cc}
	start := time.Now()
	uc.close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("closing a pooled connection to a peer that does not read took %v", d)
	}
}
