package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/proxy/proxytest"
)

// TestEndToEnd: a platform service on site A calls B's backend through
// A-outbound → B-inbound; B's backend sees the verified identity and none
// of the spoofed headers; both sites audit the call.
func TestEndToEnd(t *testing.T) {
	pr := newPair(t, nil, nil)
	g, tok := pr.grant(t, nil)

	spoofed := map[string]string{
		proxy.HeaderPeerID:         "0190a000-0000-7000-8000-000000000666",
		proxy.HeaderRemoteSubject:  "root",
		proxy.HeaderClientCert:     "MIIBogus",
		proxy.HeaderClientCertInfo: "Subject%3D%22CN%3Dfed%3Aevil%22",
		"X-Forwarded-For":          "203.0.113.9",
		"Forwarded":                "for=203.0.113.9",
		"X-Real-Ip":                "203.0.113.9",
	}
	for _, via := range []string{"tcp", "unix", "absolute"} {
		t.Run(via, func(t *testing.T) {
			client := pr.client
			r := pr.req(t, http.MethodGet, "/api/vms/vm-1?x=1", nil)
			switch via {
			case "unix":
				client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", pr.a.socket)
				}}}
			case "absolute":
				// An HTTP proxy-style request: absolute-form URI whose host is
				// B's endpoint; A routes it to B by endpoint.
				r.Host = ""
				r.URL.Host = pr.b.p.InboundAddr().String()
				client = &http.Client{Transport: &http.Transport{Proxy: func(*http.Request) (*urlT, error) {
					return parseURL("http://" + pr.a.p.OutboundAddr().String())
				}}}
			}
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Set(proxy.HeaderAssertedSubject, "user:mallory@site-a")
			r.Header.Set(proxy.HeaderCorrelationID, "corr-"+via)
			for k, v := range spoofed {
				r.Header.Set(k, v)
			}
			code, _, body := do(t, client, r)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			seen := pr.be.last()
			got := map[string]string{
				"peer":    seen.Header.Get(proxy.HeaderPeerID),
				"subject": seen.Header.Get(proxy.HeaderRemoteSubject),
				"xff":     seen.Header.Get("X-Forwarded-For"),
				"fwd":     seen.Header.Get("Forwarded"),
				"realip":  seen.Header.Get("X-Real-Ip"),
				"path":    seen.URL.Path + "?" + seen.URL.RawQuery,
			}
			want := map[string]string{
				"peer":    pr.idA,
				"subject": g.RemoteSubject, // the grant's subject wins over the asserted one
				"path":    "/api/vms/vm-1?x=1",
				"xff":     "", "fwd": "", "realip": "",
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("backend headers (-want +got):\n%s", d)
			}
			if n := len(seen.Header.Values(proxy.HeaderPeerID)); n != 1 {
				t.Errorf("%d %s values", n, proxy.HeaderPeerID)
			}
			chain, err := proxy.ParseClientCert(seen.Header.Get(proxy.HeaderClientCert))
			if err != nil {
				t.Fatalf("forwarded cert: %v", err)
			}
			if !chain[0].Equal(pr.certA.Leaf) {
				t.Errorf("forwarded leaf is %q, want A's certificate", chain[0].Subject.CommonName)
			}
			cn, err := proxy.ParseClientCertInfoCN(seen.Header.Get(proxy.HeaderClientCertInfo))
			if err != nil || cn != "fed:"+pr.idA {
				t.Errorf("cert info CN %q (%v), want fed:%s", cn, err, pr.idA)
			}
			// Both sites audited the call with peer and subject.
			corr := "corr-" + via
			inB := pr.b.audit.find(func(r audit.Record) bool { return r.CorrelationID == corr })
			outA := pr.a.audit.find(func(r audit.Record) bool { return r.CorrelationID == corr })
			if len(inB) != 1 || len(outA) != 1 {
				t.Fatalf("audit records: B %d, A %d; want 1 each", len(inB), len(outA))
			}
			type rec struct{ Action, Peer, Subject, Decision, Grant, Method, Path, Dir string }
			pick := func(r audit.Record) rec {
				return rec{r.Action, r.FederationPeerID, r.RemoteSubject, r.Decision, r.GrantID, r.Method, r.Path, r.Metadata["direction"]}
			}
			if d := cmp.Diff(rec{audit.ActionProxyRequest, pr.idA, g.RemoteSubject, audit.DecisionAllow, g.ID, "GET", "/api/vms/vm-1", "inbound"}, pick(inB[0])); d != "" {
				t.Errorf("B's record (-want +got):\n%s", d)
			}
			if d := cmp.Diff(rec{audit.ActionProxyRequest, pr.idB, "user:mallory@site-a", audit.DecisionAllow, "", "GET", "/api/vms/vm-1", "outbound"}, pick(outA[0])); d != "" {
				t.Errorf("A's record (-want +got):\n%s", d)
			}
			if inB[0].TLSVersion != "TLS 1.3" || inB[0].CertSPKISHA256 == "" || inB[0].CertSerial == "" {
				t.Errorf("B's record lacks TLS facts: %+v", inB[0])
			}
		})
	}
}

// TestAssertedSubject: without a grant, the subject A's service asserts is
// what B's backend sees; without either, the certificate subject. Both
// sites' audit records carry the same remote_subject (A's outbound record
// falls back to the subject of the certificate A presents to B).
func TestAssertedSubject(t *testing.T) {
	pr := newPair(t, nil, nil)
	for i, tc := range []struct{ asserted, want string }{
		{"user:bob@site-a", "user:bob@site-a"},
		{"", "fed:" + pr.idA},
	} {
		r := pr.req(t, http.MethodGet, "/api/status", nil)
		corr := fmt.Sprintf("subject-%d", i)
		r.Header.Set(proxy.HeaderCorrelationID, corr)
		if tc.asserted != "" {
			r.Header.Set(proxy.HeaderAssertedSubject, tc.asserted)
		}
		if code, _, body := do(t, pr.client, r); code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		if got := pr.be.last().Header.Get(proxy.HeaderRemoteSubject); got != tc.want {
			t.Errorf("asserted %q: backend saw subject %q, want %q", tc.asserted, got, tc.want)
		}
		if got := pr.be.last().Header.Get(proxy.HeaderAssertedSubject); got != "" {
			t.Errorf("backend saw %s %q; it must be consumed", proxy.HeaderAssertedSubject, got)
		}
		for site, l := range map[string]*teeAuditor{"A": pr.a.audit, "B": pr.b.audit} {
			recs := l.find(func(r audit.Record) bool { return r.CorrelationID == corr })
			if len(recs) != 1 || recs[0].RemoteSubject != tc.want {
				t.Errorf("asserted %q: %s's records %+v, want one with remote_subject %q", tc.asserted, site, recs, tc.want)
			}
		}
	}
}

func TestOutboundUnknownHost(t *testing.T) {
	pr := newPair(t, nil, nil)
	for _, tc := range []struct {
		host   string
		status int
		reason string
	}{
		{"example.com", 400, proxy.ReasonNotPeerHost},
		{"0190a000-0000-7000-8000-000000000999.peer.fedgate", 404, proxy.ReasonPeerUnknown},
	} {
		r := pr.req(t, http.MethodGet, "/api/status", nil)
		r.Host = tc.host
		code, _, body := do(t, pr.client, r)
		if code != tc.status || denialReason(t, body) != tc.reason {
			t.Errorf("host %q: %d %s, want %d %s", tc.host, code, strings.TrimSpace(body), tc.status, tc.reason)
		}
	}
}

// TestOutboundAuditOverlap: with the overlap option the call reaches the
// peer while A's record is made durable; the service gets the response only
// when it is, and 503 when A's log is down (B, strict, audited the call).
func TestOutboundAuditOverlap(t *testing.T) {
	pr := newPair(t, func(c *proxy.Config) { c.OutboundAuditOverlap = true }, nil)
	r := pr.req(t, http.MethodGet, "/api/status", nil)
	r.Header.Set(proxy.HeaderCorrelationID, "overlap-ok")
	if code, _, body := do(t, pr.client, r); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if n := len(pr.a.audit.find(func(r audit.Record) bool { return r.CorrelationID == "overlap-ok" })); n != 1 {
		t.Errorf("A has %d records", n)
	}
	pr.a.audit.setFail(errAuditDown)
	r = pr.req(t, http.MethodGet, "/api/status", nil)
	r.Header.Set(proxy.HeaderCorrelationID, "overlap-down")
	code, _, body := do(t, pr.client, r)
	if code != 503 || denialReason(t, body) != proxy.ReasonAuditUnavailable {
		t.Errorf("A's log down: %d %s", code, body)
	}
	if n := len(pr.b.audit.find(func(r audit.Record) bool { return r.CorrelationID == "overlap-down" })); n != 1 {
		t.Errorf("B has %d records of the call", n)
	}
}

// TestPooledConnectionsClosedWhileIdle: both hops' servers (B's inbound
// towards A, a backend towards B) close idle keep-alive connections after
// 300 ms. After the pools sat idle past that, every call (GET and POST)
// still succeeds:
// a pooled connection idle for longer than a second is checked before
// use, and a failed reuse retries on a new connection, not on the next
// (equally dead) pooled one.
func TestPooledConnectionsClosedWhileIdle(t *testing.T) {
	var hits atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "fresh")
	}))
	be.Config.IdleTimeout = 300 * time.Millisecond
	be.Start()
	t.Cleanup(be.Close)
	pr := newPair(t, nil, func(c *proxy.Config) {
		c.Limits.IdleTimeout = 300 * time.Millisecond
		c.Routes = append([]proxy.Route{{Name: "idle", PathPrefix: "/api/idle", Backend: be.URL, ResourceKind: "vm"}}, c.Routes...)
	})
	burst := func(round string) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// POSTs are never retried: they pass only because a stale
				// pooled connection is checked before it is used.
				method, reqBody := http.MethodGet, io.Reader(nil)
				if i%2 == 1 {
					method, reqBody = http.MethodPost, strings.NewReader("x")
				}
				code, _, body := do(t, pr.client, pr.req(t, method, fmt.Sprintf("/api/idle/%d", i), reqBody))
				if code != 200 || body != "fresh" {
					t.Errorf("%s, call %d: %d %s", round, i, code, body)
				}
			}()
		}
		wg.Wait()
	}
	burst("first burst") // fills both pools with several connections
	time.Sleep(1200 * time.Millisecond)
	burst("after the servers closed the idle connections")
	if hits.Load() != 16 {
		t.Errorf("backend saw %d calls, want 16", hits.Load())
	}
}

// TestInboundOnAddressNotHeld: the inbound address is usually the site VIP,
// which only the leader holds, so the proxy starts (and is ready) on an
// address no interface has yet — 192.0.2.77, TEST-NET-1.
func TestInboundOnAddressNotHeld(t *testing.T) {
	if ln, err := net.Listen("tcp", "192.0.2.77:0"); err == nil {
		ln.Close()
		t.Skip("192.0.2.77 is assigned on this host")
	}
	s := newSite(t, "vip-site")
	s.certs.SetServer(proxytest.IssueFederation(t, s.ca, newID(t), 0))
	s.start(t, func(c *proxy.Config) { c.InboundAddr = "192.0.2.77:0" })
	if got := s.p.InboundAddr().String(); !strings.HasPrefix(got, "192.0.2.77:") {
		t.Errorf("inbound listens on %s", got)
	}
}
