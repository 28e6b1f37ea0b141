package netctl

import (
	"context"
	"time"
)

// Run reconciles every Desired received on updates until ctx ends. After a
// pass with failed objects it retries with exponential backoff (RetryMin up
// to RetryMax); a new Desired resets the backoff; without change it re-reads
// the kernel every Resync to repair drift. A closed channel keeps the last
// state. Run returns ctx.Err().
func (m *Manager) Run(ctx context.Context, updates <-chan Desired) error {
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
