package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// File names of the node identity inside IdentityConfig.Dir.
const (
	NodeKeyFile  = "node.key"
	NodeCertFile = "node.crt"
	BundleFile   = "bundle.crt"
)

// IdentityConfig configures a NodeIdentity.
type IdentityConfig struct {
	// Dir holds node.key (0600, generated here, never sent anywhere),
	// node.crt and bundle.crt.
	Dir string
	// NodeID is the node instance UUID.
	NodeID string
	// Issuer signs the node's CSRs: the local CA on the first node, the
	// join API client on a joining node.
	Issuer Issuer
	// Roots are the site trust anchors. When nil they come from
	// Issuer.TrustBundle at open (and are saved to bundle.crt); a joining
	// node should pass roots it has pinned (e.g. by fingerprint from the
	// join token) so that a forged issuer cannot substitute its own.
	Roots *x509.CertPool
	// Lifetime of node certificates; 0 means the issuer's default (24h).
	Lifetime time.Duration
	// Renew sets renewal timing and retry backoff.
	Renew RenewPolicy
	// Revocations, when set, refuses peers whose certificate is revoked.
	Revocations RevocationChecker
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Registerer receives the certificate metrics; nil means unregistered.
	Registerer prometheus.Registerer
}

func (c *IdentityConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Renew.setDefaults()
}

// Validate reports the first invalid field.
func (c *IdentityConfig) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty", ErrConfig)
	case c.Issuer == nil:
		return fmt.Errorf("%w: Issuer is nil", ErrConfig)
	case c.Lifetime < 0:
		return fmt.Errorf("%w: Lifetime is negative", ErrConfig)
	}
	if _, err := CanonicalID(c.NodeID); err != nil {
		return fmt.Errorf("%w: NodeID: %w", ErrConfig, err)
	}
	return c.Renew.validate()
}

// NodeIdentity is this node's key and site certificate. The certificate
// sits behind an atomic pointer; renewal swaps it whole, so the TLS
// configurations below pick up a new certificate on the next handshake
// without restart.
type NodeIdentity struct {
	cfg    IdentityConfig
	chains chainCache
	m      *managed
	roots  atomic.Pointer[x509.CertPool]
}

// OpenNodeIdentity loads or generates the node key, loads the saved
// certificate when it is still valid, and otherwise obtains one from the
// Issuer before returning. Call Run to keep it renewed.
func OpenNodeIdentity(ctx context.Context, cfg IdentityConfig) (*NodeIdentity, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	n := &NodeIdentity{cfg: cfg}
	roots := cfg.Roots
	if roots == nil {
		var err error
		if roots, err = loadOrFetchBundle(ctx, cfg.Issuer, filepath.Join(cfg.Dir, BundleFile)); err != nil {
			return nil, fmt.Errorf("node identity: %w", err)
		}
	}
	n.roots.Store(roots)
	key, created, err := loadOrCreateKey(filepath.Join(cfg.Dir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	n.m = &managed{
		name:     "node",
		kind:     KindNode,
		id:       cfg.NodeID,
		usage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		key:      key,
		certPath: filepath.Join(cfg.Dir, NodeCertFile),
		lifetime: cfg.Lifetime,
		issuer:   cfg.Issuer,
		roots:    n.roots.Load,
		policy:   cfg.Renew,
		log:      cfg.Logger,
		m:        newMetrics(cfg.Registerer),
		kick:     make(chan struct{}, 1),
	}
	if created || !n.m.loadPersisted(time.Now()) {
		if err := n.m.obtain(ctx); err != nil {
			return nil, fmt.Errorf("node identity: %w", err)
		}
	}
	return n, nil
}

// loadOrFetchBundle reads the saved trust bundle, or fetches it from the
// issuer and saves it, so that a restart does not depend on the issuer
// being reachable.
func loadOrFetchBundle(ctx context.Context, iss Issuer, path string) (*x509.CertPool, error) {
	if b, err := os.ReadFile(path); err == nil {
		pool, _, err := PoolFromPEM(b)
		if err != nil {
			return nil, fmt.Errorf("saved trust bundle %s: %w", path, err)
		}
		return pool, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("saved trust bundle: %w", err)
	}
	b, err := iss.TrustBundle(ctx)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	pool, _, err := PoolFromPEM(b)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	if err := writeFileAtomic(path, b, certFileMode); err != nil {
		return nil, err
	}
	return pool, nil
}

// PinnedRoots parses a trust bundle received from a joining flow and checks
// that it holds the root whose SHA-256 fingerprint (hex, as step prints it)
// the operator pinned, e.g. from the join token. Use the result as
// IdentityConfig.Roots on a joining node. Only the pinned root is trusted;
// other certificates in the bundle are ignored.
func PinnedRoots(bundlePEM []byte, fingerprint string) (*x509.CertPool, error) {
	_, certs, err := PoolFromPEM(bundlePEM)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		if Fingerprint(c) == strings.ToLower(fingerprint) {
			pool := x509.NewCertPool()
			pool.AddCert(c)
			return pool, nil
		}
	}
	return nil, fmt.Errorf("%w: bundle does not hold the pinned root %s", ErrUntrusted, fingerprint)
}

// Run renews the certificate at two-thirds of its lifetime (with jitter)
// until ctx ends. On failure it keeps the current certificate and retries
// with backoff.
func (n *NodeIdentity) Run(ctx context.Context) { n.m.run(ctx) }

// RenewNow asks Run to renew at once (e.g. after the operator rotated the CA).
func (n *NodeIdentity) RenewNow() { n.m.renewNow() }

// NodeID returns the node instance UUID.
func (n *NodeIdentity) NodeID() string { return n.cfg.NodeID }

// Certificate returns the certificate currently served (Leaf set).
func (n *NodeIdentity) Certificate() *tls.Certificate { return n.m.cur.Load() }

// Status describes the current certificate and renewal state.
func (n *NodeIdentity) Status() Status { return n.m.status() }

// Roots returns the site trust anchors.
func (n *NodeIdentity) Roots() *x509.CertPool { return n.roots.Load() }

// ServerTLSConfig is for node-to-node listeners (raft, forwarding, the
// cluster API): TLS 1.3 only; the client must present a certificate that
// chains to the site roots and names a node (URI SAN
// powernode://instance/<uuid>). Checks run in VerifyConnection, so resumed
// sessions are re-checked (expiry, revocation) too.
func (n *NodeIdentity) ServerTLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: n.verifier(x509.ExtKeyUsageClientAuth, ""),
	}
	bindSessionsToCert(cfg, n.m.current)
	return cfg
}

// bindSessionsToCert serves the certificate cur returns and makes the
// server decline to resume sessions established under an earlier server
// certificate. A TLS 1.3 client resuming a session re-uses the server
// certificate of the original handshake; Go clients that verify in
// VerifyConnection (InsecureSkipVerify) do not drop sessions whose server
// certificate has expired, so after a rotation they would resume with, and
// refuse, an expired certificate. Declining such tickets turns that into a
// full handshake with the current certificate.
//
// Each handshake gets a copy of cfg (GetConfigForClient) that pins the
// certificate current at ClientHello, so the ticket is marked with the
// certificate actually served even if a rotation happens mid-handshake.
// Modify the returned configuration in place before use; do not Clone it.
// peerNotAfterPrefix marks the session-ticket entry holding when the
// session stops being resumable because the client certificate is about to
// expire (unix milliseconds, big endian).
const peerNotAfterPrefix = "fedgate-peer-not-after:"

func bindSessionsToCert(cfg *tls.Config, cur func() (*tls.Certificate, error)) {
	marker := func(c *tls.Certificate) []byte {
		return append([]byte("fedgate-server-cert:"), c.Leaf.SerialNumber.Bytes()...)
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cur() }
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := cur()
		if err != nil {
			return nil, err
		}
		m := marker(c)
		conn := cfg.Clone()
		conn.GetConfigForClient = nil
		conn.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil }
		conn.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			ss.Extra = append(ss.Extra, m)
			if len(cs.PeerCertificates) > 0 {
				leaf := cs.PeerCertificates[0]
				// Stop resuming a little before the client certificate
				// expires (a tenth of its life, at most a minute), so that a
				// session resumed just before expiry is not refused by
				// VerifyConnection a moment later.
				margin := min(leaf.NotAfter.Sub(leaf.NotBefore)/10, time.Minute)
				until := leaf.NotAfter.Add(-margin).UnixMilli()
				ss.Extra = append(ss.Extra, binary.BigEndian.AppendUint64([]byte(peerNotAfterPrefix), uint64(until)))
			}
			return cfg.EncryptTicket(cs, ss)
		}
		conn.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := cfg.DecryptTicket(identity, cs)
			if err != nil || ss == nil {
				return nil, err
			}
			current := false
			for _, e := range ss.Extra {
				switch {
				case bytes.Equal(e, m):
					current = true
				case bytes.HasPrefix(e, []byte(peerNotAfterPrefix)) && len(e) == len(peerNotAfterPrefix)+8:
					// crypto/tls checks the client certificate's expiry on
					// resumption only when it verifies client certificates
					// itself; we verify in VerifyConnection, so decline here
					// and let the client present its current certificate.
					until := int64(binary.BigEndian.Uint64(e[len(peerNotAfterPrefix):]))
					if !time.Now().Before(time.UnixMilli(until)) {
						return nil, nil
					}
				}
			}
			if !current {
				return nil, nil // full handshake with the current certificate
			}
			return ss, nil
		}
		return conn, nil
	}
}

// ClientTLSConfig is for node-to-node dialing: TLS 1.3, presents the node
// certificate, and accepts a server whose certificate chains to the site
// roots and names any node of the site.
func (n *NodeIdentity) ClientTLSConfig() *tls.Config { return n.ClientTLSConfigFor("") }

// ClientTLSConfigFor is ClientTLSConfig that additionally requires the
// server to be node nodeID (when non-empty).
func (n *NodeIdentity) ClientTLSConfigFor(nodeID string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.m.current() },
		// Node certificates carry no DNS or IP names; the server is
		// authenticated by chain and node URI in VerifyConnection instead.
		InsecureSkipVerify: true,
		VerifyConnection:   n.verifier(x509.ExtKeyUsageServerAuth, nodeID),
	}
}

func (n *NodeIdentity) verifier(usage x509.ExtKeyUsage, want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		id, err := verifyNode(&n.chains, cs.PeerCertificates, n.roots.Load(), time.Now(), usage, n.cfg.Revocations)
		if err != nil {
			return err
		}
		if want != "" && id != want {
			return fmt.Errorf("%w: peer is node %s, want %s", ErrIdentityMismatch, id, want)
		}
		return nil
	}
}

// VerifyNode verifies a presented chain (leaf first) as a node of the site
// whose trust anchors are roots, and returns the node id. revs may be nil.
func VerifyNode(certs []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage, revs RevocationChecker) (string, error) {
	return verifyNode(nil, certs, roots, now, usage, revs)
}

func verifyNode(cache *chainCache, certs []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage, revs RevocationChecker) (string, error) {
	if len(certs) == 0 {
		return "", ErrNoPeerCertificate
	}
	if _, err := cache.verify(certs, roots, now, usage); err != nil {
		return "", err
	}
	id, err := NodeIDFromCert(certs[0])
	if err != nil {
		return "", err
	}
	if revs != nil && revs.Revoked(certs[0].SerialNumber, SPKIHash(certs[0])) {
		return "", fmt.Errorf("%w: node %s serial %s", ErrRevoked, id, certs[0].SerialNumber.Text(16))
	}
	return id, nil
}

// NodeIDFromConn returns the node id of the other side of a connection made
// with ServerTLSConfig or ClientTLSConfig (whose VerifyConnection has
// already verified the chain). It re-reads the identity from the peer
// certificate; it does not verify the chain again.
func NodeIDFromConn(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoPeerCertificate
	}
	return NodeIDFromCert(cs.PeerCertificates[0])
}
