package agent

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks systemd's sd_notify protocol (a no-op without
// NOTIFY_SOCKET). The watchdog is pinged only while the main loop proves it
// is alive by calling alive(); a stuck main loop stops the pings and systemd
// restarts the service.
type notifier struct {
	log       *slog.Logger
	lastAlive atomic.Int64 // unix nanos of the main loop's last heartbeat
}

func (n *notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, LogKeyErr, err)
	}
}

func (n *notifier) ready(status string) { n.send(daemon.SdNotifyReady + "\nSTATUS=" + status) }
func (n *notifier) status(s string)     { n.send("STATUS=" + s) }
func (n *notifier) reloading()          { n.send(daemon.SdNotifyReloading) }
func (n *notifier) stopping()           { n.send(daemon.SdNotifyStopping) }

// alive records that the main loop is making progress.
func (n *notifier) alive() { n.lastAlive.Store(time.Now().UnixNano()) }

// watchdog pings WATCHDOG=1 at half of WATCHDOG_USEC while the main loop
// called alive() within the watchdog interval. It returns when ctx ends.
func (n *notifier) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	n.alive()
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, n.lastAlive.Load())) < interval {
				n.send(daemon.SdNotifyWatchdog)
			} else {
				n.log.Error("main loop is stuck: withholding the watchdog ping", "stuck_for", time.Since(time.Unix(0, n.lastAlive.Load())).String())
			}
		}
	}
}
