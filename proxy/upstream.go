package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// upstream is a lean HTTP/1.1 client for one destination (a local backend
// or a peer): a LIFO pool of keep-alive connections, and a forward that does
// the whole exchange on the calling goroutine (no reader/writer goroutines,
// no channels per request). It is what makes the hot path cheap; requests it
// cannot carry (protocol upgrades) go through httputil.ReverseProxy.
type upstream struct {
	dial        func(ctx context.Context) (net.Conn, error)
	maxIdle     int
	respTimeout time.Duration
	stall       time.Duration // Limits.WriteStallTimeout, for HTTP/2 responses
	// slots caps open connections: under overload requests queue for a
	// connection instead of opening ever more (each a TLS handshake).
	slots chan struct{}

	mu   sync.Mutex
	idle []*upConn
}

type upConn struct {
	c       net.Conn
	lim     limitReader // what br reads from: bounded while a head is read
	br      *bufio.Reader
	bw      *bufio.Writer
	closeFn func()
	once    sync.Once
	idleAt  time.Time // when it was last put back in the pool
}

// maxResponseHead bounds what is read for a response head, interim (1xx)
// responses included, as net/http's Transport does with
// MaxResponseHeaderBytes (10 MiB there; nginx and Envoy refuse far less
// by default): a backend or peer sending an endless header would
// otherwise have it all buffered.
const maxResponseHead = 1 << 20

// staleAfter is how long a pooled connection may sit idle before get
// checks, with a non-blocking read, that the server has not closed it
// (servers close idle keep-alive connections after their own timeout:
// nginx 75 s, Node 5 s; fedgate's inbound Limits.IdleTimeout).
const staleAfter = time.Second

// alive reports whether a pooled connection is still open, without
// blocking: a MSG_PEEK|MSG_DONTWAIT recv on the socket finds nothing
// (EAGAIN) on an open connection and EOF on one the server closed. Bytes
// waiting on a plain connection mean the server spoke unasked (dead); on a
// TLS connection they may be a session ticket or a close_notify, so they
// are read through TLS with a 2 ms deadline (a timeout leaves neither the
// tls.Conn nor the bufio.Reader broken).
func (uc *upConn) alive() bool {
	if uc.br.Buffered() > 0 {
		return false
	}
	raw, isTLS := uc.c, false
unwrap:
	for {
		switch x := raw.(type) {
		case *tls.Conn:
			raw, isTLS = x.NetConn(), true
		case *countConn:
			raw = x.Conn
		default:
			break unwrap
		}
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return true // cannot tell; a failed reuse of a safe call is retried
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var rerr error
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness
	}); err != nil {
		return false
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN):
		return true
	case rerr != nil || n == 0 || !isTLS:
		return false
	}
	uc.c.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
	_, err = uc.br.Peek(1)
	uc.c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// close closes the connection and frees its slot (once). Under TLS the
// transport is closed without the close_notify alert, which a peer that
// does not read could make wait 5 s (StateChanged closes idle ones).
func (uc *upConn) close() {
	uc.once.Do(func() {
		closeTransport(uc.c)
		if uc.closeFn != nil {
			uc.closeFn()
		}
	})
}

func newUpstream(dial func(ctx context.Context) (net.Conn, error), l Limits) *upstream {
	return &upstream{dial: dial, maxIdle: l.MaxIdlePerHost, respTimeout: l.BackendTimeout, stall: l.WriteStallTimeout,
		slots: make(chan struct{}, l.MaxConnsPerHost)}
}

// get returns a pooled connection (reused = true) or a new one; fresh
// skips the pool.
func (u *upstream) get(ctx context.Context, fresh bool) (*upConn, bool, error) {
	for {
		for !fresh {
			uc := u.popIdle()
			if uc == nil {
				break
			}
			if time.Since(uc.idleAt) < staleAfter || uc.alive() {
				return uc, true, nil
			}
			uc.close()
		}
		select {
		case u.slots <- struct{}{}:
			c, err := u.dial(ctx)
			if err != nil {
				<-u.slots
				return nil, false, err
			}
			uc := &upConn{c: c, lim: limitReader{r: c, remain: math.MaxInt64}, bw: bufio.NewWriterSize(c, 16<<10)}
			uc.br = bufio.NewReaderSize(&uc.lim, 16<<10)
			uc.closeFn = func() { <-u.slots }
			return uc, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(5 * time.Millisecond):
			// at the cap: look for a connection returned meanwhile; a
			// retry, which takes no pooled one, closes one to free its
			// slot (else idle connections could hold every slot for good)
			if fresh {
				if uc := u.popIdle(); uc != nil {
					uc.close()
				}
			}
		}
	}
}

func (u *upstream) popIdle() *upConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	if n := len(u.idle); n > 0 {
		uc := u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		return uc
	}
	return nil
}

func (u *upstream) put(uc *upConn) {
	uc.idleAt = time.Now()
	u.mu.Lock()
	if len(u.idle) < u.maxIdle {
		u.idle = append(u.idle, uc)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	uc.close()
}

// closeIdle closes every pooled connection.
func (u *upstream) closeIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, uc := range idle {
		uc.close()
	}
}

// hopHeaders are connection-specific and never forwarded (RFC 9110 7.6.1);
// Expect is handled by the server side (it answers 100-continue when the
// body is read).
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Expect": true,
}

// errNoResponse marks a failure before any response byte was read.
var errNoResponse = errors.New("upstream sent no response")

// errReqBody marks a failure to read the request body from the client,
// which says nothing of the upstream connection.
var errReqBody = errors.New("request body")

// errFreshClosed marks a new connection closed before any response byte:
// towards a peer this is how a TLS 1.3 server's refusal of our client
// certificate usually shows (the alert races the close).
var errFreshClosed = errors.New("new connection closed before a response")

var longAgo = time.Unix(1, 0)

// isUpgrade reports whether r asks for a protocol switch.
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && httpHeaderHasToken(r.Header, "Connection", "upgrade")
}

func httpHeaderHasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// forwardGated sends r to the backend or peer at host and streams the
// response to w, with a gate called once the response head has
// arrived and before anything is written to w: a gate error discards the
// response (the connection is closed) and is returned. An error return means
// nothing was written to w (the caller answers it); once the response has
// started, a failure aborts the client's stream (http.ErrAbortHandler).
func (u *upstream) forwardGated(ctx context.Context, w http.ResponseWriter, r *http.Request, host, uri string, gate func() error) error {
	for attempt := 0; ; attempt++ {
		uc, reused, err := u.get(ctx, attempt > 0)
		if err != nil {
			return err
		}
		// One watcher for the whole exchange: a cancelled call (client
		// gone, peer revoked) breaks the upstream connection's reads and
		// writes at once.
		stop := context.AfterFunc(ctx, func() { uc.c.SetDeadline(longAgo) })
		resp, err := u.exchange(ctx, uc, r, host, uri)
		if err != nil {
			stop()
			uc.close()
			// A pooled connection the server closed while idle fails
			// before any response byte; retry a bodyless safe request once
			// on a new connection (not another pooled one: when a server
			// drops idle connections it usually drops them all).
			if reused && attempt == 0 && errors.Is(err, errNoResponse) && r.ContentLength == 0 && safeMethod(r.Method) && ctx.Err() == nil {
				continue
			}
			if !reused && errors.Is(err, errNoResponse) {
				err = fmt.Errorf("%w: %w", errFreshClosed, err)
			}
			return err
		}
		if ctx.Err() != nil {
			// Cancelled after the head was read: exchange may have
			// cleared the watcher's deadline.
			uc.c.SetDeadline(longAgo)
		}
		if gate != nil {
			if err := gate(); err != nil {
				stop()
				uc.close() // first: Body.Close reads an unfinished body to its end
				resp.Body.Close()
				return err
			}
		}
		u.respond(w, r, uc, resp, stop)
		return nil
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (u *upstream) exchange(ctx context.Context, uc *upConn, r *http.Request, host, uri string) (*http.Response, error) {
	werr := writeRequest(uc.bw, r, host, uri)
	if werr != nil {
		if errors.Is(werr, errReqBody) {
			return nil, werr
		}
		werr = fmt.Errorf("%w: write: %w", errNoResponse, werr)
		if ctx.Err() != nil || !(r.ContentLength > 0 || r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody) {
			return nil, werr
		}
		// The body could not all be sent: the server may have answered
		// before reading it, and closed. Its answer is the response (as
		// net/http's Transport, which reads while it writes, has it);
		// with none, the write error stands.
	}
	if u.respTimeout > 0 {
		uc.c.SetReadDeadline(time.Now().Add(u.respTimeout))
		if ctx.Err() != nil {
			// Cancelled meanwhile: the watcher's deadline may have
			// been set before this one, which undid it.
			return nil, ctx.Err()
		}
	}
	uc.lim.remain = maxResponseHead
	for interim := false; ; interim = true {
		if _, err := uc.br.Peek(1); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if interim {
				// A 1xx came: the request was answered in part, so
				// this is no failure before any response byte.
				return nil, fmt.Errorf("read response after a 1xx: %w", err)
			}
			if werr != nil {
				return nil, werr
			}
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return nil, fmt.Errorf("%w: %w", errNoResponse, err)
			}
			return nil, fmt.Errorf("read response: %w", err)
		}
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			if werr != nil {
				return nil, werr
			}
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode < 100 {
			// ReadResponse takes any three digits; below 100 is no
			// status (RFC 9110 15) and WriteHeader would panic on it.
			return nil, fmt.Errorf("read response: invalid status code %q", resp.Status)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // 1xx interim responses are not passed on
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream switched protocols on a plain request")
		}
		uc.lim.remain = math.MaxInt64
		if werr != nil {
			resp.Close = true // the request is not all sent
		}
		if u.respTimeout <= 0 || resp.ContentLength < 0 || int64(uc.br.Buffered()) < resp.ContentLength {
			// The body is read from the socket: no response timeout on
			// it (streams may be long). A body already buffered needs
			// no more reads, and the next exchange sets its own deadline.
			uc.c.SetReadDeadline(time.Time{})
		}
		return resp, nil
	}
}

// writeRequest writes r's head and body in HTTP/1.1 client form.
func writeRequest(bw *bufio.Writer, r *http.Request, host, uri string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	var connTokens []string
	if cv := r.Header["Connection"]; len(cv) > 0 {
		for _, v := range cv {
			for t := range strings.SplitSeq(v, ",") {
				connTokens = append(connTokens, textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(t)))
			}
		}
	}
	for k, vs := range r.Header {
		if hopHeaders[k] || k == "Content-Length" || k == "Host" {
			continue
		}
		if connTokens != nil && containsString(connTokens, k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	switch {
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		src := &bodySrc{r: r.Body, n: r.ContentLength}
		n, err := bw.ReadFrom(src)
		if src.err != nil {
			return fmt.Errorf("%w (%d of %d bytes): %w", errReqBody, n, r.ContentLength, src.err)
		}
		if err != nil {
			return fmt.Errorf("request body (%d of %d bytes): %w", n, r.ContentLength, err)
		}
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		bp := bufPool.Get().(*[]byte)
		err := copyChunked(bw, r.Body, *bp)
		bufPool.Put(bp)
		if err != nil {
			return err
		}
	default:
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// bodySrc is a request body of n bytes as writeRequest reads it, its read
// errors kept apart from the connection's write errors.
type bodySrc struct {
	r   io.Reader
	n   int64
	err error
}

func (b *bodySrc) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// copyChunked writes src as a chunked body (no trailers). It stops at the
// first write error (bufio.Writer's errors stick).
func copyChunked(bw *bufio.Writer, src io.Reader, buf []byte) error {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			bw.WriteString(strconv.FormatInt(int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			if _, werr := bw.WriteString("\r\n"); werr != nil {
				return fmt.Errorf("request body: %w", werr)
			}
		}
		if err == io.EOF {
			_, werr := bw.WriteString("0\r\n\r\n")
			return werr
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errReqBody, err)
		}
	}
}

// respond streams resp to w, then pools or closes the connection; stop
// ends the exchange's cancellation watcher (false: it fired).
func (u *upstream) respond(w http.ResponseWriter, r *http.Request, uc *upConn, resp *http.Response, stop func() bool) {
	// A panic of w (http.ErrAbortHandler, say) must not leak the
	// connection and its slot.
	settled := false
	defer func() {
		if !settled {
			stop()
			uc.close()
		}
	}()
	dst := w.Header()
	_, conn := resp.Header["Connection"]
	for k, vs := range resp.Header {
		// Fields the Connection header names are hop-by-hop too.
		if hopHeaders[k] || conn && httpHeaderHasToken(resp.Header, "Connection", k) {
			continue
		}
		dst[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	bp := bufPool.Get().(*[]byte)
	var err error
	if resp.ContentLength != 0 && r.Method != http.MethodHead {
		var out io.Writer = writerOnly{w}
		var sw *stallWriter
		if r.ProtoMajor == 2 && u.stall > 0 {
			sw = &stallWriter{w: w, rc: http.NewResponseController(w), t: u.stall}
			out = sw
		}
		if resp.ContentLength < 0 {
			err = copyFlushing(out, w, resp.Body, *bp)
		} else {
			_, err = io.CopyBuffer(out, resp.Body, *bp)
		}
		if sw != nil && err == nil {
			sw.rc.SetWriteDeadline(time.Time{}) // the body is out; the stream ends normally
		}
	}
	bufPool.Put(bp)
	cut := !stop()
	settled = true
	// Bytes already read past the response were not asked for (a wrong
	// Content-Length, a body on a 204 or to a HEAD): pooled, the next call
	// would take them for its response.
	if err != nil || cut || resp.Close || r.Close || uc.br.Buffered() > 0 {
		// Closed before the body: Body.Close of an http.ReadResponse body
		// reads what is left of it to its end (a stream never ends).
		uc.close()
		resp.Body.Close()
		if err != nil {
			// The status line is out: the only honest signal left is to
			// abort the client's stream.
			panic(http.ErrAbortHandler)
		}
		return
	}
	resp.Body.Close()
	u.put(uc)
}

// writerOnly hides ReadFrom so io.CopyBuffer uses our pooled buffer.
type writerOnly struct{ io.Writer }

// stallWriter bounds each wait of an HTTP/2 response write by the
// write-stall timeout, as the HTTP/1 loop does on its connection: a peer
// that stops reading a stream (its flow-control window stays shut) has the
// stream reset instead of holding the handler and its upstream connection,
// one of the MaxConnsPerHost slots every peer shares, for good. The
// deadline follows progress and is moved at most every eighth of the
// timeout.
type stallWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	t    time.Duration
	pace stallDeadline
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if dl, ok := s.pace.due(s.t); ok {
		s.rc.SetWriteDeadline(dl)
	}
	return s.w.Write(p)
}

// copyFlushing copies a body of unknown length to out, flushing w after
// every read so streamed responses (server-sent events, long polls) are
// not held.
func copyFlushing(out io.Writer, w http.ResponseWriter, src io.Reader, buf []byte) error {
	f, _ := w.(http.Flusher)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return werr
			}
			if f != nil {
				f.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
