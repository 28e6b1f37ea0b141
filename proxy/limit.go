package proxy

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	kindHandshake  = "handshake"
	kindCapability = "capability"
)

// limiters holds one token bucket per (kind, peer).
type limiters struct {
	mu sync.Mutex
	m  map[[2]string]*rate.Limiter
}

func newLimiters() *limiters { return &limiters{m: map[[2]string]*rate.Limiter{}} }

// allow takes a token from peer's bucket of kind; when none is left it
// returns false and the whole seconds until one will be.
func (l *limiters) allow(kind, peer string, r rate.Limit, burst int) (retryAfter int, ok bool) {
	k := [2]string{kind, peer}
	l.mu.Lock()
	lim := l.m[k]
	if lim == nil {
		lim = rate.NewLimiter(r, burst)
		l.m[k] = lim
	}
	l.mu.Unlock()
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return 60, false
	}
	d := res.DelayFrom(now)
	if d == 0 {
		return 0, true
	}
	res.CancelAt(now)
	return int(math.Ceil(d.Seconds())), false
}

func itoa(n int) string { return strconv.Itoa(n) }
