package pkitest

import (
	"math/big"
	"sync"

	"github.com/powernode/fedgate/pki"
)

// Peers is an in-memory pki.PeerSource: peers with trust bundles and
// statuses, and a revocation list. Safe for concurrent use.
type Peers struct {
	mu    sync.RWMutex
	peers map[string]peer
	revs  []pki.Revocation
	set   *pki.RevocationSet
}

type peer struct {
	bundle []byte
	status string
}

// Put adds or replaces a peer.
func (p *Peers) Put(id string, bundlePEM []byte, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.peers == nil {
		p.peers = map[string]peer{}
	}
	p.peers[id] = peer{bundle: bundlePEM, status: status}
}

// SetStatus changes a known peer's status.
func (p *Peers) SetStatus(id, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if x, ok := p.peers[id]; ok {
		x.status = status
		p.peers[id] = x
	}
}

// Revoke adds a revocation.
func (p *Peers) Revoke(r pki.Revocation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revs = append(p.revs, r)
	p.set = pki.NewRevocationSet(p.revs)
}

// PeerTrust implements pki.PeerSource.
func (p *Peers) PeerTrust(id string) ([]byte, string, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	x, ok := p.peers[id]
	return x.bundle, x.status, ok
}

// Revoked implements pki.PeerSource.
func (p *Peers) Revoked(serial *big.Int, spki [32]byte) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.set.Revoked(serial, spki)
}
