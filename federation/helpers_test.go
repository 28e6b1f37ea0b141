package federation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cmpNetip compares netip values (unexported fields) by value.
var cmpNetip = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

var t0 = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

// seqReader is a deterministic io.Reader for NewID.
type seqReader struct{ n byte }

func (r *seqReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

func mustID(t testing.TB, r *seqReader, at time.Time) string {
	t.Helper()
	id, err := NewID(at, r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var testWGKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

// fullPeer returns a valid peer with every disclosure field set.
func fullPeer(t testing.TB, status Status) Peer {
	t.Helper()
	r := &seqReader{}
	p := NewPeer(mustID(t, r, t0), PeerKindPlatform, t0)
	p.Status = status
	p.RemoteInstanceURL = "https://b.example.net"
	p.ContractVersionAgreed = 1
	p.Endpoints = []Endpoint{
		{URL: "https://10.0.0.2:8443", Scope: ScopeSDWAN, Priority: 0},
		{URL: "https://b.example.net:443", Scope: ScopeWAN, Priority: 10, CIDRHint: "203.0.113.0/24"},
	}
	p.ExtensionSlugs = []string{"inventory"}
	p.Capabilities = Capabilities{
		ResourceKinds:    []string{"workload", "dataset"},
		SchemaVersions:   map[string][]string{"workload": {"v1", "v2"}},
		FilterPredicates: []string{"tenant_id"},
	}
	p.PlatformVersion = "1.4.2"
	p.DataResidency = "eu-west"
	p.OperatorContact = "ops@b.example.net"
	p.Jurisdiction = "DE"
	p.LastKnownGoodRelease = "v1.4.1"
	p.OutboundSubject = SubjectFor(mustID(t, r, t0))
	p.WireGuardPublicKey = testWGKey
	p.VIPs = []string{"10.99.0.1/32", "fd00::1/128"}
	p.RemotePrefixAdvertisement = "fd12:3456:789a::/48"
	p.Metadata = map[string]string{"note": "test"}
	return p
}

func testCAPEM(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test ca"},
		NotBefore:             t0,
		NotAfter:              t0.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
