package federation

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testHandshake(p Peer) Handshake {
	return Handshake{
		PeerID:               p.ID,
		ContractVersion:      1,
		ContractDigest:       ContractV1Digest,
		PlatformVersion:      "1.4.2",
		Capabilities:         p.Capabilities.Clone(),
		OperatorContact:      "ops@b.example.net",
		Jurisdiction:         "DE",
		LastKnownGoodRelease: "v1.4.1",
		DataResidency:        "eu-west",
		Endpoints:            []Endpoint{{URL: "https://10.99.0.2:8443", Scope: ScopeSDWAN}},
		WireGuardPublicKey:   testWGKey,
		VIPs:                 []string{"10.99.0.2/32"},
	}
}

func TestCheckHandshake(t *testing.T) {
	p := fullPeer(t, StatusAccepted)
	reg := DefaultRegistry()
	v2 := cv(2, "contract two\n")
	reg2, _ := reg.Add(v2)
	dep, _ := reg2.Deprecate(1, t0)
	ours := Local{PlatformVersion: "1.4.0"}
	for _, tc := range []struct {
		name       string
		ours       Local
		reg        Registry
		mut        func(*Handshake)
		status     int
		reason     string
		commitment int
		is         error
	}{
		{"ok", ours, reg, func(*Handshake) {}, 0, "", 0, nil},
		{"ok N-1", ours, reg, func(h *Handshake) { h.PlatformVersion = "1.3.7" }, 0, "", 0, nil},
		{"ok N+1", ours, reg, func(h *Handshake) { h.PlatformVersion = "1.5.0" }, 0, "", 0, nil},
		{"ok deprecated for existing peering", Local{PlatformVersion: "1.4.0", AgreedVersion: 1}, dep, func(*Handshake) {}, 0, "", 0, nil},
		{"ok without disclosure", ours, reg, func(h *Handshake) { h.OperatorContact = "" }, 0, "", 0, nil},
		{"malformed", ours, reg, func(h *Handshake) { h.PeerID = "x" }, 400, ReasonHandshakeInvalid, 0, ErrInvalid},
		{"malformed digest", ours, reg, func(h *Handshake) { h.ContractDigest = "abc" }, 400, ReasonHandshakeInvalid, 0, ErrInvalid},
		{"version 2 unsupported", ours, reg, func(h *Handshake) { h.ContractVersion = 2 }, 422, ReasonContractVersionUnsupported, 12, ErrContractVersion},
		{"deprecated for new peer", ours, dep, func(*Handshake) {}, 422, ReasonContractVersionUnsupported, 12, ErrContractVersion},
		{"version differs from agreed", Local{PlatformVersion: "1.4.0", AgreedVersion: 1}, reg2, func(h *Handshake) {
			h.ContractVersion, h.ContractDigest = 2, v2.ContractDigest
		}, 409, ReasonContractVersionMismatch, 12, ErrContractVersion},
		{"digest mismatch", ours, reg, func(h *Handshake) { h.ContractDigest = Digest("other text") }, 409, ReasonContractDigestMismatch, 12, ErrDigestMismatch},
		{"N-2", ours, reg, func(h *Handshake) { h.PlatformVersion = "1.2.0" }, 409, ReasonPlatformVersionIncompat, 10, ErrIncompatibleVersion},
		{"N+2", ours, reg, func(h *Handshake) { h.PlatformVersion = "1.6.0" }, 409, ReasonPlatformVersionIncompat, 10, ErrIncompatibleVersion},
		{"other major", ours, reg, func(h *Handshake) { h.PlatformVersion = "2.4.0" }, 409, ReasonPlatformVersionIncompat, 10, ErrIncompatibleVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHandshake(p)
			tc.mut(&h)
			err := CheckHandshake(tc.ours, h, tc.reg)
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var he *HandshakeError
			if !errors.As(err, &he) || he.Status != tc.status || he.Reason != tc.reason || he.Commitment != tc.commitment || !errors.Is(err, tc.is) {
				t.Fatalf("CheckHandshake = %#v (%v), want %d %s commitment %d", he, err, tc.status, tc.reason, tc.commitment)
			}
		})
	}
	if http.StatusUnprocessableEntity != 422 {
		t.Fatal()
	}
}

func TestApplyHandshakeThenEnrol(t *testing.T) {
	p := NewPeer(fullPeer(t, StatusAccepted).ID, PeerKindPlatform, t0)
	p, _ = p.Transition(StatusAccepted, "", t0)
	before := p.Clone()
	h := testHandshake(fullPeer(t, StatusAccepted))
	h.DataResidency = ""
	now := t0.Add(time.Minute)
	q, err := p.ApplyHandshake(h, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, p); diff != "" {
		t.Fatalf("ApplyHandshake mutated input:\n%s", diff)
	}
	if q.ContractVersionAgreed != 1 || !q.LastHandshakeAt.Equal(now) || q.WireGuardPublicKey != testWGKey || q.ID != p.ID || q.Status != StatusAccepted {
		t.Fatalf("applied: %+v", q)
	}
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Transition(StatusEnrolled, "", now); err == nil || !strings.Contains(err.Error(), "data_residency") {
		t.Fatalf("enrol without residency: %v", err)
	}
	h.DataResidency = "eu-west"
	q, _ = p.ApplyHandshake(h, now)
	if _, err := q.Transition(StatusEnrolled, "", now); err != nil {
		t.Fatalf("enrol with full disclosure: %v", err)
	}
	h.PeerID = "019ac0a1-2b3c-7d4e-8f60-718293a4b5c6"
	if _, err := p.ApplyHandshake(h, now); err == nil {
		t.Fatal("handshake for another peer applied")
	}
}

func TestHeartbeat(t *testing.T) {
	p := fullPeer(t, StatusActive)
	before := p.Clone()
	hb := Heartbeat{PeerID: p.ID, Status: StatusActive, SentAt: t0, OperatorContact: "new@b.example.net",
		Jurisdiction: "DE", PlatformVersion: "1.4.3", LastKnownGoodRelease: "v1.4.2", DataResidency: "eu-west",
		Capabilities: p.Capabilities.Clone(), Endpoints: p.Endpoints, SyncCursor: "c-43"}
	if err := hb.Validate(); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	q, kinds, err := p.ApplyHeartbeat(hb, now)
	if err != nil || len(kinds) != 0 || q.OperatorContact != "new@b.example.net" || !q.LastHeartbeatAt.Equal(now) || q.SyncCursor != "c-43" {
		t.Fatalf("ApplyHeartbeat: %v %v %+v", err, kinds, q)
	}
	if diff := cmp.Diff(before, p); diff != "" {
		t.Fatalf("ApplyHeartbeat mutated input:\n%s", diff)
	}
	hb.DataResidency = ""
	hb.Capabilities.SchemaVersions["workload"] = []string{"v3"}
	q, kinds, _ = p.ApplyHeartbeat(hb, now)
	if !cmp.Equal(kinds, []FindingKind{FindingResidencyMissing, FindingSchemaVersionDrift}) {
		t.Fatalf("findings %v", kinds)
	}
	if q.DataResidency != "eu-west" || q.Validate() != nil {
		t.Fatalf("omitted residency erased the recorded one: %q %v", q.DataResidency, q.Validate())
	}
	if !cmp.Equal(q.Capabilities.SchemaVersions["workload"], []string{"v1", "v2"}) {
		t.Fatal("drifted schema versions replaced the handshake's")
	}
	hb.PeerID = "019ac0a1-2b3c-7d4e-8f60-718293a4b5c6"
	if _, _, err := p.ApplyHeartbeat(hb, now); err == nil {
		t.Fatal("heartbeat with another peer_id applied")
	}
	for _, tc := range []struct {
		field string
		mut   func(*Heartbeat)
	}{
		{"peer_id", func(h *Heartbeat) { h.PeerID = "" }},
		{"status", func(h *Heartbeat) { h.Status = "up" }},
		{"sent_at", func(h *Heartbeat) { h.SentAt = time.Time{} }},
		{"platform_version", func(h *Heartbeat) { h.PlatformVersion = "x" }},
		{"jurisdiction", func(h *Heartbeat) { h.Jurisdiction = "\x00" }},
		{"endpoints[0].scope", func(h *Heartbeat) { h.Endpoints = []Endpoint{{URL: "https://a", Scope: "x"}} }},
	} {
		h := hb
		h.PeerID = p.ID
		tc.mut(&h)
		if err := h.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("heartbeat %s: %v", tc.field, err)
		}
	}
	if !cmp.Equal(Heartbeat{}.MissingDisclosure(), []string{"operator_contact", "jurisdiction", "platform_version", "last_known_good_release", "data_residency"}) {
		t.Fatal("heartbeat MissingDisclosure")
	}
}

func TestStale(t *testing.T) {
	for _, tc := range []struct {
		last  time.Time
		now   time.Time
		stale bool
	}{
		{time.Time{}, t0, true},
		{t0, t0, false},
		{t0, t0.Add(5 * time.Minute), false},
		{t0, t0.Add(5*time.Minute + time.Nanosecond), true},
		{t0, t0.Add(time.Hour), true},
	} {
		if got := Stale(tc.last, tc.now); got != tc.stale {
			t.Errorf("Stale(%v, %v) = %v", tc.last, tc.now, got)
		}
	}
}

func TestSuspendPolicy(t *testing.T) {
	sp := SuspendPolicy{Threshold: 3, Window: time.Hour}
	r := &seqReader{}
	peer := mustID(t, r, t0)
	f := func(k FindingKind, ago time.Duration) Finding {
		return Finding{ID: mustID(t, r, t0), PeerID: peer, Kind: k, Detail: "d", At: t0.Add(-ago)}
	}
	fs := []Finding{
		f(FindingCapabilityDrift, time.Minute),
		f(FindingContractMismatch, 30*time.Minute),
		f(FindingHeartbeatStale, time.Minute),   // soft: not counted
		f(FindingResidencyMissing, time.Minute), // soft
		f(FindingSchemaVersionDrift, 2*time.Hour),
	}
	for _, x := range fs {
		if err := x.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	nf, err := NewFinding(peer, FindingCapabilityDrift, "called secrets", t0, r)
	if err != nil || nf.Kind != FindingCapabilityDrift || !nf.At.Equal(t0) || ParseID(nf.ID) != nil {
		t.Fatalf("NewFinding: %+v %v", nf, err)
	}
	if _, err := NewFinding(peer, "bogus", "", t0, r); err == nil {
		t.Fatal("NewFinding accepted a bogus kind")
	}
	if sp.HardCount(fs, t0) != 2 || sp.ShouldSuspend(fs, t0) {
		t.Fatalf("2 hard in window: count %d", sp.HardCount(fs, t0))
	}
	fs = append(fs, f(FindingSchemaVersionDrift, 59*time.Minute))
	if !sp.ShouldSuspend(fs, t0) {
		t.Fatal("3 hard in window did not suspend")
	}
	if sp.ShouldSuspend(fs, t0.Add(50*time.Minute)) {
		t.Fatal("findings outside the window counted")
	}
	if (SuspendPolicy{}).ShouldSuspend(fs, t0) || DefaultSuspendPolicy().Validate() != nil {
		t.Fatal("invalid policy suspended or default invalid")
	}
	if err := (Finding{Kind: "nope"}).Validate(); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("bad finding: %v", err)
	}
}

func FuzzHandshakeJSON(f *testing.F) {
	good, _ := json.Marshal(testHandshake(Peer{ID: "019ac0a1-2b3c-7d4e-8f60-718293a4b5c6",
		Capabilities: Capabilities{ResourceKinds: []string{"workload"}}}))
	f.Add(good)
	f.Add([]byte(`{"peer_id":"x","contract_version":-1}`))
	reg := DefaultRegistry()
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Handshake
		if json.Unmarshal(b, &h) != nil {
			return
		}
		verr := h.Validate()
		err := CheckHandshake(Local{PlatformVersion: "1.4.0"}, h, reg)
		if verr != nil {
			var he *HandshakeError
			if !errors.As(err, &he) || he.Reason != ReasonHandshakeInvalid {
				t.Fatalf("invalid handshake not refused as invalid: %v", err)
			}
			return
		}
		if err == nil && (h.ContractDigest != ContractV1Digest || h.ContractVersion != 1 || CompatibleVersions("1.4.0", h.PlatformVersion) != nil) {
			t.Fatalf("accepted a bad handshake: %+v", h)
		}
	})
}

func FuzzHeartbeatJSON(f *testing.F) {
	f.Add([]byte(`{"peer_id":"019ac0a1-2b3c-7d4e-8f60-718293a4b5c6","status":"active","sent_at":"2026-11-26T03:00:00Z","data_residency":"eu"}`))
	f.Add([]byte(`{"status":"revoked","endpoints":[{"url":"https://x","scope":"wan"}]}`))
	raw, err := os.ReadFile(filepath.Join("testdata", "peer.json"))
	if err != nil {
		f.Fatal(err)
	}
	var p Peer
	if err := json.Unmarshal(raw, &p); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var hb Heartbeat
		if json.Unmarshal(b, &hb) != nil || hb.Validate() != nil {
			return
		}
		before, _ := json.Marshal(p)
		q, _, err := p.ApplyHeartbeat(hb, t0)
		after, _ := json.Marshal(p)
		if string(before) != string(after) {
			t.Fatal("ApplyHeartbeat mutated its input")
		}
		if err != nil {
			if hb.PeerID == p.ID {
				t.Fatalf("own heartbeat refused: %v", err)
			}
			return
		}
		if q.ID != p.ID {
			t.Fatal("id rewritten")
		}
	})
}
