package raftstore_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

// TestFsyncWatchdogStepsDownStalledLeader: a leader whose fsync hangs hands
// leadership to another voter; the watchdog reports the stall and its end.
func TestFsyncWatchdogStepsDownStalledLeader(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	li := c.Leader(10 * time.Second)
	if li < 0 {
		t.Fatal("no leader")
	}
	leader := c.Nodes[li].Store
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	stall := func(f *os.File) error { <-release; return f.Sync() }
	w := raftstore.NewFsyncWatchdog(leader, raftstore.FsyncWatchConfig{Every: 20 * time.Millisecond, Threshold: 150 * time.Millisecond, Sync: stall})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(10 * time.Second)
	for leader.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("a leader with a stalled fsync kept leadership for 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if stalled, _ := w.Stalled(); !stalled {
		t.Error("watchdog does not report the stall")
	}
	if ni := c.Leader(10 * time.Second); ni < 0 || ni == li {
		t.Fatalf("no other node became leader (got %d, old %d)", ni, li)
	}
	if err := raftstore.NewFsyncWatchdog(leader, raftstore.FsyncWatchConfig{}).Run(ctx); err != nil {
		t.Fatalf("a second watchdog on another value: %v", err)
	}
	if err := w.Run(ctx); err == nil {
		t.Error("a second concurrent Run of one watchdog was accepted")
	}
	unblock()
	deadline = time.Now().Add(5 * time.Second)
	for {
		stalled, last := w.Stalled()
		if !stalled && last > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("watchdog still reports a stall after the disk recovered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFsyncWatchdogHealthyDisk: on a working disk the leader keeps its
// place and the probe durations are reported.
func TestFsyncWatchdogHealthyDisk(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	li := c.Leader(10 * time.Second)
	leader := c.Nodes[li].Store
	w := raftstore.NewFsyncWatchdog(leader, raftstore.FsyncWatchConfig{Every: 20 * time.Millisecond, Threshold: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !leader.IsLeader() {
		t.Error("the watchdog moved leadership away from a healthy leader")
	}
	if stalled, last := w.Stalled(); stalled || last <= 0 {
		t.Errorf("Stalled() = %v, %s; want false and a measured probe", stalled, last)
	}
}
