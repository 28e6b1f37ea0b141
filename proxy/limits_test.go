package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/proxy"
)

func limitedPair(t *testing.T) *pair {
	return newPair(t, nil, func(c *proxy.Config) {
		c.Limits.MaxHeaderBytes = 4096
		c.Limits.MaxBodyBytes = 1024
		c.Limits.ReadHeaderTimeout = 300 * time.Millisecond
		c.Limits.HandshakeTimeout = 300 * time.Millisecond
	})
}

// rawTLS opens an HTTP/1.1 TLS connection to B's inbound with A's cert.
func rawTLS(t *testing.T, pr *pair) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", pr.b.p.InboundAddr().String(), peerTLS(pr.certA, "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBadInput(t *testing.T) {
	pr := limitedPair(t)
	in := "https://" + pr.b.p.InboundAddr().String()
	client := directClient(pr.certA, false)
	defer client.CloseIdleConnections()

	t.Run("oversized headers 431", func(t *testing.T) {
		r, _ := http.NewRequest("GET", in+"/api/status", nil)
		r.Header.Set("X-Big", strings.Repeat("a", 8192))
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("oversized headers 431 over h2", func(t *testing.T) {
		c2 := directClient(pr.certA, true)
		defer c2.CloseIdleConnections()
		r, _ := http.NewRequest("GET", in+"/api/status", nil)
		// Many small fields: the list, not one field, is too long (a single
		// field beyond the HPACK string limit is a connection error instead).
		for i := range 100 {
			r.Header.Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("a", 80))
		}
		resp, err := c2.Do(r)
		if err != nil {
			// The server advertised SETTINGS_MAX_HEADER_LIST_SIZE; Go's
			// client honours it and refuses before sending.
			if !strings.Contains(err.Error(), "header list") {
				t.Fatal(err)
			}
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	for _, chunked := range []bool{false, true} {
		name := "oversized body 413 content-length"
		if chunked {
			name = "oversized body 413 chunked"
		}
		t.Run(name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(strings.Repeat("b", 4096))
			if chunked {
				body = io.MultiReader(body) // unknown length: chunked
			}
			r, _ := http.NewRequest("POST", in+"/api/status", body)
			corr := "big-" + name
			r.Header.Set(proxy.HeaderCorrelationID, corr)
			resp, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || denialReason(t, string(b)) != proxy.ReasonBodyTooLarge {
				t.Errorf("status %d %s", resp.StatusCode, b)
			}
			pr.b.audit.waitRecord(t, name, func(r audit.Record) bool { return r.CorrelationID == corr && r.Status == 413 })
		})
	}
	t.Run("content-length with transfer-encoding refused", func(t *testing.T) {
		before := pr.be.count()
		c := rawTLS(t, pr)
		io.WriteString(c, "POST /api/status HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/status/smuggled HTTP/1.1\r\nHost: b\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || denialReason(t, string(b)) != proxy.ReasonSmuggling {
			t.Errorf("status %d %s", resp.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond)
		if pr.be.count() != before {
			t.Errorf("backend saw %d requests", pr.be.count()-before)
		}
	})
	t.Run("duplicate content-length refused", func(t *testing.T) {
		c := rawTLS(t, pr)
		io.WriteString(c, "POST /api/status HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("slowloris headers time out", func(t *testing.T) {
		c := rawTLS(t, pr)
		io.WriteString(c, "GET /api/status HTTP/1.1\r\nHost: b\r\nX-Slow: ")
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(c)
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("connection held %v (err %v)", el, err)
		}
	})
	t.Run("silent TCP client hits the handshake timeout", func(t *testing.T) {
		c := dialRaw(t, pr.b.p.InboundAddr())
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(c)
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("connection held %v", el)
		}
	})
}

func TestConnectionCap(t *testing.T) {
	pr := newPair(t, nil, func(c *proxy.Config) {
		c.Limits.MaxConns = 1
		c.Limits.HandshakeTimeout = 5 * time.Second
	})
	hold := dialRaw(t, pr.b.p.InboundAddr()) // takes the only slot
	_ = hold
	time.Sleep(100 * time.Millisecond)
	c := dialRaw(t, pr.b.p.InboundAddr())
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(4 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("over-cap connection: err %v after %v", err, time.Since(start))
	}
}

func TestBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	pr := newPair(t, nil, func(c *proxy.Config) {
		c.Routes = append(c.Routes, proxy.Route{Name: "dead", PathPrefix: "/api/dead", Backend: dead, ResourceKind: "vm"})
	})
	r := pr.req(t, "GET", "/api/dead", nil)
	r.Header.Set(proxy.HeaderCorrelationID, "dead-1")
	code, _, body := do(t, pr.client, r)
	if code != 502 || denialReason(t, body) != proxy.ReasonBackendError {
		t.Fatalf("%d %s", code, body)
	}
	recs := pr.b.audit.find(func(r audit.Record) bool { return r.CorrelationID == "dead-1" })
	if len(recs) != 2 || recs[0].Decision != audit.DecisionAllow || recs[1].Status != 502 || recs[1].Metadata["request_seq"] == "" {
		t.Errorf("audit records %+v", recs)
	}
}

// TestEndpointFailover: a peer endpoint that accepts TCP and then hangs
// costs one handshake timeout; one that refuses costs nothing; the next
// endpoint by priority serves. Later calls skip the failed endpoints.
func TestEndpointFailover(t *testing.T) {
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close() // never speaks
		}
	}()
	refused, _ := net.Listen("tcp", "127.0.0.1:0")
	refusedAddr := refused.Addr().String()
	refused.Close()
	pr := newPair(t, func(c *proxy.Config) {
		c.Limits.EndpointTimeout = 300 * time.Millisecond
		c.Limits.EndpointBackoff = time.Minute
	}, nil)
	pr.a.state.UpdatePeer(pr.idB, func(p *federation.Peer) {
		p.Endpoints = []federation.Endpoint{
			{URL: "https://" + hang.Addr().String(), Scope: federation.ScopeSDWAN, Priority: 1},
			{URL: "https://" + refusedAddr, Scope: federation.ScopeLAN, Priority: 2},
			p.Endpoints[0],
		}
	})
	start := time.Now()
	code, _, body := do(t, pr.client, pr.req(t, "GET", "/api/status", nil))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("first call took %v", el)
	}
	pr.client.CloseIdleConnections()
	start = time.Now()
	if code, _, _ := do(t, pr.client, pr.req(t, "GET", "/api/status", nil)); code != 200 {
		t.Fatal(code)
	}
	// A fresh connection goes to the healthy endpoint first now.
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Errorf("second call took %v: failed endpoints were not skipped", el)
	}
}

func TestAllEndpointsDown(t *testing.T) {
	pr := newPair(t, nil, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	pr.a.state.UpdatePeer(pr.idB, func(p *federation.Peer) {
		p.Endpoints = []federation.Endpoint{{URL: "https://" + dead, Scope: federation.ScopeLAN, Priority: 1}}
	})
	code, _, body := do(t, pr.client, pr.req(t, "GET", "/api/status", nil))
	if code != 502 || denialReason(t, body) != proxy.ReasonPeerUnreachable {
		t.Errorf("%d %s", code, body)
	}
}

// A peer that stops reading an HTTP/2 response stream has the stream reset
// after the write-stall timeout: it does not keep the upstream connection,
// here the backend's only slot (MaxConnsPerHost 1), from the next call.
func TestH2StalledStreamReleasesUpstream(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("small") != "" {
			io.WriteString(w, "small")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(256<<20))
		chunk := make([]byte, 64<<10)
		for n := 0; n < 256<<20; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(big.Close)
	pr := newPair(t, nil, func(c *proxy.Config) {
		c.Routes = append(c.Routes, proxy.Route{Name: "big", PathPrefix: "/api/big", Backend: big.URL, ResourceKind: "vm"})
		c.Limits.WriteStallTimeout = 300 * time.Millisecond
		c.Limits.MaxConnsPerHost = 1
		c.Limits.MaxInFlightPerPeer = -1 // the upstream slot is what is tested
	})
	client := directClient(pr.certA, true)
	client.Timeout = 0
	get := func(ctx context.Context, q string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+pr.b.p.InboundAddr().String()+"/api/big"+q, nil)
		return client.Do(req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stalled, err := get(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close()
	if stalled.ProtoMajor != 2 {
		t.Fatalf("spoke HTTP/%d, want 2", stalled.ProtoMajor)
	}
	// Read nothing of the stalled stream; the next call needs the slot.
	start := time.Now()
	resp, err := get(ctx, "?small=1")
	if err != nil {
		t.Fatalf("second call: %v after %v", err, time.Since(start))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "small" {
		t.Fatalf("second call: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second call waited %v for the stalled stream's upstream slot", d)
	}
}

// One peer's inbound calls in flight are capped (MaxInFlightPerPeer): the
// call past the cap is answered 429 peer_concurrency_limit with
// Retry-After and audited, the calls in flight are unaffected, and the
// count comes back as they finish.
func TestPeerInFlightLimit(t *testing.T) {
	pr := newPair(t, nil, func(c *proxy.Config) { c.Limits.MaxInFlightPerPeer = 2 })
	r1, r2 := pr.be.hold("/api/status/held-1"), pr.be.hold("/api/status/held-2")
	c1 := goDo(pr, pr.req(t, http.MethodGet, "/api/status/held-1", nil))
	waitArrival(t, pr.be, "/api/status/held-1")
	c2 := goDo(pr, pr.req(t, http.MethodGet, "/api/status/held-2", nil))
	waitArrival(t, pr.be, "/api/status/held-2")

	code, hdr, body := do(t, pr.client, pr.req(t, http.MethodGet, "/api/status/third", nil))
	if code != http.StatusTooManyRequests || denialReason(t, body) != proxy.ReasonPeerBusy || hdr.Get("Retry-After") == "" {
		t.Fatalf("third call: %d %q Retry-After %q, want 429 %s with Retry-After", code, body, hdr.Get("Retry-After"), proxy.ReasonPeerBusy)
	}
	pr.b.audit.waitRecord(t, "peer_concurrency_limit denial on B", func(r audit.Record) bool {
		return r.Decision == audit.DecisionDeny && strings.HasPrefix(r.Reason, proxy.ReasonPeerBusy) && r.FederationPeerID == pr.idA
	})
	close(r1)
	close(r2)
	for i, c := range []chan result{c1, c2} {
		if res := <-c; res.err != nil || res.code != 200 {
			t.Fatalf("held call %d: %d %v", i+1, res.code, res.err)
		}
	}
	if code, _, body := do(t, pr.client, pr.req(t, http.MethodGet, "/api/status/after", nil)); code != 200 {
		t.Fatalf("call after the held ones finished: %d %s", code, body)
	}
}
