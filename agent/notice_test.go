package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func selfSigned(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fed:test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testPeerID = "0190a000-0000-7000-8000-00000000000a"

func TestNoticeSignVerify(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	for name, key := range map[string]crypto.Signer{"ecdsa": ec, "ed25519": ed} {
		t.Run(name, func(t *testing.T) {
			cert := selfSigned(t, key)
			n, err := SignNotice(Notice{Kind: NoticeCompromised, PeerID: testPeerID, Reason: "keys stolen"}, key, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(n.Nonce) != 32 || !n.Timestamp.Equal(now) {
				t.Fatalf("nonce %q timestamp %s", n.Nonce, n.Timestamp)
			}
			b, _ := json.Marshal(n)
			got, err := ParseNotice(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyNotice(got, cert); err != nil {
				t.Fatalf("verify: %v", err)
			}
			// Every signed field is covered.
			for field, mut := range map[string]func(*Notice){
				"kind":      func(n *Notice) { n.Kind = NoticeRevoked },
				"peer_id":   func(n *Notice) { n.PeerID = "0190a000-0000-7000-8000-00000000000b" },
				"reason":    func(n *Notice) { n.Reason += "!" },
				"nonce":     func(n *Notice) { n.Nonce = strings.Repeat("0", 32) },
				"timestamp": func(n *Notice) { n.Timestamp = n.Timestamp.Add(time.Second) },
			} {
				m := got
				mut(&m)
				if err := VerifyNotice(m, cert); !errors.Is(err, ErrNotice) {
					t.Errorf("%s changed: verify = %v, want ErrNotice", field, err)
				}
			}
			if err := VerifyNotice(got, selfSigned(t, other)); !errors.Is(err, ErrNotice) {
				t.Errorf("another key verified the notice: %v", err)
			}
		})
	}
}

func TestParseNoticeRefuses(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n, err := SignNotice(Notice{Kind: NoticeRevoked, PeerID: testPeerID, Reason: "bye"}, ec, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, _ := json.Marshal(n)
	for name, s := range map[string]string{
		"unknown kind":  strings.Replace(string(good), NoticeRevoked, "platform.peer.other", 1),
		"unknown field": strings.Replace(string(good), `{"kind"`, `{"extra":1,"kind"`, 1),
		"trailing":      string(good) + "{}",
		"bad peer id":   strings.Replace(string(good), testPeerID, "not-an-id", 1),
		"bad nonce":     strings.Replace(string(good), n.Nonce, strings.ToUpper(n.Nonce), 1),
		"control char":  strings.Replace(string(good), `"bye"`, `"b\u0007ye"`, 1),
		"no signature":  strings.Replace(string(good), n.Signature, "", 1),
		"too large":     strings.Replace(string(good), `"bye"`, `"`+strings.Repeat("x", maxNoticeBytes)+`"`, 1),
	} {
		if _, err := ParseNotice([]byte(s)); !errors.Is(err, ErrNotice) {
			t.Errorf("%s: ParseNotice = %v, want ErrNotice", name, err)
		}
	}
}

func FuzzParseNotice(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n, _ := SignNotice(Notice{Kind: NoticeCompromised, PeerID: testPeerID, Reason: "r"}, ec, time.Now())
	good, _ := json.Marshal(n)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"kind":"platform.peer.revoked"}`))
	cert := selfSigned(f, ec)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNotice(b)
		if err != nil {
			return
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("parsed notice does not validate: %v", err)
		}
		_ = VerifyNotice(n, cert) // must not panic
	})
}
