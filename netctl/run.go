package netctl

import (
	"context"
	"time"
)

// eventDelay coalesces bursts of netlink change events into one pass.
const eventDelay = 100 * time.Millisecond

// Run reconciles every Desired received on updates until ctx ends. After a
// pass with failed objects it retries with exponential backoff (RetryMin up
// to RetryMax); a new Desired resets the backoff; without change it re-reads
// the kernel every Resync to repair drift. When the Netlink is a Watcher, an
// outside change to links or addresses triggers a pass within ~100ms. A
// closed channel keeps the last state. Run returns ctx.Err().
func (m *Manager) Run(ctx context.Context, updates <-chan Desired) error {
	var events <-chan struct{}
	if w, ok := m.cfg.Netlink.(Watcher); ok {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ev, err := w.Watch(wctx)
		if err != nil {
			m.log.Warn("netctl: no netlink change events, relying on resync", "err", err)
		} else {
			events = ev
			defer func() {
				cancel()
				for range ev { // let the subscription goroutines finish
				}
			}()
		}
	}
	var (
		cur     Desired
		have    bool
		backoff = m.cfg.RetryMin
		timer   = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	reset := func(d time.Duration) {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			cur, have = d, true
			backoff = m.cfg.RetryMin
		case _, ok := <-events:
			if !ok {
				m.log.Warn("netctl: netlink change events stopped, relying on resync")
				events = nil
			} else if have {
				// Coalesce a burst (our own changes echo back too).
				reset(eventDelay)
			}
			continue
		case <-timer.C:
			if !have {
				continue
			}
		}
		res := m.Reconcile(ctx, cur)
		if len(res.Errors) > 0 {
			reset(backoff)
			backoff *= 2
			if backoff > m.cfg.RetryMax {
				backoff = m.cfg.RetryMax
			}
		} else {
			backoff = m.cfg.RetryMin
			reset(m.cfg.Resync)
		}
	}
}
