package raftstore

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// TransferLeadership hands leadership from this node (which must be the
// leader: ErrNotLeader otherwise) to the most up-to-date voter, or to the
// voter nodeID when it is not empty. It returns once raft has finished the
// transfer or ctx ends; the caller should expect to lose leadership (and
// every leader-held VIP) when it returns nil.
func (s *Store) TransferLeadership(ctx context.Context, nodeID string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	var f raft.Future
	if nodeID == "" {
		f = s.raft.LeadershipTransfer()
	} else {
		if nodeID == s.cfg.NodeID {
			return refuse("leadership transfer: node %q is already the leader", nodeID)
		}
		cf := s.raft.GetConfiguration()
		if err := cf.Error(); err != nil {
			return fmt.Errorf("leadership transfer: %w", mapRaftErr(err))
		}
		var addr raft.ServerAddress
		for _, srv := range cf.Configuration().Servers {
			if string(srv.ID) == nodeID {
				if srv.Suffrage != raft.Voter {
					return refuse("leadership transfer: node %q is not a voter", nodeID)
				}
				addr = srv.Address
			}
		}
		if addr == "" {
			return notFound("leadership transfer: node %q is not a member", nodeID)
		}
		f = s.raft.LeadershipTransferToServer(raft.ServerID(nodeID), addr)
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("leadership transfer: %w", mapRaftErr(err))
		}
		s.log.Info("leadership transferred", "to", nodeID)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leadership transfer: %w", ctx.Err())
	}
}
