package proxy_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/proxy"
)

// writeCertFiles writes A's certificate chain and key as PEM files.
func writeCertFiles(t *testing.T, pr *pair) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range pr.certA.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pr.certA.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestCurlInterop(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl binary not installed: skipping curl --cert interop")
	}
	pr := newPair(t, nil, nil)
	certFile, keyFile := writeCertFiles(t, pr)
	url := "https://" + pr.b.p.InboundAddr().String() + "/api/status/curl"
	for _, proto := range []string{"--http1.1", "--http2"} {
		t.Run(proto, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// -k: B's federation certificate names fed:<id>, not 127.0.0.1;
			// this test is about the client certificate.
			out, err := exec.CommandContext(ctx, curl, "-sS", "-k", proto, "--tlsv1.3",
				"--cert", certFile, "--key", keyFile,
				"-H", proxy.HeaderPeerID+": spoofed", "-H", proxy.HeaderCorrelationID+": curl"+proto,
				"-w", "\n%{http_code} %{http_version}", url).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			wantVer := map[string]string{"--http1.1": "1.1", "--http2": "2"}[proto]
			if last != "200 "+wantVer {
				t.Errorf("curl got %q, want 200 %s\n%s", last, wantVer, out)
			}
			if got := pr.be.last().Header.Get(proxy.HeaderPeerID); got != pr.idA {
				t.Errorf("backend saw peer %q", got)
			}
			pr.b.audit.waitRecord(t, "curl", func(r audit.Record) bool { return r.CorrelationID == "curl"+proto && r.Decision == audit.DecisionAllow })
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		out, err := exec.Command(curl, "-sS", "-k", "--max-time", "5", url).CombinedOutput()
		if err == nil {
			t.Errorf("curl without a certificate succeeded: %s", out)
		}
	})
}

func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl binary not installed: skipping s_client interop")
	}
	pr := newPair(t, nil, nil)
	certFile, keyFile := writeCertFiles(t, pr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", pr.b.p.InboundAddr().String(),
		"-tls1_3", "-cert", certFile, "-cert_chain", certFile, "-key", keyFile, "-alpn", "http/1.1", "-quiet", "-ign_eof")
	cmd.Stdin = strings.NewReader("GET /api/status/openssl HTTP/1.1\r\nHost: b\r\nX-Remote-Subject: root\r\nConnection: close\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "HTTP/1.1 200 OK") {
		t.Fatalf("s_client: %v\n%s", err, out)
	}
	seen := pr.be.last()
	if seen.URL.Path != "/api/status/openssl" || seen.Header.Get(proxy.HeaderRemoteSubject) != "fed:"+pr.idA {
		t.Errorf("backend saw %s subject %q", seen.URL.Path, seen.Header.Get(proxy.HeaderRemoteSubject))
	}
	// Without a certificate the handshake is refused.
	cmd = exec.CommandContext(ctx, openssl, "s_client", "-connect", pr.b.p.InboundAddr().String(), "-tls1_3", "-quiet", "-ign_eof")
	cmd.Stdin = strings.NewReader("GET /api/status HTTP/1.1\r\nHost: b\r\n\r\n")
	out, _ = cmd.CombinedOutput()
	if strings.Contains(string(out), "HTTP/1.1") {
		t.Errorf("s_client without a certificate got an HTTP answer:\n%s", out)
	}
}
