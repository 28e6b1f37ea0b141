package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/powernode/fedgate/agent"
)

// lcSite is a single-node site with the proxy and the federation lifecycle.
type lcSite struct {
	*node
	inbound, outbound, control, bootstrap string
}

type lcOpts struct {
	platformVersion string
	noContact       bool
	platformURL     string
	backend         string
	noProxy         bool // the lifecycle keeps federation certificates itself
}

func newLifecycleSite(t *testing.T, name string, o lcOpts) *lcSite {
	t.Helper()
	s := &lcSite{inbound: freeAddr(t), outbound: freeAddr(t), control: freeAddr(t), bootstrap: freeAddr(t)}
	if o.platformVersion == "" {
		o.platformVersion = "1.0.0"
	}
	contact := "  operator_contact: ops@" + name + ".example\n"
	if o.noContact {
		contact = ""
	}
	routes := ""
	if o.backend != "" {
		routes = fmt.Sprintf("  routes:\n    - name: workspaces\n      path_prefix: /\n      backend: %s\n      resource_kind: workspace\n", o.backend)
	}
	platform := ""
	if o.platformURL != "" {
		platform = "  platform_url: " + o.platformURL + "\n"
	}
	proxy := fmt.Sprintf("proxy:\n  inbound: %s\n  outbound: %s\n  resource_kinds: [workspace]\n  migration_grace: 2s\n%s", s.inbound, s.outbound, routes)
	if o.noProxy {
		proxy = ""
	}
	extra := fmt.Sprintf(`federation:
  platform_version: %s
%slifecycle:
  bootstrap_listen: %s
  listen: %s
%s  jurisdiction: EU
  last_known_good_release: v1.0.0
  data_residency: eu-west
  heartbeat_interval: 300ms
  stale_after: 4s
  heartbeat_rate: 20
  heartbeat_burst: 20
  notice_timeout: 1s
  notice_attempts: 2
  suspend_policy:
    threshold: 3
    window: 1h
%s`, o.platformVersion, proxy, s.bootstrap, s.control, contact, platform)
	s.node = newNode(t, name, true, extra)
	s.start()
	s.waitReady(20 * time.Second)
	return s
}

type lcPeer struct {
	ID                    string            `json:"id"`
	Status                string            `json:"status"`
	ContractVersionAgreed int               `json:"contract_version_agreed"`
	OutboundSubject       string            `json:"outbound_subject"`
	TrustedCAPEM          string            `json:"trusted_ca_pem"`
	OperatorContact       string            `json:"operator_contact"`
	LastHeartbeatAt       string            `json:"last_heartbeat_at"`
	Metadata              map[string]string `json:"metadata"`
}

func (s *lcSite) peer(t *testing.T, id string) lcPeer {
	t.Helper()
	var p lcPeer
	if err := s.cliJSON(&p, "peers", "show", id); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return p
}

func (s *lcSite) waitStatus(t *testing.T, id, want string, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%s sees peer %s %s", s.name, id, want), func() error {
		var p lcPeer
		if err := s.cliJSON(&p, "peers", "show", id); err != nil {
			return err
		}
		if p.Status != want {
			return fmt.Errorf("status %s", p.Status)
		}
		return nil
	})
}

// invite runs `peers invite` and returns the peer id, URL and token file.
func (s *lcSite) invite(t *testing.T) (string, string, string) {
	t.Helper()
	tf := filepath.Join(t.TempDir(), "token")
	var inv struct {
		PeerID string `json:"peer_id"`
		URL    string `json:"url"`
	}
	if err := s.cliJSON(&inv, "peers", "invite", "--token-file", tf); err != nil {
		t.Fatal(err)
	}
	return inv.PeerID, inv.URL, tf
}

// pair: a invites, b accepts. Returns (a's id for b, b's id for a).
func pair(t *testing.T, a, b *lcSite) (string, string) {
	t.Helper()
	idAB, u, tf := a.invite(t)
	var p lcPeer
	if err := b.cliJSON(&p, "peers", "accept", u, "--token-file", tf, "--contract-version", "1"); err != nil {
		t.Fatal(err)
	}
	return idAB, p.ID
}

type auditRec struct {
	Action           string            `json:"action"`
	FederationPeerID string            `json:"federation_peer_id"`
	RemoteSubject    string            `json:"remote_subject"`
	Decision         string            `json:"decision"`
	Reason           string            `json:"reason"`
	Metadata         map[string]string `json:"metadata"`
}

// audits returns the records for peer (and action, when set).
func (s *lcSite) audits(t *testing.T, peer, action string) []auditRec {
	t.Helper()
	var page struct {
		Records []auditRec `json:"records"`
	}
	args := []string{"audit", "query", "--peer", peer}
	if action != "" {
		args = append(args, "--action", action)
	}
	if err := s.cliJSON(&page, args...); err != nil {
		t.Fatal(err)
	}
	return page.Records
}

func (s *lcSite) waitAudit(t *testing.T, peer, action string, match func(auditRec) bool) {
	t.Helper()
	eventually(t, 10*time.Second, s.name+" audit "+action, func() error {
		for _, r := range s.audits(t, peer, action) {
			if match(r) {
				return nil
			}
		}
		return fmt.Errorf("no matching %s record for %s", action, peer)
	})
}

// platformRecorder is a local HTTP server standing in for the platform.
type platformRecorder struct {
	mu     sync.Mutex
	events []agent.FleetEvent
}

func (p *platformRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != agent.FleetEventsPath {
		http.NotFound(w, r)
		return
	}
	var body struct {
		Events []agent.FleetEvent `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	p.mu.Lock()
	p.events = append(p.events, body.Events...)
	p.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (p *platformRecorder) has(kind, peer string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e.Kind == kind && e.Payload["federation_peer_id"] == peer && e.CorrelationID != "" {
			return true
		}
	}
	return false
}

// fedClient is an mTLS client presenting site s's federation certificate
// for its peer id (read from its data dir), for crafted requests.
func (s *lcSite) fedClient(t *testing.T, peerID string) (*http.Client, crypto.Signer) {
	t.Helper()
	dir := filepath.Join(s.dir, "data", "federation")
	var kp tls.Certificate
	eventually(t, 10*time.Second, "federation certificate on disk", func() error {
		var err error
		kp, err = tls.LoadX509KeyPair(filepath.Join(dir, "fed-"+peerID+".crt"), filepath.Join(dir, "fed-"+peerID+".key"))
		return err
	})
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{kp}, InsecureSkipVerify: true, // test client: the server is not under test here
	}, DisableKeepAlives: true}}, kp.PrivateKey.(crypto.Signer)
}

func postJSONStatus(t *testing.T, c *http.Client, u string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := c.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

func (s *lcSite) callPeer(peerID string) (int, error) {
	req, _ := http.NewRequest("GET", "http://"+s.outbound+"/v1/workspaces/7", nil)
	req.Host = peerID + ".peer.fedgate"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// localPost posts to a node's local API over its unix socket.
func (s *lcSite) localPost(t *testing.T, path string, body any, out any) int {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", s.socket)
	}}}
	b, _ := json.Marshal(body)
	resp, err := c.Post("http://fedgate"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (s *lcSite) crlSerials(t *testing.T) map[string]bool {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + s.cluster + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("crl: %v", err)
	}
	out := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out
}

// TestLifecycleTwoSites walks invite → accept → enrolled → active → calls
// → revoke between two real sites on loopback, with the refusals of the
// accept endpoint and bad heartbeats on the way.
func TestLifecycleTwoSites(t *testing.T) {
	plat := &platformRecorder{}
	ps := httptest.NewServer(plat)
	defer ps.Close()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from B, caller %s", r.Header.Get("X-Federation-Peer-Id"))
	}))
	defer backend.Close()
	a := newLifecycleSite(t, "siteA", lcOpts{platformURL: ps.URL})
	b := newLifecycleSite(t, "siteB", lcOpts{backend: backend.URL})

	// Invite and accept.
	idAB, u, tf := a.invite(t)
	if p := a.peer(t, idAB); p.Status != "proposed" {
		t.Fatalf("A: invited peer is %s, want proposed", p.Status)
	}
	if fi, err := os.Stat(tf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", fi.Mode(), err)
	}
	// Version 2 is refused with 422 and does not consume the token.
	if _, err := b.cli("peers", "accept", u, "--token-file", tf, "--contract-version", "2"); err == nil || !strings.Contains(err.Error(), "contract version 2") {
		t.Fatalf("version 2: %v", err)
	}
	// A bad token is refused with 401.
	bad := filepath.Join(t.TempDir(), "bad")
	rb := make([]byte, 32)
	rand.Read(rb)
	os.WriteFile(bad, []byte(base64.RawURLEncoding.EncodeToString(rb)), 0o600)
	if _, err := b.cli("peers", "accept", u, "--token-file", bad, "--contract-version", "1"); err == nil || !strings.Contains(err.Error(), "unknown or already used") {
		t.Fatalf("bad token: %v", err)
	}
	var pb lcPeer
	if err := b.cliJSON(&pb, "peers", "accept", u, "--token-file", tf, "--contract-version", "1"); err != nil {
		t.Fatal(err)
	}
	idBA := pb.ID
	// The token is single use.
	if _, err := b.cli("peers", "accept", u, "--token-file", tf, "--contract-version", "1"); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reused token: %v", err)
	}
	pa := a.peer(t, idAB)
	for _, c := range []struct {
		site string
		p    lcPeer
		out  string
	}{{"A", pa, "fed:" + idBA}, {"B", pb, "fed:" + idAB}} {
		if c.p.ContractVersionAgreed != 1 || c.p.OutboundSubject != c.out || !strings.Contains(c.p.TrustedCAPEM, "BEGIN CERTIFICATE") {
			t.Fatalf("%s after accept: version %d outbound %q want %q, bundle %v", c.site, c.p.ContractVersionAgreed, c.p.OutboundSubject, c.out, c.p.TrustedCAPEM != "")
		}
		if c.p.Status != "accepted" && c.p.Status != "enrolled" && c.p.Status != "active" {
			t.Fatalf("%s after accept: status %s", c.site, c.p.Status)
		}
	}
	// Handshake enrols, the first heartbeat activates, on both sides.
	a.waitStatus(t, idAB, "active", 20*time.Second)
	b.waitStatus(t, idBA, "active", 20*time.Second)
	if p := a.peer(t, idAB); p.OperatorContact != "ops@siteB.example" || p.LastHeartbeatAt == "" {
		t.Fatalf("A's record of B lacks disclosure or heartbeat: %+v", p)
	}
	a.waitAudit(t, idAB, "handshake", func(r auditRec) bool { return r.Decision == "allow" })
	b.waitAudit(t, idBA, "heartbeat", func(r auditRec) bool { return r.Decision == "allow" })
	a.waitAudit(t, idAB, "federation.accept", func(r auditRec) bool { return r.Decision == "allow" })
	// Calls go through A's outbound and B's inbound proxy.
	eventually(t, 20*time.Second, "call A -> B", func() error {
		code, err := a.callPeer(idAB)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	a.waitAudit(t, idAB, "proxy.request", func(r auditRec) bool { return r.Decision == "allow" })
	b.waitAudit(t, idBA, "proxy.request", func(r auditRec) bool { return r.Decision == "allow" })

	// A heartbeat whose peer_id is not the certificate's is refused and audited.
	cli, _ := b.fedClient(t, idBA)
	hb := map[string]any{"peer_id": idBA, "status": "active", "sent_at": time.Now().UTC(), "operator_contact": "x", "jurisdiction": "EU",
		"platform_version": "1.0.0", "last_known_good_release": "v1", "data_residency": "eu", "capabilities": map[string]any{"resource_kinds": []string{}},
		"endpoints": []any{}}
	if code, body := postJSONStatus(t, cli, "https://"+a.control+"/api/v1/system/federation_api/heartbeat", hb); code != 403 || !strings.Contains(body, "peer_id_mismatch") {
		t.Fatalf("mismatched heartbeat: %d %s", code, body)
	}
	a.waitAudit(t, idAB, "heartbeat", func(r auditRec) bool { return r.Decision == "deny" && r.Reason == "peer_id_mismatch" })
	// A heartbeat flood is rate limited (429) and audited.
	hb["peer_id"] = idAB
	limited := 0
	for i := 0; i < 60 && limited == 0; i++ {
		hb["sent_at"] = time.Now().UTC()
		if code, _ := postJSONStatus(t, cli, "https://"+a.control+"/api/v1/system/federation_api/heartbeat", hb); code == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("a heartbeat flood was never rate limited")
	}
	a.waitAudit(t, idAB, "heartbeat", func(r auditRec) bool { return r.Decision == "deny" && r.Reason == "rate_limited" })

	// Status events reached the platform.
	eventually(t, 10*time.Second, "platform events", func() error {
		for _, k := range []string{"federation.peer.accepted", "federation.peer.enrolled", "federation.peer.active"} {
			if !plat.has(k, idAB) {
				return fmt.Errorf("no %s event", k)
			}
		}
		return nil
	})

	// Revoke: final notice to B first, then teardown and certificate revocation.
	var tv struct {
		Our struct {
			Serial string `json:"serial"`
		} `json:"our_certificate"`
	}
	if err := a.cliJSON(&tv, "trust", "show", idAB); err != nil || tv.Our.Serial == "" {
		t.Fatalf("our federation certificate for B: %v %+v", err, tv)
	}
	var rev map[string]any
	if code := a.localPost(t, "/v1/peers/"+idAB+"/revoke-notify", map[string]string{"reason": "e2e: parting ways"}, &rev); code != 200 {
		t.Fatalf("revoke: %d %v", code, rev)
	}
	if rev["status"] != "revoked" || rev["notice_delivered"] != true {
		t.Fatalf("revoke answer: %v", rev)
	}
	b.waitStatus(t, idBA, "revoked", 10*time.Second)
	if p := b.peer(t, idBA); !strings.HasPrefix(p.Metadata["revocation_reason"], "revoked by peer: ") {
		t.Fatalf("B's revocation reason: %q", p.Metadata["revocation_reason"])
	}
	b.waitAudit(t, idBA, "federation.notice", func(r auditRec) bool { return r.Metadata["final_notification"] == "event" })
	b.waitAudit(t, idBA, "heartbeat", func(r auditRec) bool { return r.Metadata["final_notification"] == "heartbeat" })
	a.waitAudit(t, idAB, "peer.transition", func(r auditRec) bool {
		return r.Metadata["to"] == "revoked" && r.Metadata["notice_delivered"] == "true"
	})
	if !a.crlSerials(t)[strings.ToLower(strings.TrimLeft(tv.Our.Serial, "0"))] {
		t.Fatalf("A's CRL lacks its federation certificate for B (serial %s)", tv.Our.Serial)
	}
	eventually(t, 10*time.Second, "calls refused after revoke", func() error {
		code, err := a.callPeer(idAB)
		if err == nil && code == 200 {
			return fmt.Errorf("still allowed")
		}
		return nil
	})
	eventually(t, 10*time.Second, "revocation events", func() error {
		if !plat.has("federation.peer.revoked", idAB) || !plat.has("platform.peer.revoked", idAB) {
			return fmt.Errorf("missing revocation events")
		}
		return nil
	})
	// Audit kept on both sides.
	if len(a.audits(t, idAB, "proxy.request")) == 0 || len(b.audits(t, idBA, "proxy.request")) == 0 {
		t.Fatal("audit records lost after revocation")
	}
	if err := a.stop(); err != nil {
		t.Error(err)
	}
	if err := b.stop(); err != nil {
		t.Error(err)
	}
}

// TestLifecycleRefusals: N-2 platform version, missing identity
// disclosure, digest mismatch (→ auto-suspend), a replayed compromise
// notice, and a revoke while the peer is unreachable.
func TestLifecycleRefusals(t *testing.T) {
	a := newLifecycleSite(t, "siteA", lcOpts{})
	old := newLifecycleSite(t, "siteOld", lcOpts{platformVersion: "1.2.0"})
	anon := newLifecycleSite(t, "siteAnon", lcOpts{noContact: true})
	d := newLifecycleSite(t, "siteD", lcOpts{})

	idAOld, _ := pair(t, a, old)
	idAAnon, _ := pair(t, a, anon)
	idAD, idDA := pair(t, a, d)
	d.waitStatus(t, idDA, "active", 20*time.Second)
	a.waitStatus(t, idAD, "active", 20*time.Second)

	// N-2: refused both ways, never enrolled.
	a.waitAudit(t, idAOld, "handshake", func(r auditRec) bool {
		return r.Decision == "deny" && r.Reason == "platform_version_incompatible"
	})
	// Missing identity disclosure: never enrolled here.
	a.waitAudit(t, idAAnon, "handshake", func(r auditRec) bool {
		return r.Decision == "deny" && r.Reason == "identity_disclosure_missing"
	})
	for _, id := range []string{idAOld, idAAnon} {
		if p := a.peer(t, id); p.Status != "accepted" {
			t.Fatalf("A's peer %s is %s, want accepted", id, p.Status)
		}
	}

	// Digest mismatch: refused with 409 and a contract_mismatch finding;
	// the third hard finding within the window auto-suspends.
	cli, key := d.fedClient(t, idDA)
	hs := map[string]any{"handshake": map[string]any{"peer_id": idAD, "contract_version": 1,
		"contract_digest": strings.Repeat("0", 64), "platform_version": "1.0.0", "capabilities": map[string]any{"resource_kinds": []string{}},
		"operator_contact": "x", "jurisdiction": "EU", "last_known_good_release": "v1", "data_residency": "eu", "endpoints": []any{}, "vips": []string{}}}
	for i := 0; i < 3; i++ {
		code, body := postJSONStatus(t, cli, "https://"+a.control+"/api/v1/system/federation_api/handshake", hs)
		if code != 409 || !strings.Contains(body, "contract_digest_mismatch") {
			t.Fatalf("digest mismatch %d: %d %s", i, code, body)
		}
	}
	a.waitStatus(t, idAD, "suspended", 10*time.Second)
	var findings []struct {
		Kind string `json:"kind"`
	}
	if err := a.cliJSON(&findings, "findings", "--peer", idAD); err != nil || len(findings) < 3 {
		t.Fatalf("findings: %v %+v", err, findings)
	}
	if p := a.peer(t, idAD); !strings.HasPrefix(p.Metadata["suspension_reason"], "auto-suspended") {
		t.Fatalf("suspension reason %q", p.Metadata["suspension_reason"])
	}

	// Compromise notice from A to D, replayed: applied once, then ignored.
	aCli, aKey := a.fedClient(t, idAD)
	n, err := agent.SignNotice(agent.Notice{Kind: agent.NoticeCompromised, PeerID: idDA, Reason: "e2e: keys stolen"}, aKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_ = key
	code, body := postJSONStatus(t, aCli, "https://"+d.control+"/api/v1/system/federation_api/notice", n)
	if code != 200 || !strings.Contains(body, `"suspended"`) {
		t.Fatalf("compromise notice: %d %s", code, body)
	}
	code, body = postJSONStatus(t, aCli, "https://"+d.control+"/api/v1/system/federation_api/notice", n)
	if code != 200 || !strings.Contains(body, "duplicate") {
		t.Fatalf("replayed notice: %d %s", code, body)
	}
	d.waitStatus(t, idDA, "suspended", 5*time.Second)
	if p := d.peer(t, idDA); !strings.Contains(p.Metadata["suspension_reason"], "compromise notice") {
		t.Fatalf("D's suspension reason %q", p.Metadata["suspension_reason"])
	}
	d.waitAudit(t, idDA, "federation.notice", func(r auditRec) bool { return r.Reason == "replayed notice ignored" })
	if out := d.mustCLI("compromise", "status"); !strings.Contains(out, idDA) || !strings.Contains(out, "e2e: keys stolen") {
		t.Fatalf("compromise status:\n%s", out)
	}
	// The operator command reaches the partner (already suspended there).
	var cr []struct {
		PeerID    string `json:"federation_peer_id"`
		Delivered bool   `json:"delivered"`
	}
	if err := a.cliJSON(&cr, "compromise", "notify", "--reason", "e2e drill"); err != nil {
		t.Fatal(err)
	}
	delivered := false
	for _, r := range cr {
		if r.PeerID == idAD && r.Delivered {
			delivered = true
		}
	}
	if !delivered {
		t.Fatalf("compromise notify: %+v", cr)
	}

	// Revoke while the peer is unreachable: teardown proceeds, failure recorded.
	d.kill()
	var rev map[string]any
	if code := a.localPost(t, "/v1/peers/"+idAD+"/revoke-notify", map[string]string{"reason": "e2e: unreachable"}, &rev); code != 200 {
		t.Fatalf("revoke: %d %v", code, rev)
	}
	if rev["status"] != "revoked" || rev["notice_delivered"] != false || rev["notice_error"] == "" {
		t.Fatalf("revoke of an unreachable peer: %v", rev)
	}
	if p := a.peer(t, idAD); !strings.HasPrefix(p.Metadata["fedgate_revocation_notice"], "failed") {
		t.Fatalf("notice failure not recorded: %q", p.Metadata["fedgate_revocation_notice"])
	}
	a.waitAudit(t, idAD, "peer.transition", func(r auditRec) bool { return r.Metadata["notice_delivered"] == "false" })
}

// TestLifecycleStaleAndPlainRevoke: a silent peer goes active → degraded
// with a peer_heartbeat_stale finding; `fedgate peers revoke` delivers the
// final notice before teardown to a reachable peer and records the failure
// for an unreachable one.
func TestLifecycleStaleAndPlainRevoke(t *testing.T) {
	a := newLifecycleSite(t, "siteA", lcOpts{})
	e := newLifecycleSite(t, "siteE", lcOpts{noProxy: true})
	f := newLifecycleSite(t, "siteF", lcOpts{})
	idAE, _ := pair(t, a, e)
	idAF, idFA := pair(t, a, f)
	a.waitStatus(t, idAE, "active", 20*time.Second)
	a.waitStatus(t, idAF, "active", 20*time.Second)
	f.waitStatus(t, idFA, "active", 20*time.Second)

	// E goes silent: degraded after stale_after (4s), with a finding.
	e.kill()
	a.waitStatus(t, idAE, "degraded", 15*time.Second)
	var findings []struct {
		Kind string `json:"kind"`
	}
	if err := a.cliJSON(&findings, "findings", "--peer", idAE); err != nil {
		t.Fatal(err)
	}
	stale := false
	for _, fd := range findings {
		stale = stale || fd.Kind == "peer_heartbeat_stale"
	}
	if !stale {
		t.Fatalf("no peer_heartbeat_stale finding: %+v", findings)
	}

	// Plain revoke of the reachable F: F learns it and marks A revoked.
	// `fedgate peers revoke` notifies first (commitment 4), then tears down.
	a.mustCLI("peers", "revoke", idAF, "--reason", "e2e plain revoke")
	f.waitStatus(t, idFA, "revoked", 15*time.Second)
	a.waitAudit(t, idAF, "peer.transition", func(r auditRec) bool {
		return r.Metadata["notice_delivered"] == "true" && r.Metadata["revoked_cert_serial"] != ""
	})
	// Revoke of the unreachable E: teardown proceeds, the failure is recorded.
	a.mustCLI("peers", "revoke", idAE, "--reason", "e2e plain revoke, unreachable")
	a.waitAudit(t, idAE, "peer.transition", func(r auditRec) bool {
		return r.Metadata["notice_delivered"] == "false" && r.Metadata["notice_error"] != ""
	})
}
