package raftstore

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// diskTimer tracks the raft log/stable store write in progress, so a
// watchdog can see a stalled disk: a leader blocked in a log write keeps
// sending heartbeats from other goroutines and is never replaced by raft
// itself.
type diskTimer struct {
	inflight atomic.Int64 // start (unix ns) of the write in progress; 0 if none
	hist     prometheus.Observer
}

func (d *diskTimer) time(f func() error) error {
	start := time.Now()
	d.inflight.Store(start.UnixNano())
	err := f()
	d.inflight.Store(0)
	d.hist.Observe(time.Since(start).Seconds())
	return err
}

func (d *diskTimer) stall() time.Duration {
	if ns := d.inflight.Load(); ns != 0 {
		return time.Since(time.Unix(0, ns))
	}
	return 0
}

type timedLogStore struct {
	raft.LogStore
	d *diskTimer
}

func (t timedLogStore) StoreLog(l *raft.Log) error {
	return t.d.time(func() error { return t.LogStore.StoreLog(l) })
}

func (t timedLogStore) StoreLogs(ls []*raft.Log) error {
	return t.d.time(func() error { return t.LogStore.StoreLogs(ls) })
}

func (t timedLogStore) DeleteRange(min, max uint64) error {
	return t.d.time(func() error { return t.LogStore.DeleteRange(min, max) })
}

type timedStableStore struct {
	raft.StableStore
	d *diskTimer
}

func (t timedStableStore) Set(k, v []byte) error {
	return t.d.time(func() error { return t.StableStore.Set(k, v) })
}

func (t timedStableStore) SetUint64(k []byte, v uint64) error {
	return t.d.time(func() error { return t.StableStore.SetUint64(k, v) })
}

// LogWriteStall reports how long the raft log write in progress has been
// running (0 when none is). A leader whose disk stalls keeps heartbeating
// from other goroutines, so raft alone never replaces it: an HA watchdog
// that sees a stall above its threshold should stop serving (unmount VIPs)
// and call Isolate.
func (s *Store) LogWriteStall() time.Duration { return s.disk.stall() }

// Isolate cuts this node off the cluster: every raft and RPC connection is
// closed and no new one is accepted or dialed, so the others stop hearing
// its heartbeats and elect a new leader within an election timeout. It is
// the fence for a node that cannot be trusted to step down by itself (a
// stalled disk). The Store stays isolated; Close it (which may block while
// the disk is stalled) or exit the process.
func (s *Store) Isolate() error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.log.Warn("isolating this node from the cluster")
	s.stream.isolate()
	s.trans.Close() // stops raft's accept loop; dials fail in the stream layer
	s.rpc.close()
	s.mux.shut()
	return nil
}

// connSet tracks raft connections so Isolate can close them.
type connSet struct {
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	isolated bool
}

func (c *connSet) add(conn *trackedConn) error {
	c.mu.Lock()
	if c.isolated {
		c.mu.Unlock()
		conn.Conn.Close()
		return fmt.Errorf("%w: node is isolated", ErrClosed)
	}
	if c.conns == nil {
		c.conns = map[net.Conn]struct{}{}
	}
	c.conns[conn] = struct{}{}
	c.mu.Unlock()
	return nil
}

func (c *connSet) remove(conn net.Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
}

func (c *connSet) closeAll() {
	c.mu.Lock()
	c.isolated = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for conn := range conns {
		conn.Close() // trackedConn.Close takes c.mu: not under the lock
	}
}

// trackedConn removes itself from the set when closed.
type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() { t.set.remove(t) })
	return t.Conn.Close()
}
