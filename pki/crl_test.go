package pki_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
)

// serveTrust starts an HTTPS listener with the node server configuration
// serving the trust handler.
func serveTrust(t *testing.T, ca *pki.CA, srv *pki.NodeIdentity, revoked []pki.Revocation) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: pki.TrustHandler(ca, func() []pki.Revocation { return revoked }), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func TestCRLAndTrustBundle(t *testing.T) {
	ca := pkitest.NewCA(t)
	srv, cli := openIdentity(t, ca), openIdentity(t, ca)
	victim := openIdentity(t, ca)
	revoked := []pki.Revocation{
		{Serial: victim.Certificate().Leaf.SerialNumber, RevokedAt: time.Now().Add(-time.Hour)},
		{SPKI: pki.SPKIHash(cli.Certificate().Leaf)}, // key-only: not expressible in a CRL
	}
	addr := serveTrust(t, ca, srv, revoked)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cli.ClientTLSConfig()}, Timeout: 10 * time.Second}

	resp, err := hc.Get("https://" + addr + "/trust_bundle")
	if err != nil {
		t.Fatal(err)
	}
	var tb pki.TrustBundleResponse
	if err := json.NewDecoder(resp.Body).Decode(&tb); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if tb.CABundlePEM != string(ca.BundlePEM()) || time.Since(tb.GeneratedAt) > time.Minute {
		t.Fatalf("trust bundle %+v", tb)
	}

	resp, err = hc.Get("https://" + addr + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/pkix-crl" {
		t.Errorf("content type %q", ct)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Intermediate()); err != nil {
		t.Fatalf("crl not signed by the intermediate: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(victim.Certificate().Leaf.SerialNumber) != 0 {
		t.Fatalf("crl entries %+v", crl.RevokedCertificateEntries)
	}
	der2, err := ca.CRL(nil)
	if err != nil {
		t.Fatal(err)
	}
	crl2, _ := x509.ParseRevocationList(der2)
	if crl2.Number.Cmp(crl.Number) <= 0 {
		t.Fatalf("crl number did not increase: %v then %v", crl.Number, crl2.Number)
	}

	// Without a client certificate the listener refuses.
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	if _, err := bare.Get("https://" + addr + "/trust_bundle"); err == nil {
		t.Fatal("request without client certificate succeeded")
	}
}

// writePEMs writes a node's leaf, intermediates and key path for external tools.
func writePEMs(t *testing.T, n *pki.NodeIdentity, dir string) (leaf, chain, full string) {
	t.Helper()
	c := n.Certificate()
	var certs []*x509.Certificate
	for _, d := range c.Certificate {
		x, _ := x509.ParseCertificate(d)
		certs = append(certs, x)
	}
	leaf, chain, full = filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "chain.pem"), filepath.Join(dir, "full.pem")
	for p, cs := range map[string][]*x509.Certificate{leaf: certs[:1], chain: certs[1:], full: certs} {
		if err := os.WriteFile(p, pki.EncodeCertificatesPEM(cs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return leaf, chain, full
}

// TestInteropOpenSSLCurl: clients we did not write complete the mutual TLS
// handshake against a listener using our server configuration, with real
// certificates from our CA; without a site certificate they are refused.
func TestInteropOpenSSLCurl(t *testing.T) {
	openssl, err1 := exec.LookPath("openssl")
	curl, err2 := exec.LookPath("curl")
	if err1 != nil || err2 != nil {
		t.Skip("openssl or curl not installed (CI installs them): ", err1, err2)
	}
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	srv := openIdentity(t, ca)
	nodeDir := t.TempDir()
	cli := openIdentity(t, ca, func(c *pki.IdentityConfig) { c.Dir = nodeDir })
	foreignDir := t.TempDir()
	foreign := openIdentity(t, other, func(c *pki.IdentityConfig) { c.Dir = foreignDir })
	addr := serveTrust(t, ca, srv, nil)
	tmp := t.TempDir()
	rootPEM := filepath.Join(tmp, "root.pem")
	if err := os.WriteFile(rootPEM, ca.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	leaf, chain, full := writePEMs(t, cli, tmp)
	key := filepath.Join(nodeDir, pki.NodeKeyFile)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	t.Run("openssl s_client", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-tls1_3",
			"-CAfile", rootPEM, "-verify_return_error", "-cert", leaf, "-cert_chain", chain, "-key", key, "-ign_eof")
		cmd.Stdin = strings.NewReader("GET /trust_bundle HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		for _, want := range []string{"Verify return code: 0 (ok)", "TLSv1.3", "HTTP/1.1 200 OK", `"ca_bundle_pem"`} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("openssl output lacks %q:\n%s", want, out)
			}
		}
	})

	// curl cannot check a certificate without a host name, so it pins the
	// server's public key instead (-k only lifts the host name check).
	spki := sha256.Sum256(srv.Certificate().Leaf.RawSubjectPublicKeyInfo)
	pin := "sha256//" + base64.StdEncoding.EncodeToString(spki[:])
	t.Run("curl --cert", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, curl, "-sS", "--fail", "--tlsv1.3", "-k", "--pinnedpubkey", pin,
			"--cert", full, "--key", key, "https://"+addr+"/trust_bundle").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		var tb pki.TrustBundleResponse
		if err := json.Unmarshal(out, &tb); err != nil || tb.CABundlePEM != string(ca.BundlePEM()) {
			t.Fatalf("curl body %s: %v", out, err)
		}
	})
	t.Run("curl refused", func(t *testing.T) {
		_, _, ffull := writePEMs(t, foreign, t.TempDir())
		for name, args := range map[string][]string{
			"no client certificate":   {},
			"certificate of other CA": {"--cert", ffull, "--key", filepath.Join(foreignDir, pki.NodeKeyFile)},
		} {
			a := append([]string{"-sS", "--fail", "--tlsv1.3", "-k", "--pinnedpubkey", pin}, args...)
			out, err := exec.CommandContext(ctx, curl, append(a, "https://"+addr+"/trust_bundle")...).CombinedOutput()
			if err == nil {
				t.Errorf("%s: curl succeeded: %s", name, out)
			}
		}
	})
}
