package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/ca"
)

// ExternalConfig configures an issuer backed by an external step-ca.
type ExternalConfig struct {
	// URL of the step-ca, e.g. https://ca.example:9000.
	URL string
	// RootFingerprint is the hex SHA-256 of the step-ca root certificate;
	// the TLS connection and the trust bundle are pinned to it.
	RootFingerprint string
	// Provisioner is the name of the JWK provisioner; KID optionally picks its key.
	Provisioner, KID string
	// PasswordFile holds the provisioner password (mode 0600, trailing
	// newline ignored). Never a flag.
	PasswordFile string
	Logger       *slog.Logger
}

// Validate reports the first invalid field.
func (c *ExternalConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil || u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%w: URL %q must be an https URL", ErrConfig, c.URL)
	case c.Provisioner == "":
		return fmt.Errorf("%w: Provisioner is empty", ErrConfig)
	case c.PasswordFile == "":
		return fmt.Errorf("%w: PasswordFile is empty", ErrConfig)
	}
	if b, err := hex.DecodeString(c.RootFingerprint); err != nil || len(b) != 32 {
		return fmt.Errorf("%w: RootFingerprint must be 64 hex digits", ErrConfig)
	}
	return nil
}

// ExternalIssuer implements Issuer with the smallstep ca client and a JWK
// provisioner of an external step-ca. It connects lazily: an unreachable
// CA fails Sign (the caller keeps its current certificate and retries with
// backoff) but not construction.
type ExternalIssuer struct {
	cfg      ExternalConfig
	password []byte

	mu   sync.Mutex
	prov *ca.Provisioner
}

// NewExternalIssuer reads the password file (refusing a loose mode) and
// returns the issuer.
func NewExternalIssuer(cfg ExternalConfig) (*ExternalIssuer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.RootFingerprint = strings.ToLower(cfg.RootFingerprint)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pw, err := ReadSecretFile(cfg.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("external ca: %w", err)
	}
	pw = bytes.TrimRight(pw, "\r\n")
	if len(pw) == 0 {
		return nil, fmt.Errorf("%w: password file %s is empty", ErrConfig, cfg.PasswordFile)
	}
	return &ExternalIssuer{cfg: cfg, password: pw}, nil
}

// provisioner returns the cached provisioner, loading (and decrypting) its
// key from the CA on first use.
func (e *ExternalIssuer) provisioner() (*ca.Provisioner, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.prov != nil {
		return e.prov, nil
	}
	p, err := ca.NewProvisioner(e.cfg.Provisioner, e.cfg.KID, e.cfg.URL, e.password, ca.WithRootSHA256(e.cfg.RootFingerprint))
	if err != nil {
		return nil, fmt.Errorf("external ca %s: provisioner %s: %w", e.cfg.URL, e.cfg.Provisioner, err)
	}
	e.prov = p
	return p, nil
}

// Sign implements Issuer.
func (e *ExternalIssuer) Sign(ctx context.Context, req SignRequest) ([]byte, error) {
	var names namesFunc
	switch req.Kind {
	case KindNode:
		names = nodeNames
	case KindFederation:
		names = peerNames
	default:
		return nil, fmt.Errorf("%w: unknown certificate kind %d", ErrConfig, req.Kind)
	}
	if _, err := CanonicalID(req.ID); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	cn, uri := names(req.ID)
	if err := CheckCSR(csr, cn, uri); err != nil {
		return nil, err
	}
	p, err := e.provisioner()
	if err != nil {
		return nil, err
	}
	tok, err := p.Token(cn, uri)
	if err != nil {
		return nil, fmt.Errorf("external ca: token: %w", err)
	}
	sr := &api.SignRequest{CsrPEM: api.NewCertificateRequest(csr), OTT: tok}
	if req.Lifetime > 0 {
		sr.NotAfter.SetDuration(req.Lifetime)
	}
	resp, err := p.SignWithContext(ctx, sr)
	if err != nil {
		// Reload the provisioner key on the next attempt: the operator may
		// have rotated it or the CA may have been re-initialized.
		e.mu.Lock()
		if e.prov == p {
			e.prov = nil
		}
		e.mu.Unlock()
		return nil, fmt.Errorf("external ca %s: sign %s: %w", e.cfg.URL, cn, err)
	}
	var chain []*x509.Certificate
	if len(resp.CertChainPEM) > 0 {
		for _, c := range resp.CertChainPEM {
			chain = append(chain, c.Certificate)
		}
	} else {
		chain = []*x509.Certificate{resp.ServerPEM.Certificate, resp.CaPEM.Certificate}
	}
	return EncodeCertificatesPEM(chain), nil
}

// TrustBundle implements Issuer: the CA's roots, fetched over the pinned
// connection; the pinned root must be among them.
func (e *ExternalIssuer) TrustBundle(ctx context.Context) ([]byte, error) {
	p, err := e.provisioner()
	if err != nil {
		return nil, err
	}
	resp, err := p.RootsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("external ca %s: roots: %w", e.cfg.URL, err)
	}
	var roots []*x509.Certificate
	pinned := false
	for _, c := range resp.Certificates {
		roots = append(roots, c.Certificate)
		if Fingerprint(c.Certificate) == e.cfg.RootFingerprint {
			pinned = true
		}
	}
	if !pinned {
		return nil, fmt.Errorf("%w: external ca roots do not include the pinned root %s", ErrUntrusted, e.cfg.RootFingerprint)
	}
	return EncodeCertificatesPEM(roots), nil
}
