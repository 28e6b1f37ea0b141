package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Store is one node's replicated state: a raft node, its FSM and the mTLS
// listener. All methods are safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	raft    *raft.Raft
	fsm     *fsm
	trans   *raft.NetworkTransport
	mux     *mux
	stream  *streamLayer
	disk    *diskTimer
	bolt    *raftboltdb.BoltStore
	rpc     *rpcClient
	watch   *watchHub
	leaders *leaderFanout
	metrics *metrics

	notifyCh  chan bool
	kick      chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open validates cfg, checks the data dir, and starts the raft node and
// its listener. A node with no raft state waits, as a non-member, until it
// is bootstrapped (Bootstrap) or joined (another node's Join).
func Open(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "raftstore", "node_id", cfg.NodeID)
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Store{cfg: cfg, log: log, notifyCh: make(chan bool, 16), kick: make(chan struct{}, 1), stop: make(chan struct{}),
		watch: nil, leaders: newLeaderFanout()}
	var err error
	s.metrics, err = newMetrics(cfg.Registerer, s.Status)
	if err != nil {
		return nil, err
	}
	s.watch = newWatchHub(s.metrics)
	fail := func(err error) (*Store, error) {
		if s.raft != nil {
			s.raft.Shutdown().Error()
		}
		s.shutdownParts()
		return nil, err
	}

	s.bolt, err = openBolt(filepath.Join(cfg.DataDir, raftDBFile), cfg.NoSync)
	if err != nil {
		return fail(err)
	}
	hl := newHclog(cfg.Logger.With("node_id", cfg.NodeID), hclog.Info).Named("raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, hl)
	if err != nil {
		return fail(fmt.Errorf("open snapshots: %w", err))
	}
	s.mux, err = newMux(cfg.BindAddr, cfg.AdvertiseAddr, cfg.ServerTLS, cfg.ClientTLS, log, s.metrics)
	if err != nil {
		return fail(err)
	}
	s.rpc = newRPCClient(s.mux)
	s.stream = newStreamLayer(s.mux)
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  s.stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  hl.Named("transport"),
	})
	s.fsm = newFSM(cfg.DedupWindow, s.metrics, s.watch.publish)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NotifyCh = s.notifyCh
	rc.Logger = hl
	rc.BatchApplyCh = true
	s.disk = &diskTimer{hist: s.metrics.diskWrite}
	s.raft, err = raft.NewRaft(rc, s.fsm, timedLogStore{s.bolt, s.disk}, timedStableStore{s.bolt, s.disk}, snaps, s.trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	if err := s.metrics.register(); err != nil {
		return fail(err)
	}
	s.mux.start(s.serveRPC)
	s.wg.Add(2)
	go s.leadershipLoop()
	go s.leaderLoop()
	log.Info("raft store open", "addr", s.Addr(), "data_dir", cfg.DataDir)
	return s, nil
}

// Addr is the advertised raft/RPC address.
func (s *Store) Addr() string { return s.mux.advertise.String() }

// NodeID is this node's raft server ID.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Bootstrap makes this node the single voter of a new cluster. It refuses
// (ErrExistingState) when the data dir already holds raft state.
func (s *Store) Bootstrap() error {
	if s.closed.Load() {
		return ErrClosed
	}
	f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(s.cfg.NodeID), Address: raft.ServerAddress(s.Addr()),
	}}})
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", ErrExistingState)
		}
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.log.Info("bootstrapped single-voter cluster")
	return nil
}

// State returns the current immutable state. It never blocks on raft.
func (s *Store) State() *State { return s.fsm.state.Load() }

// Watch returns a channel of applied-command events and a cancel func.
// Events arrive in order; a watcher that falls behind by more than a few
// hundred events gets one EventResync instead of the backlog. The FSM never
// waits for a watcher. The channel closes on cancel or Close.
func (s *Store) Watch() (<-chan Event, func()) { return s.watch.watch() }

// LeadershipChanges returns a new subscription to this node's leadership:
// the current value first, then every change in order (none dropped, even
// for a slow reader). On Close a leader's subscribers receive a final false
// before the channel closes (Close waits up to 2 s for a reader that has
// more than a few values pending).
func (s *Store) LeadershipChanges() <-chan bool { return s.leaders.subscribe() }

// IsLeader reports whether this node believes it is the leader (without
// the round trip of VerifyLeader).
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// VerifyLeader confirms with a quorum that this node is still the leader.
func (s *Store) VerifyLeader() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return nil
}

func (s *Store) leadershipLoop() {
	defer s.wg.Done()
	for {
		select {
		case v := <-s.notifyCh:
			s.log.Info("leadership changed", "leader", v)
			if v {
				s.metrics.leader.Set(1)
				select {
				case s.kick <- struct{}{}:
				default:
				}
			} else {
				s.metrics.leader.Set(0)
			}
			s.leaders.set(v)
		case <-s.stop:
			for {
				select {
				case v := <-s.notifyCh:
					s.leaders.set(v)
				default:
					return
				}
			}
		}
	}
}

// Apply replicates cmd and returns its result once applied on the leader.
// On a follower the command is forwarded to the leader. The leader stamps
// At. An empty ID is replaced by a UUIDv7, and the same ID is kept across
// internal retries (leader change, lost connection), so a command is
// applied at most once even when Apply retries.
func (s *Store) Apply(ctx context.Context, cmd Command) (Result, error) {
	if s.closed.Load() {
		return Result{}, ErrClosed
	}
	cmd, err := prepare(cmd)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	var res Result
	err = s.retry(ctx, "apply", func(ctx context.Context) error {
		var err error
		if s.IsLeader() {
			res, err = s.applyLeader(ctx, cmd)
			return err
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return err
		}
		s.metrics.forwarded.WithLabelValues(opApply).Inc()
		resp, err := s.rpc.call(ctx, addr, rpcRequest{Op: opApply, Command: &cmd})
		if err == nil {
			res = *resp.Result
		}
		return err
	})
	path := "leader"
	if !s.IsLeader() {
		path = "forwarded"
	}
	s.metrics.applyDuration.WithLabelValues(path).Observe(time.Since(start).Seconds())
	if err != nil {
		return Result{}, fmt.Errorf("apply %s %s: %w", cmd.Type, cmd.ID, err)
	}
	return res, nil
}

// prepare fills in the envelope version and a UUIDv7 idempotency key.
func prepare(cmd Command) (Command, error) {
	if cmd.V == 0 {
		cmd.V = CommandVersion
	}
	if cmd.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return cmd, fmt.Errorf("apply: command id: %w", err)
		}
		cmd.ID = id.String()
	}
	return cmd, nil
}

// retryable reports whether an operation may be retried: the leader moved
// or is unknown, or the connection to it failed. Refusals and storage
// errors are final.
func retryable(err error) bool {
	var re *RefusedError
	switch {
	case errors.As(err, &re):
		return false
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader), errors.Is(err, errRemoteClosed),
		errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, errTransport):
		return true
	}
	return false
}

// retry runs op until it succeeds, fails finally, or ctx ends.
func (s *Store) retry(ctx context.Context, what string, op func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.ApplyTimeout)
		defer cancel()
	}
	backoff := 10 * time.Millisecond
	for {
		if s.closed.Load() {
			return ErrClosed
		}
		err := op(ctx)
		if err == nil || !retryable(err) {
			return err
		}
		s.log.Debug("retrying", "op", what, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) {
				return fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
			}
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-s.stop:
			t.Stop()
			return ErrClosed
		case <-t.C:
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

func (s *Store) leaderAddr() (string, error) {
	addr, _ := s.raft.LeaderWithID()
	if addr == "" {
		return "", ErrNoLeader
	}
	return string(addr), nil
}

func (s *Store) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return s.cfg.ApplyTimeout
}

// applyLeader stamps and replicates cmd on this node, which must be the
// leader.
func (s *Store) applyLeader(ctx context.Context, cmd Command) (Result, error) {
	if s.closed.Load() {
		return Result{}, ErrClosed
	}
	if s.raft.State() != raft.Leader {
		return Result{}, ErrNotLeader
	}
	cmd.At = time.Now().UTC()
	b, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, &RefusedError{Type: cmd.Type, Reason: fmt.Sprintf("encode command: %v", err)}
	}
	f := s.raft.Apply(b, s.timeout(ctx))
	if err := f.Error(); err != nil {
		return Result{}, mapRaftErr(err)
	}
	resp, ok := f.Response().(*fsmResponse)
	if !ok {
		return Result{}, fmt.Errorf("unexpected fsm response %T", f.Response())
	}
	return resp.res, resp.err
}

func mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return err
}

// Close shuts the raft node down, closes the listener and the log. It is
// safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				s.closeErr = fmt.Errorf("raft shutdown: %w", err)
			}
		}
		// Stop the loops only after raft: its last leadership change
		// (false, on a leader) is still delivered to subscribers.
		close(s.stop)
		s.wg.Wait()
		s.leaders.set(false)
		s.shutdownParts()
		s.log.Info("raft store closed")
	})
	return s.closeErr
}

func (s *Store) shutdownParts() {
	if s.trans != nil {
		s.trans.Close()
	}
	if s.rpc != nil {
		s.rpc.close()
	}
	if s.mux != nil {
		s.mux.close()
	}
	if s.bolt != nil {
		if err := s.bolt.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("close raft log: %w", err)
		}
	}
	if s.watch != nil {
		s.watch.close()
	}
	s.leaders.close()
	if s.metrics != nil {
		s.metrics.unregister()
	}
}

// Snapshot takes a raft snapshot now (compacting the log).
func (s *Store) Snapshot() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", mapRaftErr(err))
	}
	return nil
}
