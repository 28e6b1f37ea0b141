package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

// storeSource is pki.PeerSource over one node's store, as the agent uses it.
type storeSource struct{ s *raftstore.Store }

func (p storeSource) PeerTrust(id string) ([]byte, string, bool) { return peerTrust(p.s.State(), id) }
func (p storeSource) Revoked(serial *big.Int, spki [32]byte) bool {
	return isRevoked(p.s.State(), serial, spki)
}

// TestRevocationEnforcedOnEveryNodeWithinOneSecond: a peer certificate
// revoked through one node of a three-node site is refused by the per-peer
// verifier of every node within one second of the revoke returning.
func TestRevocationEnforcedOnEveryNodeWithinOneSecond(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{LogLevel: slog.LevelWarn})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The peer's own CA issues its federation certificate (CN fed:<id we gave it>).
	peerCA := pkitest.NewCA(t)
	peerID := raftstoretest.NewNodeID(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	chain, err := peerCA.SignFederation(csr, peerID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := federation.NewPeer(peerID, federation.PeerKindPlatform, time.Now())
	p.TrustedCAPEM = string(peerCA.BundlePEM())
	p.ContractVersionAgreed = 1
	p.OperatorContact, p.Jurisdiction, p.PlatformVersion, p.LastKnownGoodRelease, p.DataResidency = "ops@b", "EU", "1.0.0", "v1", "eu"
	mustApply := func(node int, typ string, payload any) {
		t.Helper()
		if _, err := applyLocal(ctx, c.Nodes[node].Store, raftstore.MustCommand(typ, payload)); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	mustApply(0, raftstore.CmdPeerAdd, p)
	for _, st := range []federation.Status{federation.StatusAccepted, federation.StatusEnrolled, federation.StatusActive} {
		mustApply(0, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: peerID, To: st})
	}
	var vs [3]*pki.PeerVerifier
	for i := range vs {
		vs[i], err = pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: storeSource{c.Nodes[i].Store}})
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 5*time.Second, func() bool {
			_, err := vs[i].Verify(chain, x509.ExtKeyUsageClientAuth)
			return err == nil
		})
	}

	mustApply(1, raftstore.CmdCertRevoke, raftstore.CertRevokePayload{SerialHex: chain[0].SerialNumber.Text(16), Reason: "key compromise"})
	returned := time.Now()
	for i := range vs {
		waitUntil(t, 2*time.Second, func() bool {
			_, err := vs[i].Verify(chain, x509.ExtKeyUsageClientAuth)
			return err != nil
		})
		if d := time.Since(returned); d > time.Second {
			t.Errorf("node %d still accepted the revoked certificate %s after the revoke returned", i, d)
		}
	}
	// The same holds for revocation by public key of a re-issued certificate.
	chain2, _ := peerCA.SignFederation(csr, peerID, time.Hour)
	spki := pki.SPKIHash(chain2[0])
	mustApply(2, raftstore.CmdCertRevoke, raftstore.CertRevokePayload{SPKISHA256: hex.EncodeToString(spki[:])})
	returned = time.Now()
	for i := range vs {
		waitUntil(t, 2*time.Second, func() bool {
			_, err := vs[i].Verify(chain2, x509.ExtKeyUsageClientAuth)
			return err != nil
		})
		if d := time.Since(returned); d > time.Second {
			t.Errorf("node %d accepted a key-revoked certificate %s after the revoke returned", i, d)
		}
	}
}
