package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Server serves HTTP/1.x on the proxy's listeners: one goroutine per
// connection that reads a request, runs the handler and writes the response
// itself. net/http's server spends more CPU per request than the rest of
// the hot path together (a background reader goroutine per request, a
// context chain, several deadline changes); this loop keeps net/http's
// request parser (http.ReadRequest), its limits and its error answers, and
// drops the rest. HTTP/2 stays on net/http.
//
// A client that disconnects while its request is being forwarded is noticed
// when the response is written (or its body read), not earlier: the
// upstream call is bounded by Limits.BackendTimeout.
type h1Server struct {
	handler http.Handler
	limits  Limits
	log     *slog.Logger
	// connCtx returns the base context of a new connection (inbound: the
	// verified peer identity).
	connCtx func(c net.Conn) context.Context
	// onIdle runs after each response; onClose once the connection ends or
	// is hijacked.
	onIdle, onClose func(c net.Conn)

	mu      sync.Mutex
	conns   map[*srvConn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// srvConn is one served connection.
type srvConn struct {
	srv    *h1Server
	c      net.Conn
	lr     limitReader
	br     *bufio.Reader
	bw     *bufio.Writer // from writerPool while a request is served
	cancel context.CancelFunc
	idle   atomic.Bool
	fresh  atomic.Bool // no request has started yet
	born   time.Time
	remote string
	raw    []byte        // header block of a request that arrived in pieces
	wstall stallDeadline // the write deadline's pacing (see Write)
	// linger: the connection is closed after a response while the client
	// may still be sending (an error answer, a body left unread).
	linger bool
}

// Lingering close bounds: how long, in all and without a byte, the client's
// remaining input is read and discarded after a half-close.
const (
	lingerTotal = 2 * time.Second
	lingerQuiet = 500 * time.Millisecond
)

// lingerClose half-closes the connection (TLS close_notify, then the TCP
// FIN after the response) and reads and discards what the client is still
// sending until it closes its side, goes quiet, or lingerTotal ends, so
// that the final close does not reset the connection while the response
// may still be unread or in flight: closing a socket with unread input
// makes the kernel send a reset, and a reset can destroy data the client
// has not yet received (RFC 9112 9.6). The caller closes the connection.
func (sc *srvConn) lingerClose() {
	c := sc.c
	if tc, ok := c.(*tls.Conn); ok {
		// crypto/tls gives the close_notify write a 5 s deadline of its
		// own (a deadline set before is replaced), and a Close (shutdown's
		// closeAll) waits for that write: a client that does not read
		// would hold the connection, and shutdown, that long. The raw
		// connection's write deadline is cut after lingerQuiet instead.
		raw := tc.NetConn()
		cut := time.AfterFunc(lingerQuiet, func() { raw.SetWriteDeadline(time.Unix(1, 0)) })
		err := tc.CloseWrite()
		cut.Stop()
		if err != nil {
			return
		}
		c = raw
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(lingerTotal)
	buf := make([]byte, 16<<10)
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		d := now.Add(lingerQuiet)
		if d.After(end) {
			d = end
		}
		c.SetReadDeadline(d)
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// Write sends response bytes to the client (sc.bw writes here). Each write
// may wait for the client to take bytes for at most
// Limits.WriteStallTimeout: a client that stops reading is cut instead of
// holding its connection and goroutine (a slow-read attack). The deadline
// follows progress, so a long response to a client that keeps reading is
// not cut; it is moved at most every eighth of the timeout, not per write.
func (sc *srvConn) Write(p []byte) (int, error) {
	if dl, ok := sc.wstall.due(sc.srv.limits.WriteStallTimeout); ok {
		sc.c.SetWriteDeadline(dl)
	}
	return sc.c.Write(p)
}

// stallDeadline paces a write deadline that follows progress (the
// write-stall timeout of HTTP/1 connections and HTTP/2 streams): due
// returns a new deadline t from now when the last was set more than an
// eighth of t ago, so a write always has at least 7/8 of t and the
// deadline is not moved per write.
type stallDeadline struct{ set time.Time }

func (d *stallDeadline) due(t time.Duration) (time.Time, bool) {
	if t <= 0 {
		return time.Time{}, false
	}
	now := time.Now()
	if now.Sub(d.set) <= t/8 {
		return time.Time{}, false
	}
	d.set = now
	return now.Add(t), true
}

// limitReader caps what a header parser may read: a request head on a
// served connection (MaxHeaderBytes plus net/http's 4 KiB of slack), a
// response head on an upstream one (maxResponseHead). MaxInt64 lifts it.
type limitReader struct {
	r      io.Reader
	remain int64
	tee    *[]byte // when set, a copy of what is read (a header not yet buffered)
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.remain <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.r.Read(p)
	l.remain -= int64(n)
	if l.tee != nil {
		*l.tee = append(*l.tee, p[:n]...)
	}
	return n, err
}

var errHeaderTooLarge = errors.New("header too large")

func newH1Server(h http.Handler, l Limits, log *slog.Logger) *h1Server {
	return &h1Server{handler: h, limits: l, log: log, conns: map[*srvConn]struct{}{}}
}

// serve accepts on ln until it is closed.
func (s *h1Server) serve(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if acceptPause(err, &backoff) {
				continue
			}
			return
		}
		backoff = 0
		s.serveConn(c)
	}
}

// serveConn serves c on a new goroutine; it closes c when the server is
// shutting down.
func (s *h1Server) serveConn(c net.Conn) {
	base := context.Background()
	if s.connCtx != nil {
		base = s.connCtx(c)
	}
	ctx, cancel := context.WithCancel(base)
	sc := &srvConn{srv: s, c: c, cancel: cancel, remote: c.RemoteAddr().String(), born: time.Now()}
	sc.fresh.Store(true)
	sc.lr.r = c
	sc.br = bufio.NewReaderSize(&sc.lr, 4<<10)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		cancel()
		c.Close()
		if s.onClose != nil {
			s.onClose(c)
		}
		return
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go sc.serve(ctx)
}

func (s *h1Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// freshGrace is how long shutdown lets a new connection send its first
// request (net/http: 5 s): its client has just connected and its request
// may be on the way; it is answered with Connection: close.
const freshGrace = 5 * time.Second

// shutdown stops taking requests: idle connections are closed at once (new
// ones after freshGrace), busy ones after their response. It waits for them
// until ctx is done, then closes the rest (their requests' contexts are
// cancelled).
func (s *h1Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		for sc := range s.conns {
			if sc.idle.Load() && (!sc.fresh.Load() || time.Since(sc.born) > freshGrace) {
				closeTransport(sc.c)
			}
		}
		s.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			// Closed connections and cancelled contexts end every
			// handler of this package at once; a second is left for
			// them, then shutdown returns regardless (as net/http does).
			s.closeAll()
			select {
			case <-done:
			case <-time.After(time.Second):
				s.log.Warn("HTTP/1 connections still busy after shutdown closed them")
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeAll closes every connection and cancels its requests.
func (s *h1Server) closeAll() {
	s.mu.Lock()
	s.closing = true
	for sc := range s.conns {
		sc.cancel()
		closeTransport(sc.c)
	}
	s.mu.Unlock()
}

// closeTransport closes the connection underneath a TLS connection (or c
// itself) for shutdown: a TLS Close first writes the close_notify alert,
// which crypto/tls lets wait 5 s for a client that does not read, under
// the server's lock. The connection's goroutine then ends and its own
// Close finds the transport closed at once.
func closeTransport(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	c.Close()
}

func (sc *srvConn) forget() {
	s := sc.srv
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	sc.cancel()
	if s.onClose != nil {
		s.onClose(sc.c)
	}
	s.wg.Done()
}

func (sc *srvConn) serve(ctx context.Context) {
	hijacked := false
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			sc.srv.log.Error("panic serving HTTP/1 request", "remote", sc.remote, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
		if !hijacked {
			if sc.linger {
				sc.lingerClose()
			}
			sc.c.Close()
			sc.releaseWriter()
		}
		sc.forget()
	}()
	l := sc.srv.limits
	for n := 0; ; n++ {
		// Wait for the next request: the header timeout bounds the first
		// (slowloris), the idle timeout the wait between requests.
		wait := l.ReadHeaderTimeout
		if n > 0 {
			wait = l.IdleTimeout
		}
		sc.idle.Store(true)
		if n > 0 && sc.srv.shuttingDown() {
			return
		}
		if sc.br.Buffered() == 0 {
			if wait > 0 {
				sc.c.SetReadDeadline(time.Now().Add(wait))
			} else if n > 0 {
				sc.c.SetReadDeadline(time.Time{}) // a body deadline may be left
			}
		}
		sc.lr.remain = int64(l.MaxHeaderBytes) + 4096
		if _, err := sc.br.Peek(1); err != nil {
			return
		}
		sc.idle.Store(false)
		sc.fresh.Store(false)
		sc.bw = writerPool.Get().(*bufio.Writer)
		sc.bw.Reset(sc)
		start := time.Now()
		// The raw header block: net/http's parser drops a Content-Length
		// next to Transfer-Encoding (and ignores Transfer-Encoding in
		// HTTP/1.0), so the framing fields are looked for here first.
		buf, _ := sc.br.Peek(sc.br.Buffered())
		end := headerEnd(buf)
		var f framing
		if end >= 0 {
			f = rawFraming(buf[:end])
		} else {
			// The header is still arriving: one header timeout from its
			// first byte, and a copy of it for the framing check.
			if n > 0 {
				if l.ReadHeaderTimeout > 0 {
					sc.c.SetReadDeadline(start.Add(l.ReadHeaderTimeout))
				} else {
					sc.c.SetReadDeadline(time.Time{})
				}
			}
			sc.raw = append(sc.raw[:0], buf...)
			sc.lr.tee = &sc.raw
		}
		r, err := http.ReadRequest(sc.br)
		if sc.lr.tee != nil {
			sc.lr.tee = nil
			if e := headerEnd(sc.raw); e >= 0 {
				f = rawFraming(sc.raw[:e])
			}
			if cap(sc.raw) > 16<<10 {
				sc.raw = nil
			}
		}
		if err != nil {
			// Before the limit is lifted: a header cut at the limit
			// often fails as a malformed line, not as the limit's error.
			sc.badRequest(err)
			return
		}
		sc.lr.remain = math.MaxInt64
		if code, msg := checkRequest(r); code != 0 {
			sc.replyError(code, msg)
			return
		}
		if f.known && !f.host && r.ProtoAtLeast(1, 1) && r.Method != http.MethodConnect {
			// RFC 9112 3.2: an HTTP/1.1 request without a Host field is
			// refused, also in absolute form (ReadRequest takes the host
			// from the URI and drops the Host field, so only the raw
			// block tells).
			sc.replyError(http.StatusBadRequest, "missing required Host header")
			return
		}
		if f.badHost {
			// The same section: nor with an invalid Host field value
			// (net/http checks the field, not the target's host).
			sc.replyError(http.StatusBadRequest, "malformed Host header")
			return
		}
		if f.te && !r.ProtoAtLeast(1, 1) {
			// RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding
			// has faulty framing.
			sc.replyError(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
			return
		}
		w := &h1Response{sc: sc, req: r, header: make(http.Header, 8), cl: -1}
		if f.te && f.cl {
			// RFC 9112 6.3: the body is read as chunked (ReadRequest did
			// that) and the connection closed after the response; the
			// handler may refuse the request outright (LengthConflict).
			w.lengthConflict, w.closeAfter = true, true
		}
		body := r.Body != http.NoBody
		if body {
			if l.ReadTimeout > 0 {
				sc.c.SetReadDeadline(start.Add(l.ReadTimeout))
			} else {
				sc.c.SetReadDeadline(time.Time{})
			}
		}
		if ev, ok := r.Header["Expect"]; ok && r.ProtoAtLeast(1, 1) {
			if len(ev) != 1 || !strings.EqualFold(ev[0], "100-continue") {
				sc.replyError(http.StatusExpectationFailed, "unsupported Expect header")
				return
			}
			w.expect = body
			delete(r.Header, "Expect")
		}
		if body {
			w.body.rc, w.body.w = r.Body, w
			r.Body = &w.body
		}
		r.RemoteAddr = sc.remote
		sc.srv.handler.ServeHTTP(w, r.WithContext(ctx))
		if w.hijacked {
			hijacked = true
			return
		}
		keep := w.finish()
		if keep {
			sc.releaseWriter()
		}
		if sc.srv.onIdle != nil {
			sc.srv.onIdle(sc.c)
		}
		if !keep {
			return
		}
	}
}

// writerPool holds the response buffers of connections between requests:
// an idle keep-alive connection does not keep one (4 KiB each).
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// releaseWriter returns the connection's response buffer to the pool (it
// was flushed, or the connection is closed).
func (sc *srvConn) releaseWriter() {
	if sc.bw != nil {
		sc.bw.Reset(nil)
		writerPool.Put(sc.bw)
		sc.bw = nil
	}
}

// headerEnd returns the length of the header block at the start of b (up
// to its empty line, CRLF or bare LF as textproto accepts), or -1 when b
// does not hold all of it.
func headerEnd(b []byte) int {
	end := -1
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
		end = i + 3
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 && (end < 0 || i+2 < end) {
		end = i + 2
	}
	return end
}

// framing says which message-length fields, and whether a Host field, a
// raw header block has (known: the block was looked at); badHost: a request
// whose target is not in origin form has a Host field with an invalid value.
type framing struct{ known, cl, te, host, badHost bool }

// rawFraming looks for Content-Length and Transfer-Encoding fields in a
// raw header block (the request line is skipped), and for the Host field.
func rawFraming(hdr []byte) framing {
	f := framing{known: true}
	// A target not in origin form ("/..."): ReadRequest takes the host from
	// it and drops the Host field, whose value is then only checked here.
	sp := bytes.IndexByte(hdr, ' ')
	checkHost := sp >= 0 && sp+1 < len(hdr) && hdr[sp+1] != '/'
	for {
		i := bytes.IndexByte(hdr, '\n')
		if i < 0 {
			return f
		}
		hdr = hdr[i+1:]
		if len(hdr) == 0 {
			return f
		}
		switch hdr[0] | 0x20 {
		case 'c':
			f.cl = f.cl || hasFoldPrefix(hdr, "content-length:")
		case 't':
			f.te = f.te || hasFoldPrefix(hdr, "transfer-encoding:")
		case 'h':
			if hasFoldPrefix(hdr, "host:") {
				f.host = true
				if checkHost && !validHostField(hdr[len("host:"):]) {
					f.badHost = true
				}
			}
		}
	}
}

// validHostField reports whether the value of a raw Host field line (b:
// what follows the colon) is a valid host, as textproto trims it.
func validHostField(b []byte) bool {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return httpguts.ValidHostHeader(string(bytes.Trim(b, " \t")))
}

func hasFoldPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// checkRequest applies the checks net/http's server makes after parsing
// (Host header, header field syntax, protocol version); it returns the
// status and reason of a refusal, or 0.
func checkRequest(r *http.Request) (int, string) {
	if r.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	// ReadRequest has moved the Host header to r.Host (or taken the host
	// of an absolute-form target) and refused a repeated one.
	switch {
	case r.Host == "" && r.ProtoAtLeast(1, 1) && r.Method != http.MethodConnect:
		return http.StatusBadRequest, "missing required Host header"
	case !httpguts.ValidHostHeader(r.Host):
		return http.StatusBadRequest, "malformed Host header"
	}
	// textproto lets some invalid field names and values through (a
	// space in a name, for one); net/http's server checks them again.
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	return 0, ""
}

// badRequest answers a request that could not be parsed, as net/http does:
// 431 for an oversized header, 501 for an unknown or repeated transfer
// coding, nothing for a connection that closed or timed out, 400 otherwise.
func (sc *srvConn) badRequest(err error) {
	var ne net.Error
	switch {
	case sc.lr.remain <= 0 || errors.Is(err, errHeaderTooLarge):
		sc.replyError(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
	case strings.Contains(err.Error(), "unsupported transfer encoding"), strings.Contains(err.Error(), "too many transfer encodings"):
		sc.replyError(http.StatusNotImplemented, "unsupported transfer encoding")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne), errors.Is(err, net.ErrClosed):
	default:
		sc.replyError(http.StatusBadRequest, "malformed request")
	}
}

// replyError writes a plain-text error and marks the connection for close.
func (sc *srvConn) replyError(code int, msg string) {
	sc.linger = true
	body := strconv.Itoa(code) + " " + http.StatusText(code) + ": " + msg + "\n"
	// One second (or the stall timeout, if shorter); marking it set keeps
	// Write from moving this deadline to a full stall timeout.
	d := time.Second
	if t := sc.srv.limits.WriteStallTimeout; t > 0 && t < d {
		d = t
	}
	now := time.Now()
	sc.wstall.set = now
	sc.c.SetWriteDeadline(now.Add(d))
	fmt.Fprintf(sc.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
	sc.bw.Flush()
}

// h1Response is the http.ResponseWriter of one request. The head is held
// until the handler flushes, writes more than 4 KiB, or returns; then the
// body is framed by the handler's Content-Length, by the size of what it
// wrote (when it returned first), or chunked.
type h1Response struct {
	sc         *srvConn
	req        *http.Request
	header     http.Header
	status     int
	committed  bool
	chunked    bool
	noBody     bool
	closeAfter bool
	hijacked   bool
	// lengthConflict: the request had both Content-Length and
	// Transfer-Encoding (see LengthConflict).
	lengthConflict bool
	cl             int64  // declared Content-Length, -1 if none
	clHeader       string // its header value, as declared
	written        int64
	buf            []byte // body written before the head was committed
	body           h1Body // the request body, if there is one (body.rc != nil)
	expect         bool   // the client waits for "100 Continue" to send the body

	// contMu orders the automatic "100 Continue", written by whichever
	// goroutine first reads the body, with the handler's own writes;
	// noContinue is set once the final response or a hijack is decided.
	contMu     sync.Mutex
	noContinue bool
}

func (w *h1Response) Header() http.Header { return w.header }

// LengthConflict reports whether the request carried both Content-Length
// and Transfer-Encoding (request smuggling's usual form); the connection is
// closed after the response either way.
func (w *h1Response) LengthConflict() bool { return w.lengthConflict }

func (w *h1Response) WriteHeader(code int) {
	if w.committed || w.status != 0 || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Interim response: written at once, the final one follows.
		if w.expect {
			w.contMu.Lock()
			defer w.contMu.Unlock()
			w.noContinue = w.noContinue || code == http.StatusContinue
		}
		bw := w.sc.bw
		writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), code)
		writeHeaderLines(bw, w.header)
		bw.WriteString("\r\n")
		bw.Flush()
		return
	}
	w.stopContinue()
	w.status = code
	if v := w.header.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			delete(w.header, "Content-Length")
		} else {
			w.cl, w.clHeader = n, v
		}
	}
	m := w.req.Method
	w.noBody = m == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
}

func (w *h1Response) Write(b []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(b), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(b)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(b))
	if !w.committed {
		if w.cl >= 0 || len(w.buf)+len(b) > 4<<10 {
			if err := w.commit(false); err != nil {
				return 0, err
			}
		} else {
			w.buf = append(w.buf, b...)
			return len(b), nil
		}
	}
	return w.writeBody(b)
}

func (w *h1Response) writeBody(b []byte) (int, error) {
	bw := w.sc.bw
	if w.chunked {
		if len(b) == 0 {
			return 0, nil
		}
		bw.WriteString(strconv.FormatInt(int64(len(b)), 16))
		bw.WriteString("\r\n")
		n, err := bw.Write(b)
		bw.WriteString("\r\n")
		return n, err
	}
	return bw.Write(b)
}

// Flush sends the head and what the handler has written so far.
func (w *h1Response) Flush() {
	if w.hijacked {
		return
	}
	if !w.committed {
		if w.status == 0 {
			w.WriteHeader(http.StatusOK)
		}
		if w.commit(false) != nil {
			return
		}
	}
	w.sc.bw.Flush()
}

// commit writes the status line and header; done says the handler has
// returned (so the body is all in buf).
func (w *h1Response) commit(done bool) error {
	w.committed = true
	h := w.header
	switch {
	case w.noBody:
		if w.status == http.StatusNoContent || w.status == http.StatusNotModified || w.status < 200 {
			delete(h, "Content-Length")
		}
	case w.cl >= 0:
		// The length declared at WriteHeader frames the body: header
		// changes after it must have no effect (http.ResponseWriter).
		if vs := h["Content-Length"]; len(vs) != 1 || vs[0] != w.clHeader {
			h["Content-Length"] = []string{w.clHeader}
		}
	case done && (!hasTrailers(h) || !w.req.ProtoAtLeast(1, 1)):
		w.cl = int64(len(w.buf))
		h["Content-Length"] = []string{strconv.Itoa(len(w.buf))}
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		delete(h, "Content-Length") // set after WriteHeader
	default:
		w.closeAfter = true // HTTP/1.0, unknown length: the close ends it
		delete(h, "Content-Length")
	}
	if w.req.Close || w.sc.srv.shuttingDown() || httpHeaderHasToken(h, "Connection", "close") {
		w.closeAfter = true
	}
	if w.body.rc != nil && w.body.undrainable() {
		// The rest of the request body will not be read after the
		// handler: the head says the connection closes (as net/http).
		w.closeAfter = true
	}
	delete(h, "Transfer-Encoding")
	delete(h, "Connection")
	bw := w.sc.bw
	writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), w.status)
	writeHeaderLines(bw, h)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case !w.req.ProtoAtLeast(1, 1):
		bw.WriteString("Connection: keep-alive\r\n")
	}
	_, err := bw.WriteString("\r\n")
	if len(w.buf) > 0 {
		b := w.buf
		w.buf = nil
		_, err = w.writeBody(b)
	}
	return err
}

// finish completes the response after the handler returned and reports
// whether the connection can take another request.
func (w *h1Response) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		// A request body that will not be drained closes the
		// connection: the head says so.
		if w.body.rc != nil && !w.body.drainable() {
			w.closeAfter = true
		}
		w.commit(true)
	}
	bw := w.sc.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		writeTrailers(bw, w.header)
		bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	if w.cl >= 0 && !w.noBody && w.written != w.cl {
		return false // the handler wrote less than it declared
	}
	if w.closeAfter {
		// The client may still be sending (a body not read to its end,
		// a request with conflicting framing).
		w.sc.linger = w.body.rc != nil && w.body.unread() || w.lengthConflict
		return false
	}
	if !w.drainBody() {
		w.sc.linger = true
		return false
	}
	return true
}

// drainBody reads what the handler left of the request body so the next
// request can be parsed; more than maxDrain closes the connection instead.
func (w *h1Response) drainBody() bool {
	return w.body.rc == nil || w.body.drain()
}

// Hijack hands the connection to the handler (protocol upgrades through
// httputil.ReverseProxy); deadlines are cleared.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.committed {
		return nil, nil, errors.New("hijack after the response started")
	}
	w.stopContinue()
	c := w.sc.c
	// The handler owns the connection now: its writes are not bounded by
	// the stall deadline (cleared below), and nothing written before is
	// dropped. If that cannot be flushed, the connection stays with the
	// server, which closes it.
	if err := w.sc.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	w.sc.bw.Reset(c)
	c.SetDeadline(time.Time{})
	w.sc.lr.remain = math.MaxInt64
	return c, bufio.NewReadWriter(w.sc.br, w.sc.bw), nil
}

// sendContinue writes "100 Continue" unless the final response, a hijack
// or an earlier one came first.
func (w *h1Response) sendContinue() error {
	w.contMu.Lock()
	defer w.contMu.Unlock()
	if w.noContinue {
		return nil
	}
	w.noContinue = true
	bw := w.sc.bw
	bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return bw.Flush()
}

// stopContinue keeps the body's reader from writing "100 Continue": the
// handler is about to write to the connection itself.
func (w *h1Response) stopContinue() {
	if w.expect {
		w.contMu.Lock()
		w.noContinue = true
		w.contMu.Unlock()
	}
}

// h1Body is the request body the handler reads; the first read sends
// "100 Continue" to a client that waits for it. Close only ends reading:
// closing the body http.ReadRequest returns reads it to its end, however
// long (only net/http's server can make it stop early), and a closed body
// cannot be drained after the handler, so the connection was lost too.
// mu orders reads with Close and that drain: a read may run on another
// goroutine (the transport under httputil.ReverseProxy) and outlive the
// handler, as net/http allows.
type h1Body struct {
	mu     sync.Mutex
	rc     io.ReadCloser
	w      *h1Response
	n      int64 // bytes read
	closed bool
	eof    bool
}

// maxDrain is how much of a request body the handler left unread is read
// and discarded to keep the connection (net/http's limit).
const maxDrain = 256 << 10

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.w.expect {
		if err := b.w.sendContinue(); err != nil {
			return 0, err
		}
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// drain ends reading, reads what is left of the body (at most maxDrain)
// and reports whether the body was read to its end.
func (b *h1Body) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if !b.eof && b.drainableLocked() {
		// Without a ReadTimeout the drain is bounded by the header
		// timeout: a client that declares a body and never sends it does
		// not hold the connection past the limits a new request has.
		if l := b.w.sc.srv.limits; l.ReadTimeout <= 0 && l.ReadHeaderTimeout > 0 {
			b.w.sc.c.SetReadDeadline(time.Now().Add(l.ReadHeaderTimeout))
		}
		_, err := io.CopyN(io.Discard, b.rc, maxDrain+1)
		b.eof = err == io.EOF
	}
	return b.eof
}

// undrainable reports whether the body is known to be left unread beyond
// what drain would read. A body being read right now (by a goroutine of the
// handler) is not waited for: the answer is then false.
func (b *h1Body) undrainable() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return !b.eof && !b.drainableLocked()
}

// unread reports whether the body may not have been read to its end (true
// while it is being read).
func (b *h1Body) unread() bool {
	if !b.mu.TryLock() {
		return true
	}
	defer b.mu.Unlock()
	return !b.eof
}

// drainable reports whether the body was read to its end or drain may
// succeed: what is left is not declared longer than maxDrain, and the
// client did not wait for "100 Continue" (it may or may not send what the
// handler did not read).
func (b *h1Body) drainable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.drainableLocked()
}

func (b *h1Body) drainableLocked() bool {
	cl := b.w.req.ContentLength
	return b.eof || !b.w.expect && (cl < 0 || cl-b.n <= maxDrain)
}

func writeStatusLine(bw *bufio.Writer, is11 bool, code int) {
	if is11 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	if t := http.StatusText(code); t != "" {
		bw.WriteString(t)
	} else {
		bw.WriteString("status code " + strconv.Itoa(code))
	}
	bw.WriteString("\r\n")
}

// writeHeaderLines writes h (values with CR or LF have them replaced by
// spaces, as net/http does; keys net/http would refuse are skipped).
func writeHeaderLines(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(strings.TrimSpace(v))
			bw.WriteString("\r\n")
		}
	}
}

// hasTrailers reports whether the handler declared or set trailers: only a
// chunked body carries them, so a short body is not given a length then.
func hasTrailers(h http.Header) bool {
	if _, ok := h["Trailer"]; ok {
		return true
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// writeTrailers writes the trailers a handler set after the head: keys
// declared in the Trailer header, and keys with http.TrailerPrefix.
func writeTrailers(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok {
			continue
		}
		writeHeaderLines(bw, http.Header{http.CanonicalHeaderKey(name): vs})
	}
	for _, decl := range h["Trailer"] {
		for t := range strings.SplitSeq(decl, ",") {
			k := http.CanonicalHeaderKey(strings.TrimSpace(t))
			if vs, ok := h[k]; ok && k != "" {
				writeHeaderLines(bw, http.Header{k: vs})
			}
		}
	}
}

// httpDate is the current time in IMF-fixdate, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &cachedDate{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

// acceptPause sleeps and reports true after a transient Accept error (a
// timeout, or out of file descriptors), backing off from 5 ms to 1 s.
func acceptPause(err error, backoff *time.Duration) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		*backoff = min(max(2**backoff, 5*time.Millisecond), time.Second)
		time.Sleep(*backoff)
		return true
	}
	return false
}
