package raftstore

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/powernode/fedgate/federation"
)

// Limits enforced by State.
const (
	MaxKeyLen       = 1024
	MaxKVValueLen   = 1 << 20
	MaxLockTTL      = time.Hour
	MaxReasonLen    = 1024
	MaxFindingLen   = 4096
	maxNameLen      = 63
	maxIfaceNameLen = 15 // IFNAMSIZ-1
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

func checkName(field, v string, max int) error {
	if v == "" {
		return refuse("%s is empty", field)
	}
	if len(v) > max {
		return refuse("%s %q is longer than %d bytes", field, v, max)
	}
	if !nameRE.MatchString(v) {
		return refuse("%s %q has characters outside [A-Za-z0-9._-]", field, v)
	}
	return nil
}

func checkReason(v string) error {
	if len(v) > MaxReasonLen {
		return refuse("reason is longer than %d bytes", MaxReasonLen)
	}
	return nil
}

// ---- certificate revocations ----

// Revocation is a revoked certificate, by serial and/or SPKI SHA-256.
type Revocation struct {
	SerialHex  string    `json:"serial_hex,omitempty"`
	SPKISHA256 string    `json:"spki_sha256,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	At         time.Time `json:"at"`
}

// CertRevokePayload is the payload of cert.revoke. At least one of
// SerialHex and SPKISHA256 is required.
type CertRevokePayload struct {
	SerialHex  string `json:"serial_hex,omitempty"`
	SPKISHA256 string `json:"spki_sha256,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// NormalizeSerialHex lower-cases a hex serial and strips an 0x prefix,
// colons and leading zeros, so that "0A:1b" and "a1b" name the same serial
// (big.Int.Text(16) form). It returns "" for input that is not hex.
func NormalizeSerialHex(v string) string {
	v = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X"))
	v = strings.ReplaceAll(v, ":", "")
	if v == "" {
		return ""
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	v = strings.TrimLeft(v, "0")
	if v == "" {
		v = "0"
	}
	return v
}

// NormalizeSPKIHex lower-cases a SHA-256 hex digest; "" if it is not one.
func NormalizeSPKIHex(v string) string {
	v = strings.ToLower(strings.ReplaceAll(v, ":", ""))
	if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
		return ""
	}
	return v
}

func init() { register(CmdCertRevoke, applyCertRevoke) }

func applyCertRevoke(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p CertRevokePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if p.SerialHex == "" && p.SPKISHA256 == "" {
		return nil, "", nil, refuse("serial_hex or spki_sha256 is required")
	}
	if err := checkReason(p.Reason); err != nil {
		return nil, "", nil, err
	}
	r := Revocation{Reason: p.Reason, At: c.Cmd.At}
	if p.SerialHex != "" {
		if r.SerialHex = NormalizeSerialHex(p.SerialHex); r.SerialHex == "" {
			return nil, "", nil, refuse("serial_hex %q is not hex", p.SerialHex)
		}
	}
	if p.SPKISHA256 != "" {
		if r.SPKISHA256 = NormalizeSPKIHex(p.SPKISHA256); r.SPKISHA256 == "" {
			return nil, "", nil, refuse("spki_sha256 %q is not a SHA-256 hex digest", p.SPKISHA256)
		}
	}
	var keys []string
	if r.SerialHex != "" {
		keys = append(keys, "serial:"+r.SerialHex)
	}
	if r.SPKISHA256 != "" {
		keys = append(keys, "spki:"+r.SPKISHA256)
	}
	fresh := false
	for _, k := range keys {
		if _, ok := s.revocations[k]; !ok {
			fresh = true
		}
	}
	if !fresh {
		return nil, "", nil, refuse("certificate is already revoked")
	}
	n := s.cow()
	n.revocations = cloneMap(s.revocations)
	for _, k := range keys {
		if _, ok := n.revocations[k]; !ok {
			n.revocations[k] = r
		}
	}
	return n, "cert/" + keys[0], r, nil
}

// IsRevoked reports whether a certificate with this serial (hex, any case)
// or SPKI SHA-256 (hex) is revoked. Empty arguments are ignored.
func (s *State) IsRevoked(serialHex, spkiHex string) bool {
	if v := NormalizeSerialHex(serialHex); v != "" {
		if _, ok := s.revocations["serial:"+v]; ok {
			return true
		}
	}
	if v := NormalizeSPKIHex(spkiHex); v != "" {
		if _, ok := s.revocations["spki:"+v]; ok {
			return true
		}
	}
	return false
}

// Revocations lists every revocation once, ordered by time then serial.
func (s *State) Revocations() []Revocation {
	seen := map[Revocation]bool{}
	out := []Revocation{}
	for _, k := range sortedKeys(s.revocations) {
		r := s.revocations[k]
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].SerialHex+out[i].SPKISHA256 < out[j].SerialHex+out[j].SPKISHA256
	})
	return out
}

// ---- VIPs ----

// VIP states, as the platform names them.
const (
	VIPPending     = "pending"
	VIPActive      = "active"
	VIPFailingOver = "failing_over"
	VIPUnassigned  = "unassigned"
	VIPError       = "error"
)

// VIP assignment reasons, as the platform names them.
const (
	ReasonInitial        = "initial"
	ReasonManualFailover = "manual_failover"
	ReasonSensorFailover = "sensor_failover"
	ReasonHolderChanged  = "holder_changed"
	ReasonRevoked        = "revoked"
)

// VIP is a site virtual IP and who may hold it.
type VIP struct {
	Name      string `json:"name"`
	CIDR      string `json:"cidr"`
	Interface string `json:"interface"`
	Anycast   bool   `json:"anycast,omitempty"`
	// HolderNodeIDs are the nodes allowed to hold the VIP, primary first;
	// empty means "the raft leader".
	HolderNodeIDs []string `json:"holder_node_ids"`
	// FailoverNodeIDs are tried after the holders.
	FailoverNodeIDs []string `json:"failover_node_ids"`
	// PeerID, when set, dedicates the VIP to one federation peer: revoking
	// that peer unassigns it (history reason "revoked") and it is never
	// mounted again for a revoked peer (commitment 11).
	PeerID string `json:"peer_id,omitempty"`
	// Holder is the node currently assigned (vip.assign), "" if none.
	Holder    string    `json:"holder,omitempty"`
	State     string    `json:"state"`
	UpdatedAt time.Time `json:"updated_at"`
}

// VIPAssignment is one entry of the append-only assignment history.
type VIPAssignment struct {
	Index  uint64    `json:"index"`
	VIP    string    `json:"vip"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// VIPPutPayload is the payload of vip.put (create or replace; Holder and
// State of an existing VIP are kept unless State is given).
type VIPPutPayload struct {
	Name            string   `json:"name"`
	CIDR            string   `json:"cidr"`
	Interface       string   `json:"interface"`
	Anycast         bool     `json:"anycast,omitempty"`
	HolderNodeIDs   []string `json:"holder_node_ids,omitempty"`
	FailoverNodeIDs []string `json:"failover_node_ids,omitempty"`
	State           string   `json:"state,omitempty"`
	// PeerID dedicates the VIP to a federation peer (see VIP.PeerID).
	PeerID string `json:"peer_id,omitempty"`
}

// VIPDeletePayload is the payload of vip.delete.
type VIPDeletePayload struct {
	Name string `json:"name"`
}

// VIPAssignPayload is the payload of vip.assign. An empty NodeID unassigns.
type VIPAssignPayload struct {
	Name   string `json:"name"`
	NodeID string `json:"node_id"`
	Reason string `json:"reason"`
	// State defaults to active when NodeID is set, unassigned otherwise.
	State string `json:"state,omitempty"`
}

func validVIPState(v string) bool {
	switch v {
	case VIPPending, VIPActive, VIPFailingOver, VIPUnassigned, VIPError:
		return true
	}
	return false
}

func validAssignReason(v string) bool {
	switch v {
	case ReasonInitial, ReasonManualFailover, ReasonSensorFailover, ReasonHolderChanged, ReasonRevoked:
		return true
	}
	return false
}

func init() {
	register(CmdVIPPut, applyVIPPut)
	register(CmdVIPDelete, applyVIPDelete)
	register(CmdVIPAssign, applyVIPAssign)
}

func (s *State) checkNodes(field string, ids []string) error {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return refuse("%s lists %q twice", field, id)
		}
		seen[id] = true
		if _, ok := s.members[id]; !ok {
			return refuse("%s: node %q is not a cluster member", field, id)
		}
	}
	return nil
}

func applyVIPPut(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p VIPPutPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkName("name", p.Name, maxNameLen); err != nil {
		return nil, "", nil, err
	}
	pfx, err := netip.ParsePrefix(p.CIDR)
	if err != nil {
		return nil, "", nil, refuse("cidr %q: %v", p.CIDR, err)
	}
	if pfx.Addr().Zone() != "" || pfx.Addr().Is4In6() || pfx.Bits() != pfx.Addr().BitLen() || pfx.String() != p.CIDR {
		return nil, "", nil, refuse("cidr %q must be a canonical /32 or /128", p.CIDR)
	}
	if err := checkName("interface", p.Interface, maxIfaceNameLen); err != nil {
		return nil, "", nil, err
	}
	if err := s.checkNodes("holder_node_ids", p.HolderNodeIDs); err != nil {
		return nil, "", nil, err
	}
	if err := s.checkNodes("failover_node_ids", p.FailoverNodeIDs); err != nil {
		return nil, "", nil, err
	}
	for _, id := range p.FailoverNodeIDs {
		if slices.Contains(p.HolderNodeIDs, id) {
			return nil, "", nil, refuse("node %q is both holder and failover", id)
		}
	}
	if p.PeerID != "" {
		peer, ok := s.peers[p.PeerID]
		if !ok {
			return nil, "", nil, refuse("peer_id %q: no such federation peer", p.PeerID)
		}
		if peer.Status == federation.StatusRevoked {
			return nil, "", nil, refuse("peer_id %q is revoked: a VIP cannot be dedicated to it", p.PeerID)
		}
	}
	if p.State != "" && !validVIPState(p.State) {
		return nil, "", nil, refuse("state %q is not one of pending active failing_over unassigned error", p.State)
	}
	for _, o := range s.vips {
		if o.Name != p.Name && o.CIDR == p.CIDR {
			return nil, "", nil, refuse("address %s is already VIP %q", p.CIDR, o.Name)
		}
	}
	v := VIP{
		Name: p.Name, CIDR: p.CIDR, Interface: p.Interface, Anycast: p.Anycast, PeerID: p.PeerID,
		HolderNodeIDs:   nonNil(slices.Clone(p.HolderNodeIDs)),
		FailoverNodeIDs: nonNil(slices.Clone(p.FailoverNodeIDs)),
		State:           VIPPending,
		UpdatedAt:       c.Cmd.At,
	}
	if old, ok := s.vips[p.Name]; ok {
		v.Holder, v.State = old.Holder, old.State
	}
	if p.State != "" {
		v.State = p.State
	}
	n := s.cow()
	n.vips = cloneMap(s.vips)
	n.vips[v.Name] = v
	return n, "vip/" + v.Name, v, nil
}

func applyVIPDelete(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p VIPDeletePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if _, ok := s.vips[p.Name]; !ok {
		return nil, "", nil, notFound("vip %q does not exist", p.Name)
	}
	n := s.cow()
	n.vips = cloneMap(s.vips)
	delete(n.vips, p.Name)
	return n, "vip/" + p.Name, nil, nil
}

func applyVIPAssign(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p VIPAssignPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	v, ok := s.vips[p.Name]
	if !ok {
		return nil, "", nil, notFound("vip %q does not exist", p.Name)
	}
	if !validAssignReason(p.Reason) {
		return nil, "", nil, refuse("reason %q is not one of initial manual_failover sensor_failover holder_changed revoked", p.Reason)
	}
	if p.NodeID != "" {
		if _, ok := s.members[p.NodeID]; !ok {
			return nil, "", nil, refuse("node %q is not a cluster member", p.NodeID)
		}
		allowed := append(slices.Clone(v.HolderNodeIDs), v.FailoverNodeIDs...)
		if len(allowed) > 0 && !slices.Contains(allowed, p.NodeID) {
			return nil, "", nil, refuse("node %q is not a holder or failover of vip %q", p.NodeID, p.Name)
		}
	}
	state := p.State
	if state == "" {
		state = VIPActive
		if p.NodeID == "" {
			state = VIPUnassigned
		}
	}
	if !validVIPState(state) {
		return nil, "", nil, refuse("state %q is not one of pending active failing_over unassigned error", state)
	}
	if p.NodeID == v.Holder && state == v.State {
		return nil, "", nil, refuse("vip %q is already %s on %q", p.Name, state, p.NodeID)
	}
	h := VIPAssignment{Index: c.Index, VIP: v.Name, From: v.Holder, To: p.NodeID, Reason: p.Reason, At: c.Cmd.At}
	v.Holder, v.State, v.UpdatedAt = p.NodeID, state, c.Cmd.At
	n := s.cow()
	n.vips = cloneMap(s.vips)
	n.vips[v.Name] = v
	n.vipHistory = append(slices.Clip(s.vipHistory), h)
	return n, "vip/" + v.Name, h, nil
}

// VIP returns the named VIP.
func (s *State) VIP(name string) (VIP, bool) {
	v, ok := s.vips[name]
	return v, ok
}

// VIPs lists the VIPs by name.
func (s *State) VIPs() []VIP { return sortedValues(s.vips) }

// VIPHistory returns the append-only assignment history, oldest first;
// vip filters by name when not empty.
func (s *State) VIPHistory(vip string) []VIPAssignment {
	out := []VIPAssignment{}
	for _, h := range s.vipHistory {
		if vip == "" || h.VIP == vip {
			out = append(out, h)
		}
	}
	return out
}

// ---- WireGuard ----

// WGKey is a node's WireGuard public key.
type WGKey struct {
	NodeID    string    `json:"node_id"`
	PublicKey string    `json:"public_key"`
	UpdatedAt time.Time `json:"updated_at"`
}

// WGPeer is a desired WireGuard peer.
type WGPeer struct {
	Name                string    `json:"name"`
	PeerID              string    `json:"peer_id,omitempty"` // federation peer, if any
	Interface           string    `json:"interface"`
	PublicKey           string    `json:"public_key"`
	Endpoint            string    `json:"endpoint,omitempty"`
	AllowedIPs          []string  `json:"allowed_ips"`
	PersistentKeepalive int       `json:"persistent_keepalive,omitempty"` // seconds
	UpdatedAt           time.Time `json:"updated_at"`
}

// WGKeyPutPayload is the payload of wg.key.put.
type WGKeyPutPayload struct {
	NodeID    string `json:"node_id"`
	PublicKey string `json:"public_key"`
}

// WGPeerPutPayload is the payload of wg.peer.put (UpdatedAt is ignored).
type WGPeerPutPayload = WGPeer

// WGPeerDeletePayload is the payload of wg.peer.delete.
type WGPeerDeletePayload struct {
	Name string `json:"name"`
}

func checkWGKey(k string) error {
	b, err := base64.StdEncoding.Strict().DecodeString(k)
	if err != nil || len(b) != 32 {
		return refuse("public_key is not base64 of 32 bytes")
	}
	return nil
}

func init() {
	register(CmdWGKeyPut, applyWGKeyPut)
	register(CmdWGPeerPut, applyWGPeerPut)
	register(CmdWGPeerDelete, applyWGPeerDelete)
}

func applyWGKeyPut(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p WGKeyPutPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if p.NodeID == "" {
		return nil, "", nil, refuse("node_id is empty")
	}
	if _, ok := s.members[p.NodeID]; !ok {
		return nil, "", nil, refuse("node %q is not a cluster member", p.NodeID)
	}
	if err := checkWGKey(p.PublicKey); err != nil {
		return nil, "", nil, err
	}
	k := WGKey{NodeID: p.NodeID, PublicKey: p.PublicKey, UpdatedAt: c.Cmd.At}
	n := s.cow()
	n.wgKeys = cloneMap(s.wgKeys)
	n.wgKeys[p.NodeID] = k
	return n, "wgkey/" + p.NodeID, nil, nil
}

func applyWGPeerPut(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p WGPeerPutPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkName("name", p.Name, maxNameLen); err != nil {
		return nil, "", nil, err
	}
	if err := checkName("interface", p.Interface, maxIfaceNameLen); err != nil {
		return nil, "", nil, err
	}
	if err := checkWGKey(p.PublicKey); err != nil {
		return nil, "", nil, err
	}
	if p.PeerID != "" {
		if _, ok := s.peers[p.PeerID]; !ok {
			return nil, "", nil, refuse("peer %q does not exist", p.PeerID)
		}
	}
	if p.Endpoint != "" {
		if _, err := netip.ParseAddrPort(p.Endpoint); err != nil {
			return nil, "", nil, refuse("endpoint %q: %v", p.Endpoint, err)
		}
	}
	for _, a := range p.AllowedIPs {
		if _, err := netip.ParsePrefix(a); err != nil {
			return nil, "", nil, refuse("allowed_ips %q: %v", a, err)
		}
	}
	if p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535 {
		return nil, "", nil, refuse("persistent_keepalive %d out of range", p.PersistentKeepalive)
	}
	for _, o := range s.wgPeers {
		if o.Name != p.Name && o.Interface == p.Interface && o.PublicKey == p.PublicKey {
			return nil, "", nil, refuse("public key is already peer %q on %s", o.Name, o.Interface)
		}
	}
	p.AllowedIPs = nonNil(slices.Clone(p.AllowedIPs))
	p.UpdatedAt = c.Cmd.At
	n := s.cow()
	n.wgPeers = cloneMap(s.wgPeers)
	n.wgPeers[p.Name] = p
	return n, "wgpeer/" + p.Name, nil, nil
}

func applyWGPeerDelete(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p WGPeerDeletePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if _, ok := s.wgPeers[p.Name]; !ok {
		return nil, "", nil, notFound("wireguard peer %q does not exist", p.Name)
	}
	n := s.cow()
	n.wgPeers = cloneMap(s.wgPeers)
	delete(n.wgPeers, p.Name)
	return n, "wgpeer/" + p.Name, nil, nil
}

// WGKey returns a node's WireGuard public key.
func (s *State) WGKey(nodeID string) (WGKey, bool) {
	k, ok := s.wgKeys[nodeID]
	return k, ok
}

// WGKeys lists node keys by node ID.
func (s *State) WGKeys() []WGKey { return sortedValues(s.wgKeys) }

// WGPeers lists WireGuard peers by name.
func (s *State) WGPeers() []WGPeer { return sortedValues(s.wgPeers) }

// ---- KV (certmagic storage) ----

// KVEntry is one key of the generic store. Value is opaque: callers
// encrypt anything secret before it is written (it enters the raft log).
type KVEntry struct {
	Key      string    `json:"key"`
	Value    []byte    `json:"value"`
	Modified time.Time `json:"modified"`
	Size     int64     `json:"size"`
}

// KVPutPayload is the payload of kv.put.
type KVPutPayload struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// KVDeletePayload is the payload of kv.delete. With Prefix, every key
// equal to Key or starting with Key+"/" is deleted (certmagic's directory
// semantics).
type KVDeletePayload struct {
	Key    string `json:"key"`
	Prefix bool   `json:"prefix,omitempty"`
}

func checkKey(k string) error {
	if k == "" {
		return refuse("key is empty")
	}
	if len(k) > MaxKeyLen {
		return refuse("key is longer than %d bytes", MaxKeyLen)
	}
	return nil
}

func init() {
	register(CmdKVPut, applyKVPut)
	register(CmdKVDelete, applyKVDelete)
	register(CmdLockAcquire, applyLockAcquire)
	register(CmdLockRelease, applyLockRelease)
}

func applyKVPut(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p KVPutPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkKey(p.Key); err != nil {
		return nil, "", nil, err
	}
	if len(p.Value) > MaxKVValueLen {
		return nil, "", nil, refuse("value is %d bytes, more than %d", len(p.Value), MaxKVValueLen)
	}
	e := KVEntry{Key: p.Key, Value: nonNil(p.Value), Modified: c.Cmd.At, Size: int64(len(p.Value))}
	n := s.cow()
	n.kv, _, _ = s.kv.Insert([]byte(p.Key), e)
	return n, "kv/" + p.Key, nil, nil
}

func applyKVDelete(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p KVDeletePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkKey(p.Key); err != nil {
		return nil, "", nil, err
	}
	n := s.cow()
	deleted := 0
	if t, _, ok := s.kv.Delete([]byte(p.Key)); ok {
		n.kv = t
		deleted++
	}
	if p.Prefix {
		dir := strings.TrimSuffix(p.Key, "/") + "/"
		var keys [][]byte
		n.kv.Root().WalkPrefix([]byte(dir), func(k []byte, _ any) bool {
			keys = append(keys, k)
			return false
		})
		for _, k := range keys {
			n.kv, _, _ = n.kv.Delete(k)
			deleted++
		}
	}
	if deleted == 0 {
		return nil, "", nil, notFound("key %q does not exist", p.Key)
	}
	return n, "kv/" + p.Key, map[string]int{"deleted": deleted}, nil
}

// KVGet returns the entry at key.
func (s *State) KVGet(key string) (KVEntry, bool) {
	v, ok := s.kv.Get([]byte(key))
	if !ok {
		return KVEntry{}, false
	}
	return v.(KVEntry), true
}

// KVList returns the entries whose key starts with prefix, sorted by key.
func (s *State) KVList(prefix string) []KVEntry {
	out := []KVEntry{}
	s.kv.Root().WalkPrefix([]byte(prefix), func(_ []byte, v any) bool {
		out = append(out, v.(KVEntry))
		return false
	})
	return out
}

// KVLen is the number of keys.
func (s *State) KVLen() int { return s.kv.Len() }

// ---- locks ----

// Lock is a named lease; it expires at Expires (compared against the
// command timestamp, never a local clock, inside State).
type Lock struct {
	Name       string    `json:"name"`
	Owner      string    `json:"owner"`
	AcquiredAt time.Time `json:"acquired_at"`
	Expires    time.Time `json:"expires"`
}

// LockAcquirePayload is the payload of lock.acquire. The same owner may
// re-acquire to extend its lease.
type LockAcquirePayload struct {
	Name  string        `json:"name"`
	Owner string        `json:"owner"`
	TTL   time.Duration `json:"ttl"`
}

// LockReleasePayload is the payload of lock.release.
type LockReleasePayload struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

func applyLockAcquire(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p LockAcquirePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkKey(p.Name); err != nil {
		return nil, "", nil, err
	}
	if p.Owner == "" || len(p.Owner) > MaxKeyLen {
		return nil, "", nil, refuse("owner is empty or too long")
	}
	if p.TTL <= 0 || p.TTL > MaxLockTTL {
		return nil, "", nil, refuse("ttl %s is not in (0, %s]", p.TTL, MaxLockTTL)
	}
	l, held := s.locks[p.Name]
	if held && l.Owner != p.Owner && l.Expires.After(c.Cmd.At) {
		return nil, "", nil, refuse("lock %q is held by %q until %s", p.Name, l.Owner, l.Expires.Format(time.RFC3339Nano))
	}
	nl := Lock{Name: p.Name, Owner: p.Owner, AcquiredAt: c.Cmd.At, Expires: c.Cmd.At.Add(p.TTL)}
	if held && l.Owner == p.Owner && l.Expires.After(c.Cmd.At) {
		nl.AcquiredAt = l.AcquiredAt
	}
	n := s.cow()
	n.locks = cloneMap(s.locks)
	n.locks[p.Name] = nl
	return n, "lock/" + p.Name, nl, nil
}

func applyLockRelease(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p LockReleasePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	l, held := s.locks[p.Name]
	if !held {
		return nil, "", nil, notFound("lock %q is not held", p.Name)
	}
	if l.Owner != p.Owner && l.Expires.After(c.Cmd.At) {
		return nil, "", nil, refuse("lock %q is held by %q, not %q", p.Name, l.Owner, p.Owner)
	}
	n := s.cow()
	n.locks = cloneMap(s.locks)
	delete(n.locks, p.Name)
	return n, "lock/" + p.Name, nil, nil
}

// Lock returns the named lock record (possibly expired: compare Expires
// with the current time).
func (s *State) Lock(name string) (Lock, bool) {
	l, ok := s.locks[name]
	return l, ok
}

// Locks lists locks by name.
func (s *State) Locks() []Lock { return sortedValues(s.locks) }

// ---- cluster members ----

// Member is cluster member metadata (the raft configuration itself lives
// in raft; see Store.Members).
type Member struct {
	NodeID    string    `json:"node_id"`
	RaftAddr  string    `json:"raft_addr"`
	APIAddr   string    `json:"api_addr,omitempty"`
	JoinedAt  time.Time `json:"joined_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MemberPutPayload is the payload of member.put.
type MemberPutPayload struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
}

// MemberDeletePayload is the payload of member.delete.
type MemberDeletePayload struct {
	NodeID string `json:"node_id"`
}

func init() {
	register(CmdMemberPut, applyMemberPut)
	register(CmdMemberDelete, applyMemberDelete)
}

func applyMemberPut(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p MemberPutPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if p.NodeID == "" || len(p.NodeID) > 128 {
		return nil, "", nil, refuse("node_id is empty or too long")
	}
	if _, _, err := net.SplitHostPort(p.RaftAddr); err != nil || p.RaftAddr == "" {
		return nil, "", nil, refuse("raft_addr %q is not host:port", p.RaftAddr)
	}
	for _, m := range s.members {
		if m.NodeID != p.NodeID && m.RaftAddr == p.RaftAddr {
			return nil, "", nil, refuse("raft_addr %s already belongs to node %q", p.RaftAddr, m.NodeID)
		}
	}
	m := Member{NodeID: p.NodeID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr, JoinedAt: c.Cmd.At, UpdatedAt: c.Cmd.At}
	if old, ok := s.members[p.NodeID]; ok {
		m.JoinedAt = old.JoinedAt
		if old.RaftAddr == m.RaftAddr && old.APIAddr == m.APIAddr {
			return nil, "", nil, refuse("member %q is already recorded with these addresses", p.NodeID)
		}
	}
	n := s.cow()
	n.members = cloneMap(s.members)
	n.members[p.NodeID] = m
	return n, "member/" + p.NodeID, m, nil
}

// applyMemberDelete removes a member, its WireGuard key, and its place in
// VIP holder lists; a VIP it held becomes unassigned with a holder_changed
// history entry.
func applyMemberDelete(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p MemberDeletePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if _, ok := s.members[p.NodeID]; !ok {
		return nil, "", nil, notFound("member %q does not exist", p.NodeID)
	}
	n := s.cow()
	n.members = cloneMap(s.members)
	delete(n.members, p.NodeID)
	if _, ok := s.wgKeys[p.NodeID]; ok {
		n.wgKeys = cloneMap(s.wgKeys)
		delete(n.wgKeys, p.NodeID)
	}
	vipsChanged := false
	for _, name := range sortedKeys(s.vips) {
		v := s.vips[name]
		if v.Holder != p.NodeID && !slices.Contains(v.HolderNodeIDs, p.NodeID) && !slices.Contains(v.FailoverNodeIDs, p.NodeID) {
			continue
		}
		if !vipsChanged {
			n.vips = cloneMap(s.vips)
			vipsChanged = true
		}
		v.HolderNodeIDs = nonNil(slices.DeleteFunc(slices.Clone(v.HolderNodeIDs), func(x string) bool { return x == p.NodeID }))
		v.FailoverNodeIDs = nonNil(slices.DeleteFunc(slices.Clone(v.FailoverNodeIDs), func(x string) bool { return x == p.NodeID }))
		if v.Holder == p.NodeID {
			n.vipHistory = append(slices.Clip(n.vipHistory), VIPAssignment{Index: c.Index, VIP: v.Name, From: v.Holder, Reason: ReasonHolderChanged, At: c.Cmd.At})
			v.Holder, v.State = "", VIPUnassigned
		}
		v.UpdatedAt = c.Cmd.At
		n.vips[name] = v
	}
	return n, "member/" + p.NodeID, nil, nil
}

// Member returns a member's metadata.
func (s *State) Member(nodeID string) (Member, bool) {
	m, ok := s.members[nodeID]
	return m, ok
}

// Members lists member metadata by node ID.
func (s *State) Members() []Member { return sortedValues(s.members) }

// ---- helpers ----

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type ordered interface{ ~string | ~int }

func sortedKeys[K ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedValues[K ordered, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}
