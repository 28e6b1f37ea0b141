package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

// recMounter records mounts and unmounts.
type recMounter struct {
	mu      sync.Mutex
	mounted map[netip.Prefix]bool
}

func (m *recMounter) MountVIP(_ context.Context, v netctl.VIP) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounted[v.Addr] = true
	return nil
}

func (m *recMounter) RenewVIPs(context.Context) error { return nil }

func (m *recMounter) UnmountVIP(_ context.Context, p netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mounted, p)
	return nil
}

func (m *recMounter) has(p netip.Prefix) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mounted[p]
}

// TestPeerVIPUnmountedOnRevoke: a VIP dedicated to a federation peer is
// mounted by the leader while the peer is live and unmounted when the peer
// is revoked (commitment 11), on a real single-node raft store.
func TestPeerVIPUnmountedOnRevoke(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{LogLevel: slog.LevelWarn})
	s := c.Nodes[0].Store
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	apply := func(typ string, payload any) {
		t.Helper()
		if _, err := applyLocal(ctx, s, raftstore.MustCommand(typ, payload)); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	peerID := raftstoretest.NewNodeID(t)
	apply(raftstore.CmdPeerAdd, federation.NewPeer(peerID, federation.PeerKindPlatform, time.Now()))
	apply(raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "for-peer", CIDR: "10.77.0.1/32", Interface: "eth0", PeerID: peerID})
	apply(raftstore.CmdVIPPut, raftstore.VIPPutPayload{Name: "site", CIDR: "10.77.0.2/32", Interface: "eth0"})
	m := &recMounter{mounted: map[netip.Prefix]bool{}}
	o := newVIPOwner(c.Nodes[0].ID, s, m, "eth0", slog.New(slog.DiscardHandler))
	octx, ocancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.run(octx); close(done) }()
	peerVIP, siteVIP := netip.MustParsePrefix("10.77.0.1/32"), netip.MustParsePrefix("10.77.0.2/32")
	waitUntil(t, 10*time.Second, func() bool { return m.has(peerVIP) && m.has(siteVIP) })
	apply(raftstore.CmdPeerRevoke, raftstore.PeerRevokePayload{ID: peerID, Reason: "test"})
	waitUntil(t, 5*time.Second, func() bool { return !m.has(peerVIP) })
	if !m.has(siteVIP) {
		t.Fatal("revoking a peer unmounted the site VIP")
	}
	ocancel()
	<-done
}
