package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/proxy"
)

func FuzzParsePeerHost(f *testing.F) {
	for _, s := range []string{
		"0190a000-0000-7000-8000-000000000001.peer.fedgate",
		"0190A000-0000-7000-8000-000000000001.PEER.FEDGATE:443",
		"0190a000-0000-7000-8000-000000000001.peer.fedgate.",
		"example.com", "", ":", "[::1]:80", ".peer.fedgate",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		id, err := proxy.ParsePeerHost(host)
		if err != nil {
			return
		}
		if federation.ParseID(id) != nil {
			t.Fatalf("accepted %q with invalid id %q", host, id)
		}
		again, err := proxy.ParsePeerHost(proxy.PeerHost(id))
		if err != nil || again != id {
			t.Fatalf("round trip %q: %q %v", id, again, err)
		}
	})
}

func testCert(t testing.TB, cn string) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func FuzzClientCertHeader(f *testing.F) {
	c1 := testCert(f, "fed:0190a000-0000-7000-8000-000000000001")
	c2 := testCert(f, "Intermediate, Inc.")
	chain := []*x509.Certificate{c1, c2}
	f.Add(proxy.EncodeClientCert(chain), proxy.EncodeClientCertInfo(chain))
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "Subject%3D%22CN%3Dx%22")
	f.Add("%ZZ", "%")
	f.Fuzz(func(t *testing.T, certHdr, infoHdr string) {
		if got, err := proxy.ParseClientCert(certHdr); err == nil {
			// Whatever parses re-encodes to something that parses the same.
			again, err := proxy.ParseClientCert(proxy.EncodeClientCert(got))
			if err != nil || len(again) != len(got) {
				t.Fatalf("re-encode: %v", err)
			}
			for i := range got {
				if !again[i].Equal(got[i]) {
					t.Fatal("re-encoded chain differs")
				}
			}
		}
		proxy.ParseClientCertInfoCN(infoHdr)
	})
}

func TestClientCertHeaderRoundTrip(t *testing.T) {
	chain := []*x509.Certificate{testCert(t, "fed:0190a000-0000-7000-8000-000000000001"), testCert(t, `odd "CN", with=signs`)}
	enc := proxy.EncodeClientCert(chain)
	if strings.ContainsAny(enc, "\n\r -") {
		t.Errorf("encoded header has armor or line breaks")
	}
	got, err := proxy.ParseClientCert(enc)
	if err != nil || len(got) != 2 || !got[0].Equal(chain[0]) || !got[1].Equal(chain[1]) {
		t.Fatalf("round trip: %v", err)
	}
	// Older Traefik URL-escaped each certificate; PEM with armor also parses.
	escaped := strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(enc)
	if got, err := proxy.ParseClientCert(escaped); err != nil || !got[0].Equal(chain[0]) {
		t.Errorf("url-escaped: %v", err)
	}
	cn, err := proxy.ParseClientCertInfoCN(proxy.EncodeClientCertInfo(chain))
	if err != nil || cn != chain[0].Subject.CommonName {
		t.Errorf("info CN %q %v", cn, err)
	}
}

func FuzzParseIdentity(f *testing.F) {
	h := proxyproto.HeaderProxyFromAddrs(2, &netTCPAddr{IP: []byte{127, 0, 0, 1}, Port: 1}, &netTCPAddr{IP: []byte{127, 0, 0, 1}, Port: 2})
	h.SetTLVs([]proxyproto.TLV{{Type: proxy.TLVPeerID, Value: []byte("0190a000-0000-7000-8000-000000000001")}, {Type: proxyproto.PP2_TYPE_SSL, Value: []byte{3, 0, 0, 0, 0, 0x22, 0, 1, 'x'}}})
	raw, _ := h.Format()
	f.Add(raw)
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		proxy.ParseIdentity(h)
	})
}
