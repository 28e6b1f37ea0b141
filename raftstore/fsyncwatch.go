package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// The fsync watchdog. Raft's heartbeats never touch the disk, so a leader
// whose disk stalls (a hung fsync on a dying SSD, a saturated SAN) keeps
// its followers quiet while it can commit nothing: the site keeps a leader
// — and its VIPs — that cannot make progress. The watchdog times a small
// write+fsync in the raft data dir every Every; when one has been running
// longer than Threshold on the leader, it hands leadership to another voter
// (LeadershipTransfer), once per stall and then every Retry while the stall
// lasts. Followers only report the stall (FsyncStalled, the log).

// FsyncProbeFile is the file the watchdog writes in the raft data dir.
const FsyncProbeFile = "fsync-probe"

// FsyncWatchConfig configures WatchFsync. Zero values take the defaults.
type FsyncWatchConfig struct {
	// Every is how often a probe starts (default 250ms).
	Every time.Duration
	// Threshold is how long one probe may take before the disk counts as
	// stalled (default 1s; keep it well above a healthy fsync's p99).
	Threshold time.Duration
	// Retry is how often a transfer is retried while the stall lasts
	// (default 2s).
	Retry time.Duration
	// Sync is the disk sync seam; default (*os.File).Sync. Tests stall it.
	Sync func(*os.File) error
}

func (c *FsyncWatchConfig) setDefaults() {
	if c.Every <= 0 {
		c.Every = 250 * time.Millisecond
	}
	if c.Threshold <= 0 {
		c.Threshold = time.Second
	}
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
	if c.Sync == nil {
		c.Sync = (*os.File).Sync
	}
}

// FsyncWatchdog watches the disk under one Store's raft data dir.
type FsyncWatchdog struct {
	s       *Store
	cfg     FsyncWatchConfig
	stalled atomic.Bool
	last    atomic.Int64 // duration of the last finished probe, ns
	running atomic.Bool
}

// NewFsyncWatchdog returns a watchdog for s; Run starts it.
func NewFsyncWatchdog(s *Store, cfg FsyncWatchConfig) *FsyncWatchdog {
	cfg.setDefaults()
	return &FsyncWatchdog{s: s, cfg: cfg}
}

// Stalled reports whether a probe has been stuck longer than the
// threshold, and the duration of the last finished probe.
func (w *FsyncWatchdog) Stalled() (bool, time.Duration) {
	return w.stalled.Load(), time.Duration(w.last.Load())
}

// Run probes until ctx ends or the store closes. A second concurrent Run
// returns an error at once.
func (w *FsyncWatchdog) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("raftstore: fsync watchdog already running")
	}
	defer w.running.Store(false)
	s, cfg, st := w.s, w.cfg, w
	log := s.log.With("component", "fsync-watchdog")
	f, err := os.OpenFile(filepath.Join(s.cfg.DataDir, FsyncProbeFile), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("fsync watchdog: %w", err)
	}
	// The probe goroutine may be stuck in Sync when we return: it closes
	// the file itself once the probe finishes.
	probes := make(chan struct{})
	started := atomic.Int64{} // unix ns of the running probe's start, 0 when idle
	go func() {
		defer f.Close()
		for range probes {
			t0 := time.Now()
			started.Store(t0.UnixNano())
			_, werr := f.WriteAt([]byte{byte(t0.UnixNano())}, 0)
			serr := cfg.Sync(f)
			d := time.Since(t0)
			started.Store(0)
			st.last.Store(int64(d))
			if werr != nil || serr != nil {
				log.Warn("fsync probe failed", "err", errors.Join(werr, serr), "took", d)
			}
		}
	}()
	defer close(probes)
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	var lastTransfer time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return nil
		case <-tick.C:
		}
		begun := started.Load()
		if begun == 0 {
			if st.stalled.Swap(false) {
				log.Info("raft disk responsive again", "last_probe", time.Duration(st.last.Load()))
			}
			select {
			case probes <- struct{}{}:
			default:
			}
			continue
		}
		stuck := time.Since(time.Unix(0, begun))
		if stuck < cfg.Threshold {
			continue
		}
		if !st.stalled.Swap(true) {
			log.Error("raft disk stalled: an fsync has not returned", "stuck_for", stuck, "threshold", cfg.Threshold, "leader", s.IsLeader())
		}
		if s.IsLeader() && time.Since(lastTransfer) >= cfg.Retry {
			lastTransfer = time.Now()
			go s.stepDownForDisk(log, stuck, cfg.Retry)
		}
	}
}

func (s *Store) stepDownForDisk(log *slog.Logger, stuck, bound time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := s.TransferLeadership(ctx, ""); err != nil {
		log.Error("raft disk stalled: leadership transfer failed; will retry", "stuck_for", stuck, "err", err)
		return
	}
	log.Warn("raft disk stalled: leadership handed to another voter", "stuck_for", stuck)
}
