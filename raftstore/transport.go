package raftstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ALPN protocols spoken on the raft listener. A connection that negotiates
// neither is closed after the handshake.
const (
	ProtoRaft = "fedgate-raft/1"
	ProtoRPC  = "fedgate-rpc/1"
)

// NodeURIPrefix is the URI SAN every site node certificate carries
// (powernode://instance/<uuid>); the listener and the dialer refuse a
// peer certificate without one.
const NodeURIPrefix = "powernode://instance/"

const handshakeTimeout = 5 * time.Second

// mux owns the TLS listener and splits accepted connections by ALPN into
// the raft stream layer and the forwarding RPC server.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config
	clientTLS *tls.Config
	log       *slog.Logger
	metrics   *metrics

	raftCh   chan net.Conn
	rpcServe func(net.Conn)

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // RPC conns, closed on shutdown
}

func newMux(bind, advertise string, serverTLS, clientTLS *tls.Config, log *slog.Logger, m *metrics) (*mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", bind, err)
	}
	var adv net.Addr = ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertise address %q: %w", advertise, err)
		}
		adv = a
	} else if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("%w: bind_addr %s is unspecified; set advertise_addr", ErrInvalidConfig, bind)
	}
	st := serverTLS.Clone()
	adapt := func(c *tls.Config) {
		c.NextProtos = []string{ProtoRaft, ProtoRPC}
		if c.MinVersion < tls.VersionTLS13 {
			c.MinVersion = tls.VersionTLS13
		}
	}
	adapt(st)
	// A per-handshake config (the pki package pins the served certificate
	// this way) must carry our ALPN protocols too.
	if orig := st.GetConfigForClient; orig != nil {
		st.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := orig(hi)
			if err != nil || c == nil {
				return c, err
			}
			c = c.Clone()
			adapt(c)
			return c, nil
		}
	}
	ct := clientTLS.Clone()
	if ct.MinVersion < tls.VersionTLS13 {
		ct.MinVersion = tls.VersionTLS13
	}
	return &mux{
		ln: ln, advertise: adv, serverTLS: st, clientTLS: ct, log: log, metrics: m,
		raftCh: make(chan net.Conn), closed: make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}, nil
}

func (m *mux) start(rpcServe func(net.Conn)) {
	m.rpcServe = rpcServe
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			m.log.Warn("raft listener accept failed", "error", err)
			select {
			case <-m.closed:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		m.wg.Add(1)
		go m.handshake(c)
	}
}

// handshake runs the TLS handshake off the accept loop, checks the peer's
// node certificate and hands the connection on by ALPN.
func (m *mux) handshake(raw net.Conn) {
	defer m.wg.Done()
	tc := tls.Server(raw, m.serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err == nil {
		err = checkNodeCert(tc.ConnectionState().PeerCertificates)
	}
	if err != nil {
		m.metrics.handshakeFailures.Inc()
		m.log.Warn("raft listener refused connection", "remote", raw.RemoteAddr().String(), "error", err)
		tc.Close()
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case ProtoRaft:
		select {
		case m.raftCh <- tc:
		case <-m.closed:
			tc.Close()
		}
	case ProtoRPC:
		if !m.track(tc) {
			tc.Close()
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer m.untrack(tc)
			m.rpcServe(tc)
		}()
	default:
		m.metrics.handshakeFailures.Inc()
		m.log.Warn("raft listener refused connection without a fedgate ALPN protocol", "remote", raw.RemoteAddr().String())
		tc.Close()
	}
}

func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		return false
	default:
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
	c.Close()
}

// checkNodeCert requires a site node certificate: the chain was verified by
// the TLS config; this adds that the leaf names a node instance.
func checkNodeCert(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no peer certificate")
	}
	for _, u := range chain[0].URIs {
		if s := u.String(); len(s) > len(NodeURIPrefix) && s[:len(NodeURIPrefix)] == NodeURIPrefix {
			return nil
		}
	}
	return fmt.Errorf("peer certificate %q has no %s URI SAN", chain[0].Subject.CommonName, NodeURIPrefix)
}

// dial opens a mutually authenticated TLS connection to addr speaking proto.
func (m *mux) dial(ctx context.Context, addr, proto string) (*tls.Conn, error) {
	cfg := m.clientTLS.Clone()
	cfg.NextProtos = []string{proto}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 15 * time.Second}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	tc := c.(*tls.Conn)
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != proto {
		tc.Close()
		return nil, fmt.Errorf("dial %s: server did not negotiate %s", addr, proto)
	}
	if err := checkNodeCert(st.PeerCertificates); err != nil {
		tc.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return tc, nil
}

// close stops the listener, closes the RPC connections and waits for the
// mux's goroutines.
func (m *mux) close() {
	m.shut()
	m.wg.Wait()
}

// shut is close without waiting (Isolate must not wait for a handler that
// is blocked on a stalled disk).
func (m *mux) shut() {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.ln.Close()
		m.mu.Lock()
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
	})
}

// streamLayer is the raft.StreamLayer half of the mux.
type streamLayer struct {
	m         *mux
	closeOnce sync.Once
	closed    chan struct{}
	conns     connSet
}

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	tc := &trackedConn{Conn: c, set: &s.conns}
	if err := s.conns.add(tc); err != nil {
		return nil, err
	}
	return tc, nil
}

// isolate closes every raft connection and refuses new ones.
func (s *streamLayer) isolate() {
	s.conns.closeAll()
	s.Close()
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(m *mux) *streamLayer { return &streamLayer{m: m, closed: make(chan struct{})} }

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftCh:
		return s.track(c)
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.m.closed:
		return nil, net.ErrClosed
	}
}

// Close stops raft's accept loop; the listener itself is closed by the
// Store (it also carries the RPC).
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.m.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.m.dial(ctx, string(addr), ProtoRaft)
	if err != nil {
		return nil, err
	}
	return s.track(c)
}
