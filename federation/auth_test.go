package federation

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type authFixture struct {
	peer  Peer
	grant grantFixture
	state AuthState
	req   CallRequest
}

func newAuthFixture(t testing.TB) authFixture {
	t.Helper()
	gf := newGrantFixture(t)
	p := fullPeer(t, StatusActive)
	p.ID = gf.peerID
	p.InboundSubject = SubjectFor(p.ID)
	ok := gf.okRequest()
	return authFixture{
		peer:  p,
		grant: gf,
		state: AuthState{Contracts: DefaultRegistry(), LookupGrant: gf.lookup, Secret: testSecret},
		req: CallRequest{
			ResourceKind: "workload", SchemaVersion: "v2", RequiresGrant: true, Token: gf.token,
			ResourceID: ok.ResourceID, Scope: ok.Scope, NodeInstanceID: ok.NodeInstanceID,
			SDWANNetworkID: ok.SDWANNetworkID, SourceIP: ok.SourceIP,
			AssertedSubject: "bob@b.example.net", CertSubject: p.InboundSubject,
		},
	}
}

func TestAuthorizeOrder(t *testing.T) {
	f := newAuthFixture(t)
	now := t0.Add(time.Hour)
	d, err := Authorize(f.peer, f.req, f.state, now)
	if err != nil || !d.HasGrant || d.Grant.ID != f.grant.grant.ID || d.RemoteSubject != "alice@b.example.net" {
		t.Fatalf("Authorize = %+v, %v", d, err)
	}
	for _, s := range []Status{StatusEnrolled, StatusDegraded} {
		p := f.peer.Clone()
		p.Status = s
		if _, err := Authorize(p, f.req, f.state, now); err != nil {
			t.Fatalf("%s peer refused: %v", s, err)
		}
	}
	reg2, _ := DefaultRegistry().Add(cv(2, "two"))
	// Each case breaks its step and every later one; the first must win.
	steps := []struct {
		reason string
		mut    func(*Peer, *CallRequest, *AuthState)
	}{
		{ReasonPeerNotReachable, func(p *Peer, _ *CallRequest, _ *AuthState) { p.Status = StatusSuspended }},
		{ReasonContractMismatch, func(p *Peer, _ *CallRequest, _ *AuthState) { p.ContractVersionAgreed = 2 }},
		{ReasonCapabilityNotDeclared, func(_ *Peer, r *CallRequest, _ *AuthState) { r.ResourceKind = "secrets" }},
		{ReasonSchemaVersionNotDeclared, func(_ *Peer, r *CallRequest, _ *AuthState) { r.SchemaVersion = "v9" }},
		{ReasonTokenMissing, func(_ *Peer, r *CallRequest, _ *AuthState) { r.Token = "" }},
	}
	for i, st := range steps {
		t.Run(st.reason, func(t *testing.T) {
			p, req, state := f.peer.Clone(), f.req, f.state
			for _, s := range steps[i:] {
				s.mut(&p, &req, &state)
			}
			_, err := Authorize(p, req, state, now)
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != st.reason {
				t.Fatalf("Authorize = %v, want %s", err, st.reason)
			}
			want := 403
			if st.reason == ReasonTokenMissing {
				want = 401
			}
			if ae.Status != want {
				t.Fatalf("status %d, want %d", ae.Status, want)
			}
		})
	}
	for _, s := range []Status{StatusProposed, StatusAccepted, StatusSuspended, StatusRevoked} {
		p := f.peer.Clone()
		p.Status = s
		if _, err := Authorize(p, f.req, f.state, now); err == nil {
			t.Errorf("%s peer allowed", s)
		}
	}
	// Contract: zero agreed version, empty registry; a deprecated version still works.
	p := f.peer.Clone()
	p.ContractVersionAgreed = 0
	if _, err := Authorize(p, f.req, f.state, now); err == nil {
		t.Error("agreed version 0 allowed")
	}
	if _, err := Authorize(f.peer, f.req, AuthState{LookupGrant: f.state.LookupGrant, Secret: testSecret}, now); err == nil {
		t.Error("empty registry allowed")
	}
	dep, _ := reg2.Deprecate(1, t0)
	st := f.state
	st.Contracts = dep
	if _, err := Authorize(f.peer, f.req, st, now); err != nil {
		t.Errorf("deprecated agreed version refused: %v", err)
	}
	// Empty route kind is refused (default deny).
	req := f.req
	req.ResourceKind = ""
	if _, err := Authorize(f.peer, req, f.state, now); err == nil {
		t.Error("empty resource kind allowed")
	}
	// Grant errors propagate (e.g. scope).
	req = f.req
	req.Scope = ScopeAdmin
	var ae *AuthError
	if _, err := Authorize(f.peer, req, f.state, now); !errors.As(err, &ae) || ae.Reason != ReasonScopeDenied {
		t.Errorf("scope: %v", err)
	}
	// Route without grant: subject from header, else certificate.
	req = f.req
	req.RequiresGrant, req.Token = false, ""
	if d, err := Authorize(f.peer, req, f.state, now); err != nil || d.HasGrant || d.RemoteSubject != "bob@b.example.net" {
		t.Errorf("no-grant route: %+v %v", d, err)
	}
	req.AssertedSubject = ""
	if d, _ := Authorize(f.peer, req, f.state, now); d.RemoteSubject != f.peer.InboundSubject {
		t.Errorf("cert subject fallback: %q", d.RemoteSubject)
	}
	// A bad token on a route that does not require a grant is still refused.
	req.Token = "fgs.bogus"
	if _, err := Authorize(f.peer, req, f.state, now); !errors.As(err, &ae) || ae.Reason != ReasonTokenInvalid {
		t.Errorf("bad token on open route: %v", err)
	}
}

func TestRemoteSubject(t *testing.T) {
	g := &Grant{RemoteSubject: "grant-subject"}
	long := strings.Repeat("a", MaxSubjectLen)
	for _, tc := range []struct {
		g              *Grant
		asserted, cert string
		want           string
	}{
		{g, "hdr", "fed:x", "grant-subject"},
		{nil, "hdr", "fed:x", "hdr"},
		{nil, "", "fed:x", "fed:x"},
		{nil, long, "fed:x", long},
		{nil, long + "a", "fed:x", "fed:x"},
		{nil, "a\r\nb", "fed:x", "fed:x"},
		{nil, "\xff", "fed:x", "fed:x"},
		{&Grant{}, "hdr", "fed:x", "hdr"},
	} {
		if got := RemoteSubject(tc.g, tc.asserted, tc.cert); got != tc.want {
			t.Errorf("RemoteSubject(%v, %q, %q) = %q, want %q", tc.g, tc.asserted, tc.cert, got, tc.want)
		}
	}
}

func TestAuthorizeAllocations(t *testing.T) {
	f := newAuthFixture(t)
	now := t0.Add(time.Hour)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := Authorize(f.peer, f.req, f.state, now); err != nil {
			t.Fatal(err)
		}
	})
	// The HMAC (crypto/hmac) is the only allocator on the allow path.
	if allocs > 8 {
		t.Fatalf("Authorize allocates %.0f times per call", allocs)
	}
	// With a prepared TokenKey the allow path does not allocate (the pool
	// may allocate once when it is empty, e.g. after a GC).
	key, _ := NewTokenKey(testSecret)
	ks := f.state
	ks.Key, ks.Secret = key, nil
	if a := testing.AllocsPerRun(200, func() { _, _ = Authorize(f.peer, f.req, ks, now) }); a > 0 && !raceEnabled {
		t.Fatalf("Authorize with TokenKey allocates %.1f times per call", a)
	}
	deny := f.req
	deny.Scope = ScopeAdmin
	if a := testing.AllocsPerRun(200, func() { _, _ = Authorize(f.peer, deny, f.state, now) }); a > allocs {
		t.Fatalf("deny path allocates more (%.0f) than allow (%.0f)", a, allocs)
	}
}

// BenchmarkAuthorize measures the full request-path decision with a grant
// token, beside the bare HMAC-SHA256 of the token (the floor any grant check
// pays) in the same run, and reports the ratio.
func BenchmarkAuthorize(b *testing.B) {
	f := newAuthFixture(b)
	now := t0.Add(time.Hour)
	msg := []byte(TokenMACPrefix + f.grant.grant.ID)

	// Baseline: one HMAC-SHA256 per iteration, same N.
	start := time.Now()
	var sink byte
	for i := 0; i < b.N; i++ {
		m := hmac.New(sha256.New, testSecret)
		m.Write(msg)
		sink ^= m.Sum(nil)[0]
	}
	base := time.Since(start)
	_ = sink

	b.ReportAllocs()
	b.ResetTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Authorize(f.peer, f.req, f.state, now); err != nil {
			b.Fatal(err)
		}
	}
	d := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "hmac-ns/op")
	b.ReportMetric(float64(d)/float64(base), "x-hmac")
}

// BenchmarkAuthorizeKey is BenchmarkAuthorize with a prepared TokenKey (what
// the proxy should use), beside the same bare-HMAC baseline.
func BenchmarkAuthorizeKey(b *testing.B) {
	f := newAuthFixture(b)
	key, err := NewTokenKey(testSecret)
	if err != nil {
		b.Fatal(err)
	}
	f.state.Key, f.state.Secret = key, nil
	now := t0.Add(time.Hour)
	msg := []byte(TokenMACPrefix + f.grant.grant.ID)
	start := time.Now()
	var sink byte
	for i := 0; i < b.N; i++ {
		m := hmac.New(sha256.New, testSecret)
		m.Write(msg)
		sink ^= m.Sum(nil)[0]
	}
	base := time.Since(start)
	_ = sink
	b.ReportAllocs()
	b.ResetTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Authorize(f.peer, f.req, f.state, now); err != nil {
			b.Fatal(err)
		}
	}
	d := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "hmac-ns/op")
	b.ReportMetric(float64(d)/float64(base), "x-hmac")
}

// BenchmarkAuthorizeNoGrant is a route without a grant: no crypto at all.
func BenchmarkAuthorizeNoGrant(b *testing.B) {
	f := newAuthFixture(b)
	f.req.RequiresGrant, f.req.Token = false, ""
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Authorize(f.peer, f.req, f.state, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyToken(b *testing.B) {
	f := newGrantFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyToken(testSecret, f.token); err != nil {
			b.Fatal(err)
		}
	}
}

var _ = netip.Addr{}
