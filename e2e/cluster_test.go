package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const contractV1Digest = "aebddc1097b29aaee79e22ddd9ebb14b40ea1f27d1dc3e06de937253df65a15f"

// TestDevSiteStarts is `make run` in a test: fedgated --dev on a fresh data
// dir becomes leader and serves contract v1 with its digest.
func TestDevSiteStarts(t *testing.T) {
	buildBinaries(t)
	dir := t.TempDir()
	n := &node{t: t, name: "dev", dir: dir, socket: filepath.Join(dir, "fedgate.sock")}
	startDev(t, n, dir)
	eventually(t, 20*time.Second, "dev node is leader", func() error {
		s, err := n.status()
		if err != nil {
			return err
		}
		if s.Raft.State != "leader" || !s.Ready {
			return fmt.Errorf("state %q ready %v", s.Raft.State, s.Ready)
		}
		return nil
	})
	out := n.mustCLI("contract", "list")
	if !strings.Contains(out, contractV1Digest) {
		t.Fatalf("contract list lacks the v1 digest:\n%s", out)
	}
	var cs []struct {
		Version int    `json:"version"`
		Digest  string `json:"digest"`
	}
	if err := n.cliJSON(&cs, "contract", "list"); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Version != 1 || cs[0].Digest != contractV1Digest {
		t.Fatalf("contract list --json = %+v", cs)
	}
	if err := n.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.logText(), filepath.Join(dir, "fedgate.sock")) {
		t.Errorf("--dev did not print where it listens:\n%s", tail(n.logText(), 2000))
	}
}

func startDev(t *testing.T, n *node, dir string) {
	t.Helper()
	t.Cleanup(n.kill)
	n.startWith([]string{"--dev", "--data-dir", dir})
}

// TestThreeNodeCluster grows a site to three separate processes through the
// CLI, writes on a follower, SIGKILLs the leader, keeps writing, restarts the
// killed node and checks all three converge on identical state.
func TestThreeNodeCluster(t *testing.T) {
	n1 := newNode(t, "n1", true, "")
	n2 := newNode(t, "n2", false, "")
	n3 := newNode(t, "n3", false, "")
	n1.start()
	eventually(t, 20*time.Second, "n1 leader", func() error { return wantState(n1, "leader") })
	for _, n := range []*node{n2, n3} {
		n.start()
		tok := filepath.Join(t.TempDir(), "join.token")
		var inv struct {
			JoinURL string `json:"join_url"`
		}
		if err := n1.cliJSON(&inv, "cluster", "invite", "--out", tok); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(tok); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("token file: %v %v", fi, err)
		}
		n.mustCLI("cluster", "join", inv.JoinURL, "--token-file", tok)
		// A token is single use.
		if _, err := n3.cli("cluster", "join", inv.JoinURL, "--token-file", tok); err == nil && n == n3 {
			t.Fatal("a used join token was accepted twice")
		}
	}
	nodes := []*node{n1, n2, n3}
	eventually(t, 30*time.Second, "three voters", func() error { return wantVoters(n1, 3) })

	// A write on a follower appears on all three.
	follower := anyFollower(t, nodes)
	peerID := addPeer(t, follower, "site-b")
	eventually(t, 10*time.Second, "peer on all nodes", func() error { return samePeers(nodes, 1) })

	// Invalid transitions and malformed commands are refused, state unchanged.
	before := peersJSON(t, n1)
	for _, args := range [][]string{
		{"peers", "transition", peerID, "active"},                                   // proposed -> active is not allowed
		{"peers", "transition", peerID, "enrolled"},                                 // not from proposed either
		{"peers", "transition", peerID, "bogus"},                                    // unknown status
		{"peers", "transition", "0190a000-0000-7000-8000-000000000099", "accepted"}, // unknown peer
		{"peers", "revoke", peerID},                                                 // reason missing
		{"grants", "issue", "--peer", peerID, "--subject", "x", "--kind", "k", "--scope", "fly", "--token-out", filepath.Join(t.TempDir(), "t")},
	} {
		if out, err := follower.cli(args...); err == nil {
			t.Errorf("fedgate %v was accepted: %s", args, out)
		} else if !strings.Contains(err.Error(), ":") {
			t.Errorf("fedgate %v: error without a reason: %v", args, err)
		}
	}
	if after := peersJSON(t, n1); after != before {
		t.Fatalf("refused commands changed state:\n%s", cmp.Diff(before, after))
	}

	// SIGKILL the leader; a new one is elected and writes continue.
	leader := leaderOf(t, nodes)
	leader.kill()
	rest := without(nodes, leader)
	eventually(t, 15*time.Second, "new leader", func() error {
		for _, n := range rest {
			if wantState(n, "leader") == nil {
				return nil
			}
		}
		return fmt.Errorf("no leader among survivors")
	})
	addPeer(t, rest[0], "site-c")
	eventually(t, 10*time.Second, "write after failover", func() error { return samePeers(rest, 2) })

	// The killed node restarts and catches up.
	leader.start()
	eventually(t, 30*time.Second, "restarted node caught up", func() error { return samePeers(nodes, 2) })
	for _, n := range nodes {
		if err := n.stop(); err != nil {
			t.Error(err)
		}
	}
}

func wantState(n *node, state string) error {
	s, err := n.status()
	if err != nil {
		return err
	}
	if s.Raft.State != state {
		return fmt.Errorf("%s is %s, want %s", n.name, s.Raft.State, state)
	}
	return nil
}

func wantVoters(n *node, k int) error {
	s, err := n.status()
	if err != nil {
		return err
	}
	v := 0
	for _, m := range s.Members {
		if m.Suffrage == "voter" {
			v++
		}
	}
	if v != k {
		return fmt.Errorf("%d voters (%+v), want %d", v, s.Members, k)
	}
	return nil
}

func anyFollower(t *testing.T, ns []*node) *node {
	t.Helper()
	for _, n := range ns {
		if wantState(n, "follower") == nil {
			return n
		}
	}
	t.Fatal("no follower")
	return nil
}

func leaderOf(t *testing.T, ns []*node) *node {
	t.Helper()
	for _, n := range ns {
		if wantState(n, "leader") == nil {
			return n
		}
	}
	t.Fatal("no leader")
	return nil
}

func without(ns []*node, x *node) []*node {
	var out []*node
	for _, n := range ns {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

func addPeer(t *testing.T, n *node, name string) string {
	t.Helper()
	var p struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := n.cliJSON(&p, "peers", "add", "--url", "https://"+name+".example", "--endpoint", "https://"+name+".example:8443,wan,10",
		"--resource-kind", "workspace"); err != nil {
		t.Fatal(err)
	}
	if p.ID == "" || p.Status != "proposed" {
		t.Fatalf("peers add answered %+v", p)
	}
	return p.ID
}

func peersJSON(t *testing.T, n *node) string {
	t.Helper()
	return n.mustCLI("peers", "list", "--json")
}

// samePeers checks every node lists k peers and the lists are identical.
func samePeers(ns []*node, k int) error {
	var first string
	for i, n := range ns {
		out, err := n.cli("peers", "list", "--json")
		if err != nil {
			return err
		}
		var ps []json.RawMessage
		if err := json.Unmarshal([]byte(out), &ps); err != nil {
			return err
		}
		if len(ps) != k {
			return fmt.Errorf("%s has %d peers, want %d", n.name, len(ps), k)
		}
		if i == 0 {
			first = out
		} else if out != first {
			return fmt.Errorf("%s differs from %s: %s", n.name, ns[0].name, cmp.Diff(first, out))
		}
	}
	return nil
}
