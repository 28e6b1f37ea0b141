package wgdevice

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/device"
)

// newDeviceLogger adapts wireguard-go's printf logger to slog with a rate
// limit: an unreachable peer makes wireguard-go log every handshake retry,
// which would fill the device's log file (on tmpfs) without bound. Errors
// are allowed in bursts of 50, then one per 10 s; the number suppressed is
// reported with the next message. Verbose messages go to Debug, unlimited
// (the handler's level decides).
func newDeviceLogger(l *slog.Logger) *device.Logger {
	lim := &limitedLog{l: l, lim: rate.NewLimiter(rate.Every(10*time.Second), 50)}
	return &device.Logger{
		Verbosef: func(f string, a ...any) {
			if l.Enabled(context.Background(), slog.LevelDebug) {
				l.Debug(fmt.Sprintf(f, a...))
			}
		},
		Errorf: lim.errorf,
	}
}

type limitedLog struct {
	l          *slog.Logger
	lim        *rate.Limiter
	mu         sync.Mutex
	suppressed int
}

func (x *limitedLog) errorf(f string, a ...any) {
	if !x.lim.Allow() {
		x.mu.Lock()
		x.suppressed++
		x.mu.Unlock()
		return
	}
	x.mu.Lock()
	n := x.suppressed
	x.suppressed = 0
	x.mu.Unlock()
	if n > 0 {
		x.l.Error(fmt.Sprintf(f, a...), "suppressed_before", n)
		return
	}
	x.l.Error(fmt.Sprintf(f, a...))
}
