package agent

import (
	"strings"
	"testing"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	tok := joinToken{secret: make([]byte, 32), rootFP: strings.Repeat("ab", 32)}
	tok.secret[0] = 7
	got, err := parseJoinToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != tok.String() || got.kvKey() != tok.kvKey() {
		t.Fatalf("round trip: %q vs %q", got, tok)
	}
	if !strings.HasPrefix(tok.kvKey(), joinKVPrefix) || strings.Contains(tok.kvKey(), tok.String()[5:20]) {
		t.Fatalf("kv key must be a hash, not the secret: %q", tok.kvKey())
	}
}

func TestJoinTokenRefusals(t *testing.T) {
	for _, s := range []string{"", "fgj1.", "fgj2.AAAA.00", "fgj1.short." + strings.Repeat("ab", 32),
		"fgj1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.nothex", "fgj1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, err := parseJoinToken(s); err == nil {
			t.Errorf("parseJoinToken(%q) accepted", s)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add("fgj1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA." + strings.Repeat("ab", 32))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseJoinToken(s)
		if err != nil {
			return
		}
		again, err := parseJoinToken(tok.String())
		if err != nil || again.String() != tok.String() {
			t.Fatalf("re-parse of %q: %v", tok, err)
		}
	})
}
