package raftstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

func freeBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// TestPrivilegedFullDisk puts a node's data dir on a small tmpfs, fills it,
// and checks that a write that cannot be stored fails with an error and is
// not applied, and that the node recovers once space is freed. It changes
// no network state (its only OS effect is its own tmpfs mount, removed in
// cleanup), so it runs in the host network namespace.
func TestPrivilegedFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs to simulate a full disk")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })

	c := raftstoretest.NewCluster(t, 1, raftstoretest.Options{Modify: func(cfg *raftstore.Config) {
		cfg.DataDir = filepath.Join(mnt, "raft")
	}})
	s := c.Nodes[0].Store
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := s.Apply(ctx(), kvPut("before", "ok")); err != nil {
		t.Fatal(err)
	}
	// Leave ~256 KiB: enough for raft's small term/vote writes, far too
	// little for a 1 MiB value.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, freeBytes(t, mnt)-256<<10), 0o600); err != nil {
		t.Fatalf("fill: %v", err)
	}
	big := raftstore.MustCommand(raftstore.CmdKVPut, raftstore.KVPutPayload{Key: "big", Value: make([]byte, raftstore.MaxKVValueLen)})
	big.ID = "big-1"
	_, err := s.Apply(ctx(), big)
	// Free space at once: raft persists its next term within a heartbeat
	// timeout, and hashicorp/raft panics if it cannot.
	os.Remove(filler)
	if err == nil {
		t.Fatal("a write larger than the free space succeeded")
	}
	if errors.Is(err, raftstore.ErrRefused) {
		t.Fatalf("storage failure reported as a refusal: %v", err)
	}
	t.Logf("write on a full disk: %v", err)
	if _, ok := s.State().KVGet("big"); ok {
		t.Fatal("the failed write was applied")
	}
	// The node recovers; the same command (same ID) now applies once.
	c.WaitReady(0)
	res, err := s.Apply(ctx(), big)
	if err != nil || res.Duplicate {
		t.Fatalf("retry after freeing space: %+v %v", res, err)
	}
	if e, ok := s.State().KVGet("big"); !ok || e.Size != raftstore.MaxKVValueLen {
		t.Fatal("retried write missing")
	}
	// And everything survives a restart (the log is intact).
	want, err := c.StateJSON(0)
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	c.Start(0)
	c.WaitReady(0)
	if got, _ := c.StateJSON(0); got != want {
		t.Fatal("state after restart differs")
	}
}
