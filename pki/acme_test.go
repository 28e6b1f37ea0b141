package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
	"go.uber.org/zap"
)

// loopbackResolver is the ACME server's challenge client: it validates
// against the names being issued for, which resolve to the challenge
// solver listening on loopback (the test has no DNS and may not own :80).
type loopbackResolver struct{ httpAddr string }

func (l loopbackResolver) Get(u string) (*http.Response, error) {
	// Keep the URL (and so the Host header) as the CA built it; only the
	// dial goes to the solver on loopback.
	d := &net.Dialer{Timeout: 5 * time.Second}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, l.httpAddr)
		},
	}}
	return c.Get(u)
}

func (loopbackResolver) LookupTxt(string) ([]string, error) {
	return nil, &net.DNSError{Err: "no dns in tests", IsNotFound: true}
}

func (loopbackResolver) TLSDial(string, string, *tls.Config) (*tls.Conn, error) {
	return nil, &net.OpError{Op: "dial", Err: net.UnknownNetworkError("tls-alpn-01 disabled in this test")}
}

// TestACMEBootstrapCertificate: a real ACME flow (HTTP-01) between
// certmagic and the embedded authority's ACME provisioner on loopback, with
// certmagic storing into the encrypted KV storage; a second node then loads
// the certificate from the shared storage without another ACME order.
func TestACMEBootstrapCertificate(t *testing.T) {
	ca := pkitest.NewCA(t, func(c *pki.Config) { c.ACMEDomains = []string{"*.site.test"} })

	// The HTTP-01 solver port certmagic will listen on.
	solverAddr := freePort(t)
	_, solverPort, _ := net.SplitHostPort(solverAddr)
	port, _ := strconv.Atoi(solverPort)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ACMEServer(pki.ACMEServerConfig{Addr: ln.Addr().String(), Client: loopbackResolver{httpAddr: solverAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := &http.Server{Handler: srv.Handler, TLSConfig: srv.TLSConfig, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tls.NewListener(ln, srv.TLSConfig))
	t.Cleanup(func() { hs.Close() })

	kv := &pkitest.KV{}
	sec := secret(t)
	newNode := func(owner string) *certmagic.Config {
		st := newStorage(t, kv, sec, owner, 5*time.Second)
		var cfg *certmagic.Config
		cache := certmagic.NewCache(certmagic.CacheOptions{GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil }, Logger: zap.NewNop()})
		t.Cleanup(cache.Stop)
		cfg = certmagic.New(cache, certmagic.Config{Storage: st, Logger: zap.NewNop(), OCSP: certmagic.OCSPConfig{DisableStapling: true}})
		cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
			CA:                      srv.DirectoryURL,
			Agreed:                  true,
			Email:                   "ops@site.test",
			TrustedRoots:            ca.Roots(),
			DisableTLSALPNChallenge: true,
			ListenHost:              "127.0.0.1",
			AltHTTPPort:             port,
			Logger:                  zap.NewNop(),
		})}
		return cfg
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	node1 := newNode("node-1")
	const name = "bootstrap.site.test"
	if err := node1.ObtainCertSync(ctx, name); err != nil {
		t.Fatalf("ACME obtain: %v", err)
	}
	node2 := newNode("node-2")
	cert, err := node2.CacheManagedCertificate(ctx, name)
	if err != nil {
		t.Fatalf("node 2 loading the certificate from shared storage: %v", err)
	}
	leaf := cert.Leaf
	inter := x509.NewCertPool()
	for _, d := range cert.Certificate.Certificate[1:] {
		c, _ := x509.ParseCertificate(d)
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Roots(), Intermediates: inter}); err != nil {
		t.Fatalf("ACME certificate does not verify for %s: %v", name, err)
	}
	if len(leaf.URIs) != 0 {
		t.Fatalf("ACME certificate carries URIs %v", leaf.URIs)
	}
	t.Logf("ACME certificate: subject %q dns %v serial %x not after %v", leaf.Subject, leaf.DNSNames, leaf.SerialNumber, leaf.NotAfter)
	for k, v := range kv.Raw() {
		if len(v) > 0 && (contains(v, "PRIVATE KEY") || contains(v, "BEGIN CERTIFICATE")) {
			t.Errorf("plaintext PEM in KV at %s", k)
		}
	}

	// A name outside the ACME domains is refused by the authority's policy.
	err = node1.ObtainCertSync(ctx, "evil.other.test")
	if err == nil || !strings.Contains(err.Error(), "rejectedIdentifier") {
		t.Fatalf("ACME order outside the allowed domains: %v", err)
	}
	t.Logf("outside the ACME domains: %v", err)
}

func contains(b []byte, s string) bool { return len(b) >= len(s) && bytesIndex(b, s) >= 0 }

func bytesIndex(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}
