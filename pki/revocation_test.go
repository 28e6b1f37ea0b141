package pki_test

import (
	"crypto/tls"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
)

// TestRevocationHookClosesLiveConnections: the way the proxy uses the hook.
// A live federation connection from peer A is closed when A's certificate is
// revoked, and A's next handshake is refused.
func TestRevocationHookClosesLiveConnections(t *testing.T) {
	caA, caB := pkitest.NewCA(t), pkitest.NewCA(t)
	idA := pkitest.NewID(t)
	revs := &pki.Revocations{}
	peers := &peerSourceWithRevs{Peers: &pkitest.Peers{}, revs: revs}
	peers.Put(idA, caA.BundlePEM(), "active")
	v, _ := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peers})
	certA := fedCert(t, caA, idA)
	srvCert := fedCert(t, caB, pkitest.NewID(t))

	var mu sync.Mutex
	live := map[*tls.Conn]bool{}
	revs.OnRevoke(func(rs []pki.Revocation) {
		mu.Lock()
		defer mu.Unlock()
		for c := range live {
			if pki.MatchesAny(c.ConnectionState().PeerCertificates[0], rs) {
				c.Close()
				delete(live, c)
			}
		}
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", v.ServerTLSConfig(srvCert.Get))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			go func() {
				if tc.Handshake() != nil {
					tc.Close()
					return
				}
				mu.Lock()
				live[tc] = true
				mu.Unlock()
				buf := make([]byte, 1)
				for {
					if _, err := tc.Read(buf); err != nil {
						return
					}
					tc.Write(buf)
				}
			}()
		}
	}()
	dial := func() (*tls.Conn, error) {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return certA.Get() }}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return nil, err
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := dial()
	if err != nil {
		t.Fatalf("connection before revocation: %v", err)
	}
	defer c.Close()
	revs.Update([]pki.Revocation{{Serial: certA.Certificate().Leaf.SerialNumber}})
	c.Write([]byte("y"))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("live connection survived the revocation")
	}
	if _, err := dial(); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("new connection after revocation: %v", err)
	}
	if len(revs.List()) != 1 || !revs.Revoked(certA.Certificate().Leaf.SerialNumber, [32]byte{}) {
		t.Fatal("list not updated")
	}
}

type peerSourceWithRevs struct {
	*pkitest.Peers
	revs *pki.Revocations
}

func (p *peerSourceWithRevs) Revoked(s *big.Int, spki [32]byte) bool { return p.revs.Revoked(s, spki) }

func TestRevocationsUpdateCallsHooksWithNewEntries(t *testing.T) {
	var got [][]pki.Revocation
	r := &pki.Revocations{}
	r.OnRevoke(func(rs []pki.Revocation) { got = append(got, rs) })
	a := pki.Revocation{Serial: big.NewInt(10)}
	b := pki.Revocation{SPKI: [32]byte{1}}
	r.Update([]pki.Revocation{a})
	r.Update([]pki.Revocation{a})
	r.Update([]pki.Revocation{a, b})
	if len(got) != 2 || len(got[0]) != 1 || got[0][0].Serial.Int64() != 10 || len(got[1]) != 1 || got[1][0].SPKI != b.SPKI {
		t.Fatalf("hook calls %+v", got)
	}
	if !r.Revoked(big.NewInt(99), [32]byte{1}) || r.Revoked(big.NewInt(99), [32]byte{2}) {
		t.Fatal("Revoked wrong")
	}
}

func TestParseRevocationTarget(t *testing.T) {
	for in, ok := range map[string]bool{
		"serial:0a": true, "0a": true, "spki:" + strings.Repeat("0f", 32): true,
		"serial:": false, "serial:xyz": false, "spki:00": false, "crl:1": false, "serial:-5": false,
	} {
		_, err := pki.ParseRevocationTarget(in)
		if (err == nil) != ok {
			t.Errorf("%q: err %v", in, err)
		}
		if err != nil && !errors.Is(err, pki.ErrConfig) {
			t.Errorf("%q: err %v not ErrConfig", in, err)
		}
	}
}
