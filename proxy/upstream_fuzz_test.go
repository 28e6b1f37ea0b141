package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzUpstreamResponse: whatever a backend or a peer answers (the upstream
// client's outside input), the call ends within its context, nothing but
// http.ErrAbortHandler escapes as a panic, every connection slot comes
// back, and the next call on the same upstream gets its own well-formed
// answer: no byte of the fuzzed answer is ever read as another call's
// response.
func FuzzUpstreamResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfake",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n0123456789",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nno",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		dial := rvBackend(t, func(c net.Conn) {
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
				c.Write(answer)
			}
		})
		u := newUpstream(dial, Limits{MaxIdlePerHost: 4, MaxConnsPerHost: 2, BackendTimeout: 100 * time.Millisecond})
		defer u.closeIdle()

		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		start := time.Now()
		err := rvForward(ctx, u, httptest.NewRecorder(), rvReq("GET", "/fuzz", nil, 0), nil)
		cancel()
		if err != nil && err.Error() != "panic: "+http.ErrAbortHandler.Error() && !isErrorValue(err) {
			t.Fatalf("forward: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the call took %v with a 150ms context", d)
		}

		for i := range 2 { // the second may reuse the first's connection
			body, err := rvGet(t, u, "/next")
			if err != nil || body != "next" {
				t.Fatalf("call %d after the fuzzed answer got %q, %v; want its own answer", i+1, body, err)
			}
		}
		u.closeIdle()
		rvWaitSlots(t, u)
	})
}

// isErrorValue reports whether err is an ordinary error returned by the
// forward (not a panic turned into an error by rvForward).
func isErrorValue(err error) bool {
	const p = "panic: "
	return len(err.Error()) < len(p) || err.Error()[:len(p)] != p
}
