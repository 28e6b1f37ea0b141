package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/nstest"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/proxy"
)

// The proxy probe. Every chaos node runs fedgate's inbound proxy (mTLS) on
// 0.0.0.0:8443 with one L7 route to a backend on 127.0.0.1:18080 in its own
// namespace; the backend names the node. A second site, a single-node
// fedgated in the client namespace, is federated with the chaos site
// through the real lifecycle (the chaos site invites, the second site
// accepts; handshakes and heartbeats make both sides active). The prober
// presents that second site's own federation certificate (issued by its CA,
// which the chaos site accepted) and asks https://VIP:8443 every 20 ms who
// answers.
//
// Each probe is a new TCP connection and a new TLS session (resumed when
// the same node issued the ticket): "who answers the VIP" is what a fresh
// client gets now. A kept-alive connection would stay pinned to the node
// that accepted it (or hang on a frozen one) and measure how long a dead
// connection takes to notice, not where the VIP is. Probes run in a small
// pool of workers, each locked into the client namespace, so a probe that
// waits out its 250 ms timeout on a frozen node does not stretch the 20 ms
// cadence; samples are kept in start order.

const (
	chaosProxyPort    = 8443
	chaosBackendPort  = 18080
	chaosPeerIP       = chaosClientIP // the second site runs in the client namespace
	proxyProbeEvery   = 20 * time.Millisecond
	proxyProbeTimeout = 250 * time.Millisecond
	proxyProbeWorkers = 16
	proxyProbePath    = "/v1/workspaces/probe"
	// headerProbePeer is the backend's echo of the X-Federation-Peer-Id
	// the proxy set: the prober counts an answer only when it is the
	// identity the chaos site gave the second site.
	headerProbePeer = "X-Probe-Peer"
)

// chaosSiteYAML is the proxy and lifecycle part of every chaos node's
// config. The lifecycle listeners bind the VIP itself, as an operator would
// configure them: every node listens on it from start-up (IP_FREEBIND)
// although only the holder has the address. The proxy inbound binds
// 0.0.0.0 so settle can also ask each node's proxy on the node's own
// address; peers are told the VIP.
func chaosSiteYAML() string {
	return fmt.Sprintf(`proxy:
  inbound: 0.0.0.0:%d
  resource_kinds: [workspace]
  routes:
    - name: probe
      path_prefix: /
      backend: http://127.0.0.1:%d
      resource_kind: workspace
lifecycle:
  bootstrap_listen: %s:7443
  bootstrap_advertise: %s:7443
  listen: %s:7444
  advertise: %s:7444
  operator_contact: ops@chaos-site.example
  jurisdiction: EU
  last_known_good_release: v1.0.0
  data_residency: eu-west
  heartbeat_interval: 10s
  stale_after: 5m
  heartbeat_rate: 1
  heartbeat_burst: 10
  endpoints:
    - url: https://%s:%d
      scope: lan
      priority: 1
`, chaosProxyPort, chaosBackendPort, chaosVIP, chaosVIP, chaosVIP, chaosVIP, chaosVIP, chaosProxyPort)
}

// startBackend serves HTTP on 127.0.0.1:18080 in ns (in the test process,
// like the TCP responder): the body is the node's name, and the peer id the
// proxy passed on is echoed back.
func startBackend(t *testing.T, ns *nstest.NS, name string) {
	t.Helper()
	var ln net.Listener
	ns.MustDo(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", chaosBackendPort))
		return err
	})
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(headerProbePeer, r.Header.Get(proxy.HeaderPeerID))
		io.WriteString(w, name+"\n")
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
}

// chaosFed is the second site and the prober's identity.
type chaosFed struct {
	peer   *chaosNode // the second site's fedgated, in the client namespace
	idAB   string     // the id the chaos site gave the second site
	idBA   string     // the id the second site gave the chaos site
	client *proxyClient
}

// newPeerSite writes the second site's config: a single node in the client
// namespace, netctl off, lifecycle control listener on the client address,
// declaring the resource kind the chaos site's route serves.
func newPeerSite(t *testing.T, ns *nstest.NS) *chaosNode {
	t.Helper()
	n := newChaosProcess(t, "peersite", chaosPeerIP, true)
	cfg := fmt.Sprintf(`node:
  data_dir: %s
  site_name: chaos-peer
log:
  level: info
api:
  socket: %s
raft:
  listen: 127.0.0.1:7400
  bootstrap: true
cluster:
  listen: 127.0.0.1:7401
metrics:
  listen: ""
netctl:
  mode: "off"
proxy:
  resource_kinds: [workspace]
lifecycle:
  listen: %s:7444
  operator_contact: ops@chaos-peer.example
  jurisdiction: EU
  last_known_good_release: v1.0.0
  data_residency: eu-west
  heartbeat_interval: 10s
  stale_after: 5m
  heartbeat_rate: 1
  heartbeat_burst: 10
`, filepath.Join(n.dir, "data"), n.socket, chaosPeerIP)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &chaosNode{node: n, ns: ns, ip: chaosPeerIP}
}

// federate starts the second site, pairs it with the chaos site through
// the lifecycle (invite on the chaos leader, accept on the second site,
// over the VIP), waits until each side sees the other active and every
// chaos node's proxy serves the second site, and prepares the prober's
// client. Call it after formCluster and before startProbes.
func (c *chaosNet) federate() {
	t := c.t
	b := newPeerSite(t, c.client)
	b.start()
	b.waitReady(30 * time.Second)
	l := c.leader()
	if l == nil {
		t.Fatal("federate: no leader")
	}
	tf := filepath.Join(t.TempDir(), "invite.token")
	var inv struct {
		PeerID string `json:"peer_id"`
		URL    string `json:"url"`
	}
	if err := l.cliJSON(&inv, "peers", "invite", "--token-file", tf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(inv.URL, chaosVIP) {
		t.Fatalf("invitation URL %q does not name the VIP", inv.URL)
	}
	var pb lcPeer
	eventually(t, 20*time.Second, "second site accepts the invitation over the VIP", func() error {
		return b.cliJSON(&pb, "peers", "accept", inv.URL, "--token-file", tf, "--contract-version", "1")
	})
	f := &chaosFed{peer: b, idAB: inv.PeerID, idBA: pb.ID}
	waitPeer := func(n *chaosNode, id string) {
		eventually(t, 30*time.Second, n.name+" sees its peer active", func() error {
			var p lcPeer
			if err := n.cliJSON(&p, "peers", "show", id); err != nil {
				return err
			}
			if p.Status != "active" {
				return fmt.Errorf("peer %s is %s", id, p.Status)
			}
			return nil
		})
	}
	waitPeer(l, f.idAB)
	waitPeer(b, f.idBA)
	var pa lcPeer
	if err := b.cliJSON(&pa, "peers", "show", f.idBA); err != nil {
		t.Fatal(err)
	}
	// The second site's own federation certificate for the chaos site:
	// issued by its CA, key generated by its fedgated, read from its data
	// dir the way a platform service next to it would be given it.
	dir := filepath.Join(b.dir, "data", "federation")
	var kp tls.Certificate
	eventually(t, 20*time.Second, "second site's federation certificate on disk", func() error {
		var err error
		kp, err = tls.LoadX509KeyPair(filepath.Join(dir, "fed-"+f.idBA+".crt"), filepath.Join(dir, "fed-"+f.idBA+".key"))
		return err
	})
	pc, err := newProxyClient(kp, []byte(pa.TrustedCAPEM), f.idBA, f.idAB)
	if err != nil {
		t.Fatal(err)
	}
	f.client = pc
	c.fed = f
	for _, n := range c.nodes {
		eventually(t, 30*time.Second, n.name+"'s proxy serves the second site", func() error { return c.proxyDirect(n) })
	}
	t.Logf("federated: chaos site knows the second site as %s, the second site knows it as %s", f.idAB, f.idBA)
}

// proxyDirect asks n's proxy on n's own address (not the VIP), with a full
// handshake, and checks that n's backend answered: every node is ready to
// take the VIP over.
func (c *chaosNet) proxyDirect(n *chaosNode) error {
	var who string
	err := c.client.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		who, err = c.fed.client.get(ctx, fmt.Sprintf("%s:%d", n.ip, chaosProxyPort), false)
		return err
	})
	if err != nil {
		return err
	}
	if who != n.name {
		return fmt.Errorf("%s's proxy answered as %q", n.name, who)
	}
	return nil
}

// proxyClient calls the chaos site's inbound proxy as the second site.
type proxyClient struct {
	tls    *tls.Config // with a session cache
	full   *tls.Config // without: a full handshake every time
	peerID string      // what the backend must see as X-Federation-Peer-Id
	// handshakes and resumed count completed TLS handshakes.
	handshakes, resumed atomic.Int64
}

// staticPeer is the second site's view of the chaos site for the verifier.
type staticPeer struct {
	id     string
	bundle []byte
}

func (s staticPeer) PeerTrust(id string) ([]byte, string, bool) {
	if id != s.id {
		return nil, "", false
	}
	return s.bundle, "active", true
}

func (staticPeer) Revoked(*big.Int, [32]byte) bool { return false }

// newProxyClient presents cert and authenticates the server as the chaos
// site (idBA, against caPEM) with the product's own client configuration;
// the SNI names the chaos site the way the second site knows it.
func newProxyClient(cert tls.Certificate, caPEM []byte, idBA, idAB string) (*proxyClient, error) {
	v, err := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: staticPeer{id: idBA, bundle: caPEM}})
	if err != nil {
		return nil, err
	}
	full := v.ClientTLSConfig(idBA, func() (*tls.Certificate, error) { return &cert, nil })
	full.ServerName = proxy.PeerHost(idBA)
	full.NextProtos = []string{"http/1.1"}
	// Plain X25519, not Go's default hybrid X25519MLKEM768: the ML-KEM key
	// generation of every ClientHello (and the encapsulation on the node)
	// was the prober's largest CPU cost, and this measures who answers,
	// not key exchange. 50 probes/s must not load a 2-core machine.
	full.CurvePreferences = []tls.CurveID{tls.X25519}
	resumed := full.Clone()
	resumed.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	return &proxyClient{tls: resumed, full: full, peerID: idAB}, nil
}

// get runs one request on a new connection to addr and returns the node
// named by the backend. The socket is created by the calling thread: call
// it from a goroutine locked into the client namespace.
func (pc *proxyClient) get(ctx context.Context, addr string, resume bool) (string, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	cfg := pc.full
	if resume {
		cfg = pc.tls
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		return "", fmt.Errorf("tls: %w", err)
	}
	pc.handshakes.Add(1)
	if conn.ConnectionState().DidResume {
		pc.resumed.Add(1)
	}
	if _, err := io.WriteString(conn, "GET "+proxyProbePath+" HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(body))}
	}
	if got := resp.Header.Get(headerProbePeer); got != pc.peerID {
		return "", fmt.Errorf("%w: backend saw peer %q, want %q", errWrongPeer, got, pc.peerID)
	}
	return strings.TrimSpace(string(body)), nil
}

var errWrongPeer = errors.New("wrong peer identity at the backend")

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// proxyWhy names why a probe got no answer, for the timelines.
func proxyWhy(err error) string {
	var se *statusError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return fmt.Sprintf("http%d", se.code)
	case errors.Is(err, errWrongPeer):
		return "wrongpeer"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "unreach"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.HasPrefix(err.Error(), "tls: "):
		return "tls"
	}
	return "error"
}

// proxyProber starts a probe through the proxy on the VIP every
// proxyProbeEvery until ctx ends; workers locked into ns run them.
func proxyProber(ctx context.Context, ns *nstest.NS, pc *proxyClient, r *recorder) error {
	addr := fmt.Sprintf("%s:%d", chaosVIP, chaosProxyPort)
	jobs := make(chan struct{}) // unbuffered: a send succeeds only when a worker is free
	errc := make(chan error, proxyProbeWorkers)
	var wg sync.WaitGroup
	for range proxyProbeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lockInto(ns); err != nil {
				errc <- err
				return
			}
			for range jobs {
				at := time.Now()
				pctx, cancel := context.WithTimeout(ctx, proxyProbeTimeout)
				who, err := pc.get(pctx, addr, true)
				cancel()
				if ctx.Err() != nil {
					return // the test is over: not a failed probe
				}
				r.addProxy(tcpSample{at: at, who: who, why: proxyWhy(err)})
			}
		}()
	}
	next := time.Now()
	for ctx.Err() == nil {
		select {
		case jobs <- struct{}{}:
		default:
			// Every worker is busy: record the interval as unanswered
			// rather than silently stretching the cadence.
			r.addProxy(tcpSample{at: time.Now(), why: "busy"})
		}
		next = next.Add(proxyProbeEvery)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else {
			next = time.Now()
		}
	}
	close(jobs)
	wg.Wait()
	close(errc)
	return <-errc
}
