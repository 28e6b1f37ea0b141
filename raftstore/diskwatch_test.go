package raftstore

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type blockingLogStore struct {
	raft.LogStore
	release chan struct{}
}

func (b blockingLogStore) StoreLogs(ls []*raft.Log) error {
	<-b.release
	return b.LogStore.StoreLogs(ls)
}

func TestDiskTimerReportsStall(t *testing.T) {
	inner := blockingLogStore{LogStore: raft.NewInmemStore(), release: make(chan struct{})}
	d := &diskTimer{hist: testMetrics(t).diskWrite}
	ls := timedLogStore{inner, d}
	if d.stall() != 0 {
		t.Fatal("stall before any write")
	}
	done := make(chan error)
	go func() { done <- ls.StoreLogs([]*raft.Log{{Index: 1, Term: 1}}) }()
	deadline := time.Now().Add(5 * time.Second)
	for d.stall() < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("stall not reported")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(inner.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d.stall() != 0 {
		t.Fatal("stall after the write finished")
	}
	if idx, _ := inner.LastIndex(); idx != 1 {
		t.Fatalf("write lost: last index %d", idx)
	}
}
