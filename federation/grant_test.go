package federation

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testSecret = bytes.Repeat([]byte("s3cr3t!"), 6)

func TestTokenMintVerify(t *testing.T) {
	r := &seqReader{}
	id := mustID(t, r, t0)
	tok, err := MintToken(testSecret, id)
	if err != nil {
		t.Fatal(err)
	}
	// Independent construction of the platform's format.
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte("federation-grant:" + id))
	want := "fgs." + id + "." + hex.EncodeToString(m.Sum(nil))
	if tok != want || len(tok) != TokenLen {
		t.Fatalf("MintToken = %q, want %q", tok, want)
	}
	got, err := VerifyToken(testSecret, tok)
	if err != nil || got != id {
		t.Fatalf("VerifyToken = %q, %v", got, err)
	}
	gid, mac, err := ParseToken(tok)
	if err != nil || gid != id || hex.EncodeToString(mac[:]) != tok[len(tok)-64:] {
		t.Fatalf("ParseToken = %q %x %v", gid, mac, err)
	}
	other := append(bytes.Clone(testSecret), 'x')
	if _, err := VerifyToken(other, tok); !errors.Is(err, ErrTokenMismatch) {
		t.Fatalf("other secret: %v", err)
	}
	flipped := tok[:len(tok)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", tok[len(tok)-1])+1)%16])
	if _, err := VerifyToken(testSecret, flipped); !errors.Is(err, ErrTokenMismatch) {
		t.Fatalf("flipped mac: %v", err)
	}
	// Fails closed without a secret.
	for _, s := range [][]byte{nil, {}, testSecret[:MinSecretLen-1]} {
		if _, err := VerifyToken(s, tok); !errors.Is(err, ErrNoSecret) {
			t.Fatalf("VerifyToken with %d-byte secret: %v", len(s), err)
		}
		if _, err := MintToken(s, id); !errors.Is(err, ErrNoSecret) {
			t.Fatalf("MintToken with %d-byte secret: %v", len(s), err)
		}
	}
	for _, bad := range []string{"", "fgs.", "fgs." + id, strings.Replace(tok, "fgs.", "fgx.", 1),
		strings.ToUpper(tok), tok + "0", tok[:len(tok)-1], strings.Replace(tok, "."+tok[41:], ":"+tok[41:], 1)} {
		if _, _, err := ParseToken(bad); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("ParseToken(%q) = %v", bad, err)
		}
	}
	if _, err := MintToken(testSecret, "not-an-id"); err == nil {
		t.Fatal("MintToken accepted a bad id")
	}
}

func FuzzParseToken(f *testing.F) {
	id := "019ac0a1-2b3c-7d4e-8f60-718293a4b5c6"
	tok, _ := MintToken(testSecret, id)
	f.Add(tok)
	f.Add("fgs." + id + ".")
	f.Add("")
	f.Add(strings.ToUpper(tok))
	f.Fuzz(func(t *testing.T, s string) {
		gid, mac, err := ParseToken(s)
		if err != nil {
			if _, verr := VerifyToken(testSecret, s); verr == nil {
				t.Fatal("VerifyToken accepted what ParseToken refused")
			}
			return
		}
		if ParseID(gid) != nil {
			t.Fatalf("ParseToken returned bad id %q", gid)
		}
		if s != "fgs."+gid+"."+hex.EncodeToString(mac[:]) {
			t.Fatalf("ParseToken(%q) does not round-trip", s)
		}
		// Verify succeeds exactly when it equals the minted token.
		minted, _ := MintToken(testSecret, gid)
		_, verr := VerifyToken(testSecret, s)
		if (verr == nil) != (minted == s) {
			t.Fatalf("VerifyToken(%q) = %v, minted %q", s, verr, minted)
		}
	})
}

type grantFixture struct {
	peerID string
	grant  Grant
	token  string
	grants map[string]Grant
}

func newGrantFixture(t testing.TB) grantFixture { return newGrantFixtureSeed(t, 0) }

func newGrantFixtureSeed(t testing.TB, seed byte) grantFixture {
	t.Helper()
	r := &seqReader{n: seed}
	peerID := mustID(t, r, t0)
	g := NewGrant(mustID(t, r, t0), peerID, "alice@b.example.net", "workload", []Scope{ScopeRead, ScopeMigrate}, t0)
	rid := "wl-1"
	g.ResourceID = &rid
	g.NodeInstanceIDs = []string{mustID(t, r, t0)}
	g.SDWANNetworkIDs = []string{mustID(t, r, t0)}
	g.SourceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24"), netip.MustParsePrefix("fd00::/64")}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	tok, err := MintToken(testSecret, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	return grantFixture{peerID: peerID, grant: g, token: tok, grants: map[string]Grant{g.ID: g}}
}

func (f grantFixture) lookup(id string) (Grant, bool) { g, ok := f.grants[id]; return g, ok }

func (f grantFixture) okRequest() GrantRequest {
	return GrantRequest{
		PeerID: f.peerID, Token: f.token, ResourceKind: "workload", ResourceID: "wl-1", Scope: ScopeRead,
		NodeInstanceID: f.grant.NodeInstanceIDs[0], SDWANNetworkID: f.grant.SDWANNetworkIDs[0],
		SourceIP: netip.MustParseAddr("10.99.0.7"),
	}
}

type grantScenario struct {
	req    GrantRequest
	grants map[string]Grant
	secret []byte
	now    time.Time
}

func TestCheckGrantOrder(t *testing.T) {
	f := newGrantFixture(t)
	now := t0.Add(time.Hour)
	g, err := CheckGrant(f.okRequest(), f.lookup, testSecret, now)
	if err != nil || g.ID != f.grant.ID {
		t.Fatalf("valid request: %v", err)
	}
	other := newGrantFixtureSeed(t, 100)
	otherTok, _ := MintToken(testSecret, "019ac0a1-2b3c-7d4e-8f60-718293a4b5c6")
	revoked, _ := f.grant.Revoke("leaked", t0.Add(time.Minute))
	// Steps in the platform's order. Each case breaks its step and every
	// later step at once; the answer must be the broken step's reason, which
	// proves the order. (Token steps replace the token, so later token steps
	// are alternatives: only the first applies.)
	steps := []struct {
		reason string
		status int
		mut    func(*grantScenario)
	}{
		{ReasonTokenMissing, 401, func(s *grantScenario) { s.req.Token = "" }},
		{ReasonTokenInvalid, 401, func(s *grantScenario) { s.secret = nil }},
		{ReasonTokenInvalid, 401, func(s *grantScenario) { s.req.Token = "Bearer " + f.token }},
		{ReasonTokenInvalid, 401, func(s *grantScenario) { s.req.Token = f.token[:len(f.token)-1] + "0" }},
		{ReasonGrantNotFound, 401, func(s *grantScenario) { s.req.Token = otherTok }},
		{ReasonGrantPeerMismatch, 401, func(s *grantScenario) { s.req.PeerID = other.peerID }},
		{ReasonGrantExpired, 401, func(s *grantScenario) { s.now = f.grant.ExpiresAt }},
		{ReasonGrantRevoked, 401, func(s *grantScenario) { s.grants[f.grant.ID] = revoked }},
		{ReasonResourceKindDenied, 403, func(s *grantScenario) { s.req.ResourceKind = "dataset" }},
		{ReasonResourceDenied, 403, func(s *grantScenario) { s.req.ResourceID = "wl-2" }},
		{ReasonScopeDenied, 403, func(s *grantScenario) { s.req.Scope = ScopeWrite }},
		{ReasonNodeInstanceDenied, 403, func(s *grantScenario) { s.req.NodeInstanceID = other.grant.NodeInstanceIDs[0] }},
		{ReasonSDWANNetworkDenied, 403, func(s *grantScenario) { s.req.SDWANNetworkID = "" }},
		{ReasonSourceCIDRDenied, 403, func(s *grantScenario) { s.req.SourceIP = netip.MustParseAddr("10.98.0.1") }},
	}
	firstTokenStep := 5 // steps[0:5] all replace or disable the token
	for i, st := range steps {
		t.Run(st.reason, func(t *testing.T) {
			sc := grantScenario{req: f.okRequest(), grants: map[string]Grant{f.grant.ID: f.grant}, secret: testSecret, now: now}
			st.mut(&sc)
			start := i + 1
			if i < firstTokenStep {
				start = firstTokenStep
			}
			for _, later := range steps[start:] {
				if later.reason == ReasonGrantNotFound {
					continue // would replace the token
				}
				later.mut(&sc)
			}
			lookup := func(id string) (Grant, bool) { g, ok := sc.grants[id]; return g, ok }
			_, err := CheckGrant(sc.req, lookup, sc.secret, sc.now)
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != st.reason || ae.Status != st.status {
				t.Fatalf("CheckGrant = %v, want %d %s", err, st.status, st.reason)
			}
			// The prepared-key path answers identically.
			key, _ := NewTokenKey(sc.secret)
			_, kerr := CheckGrantKey(sc.req, lookup, key, sc.now)
			if !errors.As(kerr, &ae) || ae.Reason != st.reason || ae.Status != st.status {
				t.Fatalf("CheckGrantKey = %v, want %d %s", kerr, st.status, st.reason)
			}
		})
	}
	var ae *AuthError
	if _, err := CheckGrant(f.okRequest(), f.lookup, nil, now); !errors.As(err, &ae) || !errors.Is(err, ErrNoSecret) {
		t.Fatalf("no secret: %v", err)
	}
	// Expiry to the second: one second before expires_at is fine.
	if _, err := CheckGrant(f.okRequest(), f.lookup, testSecret, f.grant.ExpiresAt.Add(-time.Second)); err != nil {
		t.Fatalf("one second before expiry: %v", err)
	}
	// Empty allowlists and nil resource id do not restrict; IPv4-mapped source works.
	g2 := f.grant.Clone()
	g2.ResourceID, g2.NodeInstanceIDs, g2.SDWANNetworkIDs = nil, nil, nil
	m2 := map[string]Grant{g2.ID: g2}
	lookup2 := func(id string) (Grant, bool) { g, ok := m2[id]; return g, ok }
	req := f.okRequest()
	req.ResourceID, req.NodeInstanceID, req.SDWANNetworkID = "", "", ""
	req.SourceIP = netip.MustParseAddr("::ffff:10.99.0.9")
	if _, err := CheckGrant(req, lookup2, testSecret, now); err != nil {
		t.Fatalf("unrestricted grant: %v", err)
	}
	req.SourceIP = netip.Addr{}
	if _, err := CheckGrant(req, lookup2, testSecret, now); err == nil {
		t.Fatal("invalid source IP passed a CIDR allowlist")
	}
	// A nil lookup fails closed.
	if _, err := CheckGrant(f.okRequest(), nil, testSecret, now); err == nil {
		t.Fatal("nil lookup allowed")
	}
	if ae.Status != http.StatusUnauthorized {
		t.Fatalf("no-secret status %d", ae.Status)
	}
}

func TestGrantValidate(t *testing.T) {
	f := newGrantFixture(t)
	for _, tc := range []struct {
		field string
		mut   func(*Grant)
	}{
		{"id", func(g *Grant) { g.ID = "x" }},
		{"federation_peer_id", func(g *Grant) { g.FederationPeerID = "" }},
		{"remote_subject", func(g *Grant) { g.RemoteSubject = "" }},
		{"remote_subject", func(g *Grant) { g.RemoteSubject = strings.Repeat("a", 257) }},
		{"resource_kind", func(g *Grant) { g.ResourceKind = "" }},
		{"resource_id", func(g *Grant) { e := ""; g.ResourceID = &e }},
		{"permission_scopes", func(g *Grant) { g.PermissionScopes = nil }},
		{"permission_scopes[1]", func(g *Grant) { g.PermissionScopes = []Scope{ScopeRead, "root"} }},
		{"permission_scopes[1]", func(g *Grant) { g.PermissionScopes = []Scope{ScopeRead, ScopeRead} }},
		{"issued_at", func(g *Grant) { g.IssuedAt = time.Time{} }},
		{"expires_at", func(g *Grant) { g.ExpiresAt = g.IssuedAt }},
		{"revocation_reason", func(g *Grant) { g.RevocationReason = "x" }},
		{"node_instance_ids[0]", func(g *Grant) { g.NodeInstanceIDs = []string{"n"} }},
		{"sdwan_network_ids[0]", func(g *Grant) { g.SDWANNetworkIDs = []string{"n"} }},
		{"source_cidrs[0]", func(g *Grant) { g.SourceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")} }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			g := f.grant.Clone()
			tc.mut(&g)
			err := g.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want naming %q", err, tc.field)
			}
		})
	}
	if got := f.grant.ExpiresAt.Sub(f.grant.IssuedAt); got != 30*24*time.Hour {
		t.Fatalf("default lifetime %v", got)
	}
}

func TestGrantRevokeImmutableAndJSON(t *testing.T) {
	f := newGrantFixture(t)
	before := f.grant.Clone()
	r, err := f.grant.Revoke("leaked", t0.Add(time.Minute))
	if err != nil || !r.Revoked() || r.RevocationReason != "leaked" || r.ID != f.grant.ID {
		t.Fatalf("Revoke: %+v %v", r, err)
	}
	*r.ResourceID = "changed"
	if diff := cmp.Diff(before, f.grant, cmpNetip); diff != "" {
		t.Fatalf("Revoke mutated input:\n%s", diff)
	}
	if _, err := r.Revoke("again", t0); !errors.Is(err, ErrGrantRevoked) {
		t.Fatalf("double revoke: %v", err)
	}
	out, _ := json.Marshal(f.grant)
	for _, k := range []string{`"federation_peer_id"`, `"remote_subject"`, `"resource_kind"`, `"resource_id":"wl-1"`,
		`"permission_scopes":["read","migrate"]`, `"issued_at"`, `"expires_at"`, `"node_instance_ids"`,
		`"sdwan_network_ids"`, `"source_cidrs":["10.99.0.0/24","fd00::/64"]`} {
		if !strings.Contains(string(out), k) {
			t.Errorf("grant JSON lacks %s: %s", k, out)
		}
	}
	var back Grant
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.grant, back, cmpNetip); diff != "" {
		t.Fatalf("grant round trip:\n%s", diff)
	}
	all := f.grant.Clone()
	all.ResourceID = nil
	out, _ = json.Marshal(all)
	if !strings.Contains(string(out), `"resource_id":null`) {
		t.Fatalf("nil resource_id not null: %s", out)
	}
}

func TestTokenKey(t *testing.T) {
	if _, err := NewTokenKey(testSecret[:MinSecretLen-1]); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("short secret: %v", err)
	}
	var nilKey *TokenKey
	if _, err := nilKey.Verify("x"); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("nil key verify: %v", err)
	}
	if _, err := nilKey.Mint("x"); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("nil key mint: %v", err)
	}
	secret := bytes.Clone(testSecret)
	key, err := NewTokenKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	secret[0] ^= 1 // the key keeps its own copy
	r := &seqReader{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		ids := []string{mustID(t, r, t0), mustID(t, r, t0)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				id := ids[i%2]
				want, _ := MintToken(testSecret, id)
				got, err := key.Mint(id)
				if err != nil || got != want {
					t.Errorf("Mint = %q, %v; want %q", got, err, want)
					return
				}
				if gid, err := key.Verify(want); err != nil || gid != id {
					t.Errorf("Verify = %q, %v", gid, err)
					return
				}
				if _, err := key.Verify(want[:len(want)-1] + "x"); !errors.Is(err, ErrTokenMalformed) {
					t.Errorf("Verify malformed: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	other, _ := NewTokenKey(append(bytes.Clone(testSecret), '!'))
	tok, _ := key.Mint(mustID(t, r, t0))
	if _, err := other.Verify(tok); !errors.Is(err, ErrTokenMismatch) {
		t.Fatalf("other key: %v", err)
	}
}
