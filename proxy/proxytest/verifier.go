package proxytest

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
)

// PeerSource is where a Verifier finds a peer's status and bundle.
type PeerSource interface {
	Peer(id string) (federation.Peer, bool)
}

// Verifier implements proxy.Verifier like pki's peer verifier (chain
// against the claimed peer's own trusted_ca_pem only, then revocation) but
// does not look at the peer's status, so tests can exercise the proxy's
// HTTP-level status checks on fresh connections. Use PKIVerifier for the
// real thing.
type Verifier struct {
	State PeerSource
	Now   func() time.Time

	mu      sync.RWMutex
	serials map[string]bool
	spkis   map[[32]byte]bool
}

// Revoke marks cert revoked (by serial and SPKI).
func (v *Verifier) Revoke(cert *x509.Certificate) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.serials == nil {
		v.serials, v.spkis = map[string]bool{}, map[[32]byte]bool{}
	}
	v.serials[cert.SerialNumber.String()] = true
	v.spkis[sha256.Sum256(cert.RawSubjectPublicKeyInfo)] = true
}

// Revoked implements proxy.Verifier.
func (v *Verifier) Revoked(cert *x509.Certificate) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.serials[cert.SerialNumber.String()] || v.spkis[sha256.Sum256(cert.RawSubjectPublicKeyInfo)]
}

func (v *Verifier) verify(peerID string, chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return pki.ErrNoPeerCertificate
	}
	peer, ok := v.State.Peer(peerID)
	if !ok {
		return fmt.Errorf("%w: %s", pki.ErrPeerUnknown, peerID)
	}
	roots, _, err := pki.PoolFromPEM([]byte(peer.TrustedCAPEM))
	if err != nil {
		return fmt.Errorf("%w: peer %s bundle: %v", pki.ErrUntrusted, peerID, err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("%w: %v", pki.ErrUntrusted, err)
	}
	if v.Revoked(chain[0]) {
		return pki.ErrRevoked
	}
	return nil
}

// VerifyClient implements proxy.Verifier.
func (v *Verifier) VerifyClient(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", pki.ErrNoPeerCertificate
	}
	id, err := pki.PeerIDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return "", err
	}
	if err := v.verify(id, cs.PeerCertificates, x509.ExtKeyUsageClientAuth); err != nil {
		return "", err
	}
	return id, nil
}

// VerifyServer implements proxy.Verifier: the server must prove peerID.
func (v *Verifier) VerifyServer(peerID string, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return pki.ErrNoPeerCertificate
	}
	id, err := pki.PeerIDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return err
	}
	if id != peerID {
		return fmt.Errorf("%w: server claims %s, want %s", pki.ErrIdentityMismatch, id, peerID)
	}
	return v.verify(peerID, cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
}
