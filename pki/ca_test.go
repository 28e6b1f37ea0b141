package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

func testLogger(t testing.TB) *slogLogger { return newTestLogger(t) }

func newTestCA(t testing.TB, mod ...func(*Config)) *CA {
	t.Helper()
	cfg := Config{Dir: filepath.Join(t.TempDir(), "ca"), SiteName: "test site", Logger: testLogger(t), Backdate: -1}
	for _, m := range mod {
		m(&cfg)
	}
	ca, err := OpenCA(cfg)
	if err != nil {
		t.Fatalf("OpenCA: %v", err)
	}
	return ca
}

func newID(t testing.TB) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := generateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestOpenCACreatesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca1, err := OpenCA(Config{Dir: dir, SiteName: "s1", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{RootKeyFile, IntermediateKeyFile, ProvisionerKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	ca2, err := OpenCA(Config{Dir: dir, SiteName: "s1", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !ca1.Root().Equal(ca2.Root()) || !ca1.Intermediate().Equal(ca2.Intermediate()) {
		t.Fatal("reopened CA has different root or intermediate")
	}
	// The reopened CA still signs, and the result verifies against the first CA's roots.
	id := newID(t)
	chain, err := ca2.SignNode(mustCSR(t, mustKey(t), nil), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: ca1.Roots(), Intermediates: poolOf(chain[1:]), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
}

func poolOf(cs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}

func TestOpenCARefusesLooseKeyMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := OpenCA(Config{Dir: dir, SiteName: "s"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, IntermediateKeyFile)
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := OpenCA(Config{Dir: dir, SiteName: "s"})
	if !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("err = %v, want ErrKeyFileMode", err)
	}
	if want := p; !contains(err.Error(), want) || !contains(err.Error(), "0640") {
		t.Fatalf("error %q does not name path and mode", err)
	}
}

func TestOpenCARefusesPartialDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := OpenCA(Config{Dir: dir, SiteName: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, RootCertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCA(Config{Dir: dir, SiteName: "s"}); err == nil {
		t.Fatal("partial CA dir accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); err != nil {
		t.Fatalf("partial dir touched: %v", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}
func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestSignNode(t *testing.T) {
	ca := newTestCA(t)
	id := newID(t)
	key := mustKey(t)
	chain, err := ca.SignNode(mustCSR(t, key, nil), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != id {
		t.Errorf("CN %q, want %q", leaf.Subject.CommonName, id)
	}
	if got, err := NodeIDFromCert(leaf); err != nil || got != id {
		t.Errorf("NodeIDFromCert = %q, %v", got, err)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("ext key usage %v lacks client or server auth", leaf.ExtKeyUsage)
	}
	if d := time.Until(leaf.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("lifetime %v, want about 24h", d)
	}
	if !keyMatches(leaf, key) {
		t.Error("leaf key is not the CSR key")
	}
	if !chain[1].Equal(ca.Intermediate()) {
		t.Error("chain[1] is not the intermediate")
	}
	if err := CheckChainOrder(chain); err != nil {
		t.Error(err)
	}
	// Issuer path gives the same shape.
	csr := mustCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}, URIs: []*url.URL{NodeURI(id)}})
	p, err := ca.Sign(context.Background(), SignRequest{Kind: KindNode, ID: id, CSR: csr.Raw, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseChainPEM(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := c2[0].NotAfter.Sub(c2[0].NotBefore); d != time.Hour {
		t.Errorf("lifetime %v, want 1h", d)
	}
}

func TestSignRefusesForeignNames(t *testing.T) {
	ca := newTestCA(t)
	id, other := newID(t), newID(t)
	u := func(s string) *url.URL { x, _ := url.Parse(s); return x }
	tests := []struct {
		name string
		tmpl *x509.CertificateRequest
		want error
	}{
		{"dns", &x509.CertificateRequest{DNSNames: []string{"evil.example"}}, ErrCSRExtraSANs},
		{"ip", &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, ErrCSRExtraSANs},
		{"email", &x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}}, ErrCSRExtraSANs},
		{"other node uri", &x509.CertificateRequest{URIs: []*url.URL{NodeURI(other)}}, ErrCSRExtraSANs},
		{"extra uri", &x509.CertificateRequest{URIs: []*url.URL{NodeURI(id), u("spiffe://x/y")}}, ErrCSRExtraSANs},
		{"peer uri", &x509.CertificateRequest{URIs: []*url.URL{PeerURI(id)}}, ErrCSRExtraSANs},
		{"other cn", &x509.CertificateRequest{Subject: pkix.Name{CommonName: other}}, ErrCSRSubject},
		{"fed cn", &x509.CertificateRequest{Subject: pkix.Name{CommonName: "fed:" + id}}, ErrCSRSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.SignNode(mustCSR(t, mustKey(t), tt.tmpl), id, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ca.SignNode(mustCSR(t, mustKey(t), nil), "not-a-uuid", 0); !errors.Is(err, ErrBadID) {
		t.Errorf("bad id: err = %v", err)
	}
	if _, err := ca.Sign(context.Background(), SignRequest{Kind: KindNode, ID: id, CSR: []byte("garbage")}); !errors.Is(err, ErrBadCSR) {
		t.Errorf("garbage CSR: err = %v", err)
	}
}

func TestSignFederation(t *testing.T) {
	ca := newTestCA(t)
	id := newID(t)
	chain, err := ca.SignFederation(mustCSR(t, mustKey(t), nil), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := PeerIDFromCert(chain[0]); err != nil || got != id {
		t.Fatalf("PeerIDFromCert = %q, %v", got, err)
	}
	if chain[0].Subject.CommonName != "fed:"+id {
		t.Fatalf("CN %q", chain[0].Subject.CommonName)
	}
}
