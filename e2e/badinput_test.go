package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/raftstore"
)

// rejects reports whether a TLS client with cfg fails to get a raft session
// at addr: the handshake fails, or the server closes the connection
// without speaking.
func rejects(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	cfg.NextProtos = []string{raftstore.ProtoRaft}
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	// TLS 1.3 client auth failures surface on the first read.
	if _, err := c.Read(make([]byte, 1)); err != nil && err != io.EOF && !strings.Contains(err.Error(), "timeout") {
		return nil
	} else if err == io.EOF {
		return nil
	}
	return errString("the raft listener accepted the connection")
}

type errString string

func (e errString) Error() string { return string(e) }

// TestRaftRefusesForeignClients: a connection without a site certificate,
// or with a node certificate from another site's real CA, is refused.
func TestRaftRefusesForeignClients(t *testing.T) {
	n := newNode(t, "n1", true, "")
	n.start()
	eventually(t, 20*time.Second, "leader", func() error { return wantState(n, "leader") })
	var st struct {
		Raft struct {
			Address string `json:"address"`
		} `json:"raft"`
	}
	if err := n.cliJSON(&st, "status"); err != nil {
		t.Fatal(err)
	}
	// No client certificate at all.
	if err := rejects(t, st.Raft.Address, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); err != nil {
		t.Fatalf("no client certificate: %v", err)
	}
	// A valid node certificate of another site.
	dir := t.TempDir()
	other, err := pki.OpenCA(pki.Config{Dir: filepath.Join(dir, "ca"), SiteName: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.OpenNodeIdentity(context.Background(), pki.IdentityConfig{Dir: filepath.Join(dir, "id"),
		NodeID: "01a215d3-c122-75a2-9cbf-a32a03fa9b10", Issuer: other, Roots: other.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := id.ClientTLSConfig()
	cfg.VerifyConnection = nil // the intruder does not care who the server is
	if err := rejects(t, st.Raft.Address, cfg); err != nil {
		t.Fatalf("certificate from another CA: %v", err)
	}
	// The node still serves.
	if err := wantState(n, "leader"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.logText(), "refused") {
		t.Errorf("refusals were not logged")
	}
}

// TestCorruptRaftDirRefusesToStart: garbage in raft.db makes fedgated exit
// with an error naming the file, and the file is left exactly as it was.
func TestCorruptRaftDirRefusesToStart(t *testing.T) {
	n := newNode(t, "n1", true, "")
	n.start()
	eventually(t, 20*time.Second, "leader", func() error { return wantState(n, "leader") })
	addPeer(t, n, "site-b")
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(n.dir, "data", "raft", "raft.db")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("raft.db not where expected: %v", err)
	}
	garbage := []byte(strings.Repeat("not a bolt database ", 400))
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	before := sha256.Sum256(garbage)
	out, err := exec.Command(bins.fedgated, "--config", n.config).CombinedOutput()
	if err == nil {
		t.Fatalf("fedgated started on a corrupt raft dir:\n%s", out)
	}
	if !strings.Contains(string(out), "raft.db") {
		t.Errorf("error does not name the corrupt file:\n%s", tail(string(out), 2000))
	}
	after, _ := os.ReadFile(db)
	if sha256.Sum256(after) != before {
		t.Errorf("the corrupt file was modified")
	}
}

// TestSecondInstanceRefused: one fedgated per data dir.
func TestSecondInstanceRefused(t *testing.T) {
	n := newNode(t, "n1", true, "")
	n.start()
	cfg2 := filepath.Join(t.TempDir(), "second.yaml")
	b, _ := os.ReadFile(n.config)
	s := strings.Replace(string(b), n.socket, filepath.Join(filepath.Dir(cfg2), "other.sock"), 1)
	s = strings.Replace(s, n.raft, freeAddr(t), 1)
	s = strings.Replace(s, n.cluster, freeAddr(t), 1)
	if err := os.WriteFile(cfg2, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bins.fedgated, "--config", cfg2).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use") {
		t.Fatalf("second instance: err=%v\n%s", err, out)
	}
}

// TestMalformedConfigNamesLine: fedgated refuses a bad config with file and line.
func TestMalformedConfigNamesLine(t *testing.T) {
	buildBinaries(t)
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("node:\n  data_dir: /tmp/x\n  colour: blue\n"), 0o600)
	out, err := exec.Command(bins.fedgated, "--config", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), p) || !strings.Contains(string(out), "line 3") || !strings.Contains(string(out), "colour") {
		t.Fatalf("err=%v\n%s", err, out)
	}
}

// TestJoinRefusals: a bad token, a reused token and a second join are refused.
func TestJoinRefusals(t *testing.T) {
	n1 := newNode(t, "n1", true, "")
	n2 := newNode(t, "n2", false, "")
	n1.start()
	eventually(t, 20*time.Second, "leader", func() error { return wantState(n1, "leader") })
	n2.start()
	tok := filepath.Join(t.TempDir(), "tok")
	var inv struct {
		JoinURL string `json:"join_url"`
	}
	if err := n1.cliJSON(&inv, "cluster", "invite", "--out", tok); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(tok)
	// A token with the right site but a wrong secret.
	bad := filepath.Join(t.TempDir(), "bad")
	parts := strings.Split(strings.TrimSpace(string(good)), ".")
	os.WriteFile(bad, []byte("fgj1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA."+parts[2]), 0o600)
	if _, err := n2.cli("cluster", "join", inv.JoinURL, "--token-file", bad); err == nil || !strings.Contains(err.Error(), "unknown or already used") {
		t.Fatalf("bad token: %v", err)
	}
	// A token file readable by others is refused before it is sent.
	loose := filepath.Join(t.TempDir(), "loose")
	os.WriteFile(loose, good, 0o644)
	if _, err := n2.cli("cluster", "join", inv.JoinURL, "--token-file", loose); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("loose token file: %v", err)
	}
	n2.mustCLI("cluster", "join", inv.JoinURL, "--token-file", tok)
	if _, err := n2.cli("cluster", "join", inv.JoinURL, "--token-file", tok); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second join: %v", err)
	}
	n3 := newNode(t, "n3", false, "")
	n3.start()
	if _, err := n3.cli("cluster", "join", inv.JoinURL, "--token-file", tok); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reused token: %v", err)
	}
	eventually(t, 20*time.Second, "two voters", func() error { return wantVoters(n1, 2) })
}
