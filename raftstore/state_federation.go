package raftstore

import (
	"encoding/json"
	"slices"

	"sort"

	"github.com/powernode/fedgate/federation"
)

// Peers, grants, contract versions and findings: the federation records.
// The rules themselves (status machine, validation, digests) are the
// federation package's; State only sequences them.

type (
	peerRec     = federation.Peer
	grantRec    = federation.Grant
	contractReg = federation.Registry
)

// PeerTransitionPayload is the payload of peer.transition.
type PeerTransitionPayload struct {
	ID     string            `json:"id"`
	To     federation.Status `json:"to"`
	Reason string            `json:"reason,omitempty"`
}

// PeerRevokePayload is the payload of peer.revoke.
type PeerRevokePayload struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// GrantRevokePayload is the payload of grant.revoke.
type GrantRevokePayload struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// ContractDeprecatePayload is the payload of contract.deprecate.
type ContractDeprecatePayload struct {
	Version int `json:"version"`
}

// PeerRevokeResult is the Data of peer.revoke (and of a peer.transition to
// revoked): what the revocation cascaded to.
type PeerRevokeResult struct {
	Peer           federation.Peer `json:"peer"`
	RevokedGrants  []string        `json:"revoked_grants"`
	RemovedWGPeers []string        `json:"removed_wireguard_peers"`
	UnassignedVIPs []string        `json:"unassigned_vips"`
}

func init() {
	register(CmdPeerAdd, applyPeerAdd)
	register(CmdPeerUpdate, applyPeerUpdate)
	register(CmdPeerTransition, applyPeerTransition)
	register(CmdPeerRevoke, applyPeerRevoke)
	register(CmdGrantIssue, applyGrantIssue)
	register(CmdGrantRevoke, applyGrantRevoke)
	register(CmdContractAdd, applyContractAdd)
	register(CmdContractDeprecate, applyContractDeprecate)
	register(CmdFindingAdd, applyFindingAdd)
}

func (s *State) seedContracts() {
	s.contracts = federation.DefaultRegistry()
}

func applyPeerAdd(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p federation.Peer
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if _, ok := s.peers[p.ID]; ok {
		return nil, "", nil, refuse("peer %s already exists", p.ID)
	}
	if p.Status != federation.StatusProposed && p.Status != federation.StatusAccepted {
		return nil, "", nil, refuse("a new peer starts as proposed or accepted, not %q; use peer.transition", p.Status)
	}
	p.CreatedAt, p.UpdatedAt = c.Cmd.At, c.Cmd.At
	if err := p.Validate(); err != nil {
		return nil, "", nil, refuse("peer: %v", err)
	}
	if p.ContractVersionAgreed != 0 {
		if err := s.contracts.AdoptableForNewPeer(p.ContractVersionAgreed); err != nil {
			return nil, "", nil, refuse("contract_version_agreed: %v", err)
		}
	}
	p = p.Clone()
	n := s.cow()
	n.peers = cloneMap(s.peers)
	n.peers[p.ID] = p
	return n, "peer/" + p.ID, p, nil
}

func applyPeerUpdate(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p federation.Peer
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	old, ok := s.peers[p.ID]
	if !ok {
		return nil, "", nil, notFound("peer %s does not exist", p.ID)
	}
	if old.Status == federation.StatusRevoked {
		return nil, "", nil, refuse("peer %s is revoked; its record is kept as it was", p.ID)
	}
	if p.Status != old.Status {
		return nil, "", nil, refuse("status changes from %s to %s only through peer.transition", old.Status, p.Status)
	}
	p.CreatedAt, p.UpdatedAt = old.CreatedAt, c.Cmd.At
	if err := p.Validate(); err != nil {
		return nil, "", nil, refuse("peer: %v", err)
	}
	if p.ContractVersionAgreed != old.ContractVersionAgreed && p.ContractVersionAgreed != 0 {
		if err := s.contracts.AdoptableForNewPeer(p.ContractVersionAgreed); err != nil {
			return nil, "", nil, refuse("contract_version_agreed: %v", err)
		}
	}
	if p.Status.Reachable() || p.Status == federation.StatusEnrolled {
		if missing := p.MissingDisclosure(); len(missing) > 0 {
			return nil, "", nil, refuse("a %s peer must keep its identity disclosure; missing %v", p.Status, missing)
		}
	}
	p = p.Clone()
	n := s.cow()
	n.peers = cloneMap(s.peers)
	n.peers[p.ID] = p
	return n, "peer/" + p.ID, p, nil
}

func applyPeerTransition(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p PeerTransitionPayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkReason(p.Reason); err != nil {
		return nil, "", nil, err
	}
	return s.transitionPeer(c, p.ID, p.To, p.Reason)
}

func applyPeerRevoke(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p PeerRevokePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkReason(p.Reason); err != nil {
		return nil, "", nil, err
	}
	return s.transitionPeer(c, p.ID, federation.StatusRevoked, p.Reason)
}

// transitionPeer applies the federation status machine. Revocation (by
// peer.revoke or peer.transition) cascades in the same command: every
// unrevoked grant of the peer is revoked and its WireGuard peers removed,
// so no node can observe a revoked peer with live grants.
func (s *State) transitionPeer(c applyCtx, id string, to federation.Status, reason string) (*State, string, any, error) {
	old, ok := s.peers[id]
	if !ok {
		return nil, "", nil, notFound("peer %s does not exist", id)
	}
	np, err := old.Transition(to, reason, c.Cmd.At)
	if err != nil {
		return nil, "", nil, refuse("%v", err)
	}
	n := s.cow()
	n.peers = cloneMap(s.peers)
	n.peers[id] = np
	if to != federation.StatusRevoked {
		return n, "peer/" + id, np, nil
	}
	res := PeerRevokeResult{Peer: np, RevokedGrants: []string{}, RemovedWGPeers: []string{}, UnassignedVIPs: []string{}}
	greason := "peer revoked"
	if reason != "" {
		greason += ": " + reason
	}
	for _, gid := range sortedKeys(s.grants) {
		g := s.grants[gid]
		if g.FederationPeerID != id || g.Revoked() {
			continue
		}
		rg, err := g.Revoke(greason, c.Cmd.At)
		if err != nil {
			return nil, "", nil, refuse("revoke grant %s: %v", gid, err)
		}
		if len(res.RevokedGrants) == 0 {
			n.grants = cloneMap(s.grants)
		}
		n.grants[gid] = rg
		res.RevokedGrants = append(res.RevokedGrants, gid)
	}
	for _, name := range sortedKeys(s.wgPeers) {
		if s.wgPeers[name].PeerID != id {
			continue
		}
		if len(res.RemovedWGPeers) == 0 {
			n.wgPeers = cloneMap(s.wgPeers)
		}
		delete(n.wgPeers, name)
		res.RemovedWGPeers = append(res.RemovedWGPeers, name)
	}
	for _, name := range sortedKeys(s.vips) {
		v := s.vips[name]
		if v.PeerID != id || (v.Holder == "" && v.State == VIPUnassigned) {
			continue
		}
		if len(res.UnassignedVIPs) == 0 {
			n.vips = cloneMap(s.vips)
		}
		n.vipHistory = append(slices.Clip(n.vipHistory), VIPAssignment{Index: c.Index, VIP: name, From: v.Holder, Reason: "revoked", At: c.Cmd.At})
		v.Holder, v.State, v.UpdatedAt = "", VIPUnassigned, c.Cmd.At
		n.vips[name] = v
		res.UnassignedVIPs = append(res.UnassignedVIPs, name)
	}
	return n, "peer/" + id, res, nil
}

func applyGrantIssue(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var g federation.Grant
	if err := decode(payload, &g); err != nil {
		return nil, "", nil, err
	}
	if _, ok := s.grants[g.ID]; ok {
		return nil, "", nil, refuse("grant %s already exists", g.ID)
	}
	if g.IssuedAt.IsZero() {
		g.IssuedAt = c.Cmd.At
	}
	if g.Revoked() {
		return nil, "", nil, refuse("a new grant cannot be revoked already")
	}
	if err := g.Validate(); err != nil {
		return nil, "", nil, refuse("grant: %v", err)
	}
	if !g.ExpiresAt.After(c.Cmd.At) {
		return nil, "", nil, refuse("grant expires_at %s is not in the future", g.ExpiresAt)
	}
	peer, ok := s.peers[g.FederationPeerID]
	if !ok {
		return nil, "", nil, refuse("peer %s does not exist", g.FederationPeerID)
	}
	if peer.Status == federation.StatusRevoked {
		return nil, "", nil, refuse("peer %s is revoked", g.FederationPeerID)
	}
	g = g.Clone()
	n := s.cow()
	n.grants = cloneMap(s.grants)
	n.grants[g.ID] = g
	return n, "grant/" + g.ID, g, nil
}

func applyGrantRevoke(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p GrantRevokePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	if err := checkReason(p.Reason); err != nil {
		return nil, "", nil, err
	}
	g, ok := s.grants[p.ID]
	if !ok {
		return nil, "", nil, notFound("grant %s does not exist", p.ID)
	}
	rg, err := g.Revoke(p.Reason, c.Cmd.At)
	if err != nil {
		return nil, "", nil, refuse("%v", err)
	}
	n := s.cow()
	n.grants = cloneMap(s.grants)
	n.grants[p.ID] = rg
	return n, "grant/" + p.ID, rg, nil
}

func applyContractAdd(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var cv federation.ContractVersion
	if err := decode(payload, &cv); err != nil {
		return nil, "", nil, err
	}
	if _, ok := s.contracts.Lookup(cv.Version); ok {
		return nil, "", nil, refuse("contract version %d is already registered", cv.Version)
	}
	reg, err := s.contracts.Add(cv)
	if err != nil {
		return nil, "", nil, refuse("%v", err)
	}
	n := s.cow()
	n.contracts = reg
	return n, "contract/" + itoa(cv.Version), nil, nil
}

func applyContractDeprecate(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var p ContractDeprecatePayload
	if err := decode(payload, &p); err != nil {
		return nil, "", nil, err
	}
	cv, ok := s.contracts.Lookup(p.Version)
	if !ok {
		return nil, "", nil, notFound("contract version %d is not registered", p.Version)
	}
	if cv.Deprecated() {
		return nil, "", nil, refuse("contract version %d is already deprecated", p.Version)
	}
	reg, err := s.contracts.Deprecate(p.Version, c.Cmd.At)
	if err != nil {
		return nil, "", nil, refuse("%v", err)
	}
	n := s.cow()
	n.contracts = reg
	return n, "contract/" + itoa(p.Version), nil, nil
}

func applyFindingAdd(s *State, c applyCtx, payload json.RawMessage) (*State, string, any, error) {
	var f federation.Finding
	if err := decode(payload, &f); err != nil {
		return nil, "", nil, err
	}
	if f.At.IsZero() {
		f.At = c.Cmd.At
	}
	if err := f.Validate(); err != nil {
		return nil, "", nil, refuse("%v", err)
	}
	if _, ok := s.findings[f.ID]; ok {
		return nil, "", nil, refuse("finding %s already exists", f.ID)
	}
	if _, ok := s.peers[f.PeerID]; !ok {
		return nil, "", nil, refuse("peer %s does not exist", f.PeerID)
	}
	n := s.cow()
	n.findings = cloneMap(s.findings)
	n.findings[f.ID] = f
	return n, "finding/" + f.ID, nil, nil
}

// Peer returns the peer with id.
func (s *State) Peer(id string) (federation.Peer, bool) {
	p, ok := s.peers[id]
	return p, ok
}

// Peers lists every peer by id.
func (s *State) Peers() []federation.Peer { return sortedValues(s.peers) }

// Grant returns the grant with id.
func (s *State) Grant(id string) (federation.Grant, bool) {
	g, ok := s.grants[id]
	return g, ok
}

// Grants lists the grants of a peer ("" = every grant) by id.
func (s *State) Grants(peerID string) []federation.Grant {
	out := []federation.Grant{}
	for _, k := range sortedKeys(s.grants) {
		if g := s.grants[k]; peerID == "" || g.FederationPeerID == peerID {
			out = append(out, g)
		}
	}
	return out
}

// Contracts returns the contract registry (versions ascending).
func (s *State) Contracts() federation.Registry { return s.contracts }

// Contract returns contract version v.
func (s *State) Contract(v int) (federation.ContractVersion, bool) { return s.contracts.Lookup(v) }

// Findings lists findings for a peer ("" = all), oldest first.
func (s *State) Findings(peerID string) []federation.Finding {
	out := []federation.Finding{}
	for _, k := range sortedKeys(s.findings) {
		if f := s.findings[k]; peerID == "" || f.PeerID == peerID {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
