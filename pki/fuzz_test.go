package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseCertificatesPEM(f *testing.F) {
	for _, name := range []string{"bundle.pem", "chain.pem", "chain-reversed.pem"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append([]byte("junk\n"), b...))
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseCertificatesPEM(b)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		again, err := ParseCertificatesPEM(EncodeCertificatesPEM(certs))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-encoded bundle does not parse: %v", err)
		}
		if _, _, err := PoolFromPEM(b); err == nil {
			for _, c := range certs {
				if !c.IsCA {
					t.Fatal("PoolFromPEM accepted a non-CA certificate")
				}
			}
		}
		if ch, err := ParseChainPEM(b); err == nil {
			if ch[0].IsCA {
				t.Fatal("chain accepted with a CA first")
			}
		}
	})
}

func FuzzIdentityFromCert(f *testing.F) {
	id := "0193a1c2-7d3e-7a4b-8c5d-6e7f8091a2b3"
	f.Add("fed:"+id, "powernode://peer/"+id, "")
	f.Add("fed:"+id, "powernode://peer/0193a1c2-7d3e-7a4b-8c5d-6e7f8091a2b4", "")
	f.Add(id, "powernode://instance/"+id, "")
	f.Add("", "powernode://peer/"+id, "powernode://peer/"+id)
	f.Add("fed:"+strings.ToUpper(id), "", "")
	f.Add("fed:", "powernode://peer/", "spiffe://x")
	f.Fuzz(func(t *testing.T, cn, uri1, uri2 string) {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
		for _, s := range []string{uri1, uri2} {
			if s == "" {
				continue
			}
			u, err := url.Parse(s)
			if err != nil {
				return
			}
			c.URIs = append(c.URIs, u)
		}
		if pid, err := PeerIDFromCert(c); err == nil {
			if _, err := CanonicalID(pid); err != nil {
				t.Fatalf("peer id %q not canonical", pid)
			}
			cnOK := cn == PeerCNPrefix+pid
			uriOK := false
			for _, u := range c.URIs {
				s := u.String()
				if strings.HasPrefix(s, PeerURIPrefix) {
					if s != PeerURIPrefix+pid {
						t.Fatalf("accepted %q with a peer URI %q naming another id", pid, s)
					}
					uriOK = true
				}
			}
			if !cnOK && !uriOK {
				t.Fatalf("peer id %q named by neither CN %q nor URIs %v", pid, cn, c.URIs)
			}
			if strings.HasPrefix(cn, PeerCNPrefix) && !cnOK {
				t.Fatalf("accepted %q although CN %q names another", pid, cn)
			}
		}
		if nid, err := NodeIDFromCert(c); err == nil {
			if cn != nid || len(c.URIs) != 1 || c.URIs[0].String() != NodeURIPrefix+nid {
				t.Fatalf("node id %q from CN %q URIs %v", nid, cn, c.URIs)
			}
		}
	})
}

func FuzzParseRevocationTarget(f *testing.F) {
	f.Add("serial:0a1b")
	f.Add("spki:" + strings.Repeat("ab", 32))
	f.Add("deadbeef")
	f.Add("serial:-1")
	f.Add("spki:zz")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRevocationTarget(s)
		if err != nil {
			return
		}
		if r.Serial == nil && r.SPKI == ([32]byte{}) {
			t.Fatalf("%q parsed to an empty revocation", s)
		}
		if r.Serial != nil && r.Serial.Sign() <= 0 {
			t.Fatalf("%q parsed to a non-positive serial", s)
		}
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	k := mustKey(f)
	p, _ := encodeKeyPEM(k)
	f.Add(p)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ParseKeyPEM(b); err == nil && s == nil {
			t.Fatal("nil signer without error")
		}
	})
}

func TestParsePEMFixtures(t *testing.T) {
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		in    []byte
		chain error // ParseChainPEM
		pool  error // PoolFromPEM
	}{
		{"chain", read("chain.pem"), nil, ErrBadPEM},
		{"bundle", read("bundle.pem"), ErrChainOrder, nil},
		{"wrong order", read("chain-reversed.pem"), ErrChainOrder, ErrBadPEM},
		{"garbage", []byte("garbage"), ErrBadPEM, ErrBadPEM},
		{"bad base64", []byte("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"), ErrBadPEM, ErrBadPEM},
		{"bad DER", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ErrBadPEM, ErrBadPEM},
		{"key instead of cert", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ErrBadPEM, ErrBadPEM},
		{"text before", append([]byte("hello\n"), read("chain.pem")...), ErrBadPEM, ErrBadPEM},
		{"empty", nil, ErrBadPEM, ErrBadPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseChainPEM(tt.in); !errors.Is(err, tt.chain) {
				t.Errorf("ParseChainPEM: %v, want %v", err, tt.chain)
			}
			if _, _, err := PoolFromPEM(tt.in); !errors.Is(err, tt.pool) {
				t.Errorf("PoolFromPEM: %v, want %v", err, tt.pool)
			}
		})
	}
}

func FuzzCheckCSR(f *testing.F) {
	id := "0193a1c2-7d3e-7a4b-8c5d-6e7f8091a2b3"
	k := mustKey(f)
	for _, tmpl := range []*x509.CertificateRequest{
		{},
		{Subject: pkix.Name{CommonName: id}, URIs: []*url.URL{NodeURI(id)}},
		{DNSNames: []string{"a.example"}},
		{URIs: []*url.URL{PeerURI(id)}},
	} {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		cn, uri := nodeNames(id)
		if CheckCSR(csr, cn, uri) != nil {
			return
		}
		if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) != 0 || len(csr.URIs) > 1 ||
			(len(csr.URIs) == 1 && csr.URIs[0].String() != uri) || (csr.Subject.CommonName != "" && csr.Subject.CommonName != cn) {
			t.Fatalf("CheckCSR accepted foreign names: cn %q %v %v %v %v", csr.Subject.CommonName, csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, csr.URIs)
		}
	})
}
