package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/proxy/proxytest"
)

// TestDenials: every refusal has its precise status and JSON reason, and
// site B audits it.
func TestDenials(t *testing.T) {
	pr := newBlindPair(t, nil, nil)
	type tc struct {
		name   string
		setup  func(t *testing.T, r *http.Request) // may mutate state or request
		method string
		path   string
		status int
		reason string
	}
	withGrant := func(mod func(*federation.Grant)) func(*testing.T, *http.Request) {
		return func(t *testing.T, r *http.Request) {
			_, tok := pr.grant(t, mod)
			r.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	setStatus := func(s federation.Status) func(*testing.T, *http.Request) {
		return func(t *testing.T, r *http.Request) {
			pr.b.state.UpdatePeer(pr.idA, func(p *federation.Peer) { p.Status = s })
			t.Cleanup(func() { pr.b.state.UpdatePeer(pr.idA, func(p *federation.Peer) { p.Status = federation.StatusActive }) })
		}
	}
	cases := []tc{
		{"suspended peer", setStatus(federation.StatusSuspended), "GET", "/api/status", 403, federation.ReasonPeerNotReachable},
		{"revoked peer", setStatus(federation.StatusRevoked), "GET", "/api/status", 403, federation.ReasonPeerNotReachable},
		{"contract not agreed", func(t *testing.T, r *http.Request) {
			pr.b.state.UpdatePeer(pr.idA, func(p *federation.Peer) { p.ContractVersionAgreed = 7 })
			t.Cleanup(func() { pr.b.state.UpdatePeer(pr.idA, func(p *federation.Peer) { p.ContractVersionAgreed = 1 }) })
		}, "GET", "/api/status", 403, federation.ReasonContractMismatch},
		{"undeclared capability", nil, "GET", "/api/dns/zone-1", 403, federation.ReasonCapabilityNotDeclared},
		{"no route", nil, "GET", "/nothing/here", 404, proxy.ReasonNoRoute},
		{"token missing", nil, "GET", "/api/vms/vm-1", 401, federation.ReasonTokenMissing},
		{"token forged", func(t *testing.T, r *http.Request) {
			_, tok := pr.grant(t, nil)
			r.Header.Set("Authorization", "Bearer "+tok[:len(tok)-4]+"0000")
		}, "GET", "/api/vms/vm-1", 401, federation.ReasonTokenInvalid},
		{"expired grant", withGrant(func(g *federation.Grant) {
			g.IssuedAt = time.Now().Add(-48 * time.Hour)
			g.ExpiresAt = time.Now().Add(-time.Second)
		}), "GET", "/api/vms/vm-1", 401, federation.ReasonGrantExpired},
		{"revoked grant", withGrant(func(g *federation.Grant) { g.RevokedAt = time.Now().Add(-time.Minute) }), "GET", "/api/vms/vm-1", 401, federation.ReasonGrantRevoked},
		{"grant of another peer", withGrant(func(g *federation.Grant) { g.FederationPeerID = "0190a000-0000-7000-8000-000000000777" }), "GET", "/api/vms/vm-1", 401, federation.ReasonGrantPeerMismatch},
		{"wrong scope", withGrant(func(g *federation.Grant) { g.PermissionScopes = []federation.Scope{federation.ScopeRead} }), "POST", "/api/vms/vm-1", 403, federation.ReasonScopeDenied},
		{"migration needs migrate scope", func(t *testing.T, r *http.Request) {
			withGrant(nil)(t, r)
			r.Header.Set(proxy.HeaderMigrationID, "mig-1")
		}, "POST", "/api/vms/vm-1", 403, federation.ReasonScopeDenied},
		{"wrong resource", withGrant(func(g *federation.Grant) { id := "vm-2"; g.ResourceID = &id }), "GET", "/api/vms/vm-1", 403, federation.ReasonResourceDenied},
		{"wrong kind", withGrant(func(g *federation.Grant) { g.ResourceKind = "dns" }), "GET", "/api/vms/vm-1", 403, federation.ReasonResourceKindDenied},
		{"wrong source cidr", withGrant(func(g *federation.Grant) { g.SourceCIDRs = mustPrefixes("192.0.2.0/24") }), "GET", "/api/vms/vm-1", 403, federation.ReasonSourceCIDRDenied},
		{"wrong node instance", withGrant(func(g *federation.Grant) { g.NodeInstanceIDs = []string{"0190a000-0000-7000-8000-0000000000bb"} }), "GET", "/api/vms/vm-1", 403, federation.ReasonNodeInstanceDenied},
		// An unsafe call is not forwarded without a durable record.
		{"audit down", func(t *testing.T, r *http.Request) {
			withGrant(nil)(t, r)
			pr.b.audit.setFail(errAuditDown)
			t.Cleanup(func() { pr.b.audit.setFail(nil) })
		}, "POST", "/api/vms/vm-1", 503, proxy.ReasonAuditUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := pr.be.count()
			r := pr.req(t, c.method, c.path, strings.NewReader(""))
			corr := "deny-" + strings.ReplaceAll(c.name, " ", "-")
			r.Header.Set(proxy.HeaderCorrelationID, corr)
			if c.setup != nil {
				c.setup(t, r)
			}
			code, h, body := do(t, pr.client, r)
			if code != c.status || denialReason(t, body) != c.reason {
				t.Fatalf("got %d %s, want %d %s", code, strings.TrimSpace(body), c.status, c.reason)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			if pr.be.count() != before {
				t.Errorf("backend was called")
			}
			if c.reason == proxy.ReasonAuditUnavailable {
				return // nothing can be audited while the log is down
			}
			rec := pr.b.audit.waitRecord(t, c.name, func(r audit.Record) bool { return r.CorrelationID == corr })
			if rec.Decision != audit.DecisionDeny || rec.Status != c.status || !strings.HasPrefix(rec.Reason, c.reason) || rec.FederationPeerID != pr.idA {
				t.Errorf("audit record %+v", rec)
			}
		})
	}
	if got := pr.b.drift.list(); len(got) == 0 || got[0] != pr.idA+" "+string(federation.FindingCapabilityDrift) {
		t.Errorf("findings %v, want a capability drift for A", got)
	}
}

var errAuditDown = &auditDown{}

type auditDown struct{}

func (*auditDown) Error() string { return "audit: disk full" }

// TestTLSDenials: certificates that do not prove the claimed peer are
// refused in the handshake and audited.
func TestTLSDenials(t *testing.T) {
	pr := newPair(t, nil, nil)
	// Peer C is known to B with its own CA.
	caC := pkitest.NewCA(t)
	idC := newID(t)
	pr.b.state.SetPeer(activePeer(idC, caC.BundlePEM(), "vm"))
	strangerCA := pkitest.NewCA(t)
	revoked := proxytest.IssueFederation(t, pr.a.ca, pr.idA, 0)
	pr.b.ver.Revoke(revoked.Leaf)
	cases := []struct {
		name, reason string
		cert         func() *tlsCert
	}{
		{"unknown CA", "untrusted", func() *tlsCert { return proxytest.IssueFederation(t, strangerCA, pr.idA, 0) }},
		{"cross-peer minting", "untrusted", func() *tlsCert { return proxytest.IssueFederation(t, caC, pr.idA, 0) }},
		{"unknown peer", "peer_unknown", func() *tlsCert { return proxytest.IssueFederation(t, pr.a.ca, newID(t), 0) }},
		{"revoked certificate", "cert_revoked", func() *tlsCert { return revoked }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert := c.cert()
			client := directClient(cert, false)
			defer client.CloseIdleConnections()
			_, err := client.Get("https://" + pr.b.p.InboundAddr().String() + "/api/status")
			if err == nil {
				t.Fatal("request succeeded")
			}
			serial := cert.Leaf.SerialNumber.String()
			_ = serial
			rec := pr.b.audit.waitRecord(t, c.name, func(r audit.Record) bool {
				return r.Action == audit.ActionProxyConnection && r.Decision == audit.DecisionDeny && strings.HasPrefix(r.Reason, "tls: "+c.reason)
			})
			if rec.Metadata["direction"] != "inbound" {
				t.Errorf("record %+v", rec)
			}
		})
	}
	// A valid certificate still works.
	client := directClient(pr.certA, true)
	resp, err := client.Get("https://" + pr.b.p.InboundAddr().String() + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("valid cert over h2: %d %s", resp.StatusCode, resp.Proto)
	}
}

func handshakeBody(t *testing.T, id, digest, version string) []byte {
	b, err := json.Marshal(federation.Handshake{
		PeerID: id, ContractVersion: 1, ContractDigest: digest, PlatformVersion: version,
		Capabilities: federation.Capabilities{ResourceKinds: []string{"vm"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandshake: contract digest and N-1 platform version checks, and the
// per-peer re-handshake token bucket.
func TestHandshake(t *testing.T) {
	pr := newPair(t, nil, func(c *proxy.Config) {
		c.HandshakeRate = rate.Every(time.Minute)
		c.HandshakeBurst = 4
	})
	post := func(body []byte) (int, http.Header, string) {
		r := pr.req(t, http.MethodPost, proxy.DefaultHandshakePath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return do(t, pr.client, r)
	}
	good := handshakeBody(t, pr.idA, federation.ContractV1Digest, "1.3.9")
	code, _, body := post(good)
	if code != 200 {
		t.Fatalf("good handshake: %d %s", code, body)
	}
	var reply proxy.HandshakeReply
	if err := json.Unmarshal([]byte(body), &reply); err != nil || reply.ContractDigest != federation.ContractV1Digest || reply.ContractVersion != 1 || reply.PlatformVersion != platformVersion {
		t.Errorf("reply %s (%v)", body, err)
	}
	for _, c := range []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"contract mismatch", handshakeBody(t, pr.idA, strings.Repeat("ab", 32), "1.4.0"), 409, federation.ReasonContractDigestMismatch},
		{"version N-2", handshakeBody(t, pr.idA, federation.ContractV1Digest, "1.2.0"), 409, federation.ReasonPlatformVersionIncompat},
		{"other peer id", handshakeBody(t, newID(t), federation.ContractV1Digest, "1.4.0"), 403, federation.ReasonPeerIDMismatch},
	} {
		code, _, body := post(c.body)
		if code != c.status || denialReason(t, body) != c.reason {
			t.Errorf("%s: %d %s, want %d %s", c.name, code, body, c.status, c.reason)
		}
		pr.b.audit.waitRecord(t, c.name, func(r audit.Record) bool {
			return r.Action == audit.ActionHandshake && r.Decision == audit.DecisionDeny && strings.HasPrefix(r.Reason, c.reason)
		})
	}
	// The bucket (burst 4) is now empty: the flood is refused with 429.
	code, h, body := post(good)
	if code != http.StatusTooManyRequests || denialReason(t, body) != proxy.ReasonRateLimited {
		t.Fatalf("flood: %d %s", code, body)
	}
	if ra := h.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	pr.b.audit.waitRecord(t, "handshake flood", func(r audit.Record) bool {
		return r.Action == audit.ActionHandshake && r.Status == 429 && r.FederationPeerID == pr.idA
	})
	if got := pr.b.drift.list(); len(got) == 0 {
		t.Errorf("no contract_mismatch finding")
	}
}

// TestCapabilityRateLimit: capability calls are rate-limited per peer.
func TestCapabilityRateLimit(t *testing.T) {
	pr := newPair(t, nil, func(c *proxy.Config) {
		c.CapabilityRate = rate.Every(time.Minute)
		c.CapabilityBurst = 2
	})
	var codes []int
	for range 3 {
		code, _, _ := do(t, pr.client, pr.req(t, http.MethodGet, "/api/capabilities", nil))
		codes = append(codes, code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Errorf("codes %v, want [200 200 429]", codes)
	}
}

// TestPKIRefusesUnreachablePeerAtTLS: with the pki package's verifier (as
// the agent wires it) a suspended peer's new connections fail the TLS
// handshake, audited; through site A the call fails with 502 because no
// endpoint of B will talk to A.
func TestPKIRefusesUnreachablePeerAtTLS(t *testing.T) {
	pr := newPair(t, nil, nil)
	if code, _, body := do(t, pr.client, pr.req(t, "GET", "/api/status", nil)); code != 200 {
		t.Fatalf("before suspension: %d %s", code, body)
	}
	if sni := pr.b.certs.ServerNames(); !slices.Contains(sni, proxy.PeerHost(pr.idB)) {
		t.Errorf("B was asked for SNI %v, want %s (the id A knows B by)", sni, proxy.PeerHost(pr.idB))
	}
	pr.b.state.UpdatePeer(pr.idA, func(p *federation.Peer) { p.Status = federation.StatusSuspended })
	pr.b.p.StateChanged() // closes A's live connections
	pr.a.p.StateChanged()
	client := directClient(pr.certA, false)
	if _, err := client.Get("https://" + pr.b.p.InboundAddr().String() + "/api/status"); err == nil {
		t.Fatal("suspended peer completed a request on a new connection")
	}
	pr.b.audit.waitRecord(t, "tls refusal", func(r audit.Record) bool {
		return r.Decision == audit.DecisionDeny && strings.HasPrefix(r.Reason, "tls: peer_not_reachable") && r.FederationPeerID == pr.idA
	})
	code, _, body := do(t, pr.client, pr.req(t, "GET", "/api/status", nil))
	if code != 502 || denialReason(t, body) != proxy.ReasonPeerRefused {
		t.Errorf("through A: %d %s", code, body)
	}
}

// TestAuditDownSafeMethod: a safe call may reach the backend while its
// record is being written, but nothing of the response is released when
// the append fails.
func TestAuditDownSafeMethod(t *testing.T) {
	pr := newPair(t, nil, nil)
	pr.b.audit.setFail(errAuditDown)
	r := pr.req(t, http.MethodGet, "/api/status/secret-data", nil)
	code, _, body := do(t, pr.client, r)
	if code != 503 || denialReason(t, body) != proxy.ReasonAuditUnavailable || strings.Contains(body, "secret-data") {
		t.Errorf("%d %s", code, body)
	}
	pr.b.audit.setFail(nil)
	pr.a.audit.setFail(errAuditDown)
	code, _, body = do(t, pr.client, pr.req(t, http.MethodGet, "/api/status/secret-data", nil))
	if code != 503 || strings.Contains(body, "secret-data") {
		t.Errorf("A's log down: %d %s", code, body)
	}
}

// TestAuditStarterPath: with the audit log itself as Auditor (it queues a
// record and is waited on later, no goroutine per call) a safe call's
// record is durable on both sites before the response is released, and a
// closed log on either site withholds the response.
func TestAuditStarterPath(t *testing.T) {
	pr := newPairWith(t, func(pr *pair, c *proxy.Config) { c.Auditor = pr.a.audit.log },
		func(pr *pair, c *proxy.Config) { c.Auditor = pr.b.audit.log })
	a, b := pr.a, pr.b
	if _, ok := a.cfg.Auditor.(proxy.AuditStarter); !ok {
		t.Fatal("A's auditor is not the raw audit log")
	}
	code, _, body := do(t, pr.client, pr.req(t, http.MethodGet, "/api/status/starter", nil))
	if code != 200 {
		t.Fatalf("GET: %d %s", code, body)
	}
	for _, s := range []*site{a, b} {
		page, err := s.audit.log.Query(audit.Query{Action: string(audit.ActionProxyRequest)})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range page.Records {
			found = found || strings.HasPrefix(r.Path, "/api/status/starter")
		}
		if !found {
			t.Errorf("%s: no durable record of the call (%d records)", s.name, len(page.Records))
		}
	}
	b.audit.log.Close()
	code, _, body = do(t, pr.client, pr.req(t, http.MethodGet, "/api/status/secret-data", nil))
	if code != 503 || strings.Contains(body, "secret-data") {
		t.Errorf("B's log closed: %d %s", code, body)
	}
}
