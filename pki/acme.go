package pki

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/smallstep/certificates/acme"
	acmeAPI "github.com/smallstep/certificates/acme/api"
	acmeNoSQL "github.com/smallstep/certificates/acme/db/nosql"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/nosql"
)

// ACMEProvisionerName is the name of the embedded authority's ACME
// provisioner; its directory is https://<addr>/acme/acme/directory.
const ACMEProvisionerName = "acme"

// ACMEFile is the bbolt database of ACME accounts, orders and challenges in the CA dir.
const ACMEFile = "acme.db"

// ACMEServerConfig configures the embedded authority's ACME endpoint.
type ACMEServerConfig struct {
	// Addr is host:port as ACME clients reach the endpoint; directory links use it.
	Addr string
	// Hosts the endpoint's own TLS certificate is issued for (defaults to
	// the host of Addr). DNS names or IP addresses.
	Hosts []string
	// Client validates challenges. nil means smallstep's default client
	// (HTTP to port 80, TLS to port 443 of the name being validated).
	Client acme.Client
}

// ACMEServer is the embedded authority's ACME endpoint (RFC 8555), backed by
// the same smallstep authority as the rest of the CA.
type ACMEServer struct {
	// Handler serves /acme/... ; mount it at the root of an HTTPS server.
	Handler http.Handler
	// TLSConfig serves a certificate for Hosts issued by the site CA.
	TLSConfig *tls.Config
	// DirectoryURL is the ACME directory URL.
	DirectoryURL string
	db           interface{ Close() error }
}

// Close releases the ACME database.
func (s *ACMEServer) Close() error { return s.db.Close() }

// ACMEServer returns the ACME endpoint. The CA must have been opened with
// ACMEDomains.
func (ca *CA) ACMEServer(cfg ACMEServerConfig) (*ACMEServer, error) {
	if len(ca.cfg.ACMEDomains) == 0 {
		return nil, fmt.Errorf("%w: the CA was opened without ACMEDomains", ErrConfig)
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: ACME Addr %q: %w", ErrConfig, cfg.Addr, err)
	}
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = []string{host}
	}
	if cfg.Client == nil {
		cfg.Client = acme.NewClient()
	}
	tlsCert, err := ca.serverCertificate(cfg.Hosts)
	if err != nil {
		return nil, err
	}
	ndb, err := nosql.New(nosql.BBoltDriver, filepath.Join(ca.cfg.Dir, ACMEFile))
	if err != nil {
		return nil, fmt.Errorf("acme db: %w", err)
	}
	adb, err := acmeNoSQL.New(ndb)
	if err != nil {
		ndb.Close()
		return nil, fmt.Errorf("acme db: %w", err)
	}
	linker := acme.NewLinker(cfg.Addr, "acme")
	mux := chi.NewRouter()
	mux.Route("/acme", func(r chi.Router) { acmeAPI.Route(r) })
	auth := ca.auth
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := authority.NewContext(r.Context(), auth)
		ctx = acme.NewContext(ctx, adb, cfg.Client, linker, nil)
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
	return &ACMEServer{
		Handler: h,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12, // ACME clients are not ours to pin to 1.3
			Certificates: []tls.Certificate{*tlsCert},
		},
		DirectoryURL: "https://" + cfg.Addr + "/acme/" + ACMEProvisionerName + "/directory",
		db:           ndb,
	}, nil
}

// serverCertificate issues the ACME endpoint's own certificate for hosts
// (names from the operator's configuration, not from a requester), with a
// key that exists only in memory.
func (ca *CA) serverCertificate(hosts []string) (*tls.Certificate, error) {
	key, err := generateKey()
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	tok, err := ca.tokenSANs(hosts[0], hosts)
	if err != nil {
		return nil, err
	}
	ctx := provisioner.NewContextWithMethod(context.Background(), provisioner.SignMethod)
	opts, err := ca.auth.Authorize(ctx, tok)
	if err != nil {
		return nil, fmt.Errorf("acme server certificate: %w", err)
	}
	var so provisioner.SignOptions
	so.NotAfter.SetDuration(min(ca.cfg.MaxLifetime, 30*24*time.Hour))
	chain, err := ca.auth.SignWithContext(ctx, csr, so, opts...)
	if err != nil {
		return nil, fmt.Errorf("acme server certificate: %w", err)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	if len(tc.Certificate) == 0 {
		return nil, errors.New("acme server certificate: empty chain")
	}
	return tc, nil
}
