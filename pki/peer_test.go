package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
)

// fedCert issues, through the real CA ca, our outbound certificate carrying
// the id a peer assigned us.
func fedCert(t *testing.T, ca *pki.CA, assignedID string, mod ...func(*pki.FederationCertConfig)) *pki.FederationCert {
	t.Helper()
	cfg := pki.FederationCertConfig{
		Dir:        filepath.Join(t.TempDir(), "fed"),
		PeerID:     pkitest.NewID(t),
		AssignedID: assignedID,
		Issuer:     ca,
		Roots:      ca.Roots(),
		Logger:     pkitest.Logger(t),
	}
	for _, m := range mod {
		m(&cfg)
	}
	f, err := pki.OpenFederationCert(t.Context(), cfg)
	if err != nil {
		t.Fatalf("OpenFederationCert: %v", err)
	}
	return f
}

func chainOf(c *tls.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, d := range c.Certificate {
		x, err := x509.ParseCertificate(d)
		if err != nil {
			panic(err)
		}
		out = append(out, x)
	}
	return out
}

// TestPeerVerifier: site B verifies certificates claiming to be its peers.
// Every certificate comes from a real site CA.
func TestPeerVerifier(t *testing.T) {
	caA, caC, caD := pkitest.NewCA(t), pkitest.NewCA(t), pkitest.NewCA(t)
	idA, idC := pkitest.NewID(t), pkitest.NewID(t) // ids B assigned to A and C
	peers := &pkitest.Peers{}
	peers.Put(idA, caA.BundlePEM(), "active")
	peers.Put(idC, caC.BundlePEM(), "enrolled")
	v, err := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peers})
	if err != nil {
		t.Fatal(err)
	}

	good := fedCert(t, caA, idA)
	fromC := fedCert(t, caC, idC)
	mintedByC := fedCert(t, caC, idA)            // C's CA claims to be A
	mintedByD := fedCert(t, caD, idA)            // an unknown CA claims to be A
	unknown := fedCert(t, caA, pkitest.NewID(t)) // A's CA, id B never assigned
	revSerial := fedCert(t, caA, idA)
	revSPKI := fedCert(t, caA, idA)
	node := openIdentity(t, caA)
	peers.Revoke(pki.Revocation{Serial: revSerial.Certificate().Leaf.SerialNumber})
	peers.Revoke(pki.Revocation{SPKI: pki.SPKIHash(revSPKI.Certificate().Leaf)})

	id, err := v.Verify(chainOf(good.Certificate()), x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	if id.PeerID != idA || id.CommonName != "fed:"+idA || id.Serial.Cmp(good.Certificate().Leaf.SerialNumber) != 0 ||
		id.SPKI != pki.SPKIHash(good.Certificate().Leaf) || !id.Chain[len(id.Chain)-1].Equal(caA.Root()) {
		t.Fatalf("identity %+v", id)
	}
	if id, err := v.Verify(chainOf(fromC.Certificate()), x509.ExtKeyUsageClientAuth); err != nil || id.PeerID != idC {
		t.Fatalf("peer C refused: %v", err)
	}

	tests := []struct {
		name  string
		chain []*x509.Certificate
		want  error
	}{
		{"cross-peer minting: C's CA claims A", chainOf(mintedByC.Certificate()), pki.ErrUntrusted},
		{"wrong CA claims A", chainOf(mintedByD.Certificate()), pki.ErrUntrusted},
		{"unknown peer id", chainOf(unknown.Certificate()), pki.ErrPeerUnknown},
		{"revoked serial", chainOf(revSerial.Certificate()), pki.ErrRevoked},
		{"revoked spki", chainOf(revSPKI.Certificate()), pki.ErrRevoked},
		{"node certificate", chainOf(node.Certificate()), pki.ErrNoIdentity},
		{"no certificate", nil, pki.ErrNoPeerCertificate},
		{"leaf without its intermediate", chainOf(good.Certificate())[:1], pki.ErrUntrusted},
		{"wrong order", []*x509.Certificate{chainOf(good.Certificate())[1], chainOf(good.Certificate())[0]}, pki.ErrNoIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(tt.chain, x509.ExtKeyUsageClientAuth)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("status not reachable", func(t *testing.T) {
		for _, st := range []string{"proposed", "accepted", "suspended", "revoked"} {
			peers.SetStatus(idA, st)
			if _, err := v.Verify(chainOf(good.Certificate()), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrPeerNotReachable) {
				t.Errorf("status %s: err = %v", st, err)
			}
		}
		peers.SetStatus(idA, "degraded")
		if _, err := v.Verify(chainOf(good.Certificate()), x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("degraded: %v", err)
		}
	})

	t.Run("bundle replaced", func(t *testing.T) {
		// A's record now trusts another CA: the chain verified (and cached)
		// before must be refused.
		peers.Put(idA, caC.BundlePEM(), "active")
		defer peers.Put(idA, caA.BundlePEM(), "active")
		if _, err := v.Verify(chainOf(good.Certificate()), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrUntrusted) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("garbage bundle", func(t *testing.T) {
		idG := pkitest.NewID(t)
		peers.Put(idG, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "active")
		g := fedCert(t, caA, idG)
		if _, err := v.Verify(chainOf(g.Certificate()), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrUntrusted) || !errors.Is(err, pki.ErrBadPEM) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("expired", func(t *testing.T) {
		short := fedCert(t, caA, idA, func(c *pki.FederationCertConfig) { c.Lifetime = 2 * time.Second })
		time.Sleep(time.Until(short.Certificate().Leaf.NotAfter) + 100*time.Millisecond)
		if _, err := v.Verify(chainOf(short.Certificate()), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrExpired) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestPeerMTLSWithResumption: A calls B over mTLS with real federation
// certificates from both sites' CAs. Sessions resume; after A's certificate
// is revoked at B, the next (resumed) handshake is refused.
func TestPeerMTLSWithResumption(t *testing.T) {
	caA, caB := pkitest.NewCA(t), pkitest.NewCA(t)
	idAatB, idBatA := pkitest.NewID(t), pkitest.NewID(t)
	atB, atA := &pkitest.Peers{}, &pkitest.Peers{}
	atB.Put(idAatB, caA.BundlePEM(), "active")
	atA.Put(idBatA, caB.BundlePEM(), "active")
	vB, _ := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: atB})
	vA, _ := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: atA})
	certA := fedCert(t, caA, idAatB) // A's outbound cert for B (symmetric model)
	certB := fedCert(t, caB, idBatA) // B's cert towards A, served on B's listener
	// B's server certificate must also be usable for server auth: our CA
	// issues federation certificates with client and server auth.

	var resumedAttempts atomic.Int64
	srv := vB.ServerTLSConfig(certB.Get)
	verify := srv.VerifyConnection
	srv.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			resumedAttempts.Add(1)
		}
		return verify(cs)
	}
	cli := vA.ClientTLSConfig(idBatA, certA.Get)
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	cli.ServerName = "b.peer.test" // the session cache key (each handshake uses a new port)

	serr, cerr, scs, ccs := handshake(t, srv, cli)
	if serr != nil || cerr != nil {
		t.Fatalf("first handshake: server %v, client %v", serr, cerr)
	}
	if id, err := vB.Identity(scs); err != nil || id.PeerID != idAatB {
		t.Fatalf("B sees %+v, %v", id, err)
	}
	if id, err := pki.PeerIdentity(ccs); err != nil || id.PeerID != idBatA {
		t.Fatalf("A sees %+v, %v", id, err)
	}
	serr, cerr, scs, _ = handshake(t, srv, cli)
	if serr != nil || cerr != nil || !scs.DidResume {
		t.Fatalf("second handshake: server %v, client %v, resumed %v", serr, cerr, scs.DidResume)
	}
	atB.Revoke(pki.Revocation{Serial: certA.Certificate().Leaf.SerialNumber})
	before := resumedAttempts.Load()
	serr, _, _, _ = handshake(t, srv, cli)
	if !errors.Is(serr, pki.ErrRevoked) {
		t.Fatalf("resumed session with a revoked certificate: server error %v, want ErrRevoked", serr)
	}
	if resumedAttempts.Load() != before+1 {
		t.Fatal("the refused handshake was not a resumption")
	}

	// A dialing B but reaching a server that is another peer is refused.
	idX := pkitest.NewID(t)
	atA.Put(idX, caB.BundlePEM(), "active")
	other := fedCert(t, caB, idX)
	_, cerr, _, _ = handshake(t, vB.ServerTLSConfig(other.Get), vA.ClientTLSConfig(idBatA, certA.Get))
	if !errors.Is(cerr, pki.ErrIdentityMismatch) {
		t.Fatalf("client error %v, want ErrIdentityMismatch", cerr)
	}
}

// TestFederationCertHierarchical: in the hierarchical model the CSR goes to
// the parent and the returned chain must verify against the parent's bundle
// before it is stored; an answer from any other CA is refused and nothing
// is stored.
func TestFederationCertHierarchical(t *testing.T) {
	parent, rogue := pkitest.NewCA(t), pkitest.NewCA(t)
	parentRoots, _, err := pki.PoolFromPEM(parent.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	assigned := pkitest.NewID(t)
	dir := t.TempDir()
	f := fedCert(t, parent, assigned, func(c *pki.FederationCertConfig) { c.Dir = dir; c.Roots = parentRoots })
	if f.Certificate().Leaf.Subject.CommonName != "fed:"+assigned {
		t.Fatalf("CN %q", f.Certificate().Leaf.Subject.CommonName)
	}
	_, err = pki.OpenFederationCert(t.Context(), pki.FederationCertConfig{
		Dir: t.TempDir(), PeerID: pkitest.NewID(t), AssignedID: assigned, Issuer: rogue, Roots: parentRoots,
	})
	if !errors.Is(err, pki.ErrUntrusted) {
		t.Fatalf("chain from another CA: %v", err)
	}
}
