package proxytest

import (
	"slices"
	"strings"
	"sync"

	"github.com/powernode/fedgate/federation"
)

// State is an in-memory, concurrency-safe proxy.StateView.
type State struct {
	mu        sync.RWMutex
	peers     map[string]federation.Peer
	grants    map[string]federation.Grant
	contracts federation.Registry
}

// NewState returns a State knowing the built-in contract versions.
func NewState() *State {
	return &State{
		peers:     map[string]federation.Peer{},
		grants:    map[string]federation.Grant{},
		contracts: federation.DefaultRegistry(),
	}
}

// SetPeer adds or replaces a peer.
func (s *State) SetPeer(p federation.Peer) {
	s.mu.Lock()
	s.peers[p.ID] = p.Clone()
	s.mu.Unlock()
}

// UpdatePeer applies f to peer id (no-op if unknown).
func (s *State) UpdatePeer(id string, f func(*federation.Peer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.peers[id]; ok {
		p = p.Clone()
		f(&p)
		s.peers[id] = p
	}
}

// DeletePeer forgets a peer.
func (s *State) DeletePeer(id string) {
	s.mu.Lock()
	delete(s.peers, id)
	s.mu.Unlock()
}

// SetGrant adds or replaces a grant.
func (s *State) SetGrant(g federation.Grant) {
	s.mu.Lock()
	s.grants[g.ID] = g.Clone()
	s.mu.Unlock()
}

// SetContracts replaces the contract registry.
func (s *State) SetContracts(r federation.Registry) {
	s.mu.Lock()
	s.contracts = r
	s.mu.Unlock()
}

// Peer implements proxy.StateView.
func (s *State) Peer(id string) (federation.Peer, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.peers[id]
	return p, ok
}

// Grant implements proxy.StateView.
func (s *State) Grant(id string) (federation.Grant, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, ok := s.grants[id]
	return g, ok
}

// Contracts implements proxy.StateView.
func (s *State) Contracts() federation.Registry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.contracts
}

// Peers implements proxy.StateView (sorted by id).
func (s *State) Peers() []federation.Peer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]federation.Peer, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b federation.Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}
