package proxytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
)

// Certs implements proxy.Certificates with swappable certificates.
type Certs struct {
	mu     sync.RWMutex
	server *tls.Certificate
	client map[string]*tls.Certificate
	sni    []string
}

// ServerNames returns the SNI names asked for so far.
func (c *Certs) ServerNames() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]string(nil), c.sni...)
}

// SetServer sets the inbound server certificate.
func (c *Certs) SetServer(cert *tls.Certificate) {
	c.mu.Lock()
	c.server = cert
	c.mu.Unlock()
}

// SetClient sets the client certificate presented to peerID.
func (c *Certs) SetClient(peerID string, cert *tls.Certificate) {
	c.mu.Lock()
	if c.client == nil {
		c.client = map[string]*tls.Certificate{}
	}
	c.client[peerID] = cert
	c.mu.Unlock()
}

// ServerCertificate implements proxy.Certificates.
func (c *Certs) ServerCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hello != nil && len(c.sni) < 1024 {
		c.sni = append(c.sni, hello.ServerName)
	}
	if c.server == nil {
		return nil, pki.ErrNoCertificate
	}
	return c.server, nil
}

// ClientCertificate implements proxy.Certificates.
func (c *Certs) ClientCertificate(peerID string) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cert := c.client[peerID]; cert != nil {
		return cert, nil
	}
	return nil, fmt.Errorf("%w: no client certificate for %s", pki.ErrNoCertificate, peerID)
}

// IssueFederation issues a federation certificate (CN fed:<id>, URI SAN
// powernode://peer/<id>) from a real site CA, with the given lifetime (0:
// the CA default).
func IssueFederation(t testing.TB, ca *pki.CA, id string, lifetime time.Duration) *tls.Certificate {
	t.Helper()
	cert, err := IssueFederationErr(ca, id, lifetime)
	if err != nil {
		t.Fatalf("issue federation certificate %s: %v", id, err)
	}
	return cert
}

// IssueFederationErr is IssueFederation without testing.TB (benchmark tools).
func IssueFederationErr(ca *pki.CA, id string, lifetime time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	chain, err := ca.SignFederation(csr, id, lifetime)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}
