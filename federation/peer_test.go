package federation

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPeerValidateOK(t *testing.T) {
	p := fullPeer(t, StatusActive)
	p.TrustedCAPEM = testCAPEM(t)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPeerValidateNamesField(t *testing.T) {
	eps := make([]Endpoint, 11)
	for i := range eps {
		eps[i] = Endpoint{URL: "https://a.example", Scope: ScopeWAN, Priority: i}
	}
	for _, tc := range []struct {
		field string
		mut   func(*Peer)
	}{
		{"id", func(p *Peer) { p.ID = "not-a-uuid" }},
		{"id", func(p *Peer) { p.ID = strings.ToUpper(p.ID) }},
		{"remote_instance_url", func(p *Peer) { p.RemoteInstanceURL = "b.example.net" }},
		{"remote_instance_id", func(p *Peer) { p.RemoteInstanceID = "x" }},
		{"status", func(p *Peer) { p.Status = "gone" }},
		{"peer_kind", func(p *Peer) { p.PeerKind = "" }},
		{"parent_peer_id", func(p *Peer) { p.ParentPeerID = "nope" }},
		{"parent_peer_id", func(p *Peer) { p.ParentPeerID = p.ID }},
		{"contract_version_agreed", func(p *Peer) { p.ContractVersionAgreed = -1 }},
		{"endpoints[0].url", func(p *Peer) { p.Endpoints[0].URL = "/relative" }},
		{"endpoints[1].scope", func(p *Peer) { p.Endpoints[1].Scope = "internet" }},
		{"endpoints[0].priority", func(p *Peer) { p.Endpoints[0].Priority = -1 }},
		{"endpoints[1].cidr_hint", func(p *Peer) { p.Endpoints[1].CIDRHint = "10.0.0.0/99" }},
		{"endpoints: 11 endpoints", func(p *Peer) { p.Endpoints = eps }},
		{"extension_slugs[0]", func(p *Peer) { p.ExtensionSlugs = []string{"a b"} }},
		{"capabilities.resource_kinds[1]", func(p *Peer) { p.Capabilities.ResourceKinds[1] = "workload" }},
		{"capabilities.schema_versions[nope]", func(p *Peer) { p.Capabilities.SchemaVersions["nope"] = []string{"v1"} }},
		{"platform_version", func(p *Peer) { p.PlatformVersion = "1.4" }},
		{"inbound_subject", func(p *Peer) { p.InboundSubject = "fed:" + p.OutboundSubject[4:] }},
		{"outbound_subject", func(p *Peer) { p.OutboundSubject = "CN=someone" }},
		{"trusted_ca_pem", func(p *Peer) { p.TrustedCAPEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }},
		{"trusted_ca_pem", func(p *Peer) { p.TrustedCAPEM = "garbage" }},
		{"metadata", func(p *Peer) { p.Metadata[""] = "x" }},
		{"remote_prefix_advertisement", func(p *Peer) { p.RemotePrefixAdvertisement = "2001:db8::/48" }},
		{"wireguard_public_key", func(p *Peer) { p.WireGuardPublicKey = "AAAA" }},
		{"wireguard_public_key", func(p *Peer) { p.WireGuardPublicKey = "not base64!" }},
		{"vips[0]", func(p *Peer) { p.VIPs[0] = "10.99.0.0/24" }},
		{"vips[1]", func(p *Peer) { p.VIPs[1] = "fd00::/64" }},
		{"vips[1]", func(p *Peer) { p.VIPs[1] = p.VIPs[0] }},
		{"vips[0]", func(p *Peer) { p.VIPs[0] = "10.99.0.1" }},
		{"operator_contact", func(p *Peer) { p.OperatorContact = "a\nb" }},
		{"created_at", func(p *Peer) { p.CreatedAt = time.Time{} }},
		{"updated_at", func(p *Peer) { p.UpdatedAt = p.CreatedAt.Add(-time.Second) }},
		{"expires_at", func(p *Peer) { p.SignedAt = t0; p.ExpiresAt = t0 }},
		{"status: active requires identity disclosure: identity disclosure missing: jurisdiction", func(p *Peer) { p.Jurisdiction = "" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			p := fullPeer(t, StatusActive)
			tc.mut(&p)
			err := p.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an ErrInvalid naming %q", err, tc.field)
			}
		})
	}
}

func TestPeerJSONFixture(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "peer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p Peer
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.Status != StatusActive || p.ContractVersionAgreed != 1 || len(p.Endpoints) != 2 ||
		p.Capabilities.SchemaVersions["workload"][1] != "v2" || p.Metadata[MetaSuspensionReason] != "" {
		t.Fatalf("decoded %+v", p)
	}
	// Round trip keeps every field and uses the platform's snake_case names.
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Peer
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, back); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(out, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "remote_instance_url", "remote_instance_id", "status", "signed_at", "expires_at",
		"peer_kind", "spawn_mode", "spawn_role", "parent_peer_id", "contract_version_agreed", "endpoints",
		"extension_slugs", "capabilities", "sync_cursor", "last_heartbeat_at", "last_handshake_at",
		"platform_version", "data_residency", "inbound_subject", "outbound_subject", "trusted_ca_pem", "metadata",
		"remote_prefix_advertisement", "wireguard_public_key", "vips", "operator_contact", "jurisdiction",
		"last_known_good_release", "created_at", "updated_at"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("marshalled peer lacks %q", k)
		}
	}
}

func TestPeerIDFromSubject(t *testing.T) {
	p := fullPeer(t, StatusActive)
	if id, err := PeerIDFromSubject(p.InboundSubject); err != nil || id != p.ID {
		t.Fatalf("PeerIDFromSubject(%q) = %q, %v", p.InboundSubject, id, err)
	}
	for _, bad := range []string{p.ID, "fed:", "fed:" + strings.ToUpper(p.ID), "FED:" + p.ID} {
		if _, err := PeerIDFromSubject(bad); err == nil {
			t.Errorf("PeerIDFromSubject(%q) accepted", bad)
		}
	}
}

func TestSortedEndpoints(t *testing.T) {
	in := []Endpoint{{URL: "c", Priority: 5}, {URL: "a", Priority: 0}, {URL: "b", Priority: 5}}
	got := SortedEndpoints(in)
	if got[0].URL != "a" || got[1].URL != "c" || got[2].URL != "b" || in[0].URL != "c" {
		t.Fatalf("SortedEndpoints = %v (input %v)", got, in)
	}
}

func FuzzPeerJSON(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "peer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"id":"019abc12-3456-7def-8123-456789abcdef","status":"active","vips":["::1/128"]}`))
	f.Add([]byte(`{"endpoints":[{"url":"http://[::1]:80","scope":"lan","priority":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Peer
		if json.Unmarshal(b, &p) != nil {
			return
		}
		if p.Validate() != nil {
			return
		}
		// A valid peer survives a JSON round trip and stays valid; its
		// transitions never mutate it.
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q Peer
		if err := json.Unmarshal(out, &q); err != nil {
			t.Fatal(err)
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("round-tripped valid peer invalid: %v", err)
		}
		before, _ := json.Marshal(q)
		for _, s := range Statuses() {
			_, _ = q.Transition(s, "fuzz", t0)
		}
		after, _ := json.Marshal(q)
		if string(before) != string(after) {
			t.Fatal("Transition mutated its input")
		}
	})
}
