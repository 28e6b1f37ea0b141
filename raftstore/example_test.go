package raftstore_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/raftstore"
)

// Wiring from the agent: open with the node identity's mTLS configs,
// bootstrap a new site (or wait to be joined), wait until ready, then read
// locally and write anywhere.
func ExampleOpen() {
	var id *pki.NodeIdentity // from pki.OpenNodeIdentity
	s, err := raftstore.Open(raftstore.Config{
		NodeID:    id.NodeID(),
		DataDir:   "/var/lib/fedgate/raft",
		BindAddr:  "10.0.0.1:7400",
		ServerTLS: id.ServerTLSConfig(),
		ClientTLS: id.ClientTLSConfig(),
		Logger:    slog.Default(),
	})
	if err != nil {
		return // ErrCorrupt names the damaged file; ErrInvalidConfig the field
	}
	defer s.Close()
	newSite := true
	if newSite {
		if err := s.Bootstrap(); err != nil && !errors.Is(err, raftstore.ErrExistingState) {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil { // leader known + caught up (Barrier)
		return
	}
	// Writes work on any node (forwarded to the leader), idempotent by ID.
	_, err = s.Apply(ctx, raftstore.MustCommand(raftstore.CmdMemberPut,
		raftstore.MemberPutPayload{NodeID: id.NodeID(), RaftAddr: s.Addr(), APIAddr: "10.0.0.1:7401"}))
	var refused *raftstore.RefusedError
	if errors.As(err, &refused) {
		slog.Info("refused", "reason", refused.Reason)
	}
	// Reads come from the local immutable copy.
	_ = s.State().Peers()
	// React to changes and to leadership.
	events, stop := s.Watch()
	defer stop()
	leader := s.LeadershipChanges()
	_, _ = <-events, <-leader
	// Grow the cluster: on any member, for a node already running Open.
	_ = s.Join(ctx, "01a215d4-fb58-7837-bc31-71a97001cadf", "10.0.0.2:7400")
}
