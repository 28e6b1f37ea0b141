package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// site is one single-node fedgate site with a proxy.
type site struct {
	*node
	inbound, outbound string
}

func newSite(t *testing.T, name, routes string) *site {
	in, out := freeAddr(t), freeAddr(t)
	extra := fmt.Sprintf(`proxy:
  inbound: %s
  outbound: %s
  resource_kinds: [workspace]
  migration_grace: 2s
%s`, in, out, routes)
	s := &site{node: newNode(t, name, true, extra), inbound: in, outbound: out}
	s.start()
	s.waitReady(20 * time.Second)
	return s
}

// bundle fetches the site's CA bundle from its cluster API.
func (s *site) bundle(t *testing.T) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + s.cluster + "/v1/trust_bundle")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tb struct {
		Bundle string `json:"ca_bundle_pem"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tb); err != nil || tb.Bundle == "" {
		t.Fatalf("trust bundle: %v", err)
	}
	return tb.Bundle
}

const (
	idAforB = "0190a000-0000-7000-8000-00000000000b" // the id site A gives site B
	idBforA = "0190a000-0000-7000-8000-00000000000a" // the id site B gives site A
)

// addActivePeer records the other site on s and walks it to active.
func (s *site) addActivePeer(t *testing.T, id, assignedToUs, caPEM, endpoint string) {
	t.Helper()
	rec := map[string]any{
		"id": id, "status": "proposed", "peer_kind": "platform", "remote_instance_url": "https://" + endpoint,
		"contract_version_agreed": 1, "outbound_subject": "fed:" + assignedToUs, "trusted_ca_pem": caPEM,
		"endpoints":        []map[string]any{{"url": "https://" + endpoint, "scope": "lan", "priority": 1}},
		"capabilities":     map[string]any{"resource_kinds": []string{"workspace"}},
		"operator_contact": "ops@example.org", "jurisdiction": "EU", "platform_version": "1.0.0",
		"last_known_good_release": "v1.0.0", "data_residency": "eu-west",
	}
	f := filepath.Join(t.TempDir(), "peer.json")
	b, _ := json.Marshal(rec)
	os.WriteFile(f, b, 0o600)
	s.mustCLI("peers", "add", "--from-file", f)
	for _, st := range []string{"accepted", "enrolled", "active"} {
		s.mustCLI("peers", "transition", id, st, "--reason", "e2e")
	}
}

type seen struct {
	mu  sync.Mutex
	hdr []http.Header
}

func (s *seen) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hdr) == 0 {
		return nil
	}
	return s.hdr[len(s.hdr)-1]
}

// TestTwoSitesProxyPath: a platform service on site A calls a backend on
// site B through A's outbound proxy and B's inbound proxy, with real
// processes, real site CAs and federation certificates. B's backend sees
// the verified identity and never the spoofed one; both sites audit; a
// suspended peer is refused and that refusal is audited too.
func TestTwoSitesProxyPath(t *testing.T) {
	rec := &seen{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.hdr = append(rec.hdr, r.Header.Clone())
		rec.mu.Unlock()
		fmt.Fprintf(w, "hello from B %s", r.URL.Path)
	}))
	defer backend.Close()
	a := newSite(t, "siteA", "")
	b := newSite(t, "siteB", fmt.Sprintf(`  limits:
    max_body_bytes: 4096
  routes:
    - name: workspaces
      path_prefix: /
      backend: %s
      resource_kind: workspace
`, backend.URL))
	a.addActivePeer(t, idAforB, idBforA, b.bundle(t), b.inbound)
	b.addActivePeer(t, idBforA, idAforB, a.bundle(t), a.inbound)

	call := func() (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+a.outbound+"/v1/workspaces/42", nil)
		req.Host = idAforB + ".peer.fedgate"
		req.Header.Set("X-Federation-Peer-Id", "spoofed-peer")
		req.Header.Set("X-Forwarded-Tls-Client-Cert", "spoofed")
		req.Header.Set("Powernode-Remote-Subject", "alice@site-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	var code int
	var body string
	eventually(t, 20*time.Second, "call through A-outbound -> B-inbound", func() error {
		var err error
		code, body, err = call()
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	})
	if body != "hello from B /v1/workspaces/42" {
		t.Fatalf("body %q", body)
	}
	h := rec.last()
	if got := h.Get("X-Federation-Peer-Id"); got != idBforA {
		t.Errorf("backend saw X-Federation-Peer-Id %q, want the verified %q", got, idBforA)
	}
	if got := h.Get("X-Remote-Subject"); got != "alice@site-a" {
		t.Errorf("backend saw X-Remote-Subject %q", got)
	}
	if got := h.Get("X-Forwarded-Tls-Client-Cert"); got == "spoofed" || got == "" {
		t.Errorf("backend saw X-Forwarded-Tls-Client-Cert %q, want the verified chain", got)
	}
	if got := h.Get("X-Forwarded-Tls-Client-Cert-Info"); !strings.Contains(got, "fed%3A"+idBforA) && !strings.Contains(got, "fed:"+idBforA) {
		t.Errorf("backend saw X-Forwarded-Tls-Client-Cert-Info %q", got)
	}
	// B's configured body cap (proxy.limits.max_body_bytes: 4096) holds end
	// to end: an 8 KiB upload through A is refused by B, 1 KiB passes.
	post := func(n int) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+a.outbound+"/v1/workspaces/42", strings.NewReader(strings.Repeat("x", n)))
		req.Host = idAforB + ".peer.fedgate"
		req.Header.Set("Powernode-Remote-Subject", "alice@site-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %d bytes: %v", n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(8 << 10); code != http.StatusRequestEntityTooLarge {
		t.Errorf("8 KiB POST through A to B: status %d, want 413 from B's configured limit", code)
	}
	if code := post(1 << 10); code != http.StatusOK {
		t.Errorf("1 KiB POST through A to B: status %d, want 200", code)
	}
	// Both sites audited the call with the peer id and remote subject.
	wantAudit := func(s *site, peer, action, decision string) {
		t.Helper()
		eventually(t, 5*time.Second, s.name+" audit", func() error {
			var page struct {
				Records []struct {
					Action           string `json:"action"`
					FederationPeerID string `json:"federation_peer_id"`
					RemoteSubject    string `json:"remote_subject"`
					Decision         string `json:"decision"`
				} `json:"records"`
			}
			args := []string{"audit", "query", "--peer", peer, "--decision", decision, "--json"}
			if action != "" {
				args = append(args, "--action", action)
			}
			out, err := s.cli(args...)
			if err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(out), &page); err != nil {
				return err
			}
			if len(page.Records) == 0 {
				all, _ := s.cli("audit", "tail", "-n", "8")
				return fmt.Errorf("no %s %s record for %s; newest records:\n%s", decision, action, peer, all)
			}
			if page.Records[0].RemoteSubject == "" {
				return fmt.Errorf("record without remote_subject: %+v", page.Records[0])
			}
			return nil
		})
	}
	wantAudit(b, idBforA, "proxy.request", "allow")
	wantAudit(a, idAforB, "proxy.request", "allow")

	// B suspends A: the next call is refused and audited as a denial.
	b.mustCLI("peers", "transition", idBforA, "suspended", "--reason", "e2e suspend")
	eventually(t, 5*time.Second, "suspended peer refused", func() error {
		code, body, err := call()
		if err != nil {
			return err
		}
		if code == 200 {
			return fmt.Errorf("still allowed: %s", body)
		}
		return nil
	})
	wantAudit(b, idBforA, "", "deny")
	if err := a.stop(); err != nil {
		t.Error(err)
	}
	if err := b.stop(); err != nil {
		t.Error(err)
	}
}
