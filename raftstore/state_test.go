package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/federation"
)

var t0 = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

const (
	peerA  = "019abc00-0000-7000-8000-00000000000a"
	peerB  = "019abc00-0000-7000-8000-00000000000b"
	peerC  = "019abc00-0000-7000-8000-00000000000c"
	grant1 = "019abc00-0000-7000-8000-000000000101"
	grant2 = "019abc00-0000-7000-8000-000000000102"
	find1  = "019abc00-0000-7000-8000-000000000201"
	node1  = "019abc00-0000-7000-8000-000000000301"
	node2  = "019abc00-0000-7000-8000-000000000302"
	node3  = "019abc00-0000-7000-8000-000000000303"
	wgKey1 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	wgKey2 = "HxwdHhscGRoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwI="
	spki1  = "aebddc1097b29aaee79e22ddd9ebb14b40ea1f27d1dc3e06de937253df65a15f"
)

// applier applies commands with increasing IDs, indexes and times.
type applier struct {
	t   testing.TB
	s   *State
	idx uint64
}

func newApplier(t testing.TB) *applier { return &applier{t: t, s: NewState(0)} }

func (a *applier) cmd(typ string, payload any) Command {
	a.idx++
	c := MustCommand(typ, payload)
	c.ID = fmt.Sprintf("cmd-%d", a.idx)
	c.At = t0.Add(time.Duration(a.idx) * time.Second)
	return c
}

func (a *applier) try(typ string, payload any) (Result, error) {
	c := a.cmd(typ, payload)
	next, res, err := a.s.Apply(a.idx, c)
	a.s = next
	return res, err
}

func (a *applier) must(typ string, payload any) Result {
	a.t.Helper()
	res, err := a.try(typ, payload)
	if err != nil {
		a.t.Fatalf("%s: %v", typ, err)
	}
	return res
}

func testPeer(id string, st federation.Status) federation.Peer {
	p := federation.NewPeer(id, federation.PeerKindPlatform, t0)
	p.Status = st
	p.OperatorContact = "ops@example.org"
	p.Jurisdiction = "DE"
	p.PlatformVersion = "1.4.0"
	p.LastKnownGoodRelease = "v1.4.0"
	p.DataResidency = "eu"
	p.ContractVersionAgreed = 1
	return p
}

func testGrant(id, peer string) federation.Grant {
	return federation.NewGrant(id, peer, "alice", "vm", []federation.Scope{federation.ScopeRead}, t0)
}

// base is a state with two members, two peers (A accepted, B proposed
// without disclosure), a grant for A, a VIP, a WG peer of A, a key, a lock
// and a revocation.
func base(t testing.TB) *applier {
	a := newApplier(t)
	a.must(CmdMemberPut, MemberPutPayload{NodeID: node1, RaftAddr: "127.0.0.1:7001"})
	a.must(CmdMemberPut, MemberPutPayload{NodeID: node2, RaftAddr: "127.0.0.1:7002"})
	a.must(CmdPeerAdd, testPeer(peerA, federation.StatusAccepted))
	pb := federation.NewPeer(peerB, federation.PeerKindSDWANOnly, t0)
	pb.Status = federation.StatusAccepted
	a.must(CmdPeerAdd, pb)
	a.must(CmdGrantIssue, testGrant(grant1, peerA))
	a.must(CmdVIPPut, VIPPutPayload{Name: "site", CIDR: "10.0.0.10/32", Interface: "eth0", HolderNodeIDs: []string{node1}, FailoverNodeIDs: []string{node2}})
	a.must(CmdWGPeerPut, WGPeer{Name: "peer-a", PeerID: peerA, Interface: "wg-sdwan-abcdef", PublicKey: wgKey1, Endpoint: "192.0.2.1:51820", AllowedIPs: []string{"fd00::/64"}, PersistentKeepalive: 25})
	a.must(CmdKVPut, KVPutPayload{Key: "certs/a.crt", Value: []byte("PEM")})
	a.must(CmdLockAcquire, LockAcquirePayload{Name: "issue/a", Owner: "n1", TTL: time.Minute})
	a.must(CmdCertRevoke, CertRevokePayload{SerialHex: "0A1B", Reason: "key compromise"})
	return a
}

func mustJSON(t testing.TB, s *State) string {
	t.Helper()
	b, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStateRefusalsLeaveStateUnchanged(t *testing.T) {
	longKey := strings.Repeat("k", MaxKeyLen+1)
	tests := []struct {
		name     string
		typ      string
		payload  any
		reason   string // substring of the refusal
		notFound bool
	}{
		{"unknown type", "peer.explode", map[string]string{}, `unknown command type "peer.explode"`, false},
		{"malformed payload", CmdKVPut, "not an object", "malformed payload", false},
		{"unknown field", CmdKVPut, map[string]any{"key": "x", "value": "", "extra": 1}, "unknown field", false},
		{"peer add duplicate", CmdPeerAdd, testPeer(peerA, federation.StatusAccepted), "already exists", false},
		{"peer add active", CmdPeerAdd, testPeer(peerC, federation.StatusActive), "starts as proposed or accepted", false},
		{"peer add bad id", CmdPeerAdd, testPeer("not-a-uuid", federation.StatusProposed), "peer:", false},
		{"peer add unknown contract", CmdPeerAdd, func() federation.Peer {
			p := testPeer(peerC, federation.StatusProposed)
			p.ContractVersionAgreed = 9
			return p
		}(), "contract_version_agreed", false},
		{"peer update missing", CmdPeerUpdate, testPeer(peerC, federation.StatusProposed), "does not exist", true},
		{"peer update status", CmdPeerUpdate, testPeer(peerA, federation.StatusActive), "only through peer.transition", false},
		{"transition missing peer", CmdPeerTransition, PeerTransitionPayload{ID: peerC, To: federation.StatusAccepted}, "does not exist", true},
		{"transition skip", CmdPeerTransition, PeerTransitionPayload{ID: peerA, To: federation.StatusActive}, "transition not allowed", false},
		{"transition same", CmdPeerTransition, PeerTransitionPayload{ID: peerA, To: federation.StatusAccepted}, "already accepted", false},
		{"transition unknown status", CmdPeerTransition, PeerTransitionPayload{ID: peerA, To: "paused"}, "unknown status", false},
		{"enrol without disclosure", CmdPeerTransition, PeerTransitionPayload{ID: peerB, To: federation.StatusEnrolled}, "identity disclosure missing: operator_contact", false},
		{"revoke missing", CmdPeerRevoke, PeerRevokePayload{ID: peerC}, "does not exist", true},
		{"grant duplicate", CmdGrantIssue, testGrant(grant1, peerA), "already exists", false},
		{"grant unknown peer", CmdGrantIssue, testGrant(grant2, peerC), "does not exist", false},
		{"grant expired", CmdGrantIssue, func() federation.Grant {
			g := testGrant(grant2, peerA)
			g.IssuedAt, g.ExpiresAt = t0.Add(-48*time.Hour), t0.Add(-time.Hour)
			return g
		}(), "not in the future", false},
		{"grant invalid", CmdGrantIssue, func() federation.Grant { g := testGrant(grant2, peerA); g.PermissionScopes = nil; return g }(), "permission_scopes", false},
		{"grant revoke missing", CmdGrantRevoke, GrantRevokePayload{ID: grant2}, "does not exist", true},
		{"contract bad digest", CmdContractAdd, federation.ContractVersion{Version: 2, ContractText: "v2", ContractDigest: spki1, EffectiveAt: t0}, "digest", false},
		{"contract duplicate", CmdContractAdd, federation.BuiltinContracts()[0], "already registered", false},
		{"contract deprecate unknown", CmdContractDeprecate, ContractDeprecatePayload{Version: 7}, "not registered", true},
		{"cert revoke empty", CmdCertRevoke, CertRevokePayload{Reason: "x"}, "serial_hex or spki_sha256", false},
		{"cert revoke bad serial", CmdCertRevoke, CertRevokePayload{SerialHex: "zz"}, "not hex", false},
		{"cert revoke bad spki", CmdCertRevoke, CertRevokePayload{SPKISHA256: "abcd"}, "not a SHA-256", false},
		{"cert revoke again", CmdCertRevoke, CertRevokePayload{SerialHex: "a1b"}, "already revoked", false},
		{"vip bad cidr", CmdVIPPut, VIPPutPayload{Name: "x", CIDR: "10.0.0.0/24", Interface: "eth0"}, "/32 or /128", false},
		{"vip duplicate address", CmdVIPPut, VIPPutPayload{Name: "other", CIDR: "10.0.0.10/32", Interface: "eth0"}, "already VIP", false},
		{"vip holder not member", CmdVIPPut, VIPPutPayload{Name: "x", CIDR: "10.0.0.11/32", Interface: "eth0", HolderNodeIDs: []string{node3}}, "not a cluster member", false},
		{"vip holder twice", CmdVIPPut, VIPPutPayload{Name: "x", CIDR: "10.0.0.11/32", Interface: "eth0", HolderNodeIDs: []string{node1, node1}}, "twice", false},
		{"vip holder and failover", CmdVIPPut, VIPPutPayload{Name: "x", CIDR: "10.0.0.11/32", Interface: "eth0", HolderNodeIDs: []string{node1}, FailoverNodeIDs: []string{node1}}, "both holder and failover", false},
		{"vip bad interface", CmdVIPPut, VIPPutPayload{Name: "x", CIDR: "10.0.0.11/32", Interface: "this-name-is-too-long"}, "interface", false},
		{"vip bad state", CmdVIPPut, VIPPutPayload{Name: "x", CIDR: "10.0.0.11/32", Interface: "eth0", State: "up"}, "state", false},
		{"vip delete missing", CmdVIPDelete, VIPDeletePayload{Name: "x"}, "does not exist", true},
		{"vip assign missing", CmdVIPAssign, VIPAssignPayload{Name: "x", NodeID: node1, Reason: ReasonInitial}, "does not exist", true},
		{"vip assign bad reason", CmdVIPAssign, VIPAssignPayload{Name: "site", NodeID: node1, Reason: "whim"}, "reason", false},
		{"vip assign non member", CmdVIPAssign, VIPAssignPayload{Name: "site", NodeID: node3, Reason: ReasonInitial}, "not a cluster member", false},
		{"vip assign unassigned again", CmdVIPAssign, VIPAssignPayload{Name: "site", Reason: ReasonManualFailover, State: VIPPending}, "already pending", false},
		{"wg key not member", CmdWGKeyPut, WGKeyPutPayload{NodeID: node3, PublicKey: wgKey1}, "not a cluster member", false},
		{"wg key bad", CmdWGKeyPut, WGKeyPutPayload{NodeID: node1, PublicKey: "short"}, "base64 of 32 bytes", false},
		{"wg peer unknown peer", CmdWGPeerPut, WGPeer{Name: "x", PeerID: peerC, Interface: "wg0", PublicKey: wgKey2}, "does not exist", false},
		{"wg peer same key", CmdWGPeerPut, WGPeer{Name: "x", Interface: "wg-sdwan-abcdef", PublicKey: wgKey1}, "already peer", false},
		{"wg peer bad endpoint", CmdWGPeerPut, WGPeer{Name: "x", Interface: "wg0", PublicKey: wgKey2, Endpoint: "nowhere"}, "endpoint", false},
		{"wg peer bad allowed", CmdWGPeerPut, WGPeer{Name: "x", Interface: "wg0", PublicKey: wgKey2, AllowedIPs: []string{"fd00::1"}}, "allowed_ips", false},
		{"wg peer delete missing", CmdWGPeerDelete, WGPeerDeletePayload{Name: "x"}, "does not exist", true},
		{"kv empty key", CmdKVPut, KVPutPayload{Key: "", Value: []byte("x")}, "key is empty", false},
		{"kv long key", CmdKVPut, KVPutPayload{Key: longKey, Value: []byte("x")}, "longer than", false},
		{"kv big value", CmdKVPut, KVPutPayload{Key: "big", Value: make([]byte, MaxKVValueLen+1)}, "more than", false},
		{"kv delete missing", CmdKVDelete, KVDeletePayload{Key: "nope"}, "does not exist", true},
		{"kv delete missing prefix", CmdKVDelete, KVDeletePayload{Key: "nope", Prefix: true}, "does not exist", true},
		{"lock held", CmdLockAcquire, LockAcquirePayload{Name: "issue/a", Owner: "n2", TTL: time.Minute}, `held by "n1"`, false},
		{"lock zero ttl", CmdLockAcquire, LockAcquirePayload{Name: "l2", Owner: "n2"}, "ttl", false},
		{"lock long ttl", CmdLockAcquire, LockAcquirePayload{Name: "l2", Owner: "n2", TTL: 2 * time.Hour}, "ttl", false},
		{"lock no owner", CmdLockAcquire, LockAcquirePayload{Name: "l2", TTL: time.Minute}, "owner", false},
		{"lock release other", CmdLockRelease, LockReleasePayload{Name: "issue/a", Owner: "n2"}, "not \"n2\"", false},
		{"lock release unheld", CmdLockRelease, LockReleasePayload{Name: "nope", Owner: "n2"}, "not held", true},
		{"member bad addr", CmdMemberPut, MemberPutPayload{NodeID: node3, RaftAddr: "nowhere"}, "host:port", false},
		{"member addr taken", CmdMemberPut, MemberPutPayload{NodeID: node3, RaftAddr: "127.0.0.1:7001"}, "already belongs", false},
		{"member unchanged", CmdMemberPut, MemberPutPayload{NodeID: node1, RaftAddr: "127.0.0.1:7001"}, "already recorded", false},
		{"member delete missing", CmdMemberDelete, MemberDeletePayload{NodeID: node3}, "does not exist", true},
		{"finding unknown peer", CmdFindingAdd, federation.Finding{ID: find1, PeerID: peerC, Kind: federation.FindingCapabilityDrift}, "does not exist", false},
		{"finding bad kind", CmdFindingAdd, federation.Finding{ID: find1, PeerID: peerA, Kind: "rude"}, "kind", false},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := base(t)
			before, beforeJSON := a.s, mustJSON(t, a.s)
			_, err := a.try(tc.typ, tc.payload)
			if err == nil {
				t.Fatalf("%s was applied, want refusal", tc.typ)
			}
			var re *RefusedError
			if !errors.Is(err, ErrRefused) || !errors.As(err, &re) {
				t.Fatalf("error %v does not wrap ErrRefused", err)
			}
			if re.Type != tc.typ {
				t.Errorf("refusal type %q, want %q", re.Type, tc.typ)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("refusal %q does not contain %q", err, tc.reason)
			}
			if got := errors.Is(err, ErrNotFound); got != tc.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v, want %v", got, tc.notFound)
			}
			if a.s != before {
				t.Error("refusal returned a different State")
			}
			if d := cmp.Diff(beforeJSON, mustJSON(t, a.s)); d != "" {
				t.Errorf("state changed on refusal (-before +after):\n%s", d)
			}
		})
		covered[tc.typ] = true
	}
	for typ := range handlers {
		if !covered[typ] {
			t.Errorf("no refusal case for %s", typ)
		}
	}
}

func TestStateCommands(t *testing.T) {
	type check func(t *testing.T, s *State, res Result)
	tests := []struct {
		name    string
		typ     string
		payload any
		key     string
		check   check
	}{
		{"peer add", CmdPeerAdd, testPeer(peerC, federation.StatusProposed), "peer/" + peerC, func(t *testing.T, s *State, _ Result) {
			p, ok := s.Peer(peerC)
			if !ok || p.Status != federation.StatusProposed || p.CreatedAt.IsZero() {
				t.Errorf("peer %+v %v", p, ok)
			}
		}},
		{"peer update", CmdPeerUpdate, func() federation.Peer {
			p := testPeer(peerA, federation.StatusAccepted)
			p.SyncCursor = "c42"
			return p
		}(), "peer/" + peerA, func(t *testing.T, s *State, _ Result) {
			if p, _ := s.Peer(peerA); p.SyncCursor != "c42" || p.CreatedAt.Equal(p.UpdatedAt) {
				t.Errorf("peer %+v", p)
			}
		}},
		{"peer transition", CmdPeerTransition, PeerTransitionPayload{ID: peerA, To: federation.StatusEnrolled}, "peer/" + peerA, func(t *testing.T, s *State, _ Result) {
			if p, _ := s.Peer(peerA); p.Status != federation.StatusEnrolled {
				t.Errorf("status %s", p.Status)
			}
		}},
		{"peer suspend", CmdPeerTransition, PeerTransitionPayload{ID: peerA, To: federation.StatusSuspended, Reason: "compromise notice"}, "peer/" + peerA, func(t *testing.T, s *State, _ Result) {
			if p, _ := s.Peer(peerA); p.Metadata[federation.MetaSuspensionReason] != "compromise notice" {
				t.Errorf("metadata %v", p.Metadata)
			}
		}},
		{"peer revoke cascades", CmdPeerRevoke, PeerRevokePayload{ID: peerA, Reason: "contract breach"}, "peer/" + peerA, func(t *testing.T, s *State, res Result) {
			if p, _ := s.Peer(peerA); p.Status != federation.StatusRevoked {
				t.Errorf("status %s", p.Status)
			}
			if g, _ := s.Grant(grant1); !g.Revoked() || g.RevocationReason != "peer revoked: contract breach" {
				t.Errorf("grant %+v", g)
			}
			if len(s.WGPeers()) != 0 {
				t.Errorf("wg peers %v", s.WGPeers())
			}
			var r PeerRevokeResult
			if err := json.Unmarshal(res.Data, &r); err != nil || !cmp.Equal(r.RevokedGrants, []string{grant1}) || !cmp.Equal(r.RemovedWGPeers, []string{"peer-a"}) {
				t.Errorf("result %s (%v)", res.Data, err)
			}
		}},
		{"transition to revoked cascades too", CmdPeerTransition, PeerTransitionPayload{ID: peerA, To: federation.StatusRevoked}, "peer/" + peerA, func(t *testing.T, s *State, _ Result) {
			if g, _ := s.Grant(grant1); !g.Revoked() {
				t.Errorf("grant %+v", g)
			}
		}},
		{"grant issue", CmdGrantIssue, testGrant(grant2, peerA), "grant/" + grant2, func(t *testing.T, s *State, _ Result) {
			if gs := s.Grants(peerA); len(gs) != 2 {
				t.Errorf("grants %v", gs)
			}
		}},
		{"grant revoke", CmdGrantRevoke, GrantRevokePayload{ID: grant1, Reason: "done"}, "grant/" + grant1, func(t *testing.T, s *State, _ Result) {
			if g, _ := s.Grant(grant1); !g.Revoked() || !g.RevokedAt.After(t0) {
				t.Errorf("grant %+v", g)
			}
		}},
		{"contract add", CmdContractAdd, federation.ContractVersion{Version: 2, ContractText: "v2 text", ContractDigest: federation.Digest("v2 text"), EffectiveAt: t0}, "contract/2", func(t *testing.T, s *State, _ Result) {
			if got := s.Contracts().SupportedVersions(); !cmp.Equal(got, []int{1, 2}) {
				t.Errorf("supported %v", got)
			}
		}},
		{"contract deprecate", CmdContractDeprecate, ContractDeprecatePayload{Version: 1}, "contract/1", func(t *testing.T, s *State, _ Result) {
			if c, _ := s.Contract(1); !c.Deprecated() {
				t.Errorf("contract %+v", c)
			}
		}},
		{"cert revoke spki", CmdCertRevoke, CertRevokePayload{SPKISHA256: strings.ToUpper(spki1)}, "cert/spki:" + spki1, func(t *testing.T, s *State, _ Result) {
			if !s.IsRevoked("", spki1) || !s.IsRevoked("0x0a:1b", "") || s.IsRevoked("a1c", "") {
				t.Error("IsRevoked wrong")
			}
			if len(s.Revocations()) != 2 {
				t.Errorf("revocations %v", s.Revocations())
			}
		}},
		{"vip put", CmdVIPPut, VIPPutPayload{Name: "v6", CIDR: "fd00::10/128", Interface: "eth0"}, "vip/v6", func(t *testing.T, s *State, _ Result) {
			if v, ok := s.VIP("v6"); !ok || v.State != VIPPending {
				t.Errorf("vip %+v", v)
			}
		}},
		{"vip assign", CmdVIPAssign, VIPAssignPayload{Name: "site", NodeID: node1, Reason: ReasonInitial}, "vip/site", func(t *testing.T, s *State, _ Result) {
			v, _ := s.VIP("site")
			h := s.VIPHistory("site")
			if v.Holder != node1 || v.State != VIPActive || len(h) != 1 || h[0].Reason != ReasonInitial || h[0].To != node1 {
				t.Errorf("vip %+v history %+v", v, h)
			}
		}},
		{"vip delete", CmdVIPDelete, VIPDeletePayload{Name: "site"}, "vip/site", func(t *testing.T, s *State, _ Result) {
			if len(s.VIPs()) != 0 {
				t.Errorf("vips %v", s.VIPs())
			}
		}},
		{"wg key", CmdWGKeyPut, WGKeyPutPayload{NodeID: node1, PublicKey: wgKey2}, "wgkey/" + node1, func(t *testing.T, s *State, _ Result) {
			if k, ok := s.WGKey(node1); !ok || k.PublicKey != wgKey2 {
				t.Errorf("key %+v", k)
			}
		}},
		{"wg peer put", CmdWGPeerPut, WGPeer{Name: "peer-b", PeerID: peerB, Interface: "wg-sdwan-abcdef", PublicKey: wgKey2, AllowedIPs: []string{"10.9.0.0/24"}}, "wgpeer/peer-b", func(t *testing.T, s *State, _ Result) {
			if ps := s.WGPeers(); len(ps) != 2 || ps[1].Name != "peer-b" || ps[1].UpdatedAt.IsZero() {
				t.Errorf("wg peers %+v", ps)
			}
		}},
		{"wg peer delete", CmdWGPeerDelete, WGPeerDeletePayload{Name: "peer-a"}, "wgpeer/peer-a", func(t *testing.T, s *State, _ Result) {
			if len(s.WGPeers()) != 0 {
				t.Error("peer kept")
			}
		}},
		{"kv put", CmdKVPut, KVPutPayload{Key: "certs/b.crt", Value: []byte("12345")}, "kv/certs/b.crt", func(t *testing.T, s *State, _ Result) {
			e, ok := s.KVGet("certs/b.crt")
			if !ok || e.Size != 5 || !e.Modified.After(t0) {
				t.Errorf("entry %+v", e)
			}
			if l := s.KVList("certs/"); len(l) != 2 || l[0].Key != "certs/a.crt" {
				t.Errorf("list %+v", l)
			}
		}},
		{"kv delete prefix", CmdKVDelete, KVDeletePayload{Key: "certs", Prefix: true}, "kv/certs", func(t *testing.T, s *State, _ Result) {
			if s.KVLen() != 0 {
				t.Errorf("kv len %d", s.KVLen())
			}
		}},
		{"lock extend by owner", CmdLockAcquire, LockAcquirePayload{Name: "issue/a", Owner: "n1", TTL: time.Hour}, "lock/issue/a", func(t *testing.T, s *State, _ Result) {
			l, _ := s.Lock("issue/a")
			if l.Expires.Sub(l.AcquiredAt) <= time.Hour {
				t.Errorf("lock %+v not extended from first acquisition", l)
			}
		}},
		{"lock release", CmdLockRelease, LockReleasePayload{Name: "issue/a", Owner: "n1"}, "lock/issue/a", func(t *testing.T, s *State, _ Result) {
			if _, ok := s.Lock("issue/a"); ok {
				t.Error("lock kept")
			}
		}},
		{"member delete cleans vips", CmdMemberDelete, MemberDeletePayload{NodeID: node2}, "member/" + node2, func(t *testing.T, s *State, _ Result) {
			v, _ := s.VIP("site")
			if len(v.FailoverNodeIDs) != 0 {
				t.Errorf("vip %+v", v)
			}
		}},
		{"member put updates", CmdMemberPut, MemberPutPayload{NodeID: node1, RaftAddr: "127.0.0.1:7001", APIAddr: "127.0.0.1:8001"}, "member/" + node1, func(t *testing.T, s *State, _ Result) {
			m, _ := s.Member(node1)
			if m.APIAddr != "127.0.0.1:8001" || m.JoinedAt.Equal(m.UpdatedAt) {
				t.Errorf("member %+v", m)
			}
		}},
		{"finding", CmdFindingAdd, federation.Finding{ID: find1, PeerID: peerA, Kind: federation.FindingCapabilityDrift, Detail: "called kind disk"}, "finding/" + find1, func(t *testing.T, s *State, _ Result) {
			if f := s.Findings(peerA); len(f) != 1 || f[0].At.IsZero() {
				t.Errorf("findings %+v", f)
			}
		}},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := base(t)
			before, beforeJSON := a.s, mustJSON(t, a.s)
			res, err := a.try(tc.typ, tc.payload)
			if err != nil {
				t.Fatalf("%s: %v", tc.typ, err)
			}
			if res.Key != tc.key || res.Index != a.idx || res.Duplicate {
				t.Errorf("result %+v, want key %s index %d", res, tc.key, a.idx)
			}
			if mustJSON(t, before) != beforeJSON {
				t.Error("the previous State was mutated")
			}
			tc.check(t, a.s, res)
		})
		covered[tc.typ] = true
	}
	for typ := range handlers {
		if !covered[typ] {
			t.Errorf("no success case for %s", typ)
		}
	}
}

func TestStateLockExpiryUsesCommandTime(t *testing.T) {
	a := newApplier(t)
	acquire := func(owner string, at time.Time) error {
		c := MustCommand(CmdLockAcquire, LockAcquirePayload{Name: "l", Owner: owner, TTL: time.Minute})
		c.ID, c.At = owner+at.String(), at
		next, _, err := a.s.Apply(1, c)
		a.s = next
		return err
	}
	if err := acquire("a", t0); err != nil {
		t.Fatal(err)
	}
	if err := acquire("b", t0.Add(59*time.Second)); !errors.Is(err, ErrRefused) {
		t.Fatalf("b before expiry: %v", err)
	}
	if err := acquire("b", t0.Add(time.Minute)); err != nil {
		t.Fatalf("b at expiry: %v", err)
	}
	if l, _ := a.s.Lock("l"); l.Owner != "b" {
		t.Fatalf("owner %s", l.Owner)
	}
}

func TestStateDuplicateIDs(t *testing.T) {
	s := NewState(3)
	c := MustCommand(CmdKVPut, KVPutPayload{Key: "k", Value: []byte("1")})
	c.ID, c.At = "same", t0
	s1, r1, err := s.Apply(10, c)
	if err != nil {
		t.Fatal(err)
	}
	c2 := c
	c2.Payload, _ = json.Marshal(KVPutPayload{Key: "k", Value: []byte("2")})
	c2.At = t0.Add(time.Second)
	s2, r2, err := s1.Apply(11, c2)
	if err != nil {
		t.Fatal(err)
	}
	if s2 != s1 || !r2.Duplicate || r2.Index != r1.Index || r2.ID != "same" {
		t.Fatalf("duplicate applied: %+v", r2)
	}
	if e, _ := s2.KVGet("k"); string(e.Value) != "1" {
		t.Fatalf("value %q", e.Value)
	}
	// Three more IDs push "same" out of a window of three: it applies again.
	for i := 0; i < 3; i++ {
		x := MustCommand(CmdKVPut, KVPutPayload{Key: fmt.Sprint(i), Value: []byte("x")})
		x.ID, x.At = fmt.Sprint("id", i), t0
		s2, _, err = s2.Apply(uint64(12+i), x)
		if err != nil {
			t.Fatal(err)
		}
	}
	if s2.AppliedIDs() != 3 {
		t.Fatalf("window holds %d", s2.AppliedIDs())
	}
	s3, r3, err := s2.Apply(20, c2)
	if err != nil || r3.Duplicate {
		t.Fatalf("evicted id: %+v %v", r3, err)
	}
	if e, _ := s3.KVGet("k"); string(e.Value) != "2" {
		t.Fatalf("value %q", e.Value)
	}
}

func TestStateEnvelopeRefusals(t *testing.T) {
	s := NewState(0)
	good := MustCommand(CmdKVPut, KVPutPayload{Key: "k"})
	for name, mod := range map[string]func(*Command){
		"no id":          func(c *Command) { c.ID = "" },
		"no time":        func(c *Command) { c.At = time.Time{} },
		"future version": func(c *Command) { c.V = 2 },
		"long id":        func(c *Command) { c.ID = strings.Repeat("x", 129) },
		"empty payload":  func(c *Command) { c.Payload = nil },
		"trailing data":  func(c *Command) { c.Payload = json.RawMessage(`{"key":"k"} {}`) },
	} {
		c := good
		c.ID, c.At = "x", t0
		mod(&c)
		if next, _, err := s.Apply(1, c); !errors.Is(err, ErrRefused) || next != s {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

// randomCommands builds a reproducible mix of valid and invalid commands.
func randomCommands(seed uint64, n int) []Command {
	r := rand.New(rand.NewPCG(seed, seed))
	peers := []string{peerA, peerB, peerC}
	nodes := []string{node1, node2, node3}
	var out []Command
	for i := 0; i < n; i++ {
		var c Command
		switch r.IntN(12) {
		case 0:
			c = MustCommand(CmdMemberPut, MemberPutPayload{NodeID: nodes[r.IntN(3)], RaftAddr: fmt.Sprintf("127.0.0.1:%d", 7000+r.IntN(4)), APIAddr: fmt.Sprint(r.IntN(3))})
		case 1:
			c = MustCommand(CmdPeerAdd, testPeer(peers[r.IntN(3)], federation.StatusProposed))
		case 2:
			sts := federation.Statuses()
			c = MustCommand(CmdPeerTransition, PeerTransitionPayload{ID: peers[r.IntN(3)], To: sts[r.IntN(len(sts))], Reason: "r"})
		case 3:
			c = MustCommand(CmdGrantIssue, testGrant(fmt.Sprintf("019abc00-0000-7000-8000-%012d", r.IntN(5)), peers[r.IntN(3)]))
		case 4:
			c = MustCommand(CmdKVPut, KVPutPayload{Key: fmt.Sprintf("k/%d", r.IntN(8)), Value: []byte{byte(r.IntN(256))}})
		case 5:
			c = MustCommand(CmdKVDelete, KVDeletePayload{Key: fmt.Sprintf("k/%d", r.IntN(8))})
		case 6:
			c = MustCommand(CmdLockAcquire, LockAcquirePayload{Name: "l", Owner: fmt.Sprint(r.IntN(2)), TTL: time.Duration(1+r.IntN(5)) * time.Second})
		case 7:
			c = MustCommand(CmdVIPPut, VIPPutPayload{Name: fmt.Sprint("v", r.IntN(2)), CIDR: fmt.Sprintf("10.0.0.%d/32", r.IntN(3)), Interface: "eth0", HolderNodeIDs: []string{nodes[r.IntN(3)]}})
		case 8:
			c = MustCommand(CmdVIPAssign, VIPAssignPayload{Name: fmt.Sprint("v", r.IntN(2)), NodeID: nodes[r.IntN(3)], Reason: ReasonSensorFailover})
		case 9:
			c = MustCommand(CmdCertRevoke, CertRevokePayload{SerialHex: fmt.Sprintf("%x", r.IntN(10))})
		case 10:
			c = MustCommand(CmdMemberDelete, MemberDeletePayload{NodeID: nodes[r.IntN(3)]})
		case 11:
			c = MustCommand(CmdPeerRevoke, PeerRevokePayload{ID: peers[r.IntN(3)]})
		}
		c.ID = fmt.Sprint("c", r.IntN(n)) // collisions exercise the window
		c.At = t0.Add(time.Duration(i) * time.Second)
		out = append(out, c)
	}
	return out
}

func TestStateDeterministic(t *testing.T) {
	cmds := randomCommands(7, 600)
	run := func() (*State, []string) {
		s := NewState(64)
		var outcomes []string
		for i, c := range cmds {
			next, res, err := s.Apply(uint64(i+1), c)
			s = next
			outcomes = append(outcomes, fmt.Sprintf("%+v %v", res, err))
		}
		return s, outcomes
	}
	s1, o1 := run()
	s2, o2 := run()
	if d := cmp.Diff(o1, o2); d != "" {
		t.Fatalf("outcomes differ:\n%s", d)
	}
	j1, j2 := mustJSON(t, s1), mustJSON(t, s2)
	if j1 != j2 {
		t.Fatal("same commands gave different JSON")
	}
	applied := 0
	for _, o := range o1 {
		if strings.HasSuffix(o, "<nil>") {
			applied++
		}
	}
	if applied < 100 {
		t.Fatalf("only %d of %d commands applied; the mix is too weak", applied, len(cmds))
	}
	// A decoded snapshot is the same state and keeps behaving the same.
	d, err := DecodeState([]byte(j1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, d); got != j1 {
		t.Fatalf("snapshot round trip differs:\n%s", cmp.Diff(j1, got))
	}
	more := randomCommands(8, 200)
	for i, c := range more {
		s1, _, _ = s1.Apply(uint64(1000+i), c)
		d, _, _ = d.Apply(uint64(1000+i), c)
	}
	if mustJSON(t, s1) != mustJSON(t, d) {
		t.Fatal("restored state diverged")
	}
}

func TestDecodeStateRefusesDamage(t *testing.T) {
	good := mustJSON(t, base(t).s)
	for name, doc := range map[string]string{
		"truncated":       good[:len(good)/2],
		"unknown field":   strings.Replace(good, `"format":1`, `"format":1,"x":1`, 1),
		"format":          strings.Replace(good, `"format":1`, `"format":9`, 1),
		"contract digest": strings.Replace(good, federation.ContractV1Digest, spki1[:63]+"0", 1),
	} {
		if _, err := DecodeState([]byte(doc), 0); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzStateApply(f *testing.F) {
	a := base(f)
	f.Add(CmdKVPut, []byte(`{"key":"a","value":"AA=="}`))
	f.Add(CmdPeerTransition, []byte(`{"id":"`+peerA+`","to":"enrolled"}`))
	f.Add(CmdVIPAssign, []byte(`{"name":"site","node_id":"`+node1+`","reason":"initial"}`))
	f.Add(CmdPeerAdd, []byte(`{"id":"`+peerC+`","status":"proposed","peer_kind":"platform"}`))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		before := mustJSON(t, a.s)
		c := Command{V: 1, ID: "fuzz", Type: typ, At: t0.Add(time.Hour), Payload: payload}
		next, _, err := a.s.Apply(99, c)
		if err != nil {
			if next != a.s || mustJSON(t, next) != before {
				t.Fatal("refusal changed state")
			}
			return
		}
		// Whatever was applied must survive a snapshot round trip.
		j := mustJSON(t, next)
		d, derr := DecodeState([]byte(j), 0)
		if derr != nil {
			t.Fatalf("applied state does not decode: %v", derr)
		}
		if mustJSON(t, d) != j {
			t.Fatal("round trip differs")
		}
	})
}

func TestStateTimeNeverGoesBackwards(t *testing.T) {
	s := NewState(0)
	put := func(id string, at time.Time) *State {
		c := MustCommand(CmdLockAcquire, LockAcquirePayload{Name: id, Owner: "o", TTL: time.Minute})
		c.ID, c.At = id, at
		next, _, err := s.Apply(1, c)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	s = put("a", t0.Add(time.Hour))
	s = put("b", t0) // a new leader with a slow clock
	if l, _ := s.Lock("b"); !l.AcquiredAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("lock b acquired at %s, want the clamped %s", l.AcquiredAt, t0.Add(time.Hour))
	}
	if !s.LastAppliedAt().Equal(t0.Add(time.Hour)) {
		t.Fatal(s.LastAppliedAt())
	}
}

// TestPeerRevokeUnassignsDedicatedVIPs: a VIP dedicated to a peer is
// unassigned, with a "revoked" history entry, in the same command that
// revokes the peer (commitment 11); other VIPs stay; a VIP cannot be
// dedicated to an unknown or revoked peer.
func TestPeerRevokeUnassignsDedicatedVIPs(t *testing.T) {
	a := base(t)
	a.must(CmdVIPPut, VIPPutPayload{Name: "for-a", CIDR: "10.9.0.1/32", Interface: "eth0", PeerID: peerA})
	a.must(CmdVIPPut, VIPPutPayload{Name: "site", CIDR: "10.9.0.2/32", Interface: "eth0"})
	a.must(CmdVIPAssign, VIPAssignPayload{Name: "for-a", NodeID: node1, Reason: "initial"})
	res := a.must(CmdPeerRevoke, PeerRevokePayload{ID: peerA, Reason: "done"})
	var r PeerRevokeResult
	if err := json.Unmarshal(res.Data, &r); err != nil || !cmp.Equal(r.UnassignedVIPs, []string{"for-a"}) {
		t.Fatalf("result %s (%v)", res.Data, err)
	}
	if v, _ := a.s.VIP("for-a"); v.Holder != "" || v.State != VIPUnassigned || v.PeerID != peerA {
		t.Errorf("dedicated VIP after revoke: %+v", v)
	}
	if v, _ := a.s.VIP("site"); v.State != VIPPending {
		t.Errorf("site VIP touched: %+v", v)
	}
	h := a.s.VIPHistory("for-a")
	if len(h) != 2 || h[1].Reason != "revoked" || h[1].From != node1 || h[1].To != "" {
		t.Errorf("history %+v", h)
	}
	for _, p := range []VIPPutPayload{
		{Name: "x", CIDR: "10.9.0.3/32", Interface: "eth0", PeerID: peerA},                                  // revoked
		{Name: "y", CIDR: "10.9.0.4/32", Interface: "eth0", PeerID: "0190a000-0000-7000-8000-0000000000ff"}, // unknown
	} {
		if _, err := a.try(CmdVIPPut, p); !errors.Is(err, ErrRefused) {
			t.Errorf("vip.put %+v: %v", p, err)
		}
	}
}
