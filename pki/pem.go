package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// maxPEMBytes bounds PEM input from outside (bundles, chains).
const maxPEMBytes = 1 << 20

// ParseCertificatesPEM parses a sequence of CERTIFICATE PEM blocks. Anything
// else — other block types, text between blocks, unparsable DER, no block at
// all — is refused with ErrBadPEM.
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	if len(b) > maxPEMBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadPEM, len(b), maxPEMBytes)
	}
	var certs []*x509.Certificate
	rest := b
	for {
		rest = trimSpace(rest)
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("%w: data outside PEM blocks", ErrBadPEM)
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: undecodable PEM block", ErrBadPEM)
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: block type %q, want CERTIFICATE", ErrBadPEM, block.Type)
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("%w: certificate block with headers", ErrBadPEM)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadPEM, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrBadPEM)
	}
	return certs, nil
}

// EncodeCertificatesPEM returns certs as concatenated CERTIFICATE blocks.
func EncodeCertificatesPEM(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// PoolFromPEM parses a trust bundle into a pool. Every certificate in it
// must be a CA certificate.
func PoolFromPEM(b []byte) (*x509.CertPool, []*x509.Certificate, error) {
	certs, err := ParseCertificatesPEM(b)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, nil, fmt.Errorf("%w: bundle certificate %q is not a CA", ErrBadPEM, c.Subject)
		}
		pool.AddCert(c)
	}
	return pool, certs, nil
}

// ParseChainPEM parses a leaf-first chain and checks its order: each
// certificate must be signed by the one after it.
func ParseChainPEM(b []byte) ([]*x509.Certificate, error) {
	chain, err := ParseCertificatesPEM(b)
	if err != nil {
		return nil, err
	}
	if err := CheckChainOrder(chain); err != nil {
		return nil, err
	}
	return chain, nil
}

// CheckChainOrder checks that chain is leaf first and that every certificate
// is signed by the next one.
func CheckChainOrder(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: empty chain", ErrChainOrder)
	}
	if chain[0].IsCA {
		return fmt.Errorf("%w: first certificate %q is a CA, want the leaf", ErrChainOrder, chain[0].Subject)
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("%w: certificate %d (%q) is not signed by certificate %d (%q): %w",
				ErrChainOrder, i, chain[i].Subject, i+1, chain[i+1].Subject, err)
		}
	}
	return nil
}

// keyMatches reports whether cert's public key is key's public key.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
