package proxytest

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"sync"

	"github.com/powernode/fedgate/pki"
)

// Revocations is an in-memory pki.RevocationChecker.
type Revocations struct {
	mu      sync.RWMutex
	serials map[string]bool
	spkis   map[[32]byte]bool
}

// Revoke marks cert revoked by serial and SPKI.
func (r *Revocations) Revoke(cert *x509.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serials == nil {
		r.serials, r.spkis = map[string]bool{}, map[[32]byte]bool{}
	}
	r.serials[cert.SerialNumber.String()] = true
	r.spkis[pki.SPKIHash(cert)] = true
}

// Revoked implements pki.RevocationChecker.
func (r *Revocations) Revoked(serial *big.Int, spki [32]byte) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.serials[serial.String()] || r.spkis[spki]
}

// peerTrust adapts State to pki.PeerSource.
type peerTrust struct {
	st  *State
	rev *Revocations
}

func (p peerTrust) PeerTrust(id string) ([]byte, string, bool) {
	peer, ok := p.st.Peer(id)
	if !ok {
		return nil, "", false
	}
	return []byte(peer.TrustedCAPEM), string(peer.Status), true
}

func (p peerTrust) Revoked(serial *big.Int, spki [32]byte) bool { return p.rev.Revoked(serial, spki) }

// PKIVerifier adapts the pki package's per-peer verifier to proxy.Verifier,
// exactly as the agent does: chain against the claimed peer's own bundle,
// peer status reachable, chain not revoked.
type PKIVerifier struct {
	PV  *pki.PeerVerifier
	Rev *Revocations
}

// NewPKIVerifier returns a PKIVerifier reading peers from st.
func NewPKIVerifier(st *State) (*PKIVerifier, error) {
	rev := &Revocations{}
	pv, err := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peerTrust{st, rev}})
	if err != nil {
		return nil, err
	}
	return &PKIVerifier{PV: pv, Rev: rev}, nil
}

// Revoke revokes cert.
func (v *PKIVerifier) Revoke(cert *x509.Certificate) { v.Rev.Revoke(cert) }

// VerifyClient implements proxy.Verifier.
func (v *PKIVerifier) VerifyClient(cs tls.ConnectionState) (string, error) {
	id, err := v.PV.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return "", err
	}
	return id.PeerID, nil
}

// VerifyServer implements proxy.Verifier.
func (v *PKIVerifier) VerifyServer(peerID string, cs tls.ConnectionState) error {
	return v.PV.VerifyServer(peerID)(cs)
}

// Revoked implements proxy.Verifier.
func (v *PKIVerifier) Revoked(c *x509.Certificate) bool {
	return v.Rev.Revoked(c.SerialNumber, pki.SPKIHash(c))
}
