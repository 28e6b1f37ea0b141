package raftstore_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func kvPut(key, val string) raftstore.Command {
	return raftstore.MustCommand(raftstore.CmdKVPut, raftstore.KVPutPayload{Key: key, Value: []byte(val)})
}

func newPeerID(t testing.TB) string {
	id, err := federation.NewID(time.Now(), randReader{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	b := sha256.Sum256([]byte(fmt.Sprint(time.Now().UnixNano())))
	return copy(p, b[:]), nil
}

// requireSameState checks that every running node has the same state JSON
// (retrying briefly: a leader may still be writing member records).
func requireSameState(t *testing.T, c *raftstoretest.Cluster) string {
	t.Helper()
	var diff string
	for attempt := 0; attempt < 20; attempt++ {
		var want string
		diff = ""
		for i, nd := range c.Nodes {
			if nd.Store == nil {
				continue
			}
			got, err := c.StateJSON(i)
			if err != nil {
				t.Fatal(err)
			}
			if want == "" {
				want = got
			} else if got != want && diff == "" {
				diff = fmt.Sprintf("node %d state differs:\n%s", i, cmp.Diff(want, got))
			}
		}
		if diff == "" {
			return want
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(diff)
	return ""
}

func TestClusterReplicationFailoverCatchUp(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	for i, nd := range c.Nodes {
		if st := nd.Store.Status(); !st.Voter {
			t.Fatalf("node %d is not a voter after join: %+v", i, st)
		}
	}

	// A peer added on a follower appears on all three.
	f := c.Follower()
	pid := newPeerID(t)
	peer := federation.NewPeer(pid, federation.PeerKindPlatform, time.Now())
	res, err := c.Nodes[f].Store.Apply(ctxT(t, 10*time.Second), raftstore.MustCommand(raftstore.CmdPeerAdd, peer))
	if err != nil {
		t.Fatalf("peer.add on follower: %v", err)
	}
	if res.Index == 0 || res.Key != "peer/"+pid {
		t.Fatalf("result %+v", res)
	}
	requireSameState(t, c)
	for i, nd := range c.Nodes {
		if _, ok := nd.Store.State().Peer(pid); !ok {
			t.Fatalf("node %d lacks the peer", i)
		}
	}
	// A refusal on a follower comes back as a refusal with its reason.
	_, err = c.Nodes[f].Store.Apply(ctxT(t, 10*time.Second), raftstore.MustCommand(raftstore.CmdPeerTransition,
		raftstore.PeerTransitionPayload{ID: pid, To: federation.StatusActive}))
	var re *raftstore.RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "transition not allowed") {
		t.Fatalf("forwarded refusal: %v", err)
	}

	// Leader shutdown: a new leader is elected and writes continue.
	old := c.Leader(5 * time.Second)
	oldID := c.Nodes[old].ID
	c.Stop(old)
	start := time.Now()
	nl := c.Leader(10 * time.Second)
	if nl < 0 {
		t.Fatal("no new leader")
	}
	t.Logf("new leader after %v", time.Since(start))
	for i := 0; i < 20; i++ {
		node := (nl + 1 + i) % 3
		if node == old {
			node = nl
		}
		if _, err := c.Nodes[node].Store.Apply(ctxT(t, 10*time.Second), kvPut(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatalf("write %d after failover: %v", i, err)
		}
	}
	if st := c.Nodes[nl].Store.Status(); st.LeaderID == oldID || st.State != "leader" {
		t.Fatalf("status after failover %+v", st)
	}

	// The old leader restarts and catches up; all three agree.
	c.Start(old)
	c.WaitReady(old)
	j := requireSameState(t, c)
	if !strings.Contains(j, `"k19"`) {
		t.Fatal("restarted node misses writes made while it was down")
	}
	ms, err := c.Nodes[old].Store.Members(ctxT(t, 5*time.Second))
	if err != nil || len(ms) != 3 {
		t.Fatalf("members %+v %v", ms, err)
	}
	leaders := 0
	for _, m := range ms {
		if m.Leader {
			leaders++
		}
		if m.Suffrage != "voter" || !m.Reachable {
			t.Errorf("member %+v", m)
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders in %+v", leaders, ms)
	}
}

// rpcStatus speaks the forwarding RPC by hand: one status request.
func rpcStatus(addr string, cfg *tls.Config, proto string) (map[string]any, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{proto}
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	body := []byte(`{"op":"status"}`)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := conn.Write(append(hdr[:], body...)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

func TestTLSRefusesStrangers(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{})
	addr := c.Nodes[0].Store.Addr()
	member := c.Site.Identity(t, raftstoretest.NewNodeID(t))
	foreign := raftstoretest.NewSite(t).Identity(t, raftstoretest.NewNodeID(t))

	// Positive control: a site certificate gets an answer.
	resp, err := rpcStatus(addr, member.ClientTLSConfig(), raftstore.ProtoRPC)
	if err != nil {
		t.Fatalf("site node refused: %v", err)
	}
	if st, _ := resp["status"].(map[string]any); st["node_id"] != c.Nodes[0].ID {
		t.Fatalf("status %v", resp)
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	for _, tc := range []struct {
		name  string
		cfg   *tls.Config
		proto string
	}{
		{"no client certificate, rpc", noCert, raftstore.ProtoRPC},
		{"no client certificate, raft", noCert, raftstore.ProtoRaft},
		{"other CA, rpc", foreign.ClientTLSConfig(), raftstore.ProtoRPC},
		{"other CA, raft", foreign.ClientTLSConfig(), raftstore.ProtoRaft},
		{"site certificate, unknown protocol", member.ClientTLSConfig(), "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp, err := rpcStatus(addr, tc.cfg, tc.proto); err == nil {
				t.Fatalf("connection accepted: %v", resp)
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	// And the node itself refuses to talk to a server of another CA.
	fs := raftstoretest.NewCluster(t, 1, raftstoretest.Options{})
	err = c.Nodes[0].Store.Join(ctxT(t, 2*time.Second), fs.Nodes[0].ID, fs.Nodes[0].Store.Addr())
	if err == nil {
		t.Fatal("joined a node of another CA")
	}
	if _, ok := fs.Nodes[0].Store.State().Member(c.Nodes[0].ID); ok {
		t.Fatal("foreign node received state")
	}
}

func TestJoinDuplicateStaleAndRemove(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	ctx := ctxT(t, 60*time.Second)
	lead := c.Leader(5 * time.Second)
	f := (lead + 1) % 3
	fid, faddr := c.Nodes[f].ID, c.Nodes[f].Store.Addr()

	// Duplicate join of the same id and address: a no-op, from any node.
	for i := range c.Nodes {
		if err := c.Nodes[i].Store.Join(ctx, fid, faddr); err != nil {
			t.Fatalf("duplicate join via node %d: %v", i, err)
		}
	}
	// Another id at a member's address is refused.
	err := c.Nodes[lead].Store.Join(ctx, raftstoretest.NewNodeID(t), faddr)
	if !errors.Is(err, raftstore.ErrRefused) || !strings.Contains(err.Error(), "belongs to node") {
		t.Fatalf("join at a taken address: %v", err)
	}

	// Stale id: the node is re-provisioned (empty data dir) at a new
	// address and joins again under its id.
	c.Stop(f)
	c.Nodes[f].Config.DataDir = filepath.Join(t.TempDir(), "reprovisioned")
	c.Nodes[f].Config.BindAddr = "127.0.0.1:0"
	s := c.Start(f)
	if s.Addr() == faddr {
		t.Fatal("same address")
	}
	if err := c.Nodes[lead].Store.Join(ctx, fid, s.Addr()); err != nil {
		t.Fatalf("re-join with stale id: %v", err)
	}
	c.WaitReady(f)
	ms, err := c.Nodes[lead].Store.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.NodeID == fid && (m.Addr != s.Addr() || m.Suffrage != "voter") {
			t.Fatalf("re-joined member %+v", m)
		}
	}
	if m, _ := c.Nodes[lead].Store.State().Member(fid); m.RaftAddr != s.Addr() {
		t.Fatalf("member record %+v", m)
	}
	requireSameState(t, c)

	// Remove via a follower (forwarded); unknown ids are ErrNotFound.
	other := 3 - lead - f
	if err := c.Nodes[other].Store.Remove(ctx, fid); err != nil {
		t.Fatalf("remove: %v", err)
	}
	c.Stop(f)
	ms, _ = c.Nodes[lead].Store.Members(ctx)
	if len(ms) != 2 {
		t.Fatalf("members after remove %+v", ms)
	}
	if _, ok := c.Nodes[lead].Store.State().Member(fid); ok {
		t.Fatal("member record kept")
	}
	if err := c.Nodes[lead].Store.Remove(ctx, fid); !errors.Is(err, raftstore.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := c.Nodes[other].Store.Apply(ctx, kvPut("after", "remove")); err != nil {
		t.Fatalf("write after remove: %v", err)
	}
}

func TestSnapshotInstallAndRestart(t *testing.T) {
	c := raftstoretest.NewCluster(t, 2, raftstoretest.Options{Modify: func(cfg *raftstore.Config) {
		cfg.TrailingLogs = 4
		cfg.SnapshotThreshold = 16
	}})
	ctx := ctxT(t, 60*time.Second)
	for i := 0; i < 60; i++ {
		if _, err := c.Nodes[i%2].Store.Apply(ctx, kvPut(fmt.Sprint("s/", i), strings.Repeat("x", i))); err != nil {
			t.Fatal(err)
		}
	}
	lead := c.Leader(5 * time.Second)
	if err := c.Nodes[lead].Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := 60; i < 70; i++ {
		if _, err := c.Nodes[lead].Store.Apply(ctx, kvPut(fmt.Sprint("s/", i), "y")); err != nil {
			t.Fatal(err)
		}
	}
	// A new node can only catch up through the snapshot (the log before
	// it is compacted away).
	id := raftstoretest.NewNodeID(t)
	ident := c.Site.Identity(t, id)
	cfg := c.Nodes[0].Config
	cfg.NodeID, cfg.DataDir, cfg.BindAddr = id, filepath.Join(t.TempDir(), "new"), "127.0.0.1:0"
	cfg.ServerTLS, cfg.ClientTLS = ident.ServerTLSConfig(), ident.ClientTLSConfig()
	c.Nodes = append(c.Nodes, &raftstoretest.Node{ID: id, Identity: ident, Config: cfg})
	events, cancel := c.Start(2).Watch()
	defer cancel()
	if err := c.Nodes[0].Store.Join(ctx, id, c.Nodes[2].Store.Addr()); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(2)
	sawRestore := false
	for !sawRestore {
		select {
		case e := <-events:
			sawRestore = e.Type == raftstore.EventRestore
		case <-ctx.Done():
			t.Fatal("no restore event on the new node")
		}
	}
	want := requireSameState(t, c)

	// Restart every node: each comes back from its snapshot + log.
	for i := range c.Nodes {
		c.Stop(i)
	}
	for i := range c.Nodes {
		c.Start(i)
	}
	for i := range c.Nodes {
		c.WaitReady(i)
	}
	if got := requireSameState(t, c); got != want {
		t.Fatalf("state after restart differs:\n%s", cmp.Diff(want, got))
	}
}

func TestBootstrapRefusesExistingStateAndWatch(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{Modify: func(cfg *raftstore.Config) { cfg.Registerer = reg }})
	s := c.Nodes[0].Store
	if err := s.Bootstrap(); !errors.Is(err, raftstore.ErrExistingState) {
		t.Fatalf("second bootstrap: %v", err)
	}
	leader := s.LeadershipChanges()
	if v := <-leader; !v {
		t.Fatal("first leadership value is not the current one (true)")
	}
	events, cancel := s.Watch()
	slow, cancelSlow := s.Watch() // never read until the end
	defer cancelSlow()
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 300; i++ {
		if _, err := s.Apply(ctx, kvPut(fmt.Sprint("w/", i), "v")); err != nil {
			t.Fatal(err)
		}
		e := <-events
		if e.Type != raftstore.CmdKVPut || e.Key != fmt.Sprint("kv/w/", i) || e.Index == 0 {
			t.Fatalf("event %+v", e)
		}
	}
	cancel()
	if _, ok := <-events; ok {
		t.Fatal("channel open after cancel")
	}
	// The slow watcher's backlog was folded: far fewer than 300 events,
	// the last one at the latest index.
	last := s.Status().AppliedIndex
	var got []raftstore.Event
	for len(got) == 0 || got[len(got)-1].Index < last {
		select {
		case e := <-slow:
			got = append(got, e)
		case <-ctx.Done():
			t.Fatalf("slow watcher stuck at %+v", got)
		}
	}
	if len(got) >= 300 || got[0].Type != raftstore.EventResync {
		t.Fatalf("slow watcher got %d events, first %+v", len(got), got[0])
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"fedgate_raft_commands_applied_total", "fedgate_raft_term", "fedgate_raft_apply_duration_seconds"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	// Restart: bootstrap is still refused, the node is ready again and
	// LeadershipChanges reports leadership.
	c.Stop(0)
	// Closing a leader tells subscribers it is no longer leader, then
	// closes their channel.
	var after []bool
	for v := range leader {
		after = append(after, v)
	}
	if !cmp.Equal(after, []bool{false}) {
		t.Fatalf("leadership after close: %v, want [false]", after)
	}
	s = c.Start(0)
	if err := s.Bootstrap(); !errors.Is(err, raftstore.ErrExistingState) {
		t.Fatalf("bootstrap after restart: %v", err)
	}
	c.WaitReady(0)
	ch := s.LeadershipChanges()
	for v := range ch {
		if v {
			break
		}
	}
	if _, ok := s.State().KVGet("w/299"); !ok {
		t.Fatal("state lost across restart")
	}
}

func TestCorruptDataDirRefusedUntouched(t *testing.T) {
	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{})
	if _, err := c.Nodes[0].Store.Apply(ctxT(t, 10*time.Second), kvPut("a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := c.Nodes[0].Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	dir := c.Nodes[0].Config.DataDir
	db := filepath.Join(dir, "raft.db")
	orig, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	snapDirs, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
	if len(snapDirs) == 0 {
		t.Fatal("no snapshot written")
	}
	metaOrig, _ := os.ReadFile(snapDirs[0])

	garbage := bytes.Repeat([]byte("garbage!"), 1024)
	cases := []struct {
		name  string
		setup func(t *testing.T)
		file  string
	}{
		{"garbage over the bolt meta pages", func(t *testing.T) {
			b := append([]byte{}, orig...)
			copy(b, garbage)
			os.WriteFile(db, b, 0o600)
		}, db},
		{"garbage in the bolt data pages", func(t *testing.T) {
			b := append([]byte{}, orig...)
			for off := 2 * 4096; off < 6*4096 && off < len(b); off += len(garbage) {
				copy(b[off:], garbage)
			}
			os.WriteFile(db, b, 0o600)
		}, db},
		{"truncated bolt file", func(t *testing.T) { os.WriteFile(db, orig[:100], 0o600) }, db},
		{"garbage snapshot metadata", func(t *testing.T) {
			os.WriteFile(db, orig, 0o600)
			os.WriteFile(snapDirs[0], []byte("{not json"), 0o600)
		}, snapDirs[0]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			before := treeDigest(t, dir)
			s, err := raftstore.Open(c.Nodes[0].Config)
			if err == nil {
				s.Close()
				t.Fatal("opened a corrupt data dir")
			}
			if !errors.Is(err, raftstore.ErrCorrupt) || !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("error %q does not name %s as corrupt", err, tc.file)
			}
			t.Logf("refused: %v", err)
			if after := treeDigest(t, dir); after != before {
				t.Fatalf("data dir was modified:\n%s", cmp.Diff(before, after))
			}
		})
	}
	// Repaired files open again with the data intact.
	os.WriteFile(db, orig, 0o600)
	os.WriteFile(snapDirs[0], metaOrig, 0o600)
	s := c.Start(0)
	c.WaitReady(0)
	if e, ok := s.State().KVGet("a"); !ok || string(e.Value) != "b" {
		t.Fatalf("after repair: %+v %v", e, ok)
	}
}

// treeDigest lists every file under dir with its size, mode, mtime and hash.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&sb, "%s %v %d %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if !fi.IsDir() {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(&sb, " %x", sha256.Sum256(b))
		}
		sb.WriteString("\n")
		return nil
	})
	return sb.String()
}

func TestMemberRecordsFollowConfiguration(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms := c.Nodes[0].Store.State().Members()
		if len(ms) == 3 {
			for _, m := range ms {
				found := false
				for _, nd := range c.Nodes {
					found = found || (nd.ID == m.NodeID && nd.Store.Addr() == m.RaftAddr)
				}
				if !found || m.JoinedAt.IsZero() {
					t.Fatalf("member record %+v does not match a node", m)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member records %+v", ms)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// With records in place, a VIP may name any node; a stranger is refused.
	ctx := ctxT(t, 10*time.Second)
	vip := raftstore.VIPPutPayload{Name: "site", CIDR: "10.9.0.1/32", Interface: "eth0", HolderNodeIDs: []string{c.Nodes[0].ID, c.Nodes[1].ID}}
	if _, err := c.Nodes[2].Store.Apply(ctx, raftstore.MustCommand(raftstore.CmdVIPPut, vip)); err != nil {
		t.Fatal(err)
	}
	vip.HolderNodeIDs = []string{raftstoretest.NewNodeID(t)}
	if _, err := c.Nodes[2].Store.Apply(ctx, raftstore.MustCommand(raftstore.CmdVIPPut, vip)); !errors.Is(err, raftstore.ErrRefused) {
		t.Fatalf("vip on a stranger: %v", err)
	}
}

func TestIsolatedLeaderIsReplaced(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	old := c.Leader(5 * time.Second)
	lc := c.Nodes[old].Store.LeadershipChanges()
	if v := <-lc; !v {
		t.Fatal("leader's first leadership value is false")
	}
	if st := c.Nodes[old].Store.LogWriteStall(); st > time.Second {
		t.Fatalf("stall %v on a healthy disk", st)
	}
	start := time.Now()
	if err := c.Nodes[old].Store.Isolate(); err != nil {
		t.Fatal(err)
	}
	// The isolated leader loses its lease and says so.
	select {
	case v := <-lc:
		if v {
			t.Fatal("isolated leader reported true")
		}
		t.Logf("isolated leader stepped down after %v", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("isolated leader never stepped down")
	}
	// The two others elect a leader and keep writing.
	var nl int
	deadline := time.Now().Add(10 * time.Second)
	for {
		nl = -1
		for i, nd := range c.Nodes {
			if i != old && nd.Store.IsLeader() {
				nl = i
			}
		}
		if nl >= 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if nl < 0 {
		t.Fatal("no new leader among the others")
	}
	t.Logf("new leader after %v", time.Since(start))
	if _, err := c.Nodes[3-old-nl].Store.Apply(ctxT(t, 10*time.Second), kvPut("after", "isolate")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes[old].Store.Apply(ctxT(t, time.Second), kvPut("isolated", "write")); err == nil {
		t.Fatal("isolated node accepted a write")
	}
}

func TestOpenRefusesDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{Modify: func(cfg *raftstore.Config) { cfg.Registerer = reg }})
	cfg := c.Nodes[0].Config
	cfg.NodeID, cfg.DataDir, cfg.BindAddr = raftstoretest.NewNodeID(t), t.TempDir(), "127.0.0.1:0"
	if s, err := raftstore.Open(cfg); err == nil {
		s.Close()
		t.Fatal("a second store registered the same metrics")
	}
	// The failed Open released everything: the first store still works
	// and its data dir is not locked by a leftover.
	if _, err := c.Nodes[0].Store.Apply(ctxT(t, 10*time.Second), kvPut("x", "y")); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	c.Start(0)
	c.WaitReady(0)
}
