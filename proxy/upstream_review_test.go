package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Client-level tests of upstream.go against scripted backends.

// rvBackend listens on loopback and serves every accepted connection with
// serve on its own goroutine; it returns a dialer for newUpstream.
func rvBackend(t *testing.T, serve func(c net.Conn)) func(ctx context.Context) (net.Conn, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	addr := ln.Addr().String()
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// rvHTTPBackend is rvBackend for a net/http handler.
func rvHTTPBackend(t *testing.T, h http.Handler) (func(ctx context.Context) (net.Conn, error), *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, srv
}

func rvUpstream(t *testing.T, dial func(ctx context.Context) (net.Conn, error), maxConns int) *upstream {
	u := newUpstream(dial, Limits{MaxIdlePerHost: 4, MaxConnsPerHost: maxConns, BackendTimeout: 10 * time.Second})
	t.Cleanup(u.closeIdle)
	return u
}

// rvReq is a request as a handler receives it.
func rvReq(method, path string, body io.Reader, n int64) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	r.ContentLength = n
	r.Body = http.NoBody
	if body != nil {
		r.Body = io.NopCloser(body)
	}
	return r
}

// rvForward runs forwardGated, turning a panic into an error.
func rvForward(ctx context.Context, u *upstream, w http.ResponseWriter, r *http.Request, gate func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return u.forwardGated(ctx, w, r, "backend", r.URL.RequestURI(), gate)
}

func rvGet(t *testing.T, u *upstream, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	if err := rvForward(ctx, u, rec, rvReq("GET", path, nil, 0), nil); err != nil {
		return "", err
	}
	return rec.Body.String(), nil
}

// rvReadReq reads one request (and its body) from br.
func rvReadReq(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

func rvWaitSlots(t *testing.T, u *upstream) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); len(u.slots) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection slots still held", len(u.slots))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rvFailWriter is a client that went away: every body write fails.
type rvFailWriter struct{ h http.Header }

func (w *rvFailWriter) Header() http.Header         { return w.h }
func (w *rvFailWriter) WriteHeader(int)             {}
func (w *rvFailWriter) Write(p []byte) (int, error) { return 0, errors.New("client gone") }

// A forward that gives up on a response (the client's write failed, or the
// gate refused it) closes the upstream connection at once: it does not read
// the rest of the backend's body first (http.Response.Body.Close on a body
// of http.ReadResponse reads it to its end), which for a stream never ends
// and holds the call and its connection slot.
func TestUpstreamAbortDoesNotDrainBody(t *testing.T) {
	dial, srv := rvHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			// A large download with a Content-Length, sent slowly.
			w.Header().Set("Content-Length", "104857600")
		}
		chunk := bytes.Repeat([]byte("x"), 1024)
		for i := 0; i < 100<<10; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}))
	for _, tc := range []struct {
		name, path string
		w          func() http.ResponseWriter
		gate       func() error
	}{
		{"client gone, chunked stream", "/stream", func() http.ResponseWriter { return &rvFailWriter{h: http.Header{}} }, nil},
		{"client gone, content-length", "/big", func() http.ResponseWriter { return &rvFailWriter{h: http.Header{}} }, nil},
		{"gate refuses, chunked stream", "/stream", func() http.ResponseWriter { return httptest.NewRecorder() }, func() error { return errors.New("audit down") }},
		{"gate refuses, content-length", "/big", func() http.ResponseWriter { return httptest.NewRecorder() }, func() error { return errors.New("audit down") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := rvUpstream(t, dial, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- rvForward(ctx, u, tc.w(), rvReq("GET", tc.path, nil, 0), tc.gate) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("forward succeeded")
				}
				t.Logf("forward: %v", err)
			case <-time.After(3 * time.Second):
				cancel()
				srv.CloseClientConnections()
				<-done
				t.Fatal("the forward was still reading the backend's body 3 s after it gave up on the response")
			}
			rvWaitSlots(t, u)
		})
	}
}

// rvPanicWriter panics on the first body write, as a ResponseWriter may
// (http.ErrAbortHandler).
type rvPanicWriter struct{ h http.Header }

func (w *rvPanicWriter) Header() http.Header         { return w.h }
func (w *rvPanicWriter) WriteHeader(int)             {}
func (w *rvPanicWriter) Write(p []byte) (int, error) { panic(http.ErrAbortHandler) }

// Every way out of respond gives the connection's slot back, a panic of
// the ResponseWriter too; and a status code below 100 (which
// http.ReadResponse accepts and WriteHeader panics on) is a malformed
// response, answered as a failed forward before anything is written.
func TestUpstreamRespondPanicReleasesSlot(t *testing.T) {
	dial := rvBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := rvReadReq(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/bad-status" {
				io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nno")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		}
	})
	t.Run("writer panics", func(t *testing.T) {
		u := rvUpstream(t, dial, 1)
		err := rvForward(context.Background(), u, &rvPanicWriter{h: http.Header{}}, rvReq("GET", "/", nil, 0), nil)
		if err == nil || !strings.Contains(err.Error(), "abort Handler") {
			t.Fatalf("forward: %v, want the writer's panic", err)
		}
		rvWaitSlots(t, u)
		if body, err := rvGet(t, u, "/"); err != nil || body != "hello" {
			t.Fatalf("next call: %q, %v", body, err)
		}
	})
	t.Run("status below 100", func(t *testing.T) {
		u := rvUpstream(t, dial, 1)
		rec := httptest.NewRecorder()
		err := rvForward(context.Background(), u, rec, rvReq("GET", "/bad-status", nil, 0), nil)
		if err == nil || strings.HasPrefix(err.Error(), "panic") {
			t.Fatalf("forward: %v, want an error return", err)
		}
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
			t.Fatalf("something was written: %d %q %v", rec.Code, rec.Body, rec.Header())
		}
		rvWaitSlots(t, u)
		if body, err := rvGet(t, u, "/"); err != nil || body != "hello" {
			t.Fatalf("next call: %q, %v", body, err)
		}
	})
}

// Bytes after the end of a response (a miscounted Content-Length, a body
// sent with a 204 or to a HEAD, a second response) were not asked for: the
// connection is not pooled, or the next call, maybe another client's, reads
// them as its response.
func TestUpstreamUnsolicitedBytesNotReused(t *testing.T) {
	for _, tc := range []struct{ name, method, first string }{
		{"extra response", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
			"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"},
		{"body on a 204", "GET", "HTTP/1.1 204 No Content\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"},
		{"body to a HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 41\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int32
			dial := rvBackend(t, func(c net.Conn) {
				n := conns.Add(1)
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					if _, err := rvReadReq(br); err != nil {
						return
					}
					if n == 1 && i == 0 {
						io.WriteString(c, tc.first)
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")
				}
			})
			u := rvUpstream(t, dial, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := rvForward(ctx, u, httptest.NewRecorder(), rvReq(tc.method, "/", nil, 0), nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // let any stray bytes arrive
			if body, err := rvGet(t, u, "/"); err != nil || body != "mine" {
				t.Fatalf("next call got %q, %v; want its own response", body, err)
			}
		})
	}
}

// A response head is read within a bound (net/http's Transport: 10 MiB by
// default): a backend or peer that sends an endless header does not make
// the proxy buffer all of it.
func TestUpstreamResponseHeadBounded(t *testing.T) {
	const total = 64 << 20
	sent := make(chan int, 1)
	dial := rvBackend(t, func(c net.Conn) {
		if _, err := rvReadReq(bufio.NewReader(c)); err != nil {
			sent <- -1
			return
		}
		n, _ := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		chunk := bytes.Repeat([]byte("a"), 32<<10)
		for n < total {
			m, err := c.Write(chunk)
			n += m
			if err != nil {
				break
			}
		}
		sent <- n
	})
	u := rvUpstream(t, dial, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := rvForward(ctx, u, httptest.NewRecorder(), rvReq("GET", "/", nil, 0), nil)
	if err == nil {
		t.Fatal("forward succeeded")
	}
	t.Logf("forward: %.200v", err)
	if n := <-sent; n >= total {
		t.Fatalf("the proxy read a %d MiB response header", n>>20)
	} else {
		t.Logf("backend wrote %d KiB before the proxy closed", n>>10)
	}
	rvWaitSlots(t, u)
}

// The retry of a call whose pooled connection the server had closed takes a
// new connection; at MaxConnsPerHost, with every slot held by a connection
// sitting idle in the pool, it must still get one (closing an idle one),
// not wait for a slot that no call will give back.
func TestUpstreamRetryNotStarvedByIdleConns(t *testing.T) {
	gotDrop := make(chan struct{})
	release := make(chan struct{})
	var drops atomic.Int32
	dial := rvBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := rvReadReq(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/drop":
				if drops.Add(1) == 1 {
					close(gotDrop)
					<-release
					return // closed with no response: the pooled-connection race
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nretried")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	u := rvUpstream(t, dial, 1)
	if body, err := rvGet(t, u, "/warm"); err != nil || body != "ok" {
		t.Fatalf("warm-up: %q, %v", body, err)
	}
	type result struct {
		body string
		err  error
	}
	a := make(chan result, 1)
	go func() { b, err := rvGet(t, u, "/drop"); a <- result{b, err} }() // takes the pooled connection
	<-gotDrop
	c := make(chan result, 1)
	go func() { b, err := rvGet(t, u, "/other"); c <- result{b, err} }() // queues for the one slot
	time.Sleep(50 * time.Millisecond)
	close(release)
	if r := <-c; r.err != nil || r.body != "ok" {
		t.Fatalf("queued call: %q, %v", r.body, r.err)
	}
	if r := <-a; r.err != nil || r.body != "retried" {
		t.Fatalf("retried call: %q, %v (its retry waited for a slot an idle connection held)", r.body, r.err)
	}
}

type rvZeros struct{}

func (rvZeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A backend may answer before it has read the request body, and close (net/http's
// server does so for an unread body over 256 KiB; so do others refusing an
// upload): the answer is the response, as net/http's Transport, which
// reads while it writes, returns it, not a write error.
func TestUpstreamEarlyResponseDuringBodyWrite(t *testing.T) {
	dial, srv := rvHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "9")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "too large")
	}))
	const size = 32 << 20
	t.Run("net/http Transport, for reference", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+"/upload", io.LimitReader(rvZeros{}, size))
		req.ContentLength = size
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	for _, cl := range []int64{size, -1} {
		t.Run(fmt.Sprintf("upstream, Content-Length %d", cl), func(t *testing.T) {
			u := rvUpstream(t, dial, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rec := httptest.NewRecorder()
			err := rvForward(ctx, u, rec, rvReq("POST", "/upload", io.LimitReader(rvZeros{}, size), cl), nil)
			if err != nil {
				t.Fatalf("forward: %v; want the backend's 413", err)
			}
			if rec.Code != http.StatusRequestEntityTooLarge || rec.Body.String() != "too large" {
				t.Fatalf("got %d %q", rec.Code, rec.Body)
			}
			rvWaitSlots(t, u)
		})
	}
}

// rvBrokenBody is a client's request body that fails after a few bytes.
type rvBrokenBody struct{ n int }

func (b *rvBrokenBody) Read(p []byte) (int, error) {
	if b.n >= 10 {
		return 0, io.ErrUnexpectedEOF
	}
	b.n += copy(p[:1], "x")
	return 1, nil
}

// A failure to read the client's request body is not the upstream's doing:
// it is not reported as a connection closed before a response (which
// classifies an outbound call as refused by the peer); a body over the
// limit is still told as such (413).
func TestUpstreamClientBodyErrorNotUpstreams(t *testing.T) {
	dial, _ := rvHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	for _, tc := range []struct {
		name string
		body func() io.Reader
		cl   int64
		mbe  bool
	}{
		{"content-length", func() io.Reader { return &rvBrokenBody{} }, 1000, false},
		{"chunked", func() io.Reader { return &rvBrokenBody{} }, -1, false},
		{"over the limit", func() io.Reader {
			return http.MaxBytesReader(nil, io.NopCloser(io.LimitReader(rvZeros{}, 1<<20)), 1000)
		}, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := rvUpstream(t, dial, 1)
			err := rvForward(context.Background(), u, httptest.NewRecorder(), rvReq("POST", "/", tc.body(), tc.cl), nil)
			if err == nil {
				t.Fatal("forward succeeded")
			}
			if errors.Is(err, errFreshClosed) || errors.Is(err, errNoResponse) {
				t.Fatalf("a client body error reported as the upstream's: %v", err)
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) != tc.mbe {
				t.Fatalf("MaxBytesError found: %v, want %v (%v)", !tc.mbe, tc.mbe, err)
			}
			rvWaitSlots(t, u)
		})
	}
}

// A connection closed after an interim (1xx) response has answered the
// request in part: the call fails, it is not retried (the retry is for a
// pooled connection found closed before any response byte), and on a new
// connection it is not told as one closed before a response.
func TestUpstreamNoRetryAfterInterimResponse(t *testing.T) {
	var reqs atomic.Int32
	dial := rvBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := rvReadReq(br)
			if err != nil {
				return
			}
			reqs.Add(1)
			if req.URL.Path == "/hint" {
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	t.Run("pooled connection", func(t *testing.T) {
		reqs.Store(0)
		u := rvUpstream(t, dial, 2)
		if body, err := rvGet(t, u, "/warm"); err != nil || body != "ok" {
			t.Fatalf("warm-up: %q, %v", body, err)
		}
		body, err := rvGet(t, u, "/hint")
		if err == nil {
			t.Fatalf("forward succeeded with %q", body)
		}
		if n := reqs.Load(); n != 2 {
			t.Fatalf("backend saw %d requests, want 2 (no retry after a 103)", n)
		}
	})
	t.Run("new connection", func(t *testing.T) {
		u := rvUpstream(t, dial, 2)
		_, err := rvGet(t, u, "/hint")
		if err == nil || errors.Is(err, errFreshClosed) || errors.Is(err, errNoResponse) {
			t.Fatalf("forward: %v; want a failure after a response began", err)
		}
	})
}

// Response fields named in the backend's Connection header are hop-by-hop
// and not passed on (RFC 9110 7.6.1), as for requests (and as
// httputil.ReverseProxy does).
func TestUpstreamResponseConnectionFieldsRemoved(t *testing.T) {
	dial := rvBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := rvReadReq(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nX-Hop: private\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	u := rvUpstream(t, dial, 1)
	rec := httptest.NewRecorder()
	if err := rvForward(context.Background(), u, rec, rvReq("GET", "/", nil, 0), nil); err != nil {
		t.Fatal(err)
	}
	h := rec.Result().Header
	if h.Get("X-Kept") != "yes" || h.Get("X-Hop") != "" || h.Get("Connection") != "" {
		t.Fatalf("response header %v: want X-Kept, not X-Hop or Connection", h)
	}
}

// Whether a connection is pooled after a response follows its framing
// (RFC 9112 6.3, 9.3): kept after a length-framed or chunked response
// (trailers read), after 1xx interim responses, after bodyless 204, 304 and
// HEAD responses that carry a Content-Length; closed after Connection:
// close, an HTTP/1.0 response without keep-alive and a body ended by close.
func TestUpstreamConnectionReuse(t *testing.T) {
	for _, tc := range []struct {
		name, method, resp string
		closeAfter         bool
		status             int
		body               string
		reuse              bool
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", true},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", false},
		{"http/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", false},
		{"http/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", true},
		{"ended by close", "GET", "HTTP/1.1 200 OK\r\n\r\nok", true, 200, "ok", false},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n", false, 200, "ok", true},
		{"1xx first", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", true},
		{"204 with length", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", false, 204, "", true},
		{"304 with length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, 304, "", true},
		{"HEAD with length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false, 200, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int32
			dial := rvBackend(t, func(c net.Conn) {
				conns.Add(1)
				br := bufio.NewReader(c)
				for {
					req, err := rvReadReq(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/next" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
						continue
					}
					io.WriteString(c, tc.resp)
					if tc.closeAfter {
						return
					}
				}
			})
			u := rvUpstream(t, dial, 2)
			rec := httptest.NewRecorder()
			if err := rvForward(context.Background(), u, rec, rvReq(tc.method, "/", nil, 0), nil); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body, tc.status, tc.body)
			}
			if body, err := rvGet(t, u, "/next"); err != nil || body != "next" {
				t.Fatalf("next call: %q, %v", body, err)
			}
			if reused := conns.Load() == 1; reused != tc.reuse {
				t.Fatalf("connection reused: %v, want %v", reused, tc.reuse)
			}
		})
	}
}

// rvCancelConn cancels its call once the request is written, and returns
// from that write only after the cancellation watcher has set its deadline.
type rvCancelConn struct {
	net.Conn
	cancel context.CancelFunc
	cut    chan struct{}
	once   sync.Once
}

func (c *rvCancelConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.once.Do(func() {
		c.cancel()
		<-c.cut
	})
	return n, err
}

func (c *rvCancelConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	if t.Before(time.Now()) {
		close(c.cut)
	}
	return err
}

// A call cancelled just as its request is written is not left waiting
// BackendTimeout for a response head: the response deadline set after the
// write must not undo the cancellation watcher's.
func TestUpstreamCancelAfterWriteNotLost(t *testing.T) {
	dialRaw := rvBackend(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // never answers
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := rvUpstream(t, func(ctx context.Context) (net.Conn, error) {
		c, err := dialRaw(ctx)
		if err != nil {
			return nil, err
		}
		return &rvCancelConn{Conn: c, cancel: cancel, cut: make(chan struct{})}, nil
	}, 1)
	start := time.Now()
	err := rvForward(ctx, u, httptest.NewRecorder(), rvReq("GET", "/", nil, 0), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("forward: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the cancelled call waited %v", d)
	}
	rvWaitSlots(t, u)
}
