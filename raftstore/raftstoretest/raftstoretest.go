package raftstoretest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
	"github.com/powernode/fedgate/raftstore"
)

// Site is a site CA that issues node identities.
type Site struct {
	CA *pki.CA
}

// NewSite opens a real embedded site CA in a temporary directory.
func NewSite(t testing.TB) *Site {
	t.Helper()
	return &Site{CA: pkitest.NewCA(t)}
}

// Identity issues a node certificate for nodeID (a UUID) and returns the
// node's identity.
func (s *Site) Identity(t testing.TB, nodeID string) *pki.NodeIdentity {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := pki.OpenNodeIdentity(ctx, pki.IdentityConfig{
		Dir:    filepath.Join(t.TempDir(), "identity"),
		NodeID: nodeID,
		Issuer: s.CA,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("node identity %s: %v", nodeID, err)
	}
	return id
}

// NewNodeID returns a fresh UUIDv7.
func NewNodeID(t testing.TB) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// Logger returns a slog.Logger writing to t.Log at level.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// Node is one member of a test cluster.
type Node struct {
	ID       string
	Identity *pki.NodeIdentity
	Config   raftstore.Config
	Store    *raftstore.Store // nil while stopped
}

// Cluster is a set of nodes on loopback.
type Cluster struct {
	t     testing.TB
	Site  *Site
	mu    sync.Mutex
	Nodes []*Node
}

// Options tune NewCluster.
type Options struct {
	// LogLevel for the stores' logs (to t.Log); default Warn.
	LogLevel slog.Level
	// NoSync disables fsync (benchmarks).
	NoSync bool
	// Modify adjusts each node's config before Open.
	Modify func(*raftstore.Config)
}

// NewCluster starts n nodes: the first bootstraps, the others join through
// the first. It waits until every node is a voter and ready. Everything is
// closed in t.Cleanup.
func NewCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.LogLevel == 0 {
		opts.LogLevel = slog.LevelWarn
	}
	c := &Cluster{t: t, Site: NewSite(t)}
	for i := 0; i < n; i++ {
		id := NewNodeID(t)
		ident := c.Site.Identity(t, id)
		cfg := raftstore.Config{
			NodeID:    id,
			DataDir:   filepath.Join(t.TempDir(), "raft"),
			BindAddr:  "127.0.0.1:0",
			ServerTLS: ident.ServerTLSConfig(),
			ClientTLS: ident.ClientTLSConfig(),
			Logger:    Logger(t, opts.LogLevel).With("node", i),
			NoSync:    opts.NoSync,
		}
		if opts.Modify != nil {
			opts.Modify(&cfg)
		}
		c.Nodes = append(c.Nodes, &Node{ID: id, Identity: ident, Config: cfg})
	}
	t.Cleanup(c.Close)
	for i, nd := range c.Nodes {
		c.Start(i)
		if i == 0 {
			if err := nd.Store.Bootstrap(); err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
			c.WaitReady(i)
			continue
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 1; i < n; i++ {
		if err := c.Nodes[0].Store.Join(ctx, c.Nodes[i].ID, c.Nodes[i].Store.Addr()); err != nil {
			t.Fatalf("join node %d: %v", i, err)
		}
	}
	for i := range c.Nodes {
		c.WaitReady(i)
	}
	return c
}

// Start opens node i (after Stop, on the same data dir and address).
func (c *Cluster) Start(i int) *raftstore.Store {
	c.t.Helper()
	nd := c.Nodes[i]
	s, err := raftstore.Open(nd.Config)
	if err != nil {
		c.t.Fatalf("open node %d: %v", i, err)
	}
	// Pin the port so a restart comes back at the same address.
	nd.Config.BindAddr = s.Addr()
	c.mu.Lock()
	nd.Store = s
	c.mu.Unlock()
	return s
}

// Stop closes node i.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.Nodes[i].Store
	c.Nodes[i].Store = nil
	c.mu.Unlock()
	if s != nil {
		if err := s.Close(); err != nil {
			c.t.Errorf("close node %d: %v", i, err)
		}
	}
}

// WaitReady waits until node i has a leader and is caught up.
func (c *Cluster) WaitReady(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Nodes[i].Store.WaitReady(ctx); err != nil {
		c.t.Fatalf("node %d not ready: %v", i, err)
	}
}

// Leader returns the index of the running node that is leader, waiting up
// to timeout for one; -1 if none.
func (c *Cluster) Leader(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		for i, nd := range c.Nodes {
			if nd.Store != nil && nd.Store.IsLeader() {
				c.mu.Unlock()
				return i
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			return -1
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Follower returns the index of a running node that is not the leader.
func (c *Cluster) Follower() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.Nodes {
		if nd.Store != nil && !nd.Store.IsLeader() {
			return i
		}
	}
	return -1
}

// StateJSON returns node i's state as JSON after a Barrier.
func (c *Cluster) StateJSON(i int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := c.Nodes[i].Store
	if err := s.Barrier(ctx); err != nil {
		return "", fmt.Errorf("node %d barrier: %w", i, err)
	}
	b, err := s.State().MarshalJSON()
	return string(b), err
}

// Close stops every node.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.Nodes {
		wg.Add(1)
		go func(i int) { defer wg.Done(); c.Stop(i) }(i)
	}
	wg.Wait()
}
