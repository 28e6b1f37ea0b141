package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// chainCacheSize bounds a chainCache; when full it starts over.
const chainCacheSize = 8192

// chainCache remembers chains whose signatures already verified against a
// given root pool, so that repeated handshakes by the same certificate (and
// every resumed session, which is re-verified) skip the public-key
// operations. Only the signature work is cached: validity times are checked
// on every hit, and callers check identity, status and revocation every time.
type chainCache struct {
	mu sync.Mutex
	m  map[chainKey][]*x509.Certificate
}

type chainKey struct {
	roots *x509.CertPool
	usage x509.ExtKeyUsage
	certs [32]byte
}

func keyFor(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) chainKey {
	h := sha256.New()
	var n [4]byte
	for _, c := range certs {
		binary.BigEndian.PutUint32(n[:], uint32(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	k := chainKey{roots: roots, usage: usage}
	h.Sum(k.certs[:0])
	return k
}

// verify is verifyChain with the cache (c may be nil).
func (c *chainCache) verify(certs []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) ([]*x509.Certificate, error) {
	if c == nil || len(certs) == 0 || roots == nil {
		chains, err := verifyChain(certs, roots, now, []x509.ExtKeyUsage{usage})
		if err != nil {
			return nil, err
		}
		return chains[0], nil
	}
	k := keyFor(certs, roots, usage)
	c.mu.Lock()
	chain, ok := c.m[k]
	c.mu.Unlock()
	if ok && validAt(chain, now) {
		return chain, nil
	}
	chains, err := verifyChain(certs, roots, now, []x509.ExtKeyUsage{usage})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= chainCacheSize {
		c.m = make(map[chainKey][]*x509.Certificate)
	}
	c.m[k] = chains[0]
	c.mu.Unlock()
	return chains[0], nil
}

func validAt(chain []*x509.Certificate, now time.Time) bool {
	for _, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return false
		}
	}
	return true
}
