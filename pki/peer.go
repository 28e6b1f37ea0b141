package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"time"
)

// PeerSource is what the per-peer verifier needs from the replicated state
// (the local FSM copy). Implementations must be fast and safe for
// concurrent use; they are called on every handshake.
type PeerSource interface {
	// PeerTrust returns the peer's trust bundle (its trusted_ca_pem), its
	// status (e.g. "active"), and whether a peer with this id exists.
	PeerTrust(id string) (bundlePEM []byte, status string, ok bool)
	// Revoked reports whether a certificate serial or SPKI hash is revoked.
	RevocationChecker
}

// ReachableStatuses are the peer statuses that may call the federation API.
var ReachableStatuses = []string{"enrolled", "active", "degraded"}

// Identity is a verified federation peer identity, for authorization,
// headers and audit.
type Identity struct {
	// PeerID is the federation_peer_id the certificate was verified as.
	PeerID string `json:"federation_peer_id"`
	// Subject is the leaf's subject DN, CommonName its CN.
	Subject    string `json:"subject"`
	CommonName string `json:"common_name"`
	// Serial is the leaf serial in hex; SPKI the SHA-256 of its public key info.
	Serial   *big.Int  `json:"-"`
	SPKI     [32]byte  `json:"-"`
	NotAfter time.Time `json:"not_after"`
	// Chain is the verified chain, leaf first, ending at an anchor of the
	// peer's bundle.
	Chain []*x509.Certificate `json:"-"`
}

// PeerVerifierConfig configures a PeerVerifier.
type PeerVerifierConfig struct {
	Peers PeerSource
	// Reachable lists statuses allowed to connect (ReachableStatuses).
	Reachable []string
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// PeerVerifier checks federation certificates: the claimed peer id comes
// from CN fed:<id> / URI SAN powernode://peer/<id> (which must agree), and
// the chain is verified only against that peer's own trust bundle, so peer
// A's CA cannot mint a certificate for peer B. The peer's status must be
// reachable and neither the serial nor the SPKI hash revoked.
type PeerVerifier struct {
	cfg PeerVerifierConfig

	mu     sync.Mutex
	pools  map[[32]byte]*x509.CertPool
	chains chainCache
}

// NewPeerVerifier returns a verifier reading peers from cfg.Peers.
func NewPeerVerifier(cfg PeerVerifierConfig) (*PeerVerifier, error) {
	if cfg.Peers == nil {
		return nil, fmt.Errorf("%w: Peers is nil", ErrConfig)
	}
	if cfg.Reachable == nil {
		cfg.Reachable = ReachableStatuses
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &PeerVerifier{cfg: cfg, pools: map[[32]byte]*x509.CertPool{}}, nil
}

// pool parses (and caches by content hash) a peer bundle.
func (v *PeerVerifier) pool(bundle []byte) (*x509.CertPool, error) {
	h := sha256.Sum256(bundle)
	v.mu.Lock()
	p, ok := v.pools[h]
	v.mu.Unlock()
	if ok {
		return p, nil
	}
	p, _, err := PoolFromPEM(bundle)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.pools) > 4096 {
		clear(v.pools)
	}
	v.pools[h] = p
	v.mu.Unlock()
	return p, nil
}

// Verify checks a presented chain (leaf first) for the given key usage and
// returns the verified identity.
func (v *PeerVerifier) Verify(certs []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	leaf := certs[0]
	id, err := PeerIDFromCert(leaf)
	if err != nil {
		return Identity{}, err
	}
	bundle, status, ok := v.cfg.Peers.PeerTrust(id)
	if !ok {
		return Identity{}, fmt.Errorf("%w: %s", ErrPeerUnknown, id)
	}
	if !slices.Contains(v.cfg.Reachable, status) {
		return Identity{}, fmt.Errorf("%w: %s is %s", ErrPeerNotReachable, id, status)
	}
	roots, err := v.pool(bundle)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: peer %s trust bundle: %w", ErrUntrusted, id, err)
	}
	chain, err := v.chains.verify(certs, roots, v.cfg.Now(), usage)
	if err != nil {
		return Identity{}, fmt.Errorf("peer %s: %w", id, err)
	}
	spki := SPKIHash(leaf)
	// Every certificate of the chain is checked: revoking a peer's
	// intermediate cuts off everything it signed.
	for _, c := range chain {
		if v.cfg.Peers.Revoked(c.SerialNumber, SPKIHash(c)) {
			return Identity{}, fmt.Errorf("%w: peer %s certificate %q serial %s", ErrRevoked, id, c.Subject, c.SerialNumber.Text(16))
		}
	}
	return Identity{
		PeerID:     id,
		Subject:    leaf.Subject.String(),
		CommonName: leaf.Subject.CommonName,
		Serial:     leaf.SerialNumber,
		SPKI:       spki,
		NotAfter:   leaf.NotAfter,
		Chain:      chain,
	}, nil
}

// VerifyClient is a tls.Config.VerifyConnection for servers accepting
// federation peers (client certificates). It runs on resumed sessions too.
func (v *PeerVerifier) VerifyClient(cs tls.ConnectionState) error {
	_, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	return err
}

// VerifyServer returns a VerifyConnection for dialing peer peerID: the
// server must verify as exactly that peer.
func (v *PeerVerifier) VerifyServer(peerID string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		id, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
		if id.PeerID != peerID {
			return fmt.Errorf("%w: server is peer %s, dialed %s", ErrIdentityMismatch, id.PeerID, peerID)
		}
		return nil
	}
}

// ServerTLSConfig is the inbound federation listener configuration: TLS
// 1.3, a client certificate required and checked by VerifyClient (also on
// resumption), serving the certificate cert returns. Session tickets are
// bound to the served certificate (see the node configs). Modify the result
// in place; do not Clone it.
func (v *PeerVerifier) ServerTLSConfig(cert func() (*tls.Certificate, error)) *tls.Config {
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: v.VerifyClient,
	}
	bindSessionsToCert(cfg, cert)
	return cfg
}

// ClientTLSConfig is the outbound configuration for calling peer peerID,
// presenting the certificate cert returns (our federation certificate for
// that peer).
func (v *PeerVerifier) ClientTLSConfig(peerID string, cert func() (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() },
		// The peer is authenticated against its own bundle in VerifyServer,
		// not against system roots and a host name.
		InsecureSkipVerify: true,
		VerifyConnection:   v.VerifyServer(peerID),
	}
}

// Identity re-verifies the peer certificate of an established inbound
// connection and returns the identity (status and revocation as of now).
func (v *PeerVerifier) Identity(cs tls.ConnectionState) (Identity, error) {
	return v.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
}

// PeerIdentity derives the identity of the other side of a connection whose
// chain was verified by a PeerVerifier. It re-reads names from
// VerifiedChains when crypto/tls populated them and from PeerCertificates
// otherwise; it does not verify the chain (use PeerVerifier.Identity for that).
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	var chain []*x509.Certificate
	switch {
	case len(cs.VerifiedChains) > 0:
		chain = cs.VerifiedChains[0]
	case len(cs.PeerCertificates) > 0:
		chain = cs.PeerCertificates
	default:
		return Identity{}, ErrNoPeerCertificate
	}
	leaf := chain[0]
	id, err := PeerIDFromCert(leaf)
	if err != nil {
		return Identity{}, err
	}
	return Identity{PeerID: id, Subject: leaf.Subject.String(), CommonName: leaf.Subject.CommonName,
		Serial: leaf.SerialNumber, SPKI: SPKIHash(leaf), NotAfter: leaf.NotAfter, Chain: chain}, nil
}
