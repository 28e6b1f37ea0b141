package pki_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/testport"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	stepca "github.com/smallstep/certificates/ca"
	"go.step.sm/crypto/jose"
)

// stepCA is a real step-ca server (smallstep ca.New) on loopback.
type stepCA struct {
	cfg  *config.Config
	srv  *stepca.CA
	done chan error
	fp   string
	url  string
}

// freePort is a loopback address outside the ephemeral port range.
func freePort(t *testing.T) string { return testport.Addr(t) }

// startStepCA creates root and intermediate files (with the embedded CA's
// key generation), a JWK provisioner "fedgate" whose private key is
// encrypted with password, and serves step-ca over HTTPS on 127.0.0.1.
func startStepCA(t *testing.T, password []byte) *stepCA {
	t.Helper()
	files := pkitest.NewCA(t) // step-ca serves with its root and intermediate files
	caDir := files.Dir()
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	jwe, err := jose.EncryptJWK(jwk, password)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	pub := jwk.Public()
	dur := func(d time.Duration) *provisioner.Duration { return &provisioner.Duration{Duration: d} }
	addr := freePort(t)
	cfg := &config.Config{
		Root:             []string{filepath.Join(caDir, pki.RootCertFile)},
		IntermediateCert: filepath.Join(caDir, pki.IntermediateCertFile),
		IntermediateKey:  filepath.Join(caDir, pki.IntermediateKeyFile),
		Address:          addr,
		DNSNames:         []string{"127.0.0.1"},
		AuthorityConfig: &config.AuthConfig{
			Provisioners: provisioner.List{&provisioner.JWK{Type: "JWK", Name: "fedgate", Key: &pub, EncryptedKey: enc}},
			Claims:       &provisioner.Claims{MinTLSDur: dur(time.Second), MaxTLSDur: dur(24 * time.Hour), DefaultTLSDur: dur(time.Hour)},
			Backdate:     dur(0),
		},
	}
	s := &stepCA{cfg: cfg, fp: pki.Fingerprint(files.Root()), url: "https://" + addr}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *stepCA) start(t *testing.T) {
	t.Helper()
	srv, err := stepca.New(s.cfg, stepca.WithQuiet(true))
	if err != nil {
		t.Fatalf("step-ca: %v", err)
	}
	s.srv, s.done = srv, make(chan error, 1)
	go func() { s.done <- srv.Run() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "https://"), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("step-ca did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stepCA) stop(t *testing.T) {
	if s.srv == nil {
		return
	}
	_ = s.srv.Stop()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Error("step-ca did not stop")
	}
	s.srv = nil
}

func writePassword(t *testing.T, pw []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, append(pw, '\n'), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExternalStepCA(t *testing.T) {
	pw := []byte("correct horse battery staple")
	s := startStepCA(t, pw)
	pwFile := writePassword(t, pw, 0o600)
	iss, err := pki.NewExternalIssuer(pki.ExternalConfig{URL: s.url, RootFingerprint: s.fp, Provisioner: "fedgate", PasswordFile: pwFile, Logger: pkitest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	policy := pki.RenewPolicy{RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	a := openIdentity(t, iss, func(c *pki.IdentityConfig) { c.Lifetime = time.Hour; c.Renew = policy })
	b := openIdentity(t, iss, func(c *pki.IdentityConfig) { c.Lifetime = time.Hour })
	if leaf := a.Certificate().Leaf; leaf.Subject.CommonName != a.NodeID() || len(leaf.URIs) != 1 || leaf.URIs[0].String() != pki.NodeURI(a.NodeID()).String() {
		t.Fatalf("step-ca issued subject %q uris %v", leaf.Subject.CommonName, leaf.URIs)
	}
	serr, cerr, scs, _ := handshake(t, a.ServerTLSConfig(), b.ClientTLSConfig())
	if serr != nil || cerr != nil {
		t.Fatalf("mTLS with step-ca certificates: server %v, client %v", serr, cerr)
	}
	if id, _ := pki.NodeIDFromConn(scs); id != b.NodeID() {
		t.Fatalf("server sees %q", id)
	}

	// The CA goes away: renewal fails, the current certificate stays, the
	// status says so; when the CA is back, renewal succeeds.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s.stop(t)
	before := a.Certificate().Leaf.SerialNumber
	a.RenewNow()
	waitFor(t, 10*time.Second, func() bool { return a.Status().Failures >= 2 })
	st := a.Status()
	if st.State != "renewing-failed" || !strings.Contains(st.LastError, s.url) || a.Certificate().Leaf.SerialNumber.Cmp(before) != 0 {
		t.Fatalf("status with CA down: %v", st)
	}
	t.Logf("status with the CA down: %v", st)
	s.start(t)
	waitFor(t, 15*time.Second, func() bool { return a.Status().Failures == 0 })
	if a.Certificate().Leaf.SerialNumber.Cmp(before) == 0 {
		t.Fatal("certificate not renewed after the CA came back")
	}
}

func TestExternalIssuerBadConfig(t *testing.T) {
	pw := []byte("pw")
	s := startStepCA(t, pw)
	good := writePassword(t, pw, 0o600)
	loose := writePassword(t, pw, 0o644)
	base := pki.ExternalConfig{URL: s.url, RootFingerprint: s.fp, Provisioner: "fedgate", PasswordFile: good}

	c := base
	c.PasswordFile = loose
	if _, err := pki.NewExternalIssuer(c); !errors.Is(err, pki.ErrKeyFileMode) {
		t.Errorf("loose password file: %v", err)
	}
	c = base
	c.URL = "http://127.0.0.1:1"
	if _, err := pki.NewExternalIssuer(c); !errors.Is(err, pki.ErrConfig) {
		t.Errorf("http url: %v", err)
	}
	// A wrong root fingerprint: the pinned connection fails.
	c = base
	c.RootFingerprint = strings.Repeat("ab", 32)
	iss, err := pki.NewExternalIssuer(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.OpenNodeIdentity(t.Context(), pki.IdentityConfig{Dir: t.TempDir(), NodeID: pkitest.NewID(t), Issuer: iss}); err == nil {
		t.Error("identity obtained through a CA with another root")
	}
	// A wrong password cannot decrypt the provisioner key.
	c = base
	c.PasswordFile = writePassword(t, []byte("wrong"), 0o600)
	iss, _ = pki.NewExternalIssuer(c)
	if _, err := pki.OpenNodeIdentity(t.Context(), pki.IdentityConfig{Dir: t.TempDir(), NodeID: pkitest.NewID(t), Issuer: iss}); err == nil {
		t.Error("identity obtained with a wrong provisioner password")
	}
}
