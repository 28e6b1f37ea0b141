package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseAcceptanceToken(t *testing.T) {
	good, key, err := newAcceptanceToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseAcceptanceToken(good)
	if err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	if inviteKey(b) != key {
		t.Fatalf("key of the parsed token %s differs from the stored key %s", inviteKey(b), key)
	}
	for _, tc := range []struct{ name, tok string }{
		{"empty", ""},
		{"short", good[:42]},
		{"long", good + "A"},
		{"padded", base64.URLEncoding.EncodeToString(make([]byte, 32))},
		{"std alphabet", strings.Repeat("+", 43)},
		{"space", " " + good[1:]},
		{"non-canonical tail", good[:42] + "B"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseAcceptanceToken(tc.tok); !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseAcceptanceToken(%q) = %v, want ErrBadToken", tc.tok, err)
			}
		})
	}
}

func TestNewAcceptanceTokensDiffer(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		tok, key, err := newAcceptanceToken()
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok] || seen[key] || strings.Contains(key, tok) {
			t.Fatal("token repeated or stored in clear")
		}
		seen[tok], seen[key] = true, true
	}
}

func TestParseInviteURL(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	u, err := ParseInviteURL("https://10.0.0.1:7443" + pathAccept + "?ca=" + fp)
	if err != nil {
		t.Fatal(err)
	}
	if u.Base != "https://10.0.0.1:7443" || u.RootFP != fp || u.String() != "https://10.0.0.1:7443"+pathAccept+"?ca="+fp {
		t.Fatalf("parsed %+v", u)
	}
	for _, bad := range []string{
		"http://10.0.0.1:7443" + pathAccept + "?ca=" + fp,
		"https://10.0.0.1:7443/other?ca=" + fp,
		"https://10.0.0.1:7443" + pathAccept,
		"https://10.0.0.1:7443" + pathAccept + "?ca=zz",
		"https://user@10.0.0.1:7443" + pathAccept + "?ca=" + fp,
		"https://" + pathAccept + "?ca=" + fp,
	} {
		if _, err := ParseInviteURL(bad); err == nil {
			t.Errorf("ParseInviteURL(%q) accepted", bad)
		}
	}
}

func FuzzParseAcceptanceToken(f *testing.F) {
	good, _, _ := newAcceptanceToken()
	for _, s := range []string{good, "", strings.Repeat("A", 43), strings.Repeat("_", 43), "=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseAcceptanceToken(s)
		if err != nil {
			return
		}
		if len(b) != AcceptanceTokenBytes || base64.RawURLEncoding.EncodeToString(b) != s {
			t.Fatalf("accepted %q as %x: not canonical", s, b)
		}
	})
}

func FuzzParseInviteURL(f *testing.F) {
	f.Add("https://10.0.0.1:7443" + pathAccept + "?ca=" + strings.Repeat("ab", 32))
	f.Add("https://[::1]:1" + pathAccept + "?ca=" + strings.Repeat("00", 32) + "&x=1")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseInviteURL(s)
		if err != nil {
			return
		}
		again, err := ParseInviteURL(u.String())
		if err != nil || again != u {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v %v", s, u, again, err)
		}
	})
}

func FuzzDecodeAcceptRequest(f *testing.F) {
	f.Add([]byte(`{"acceptance_token":"x","contract_version":1,"extension_slugs":[],"endpoints":[{"url":"https://192.0.2.1:8443","scope":"lan","priority":1}],"capabilities":{"resource_kinds":["workspace"]},"trusted_ca_pem":"","assigned_peer_id":"0190a000-0000-7000-8000-00000000000a","control_url":"https://192.0.2.1:7444"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"endpoints":[{}]} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeAcceptRequest(b)
		if err != nil {
			return
		}
		if req.Validate() != nil {
			return
		}
		// A valid request survives a round trip unchanged in validity.
		again, _ := json.Marshal(req)
		r2, err := DecodeAcceptRequest(again)
		if err != nil || r2.Validate() != nil {
			t.Fatalf("valid request %s does not round-trip: %v", again, err)
		}
	})
}
