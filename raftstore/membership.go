package raftstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Status is this node's view of raft.
type Status struct {
	NodeID       string    `json:"node_id"`
	Addr         string    `json:"addr"`
	State        string    `json:"state"` // leader, follower, candidate, shutdown
	LeaderID     string    `json:"leader_id,omitempty"`
	LeaderAddr   string    `json:"leader_addr,omitempty"`
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastIndex    uint64    `json:"last_index"`
	LastContact  time.Time `json:"last_contact,omitzero"` // with the leader; zero on the leader
	Voter        bool      `json:"voter"`
}

// Status reports this node's raft state without a network round trip.
func (s *Store) Status() Status {
	st := Status{NodeID: s.cfg.NodeID, State: "shutdown"}
	if s.raft == nil {
		return st
	}
	st.Addr = s.Addr()
	st.State = stateName(s.raft.State())
	addr, id := s.raft.LeaderWithID()
	st.LeaderAddr, st.LeaderID = string(addr), string(id)
	st.Term = s.raft.CurrentTerm()
	st.CommitIndex = s.raft.CommitIndex()
	st.AppliedIndex = s.raft.AppliedIndex()
	st.LastIndex = s.raft.LastIndex()
	if st.State != "leader" {
		st.LastContact = s.raft.LastContact()
	}
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if string(srv.ID) == s.cfg.NodeID {
				st.Voter = srv.Suffrage == raft.Voter
			}
		}
	}
	return st
}

func stateName(r raft.RaftState) string {
	switch r {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

// ClusterMember is one server of the raft configuration.
type ClusterMember struct {
	NodeID   string `json:"node_id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"` // voter, nonvoter
	Leader   bool   `json:"leader"`
	// Reachable: the node answered a status probe from the node that
	// built this list (the leader when one is known).
	Reachable bool `json:"reachable"`
	// LastContact is the node's last contact with the leader, as it
	// reports it (zero for the leader itself or when unreachable).
	LastContact  time.Time `json:"last_contact,omitzero"`
	AppliedIndex uint64    `json:"applied_index"`
	State        string    `json:"state,omitempty"`
}

// Members lists the raft configuration with each server's reported state.
// On a follower the leader's view is fetched; without a leader the local
// configuration is returned with what this node can probe.
func (s *Store) Members(ctx context.Context) ([]ClusterMember, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if !s.IsLeader() {
		if addr, err := s.leaderAddr(); err == nil {
			s.metrics.forwarded.WithLabelValues(opMembers).Inc()
			if resp, err := s.rpc.call(ctx, addr, rpcRequest{Op: opMembers}); err == nil {
				return resp.Members, nil
			}
		}
	}
	return s.membersLeader(ctx)
}

func (s *Store) membersLeader(ctx context.Context) ([]ClusterMember, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapRaftErr(err)
	}
	_, leaderID := s.raft.LeaderWithID()
	servers := f.Configuration().Servers
	out := make([]ClusterMember, len(servers))
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i, srv := range servers {
		out[i] = ClusterMember{NodeID: string(srv.ID), Addr: string(srv.Address), Leader: srv.ID == leaderID, Suffrage: "nonvoter"}
		if srv.Suffrage == raft.Voter {
			out[i].Suffrage = "voter"
		}
		if string(srv.ID) == s.cfg.NodeID {
			st := s.Status()
			out[i].Reachable, out[i].LastContact, out[i].AppliedIndex, out[i].State = true, st.LastContact, st.AppliedIndex, st.State
			continue
		}
		wg.Add(1)
		go func(m *ClusterMember) {
			defer wg.Done()
			resp, err := s.rpc.call(pctx, m.Addr, rpcRequest{Op: opStatus})
			if err != nil || resp.Status == nil || resp.Status.NodeID != m.NodeID {
				return
			}
			m.Reachable, m.LastContact, m.AppliedIndex, m.State = true, resp.Status.LastContact, resp.Status.AppliedIndex, resp.Status.State
		}(&out[i])
	}
	wg.Wait()
	return out, nil
}

// Join adds nodeID at raftAddr to the cluster: first as a non-voter, then,
// once it has applied everything the leader had committed when it was
// added, as a voter. It runs on the leader (forwarded from a follower) and
// returns after the promotion or when ctx ends (the node then stays a
// non-voter and the leader promotes it later).
//
// Re-joins are explicit:
//   - same ID and address: a no-op (a non-voter is promoted if caught up);
//   - same ID, different address: the stale entry is removed and the node
//     joins afresh at the new address (it must catch up again before it
//     votes, so a re-provisioned empty machine never counts as a voter);
//   - different ID, same address: refused (ErrRefused); remove the old ID
//     first, so an address is never silently handed to a new identity.
func (s *Store) Join(ctx context.Context, nodeID, raftAddr string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if nodeID == "" || raftAddr == "" {
		return &RefusedError{Type: "join", Reason: "node id and address are required"}
	}
	return s.retry(ctx, "join", func(ctx context.Context) error {
		if s.IsLeader() {
			return s.joinLeader(ctx, nodeID, raftAddr)
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		s.metrics.forwarded.WithLabelValues(opJoin).Inc()
		_, err = s.rpc.call(ctx, addr, rpcRequest{Op: opJoin, NodeID: nodeID, Addr: raftAddr})
		return err
	})
}

func (s *Store) configuration() ([]raft.Server, uint64, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, mapRaftErr(err)
	}
	return f.Configuration().Servers, f.Index(), nil
}

func (s *Store) joinLeader(ctx context.Context, nodeID, raftAddr string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if _, _, err := net.SplitHostPort(raftAddr); err != nil || nodeID == "" || len(nodeID) > 128 {
		return &RefusedError{Type: "join", Reason: fmt.Sprintf("join needs a node id and a host:port address (got %q, %q)", nodeID, raftAddr)}
	}
	servers, _, err := s.configuration()
	if err != nil {
		return err
	}
	id, addr := raft.ServerID(nodeID), raft.ServerAddress(raftAddr)
	needAdd := true
	for _, srv := range servers {
		switch {
		case srv.ID == id && srv.Address == addr:
			if srv.Suffrage == raft.Voter {
				s.log.Info("join: already a voter", "joining", nodeID, "addr", raftAddr)
				return s.recordMember(ctx, nodeID, raftAddr)
			}
			needAdd = false
		case srv.ID == id:
			s.log.Warn("join: node id re-joins at a new address; removing the stale entry", "joining", nodeID, "old_addr", srv.Address, "addr", raftAddr)
			if err := s.raft.RemoveServer(id, 0, s.timeout(ctx)).Error(); err != nil {
				return mapRaftErr(err)
			}
		case srv.Address == addr:
			return &RefusedError{Type: "join", Reason: fmt.Sprintf("address %s belongs to node %s; remove it before joining %s there", raftAddr, srv.ID, nodeID)}
		}
	}
	if needAdd {
		if err := s.raft.AddNonvoter(id, addr, 0, s.timeout(ctx)).Error(); err != nil {
			return mapRaftErr(err)
		}
		s.log.Info("join: added as non-voter", "joining", nodeID, "addr", raftAddr)
	}
	if err := s.promoteWhenCaughtUp(ctx, id, addr); err != nil {
		return err
	}
	return s.recordMember(ctx, nodeID, raftAddr)
}

// recordMember writes member metadata for a joined node unless it is
// already recorded with this address.
func (s *Store) recordMember(ctx context.Context, nodeID, raftAddr string) error {
	if m, ok := s.State().Member(nodeID); ok && m.RaftAddr == raftAddr {
		return nil
	}
	p := MemberPutPayload{NodeID: nodeID, RaftAddr: raftAddr}
	if m, ok := s.State().Member(nodeID); ok {
		p.APIAddr = m.APIAddr
	}
	cmd, err := prepare(MustCommand(CmdMemberPut, p))
	if err != nil {
		return err
	}
	_, err = s.applyLeader(ctx, cmd)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			s.log.Warn("join: member record refused", "joining", nodeID, "error", err)
			return nil
		}
	}
	return err
}

// promoteWhenCaughtUp polls the non-voter's applied index until it reaches
// the leader's commit index as of the start, then makes it a voter.
func (s *Store) promoteWhenCaughtUp(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	target := s.raft.CommitIndex()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := s.rpc.call(pctx, string(addr), rpcRequest{Op: opStatus})
		cancel()
		if err == nil && resp.Status != nil && resp.Status.NodeID == string(id) && resp.Status.AppliedIndex >= target {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: not caught up (target index %d), left as non-voter: %w", id, target, ctx.Err())
		case <-s.stop:
			return ErrClosed
		case <-tick.C:
		}
		if s.raft.State() != raft.Leader {
			return ErrNotLeader
		}
	}
	if err := s.raft.AddVoter(id, addr, 0, s.timeout(ctx)).Error(); err != nil {
		return mapRaftErr(err)
	}
	s.log.Info("join: promoted to voter", "joining", string(id), "addr", string(addr), "caught_up_to", target)
	if servers, _, err := s.configuration(); err == nil {
		voters := 0
		for _, srv := range servers {
			if srv.Suffrage == raft.Voter {
				voters++
			}
		}
		if voters == 2 {
			s.log.Warn("cluster has two voters: losing either stops writes (no fault tolerance); add a third")
		}
	}
	return nil
}

// leaderLoop keeps, while this node leads, the raft configuration and the
// member records in step: every caught-up non-voter is promoted (an
// interrupted Join finishes; fedgate has no permanent non-voters) and every
// server has a member record with its current raft address (so VIP holder
// checks see the bootstrap node too). It runs at each leadership gain and
// every two seconds.
func (s *Store) leaderLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		case <-s.kick:
		}
		if !s.IsLeader() {
			continue
		}
		servers, _, err := s.configuration()
		if err != nil {
			continue
		}
		for _, srv := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if srv.Suffrage == raft.Nonvoter {
				err = s.promoteWhenCaughtUp(ctx, srv.ID, srv.Address)
			} else {
				err = nil
			}
			if err == nil {
				if err := s.recordMember(ctx, string(srv.ID), string(srv.Address)); err != nil {
					s.log.Warn("member record", "member", string(srv.ID), "error", err)
				}
			}
			cancel()
		}
	}
}

// Remove takes nodeID out of the raft configuration and deletes its member
// record. ErrNotFound if it is not a member.
func (s *Store) Remove(ctx context.Context, nodeID string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.retry(ctx, "remove", func(ctx context.Context) error {
		if s.IsLeader() {
			return s.removeLeader(ctx, nodeID)
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		s.metrics.forwarded.WithLabelValues(opRemove).Inc()
		_, err = s.rpc.call(ctx, addr, rpcRequest{Op: opRemove, NodeID: nodeID})
		return err
	})
	if err != nil {
		return err
	}
	if _, ok := s.State().Member(nodeID); ok {
		_, err := s.Apply(ctx, MustCommand(CmdMemberDelete, MemberDeletePayload{NodeID: nodeID}))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove %s: member record: %w", nodeID, err)
		}
	}
	return nil
}

func (s *Store) removeLeader(ctx context.Context, nodeID string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	servers, _, err := s.configuration()
	if err != nil {
		return err
	}
	found := false
	for _, srv := range servers {
		found = found || string(srv.ID) == nodeID
	}
	if !found {
		return fmt.Errorf("%w: node %s is not a cluster member", ErrNotFound, nodeID)
	}
	if err := s.raft.RemoveServer(raft.ServerID(nodeID), 0, s.timeout(ctx)).Error(); err != nil {
		return mapRaftErr(err)
	}
	s.log.Info("removed cluster member", "removed", nodeID)
	return nil
}

// Barrier returns once this node's local state includes every command the
// leader had committed when Barrier was called. On the leader it is a raft
// barrier; on a follower the leader runs one and the follower waits until
// it has applied up to the leader's index.
func (s *Store) Barrier(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var idx uint64
	err := s.retry(ctx, "barrier", func(ctx context.Context) error {
		if s.IsLeader() {
			var err error
			idx, err = s.barrierLeader(ctx)
			return err
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		resp, err := s.rpc.call(ctx, addr, rpcRequest{Op: opBarrier})
		idx = resp.Index
		return err
	})
	if err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	return s.waitApplied(ctx, idx)
}

func (s *Store) barrierLeader(ctx context.Context) (uint64, error) {
	if s.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if err := s.raft.Barrier(s.timeout(ctx)).Error(); err != nil {
		return 0, mapRaftErr(err)
	}
	return s.raft.AppliedIndex(), nil
}

func (s *Store) waitApplied(ctx context.Context, idx uint64) error {
	if s.raft.AppliedIndex() >= idx {
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.raft.AppliedIndex() < idx {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", idx, s.raft.AppliedIndex(), ctx.Err())
		case <-s.stop:
			return ErrClosed
		case <-tick.C:
		}
	}
	return nil
}

// WaitReady blocks until a leader is known and this node has applied
// everything committed before the call (Barrier), retrying through
// elections. The agent reports ready only after it returns nil.
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		err := s.Barrier(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return fmt.Errorf("wait ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
