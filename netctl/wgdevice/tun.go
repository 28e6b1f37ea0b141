package wgdevice

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// robustTUN wraps wireguard-go's Linux TUN. Upstream, the TUN's netlink
// listener (link and address groups, default socket buffer) gives up on
// ENOBUFS — a burst of address changes on a busy host, e.g. 1,000 VIPs
// mounted at once — and the error surfaces from Read, upon which the device
// closes itself and the tunnel is gone. robustTUN swallows that one error in
// Read and, once the upstream event channel is closed, polls the link (MTU,
// running) every pollEvery to keep feeding the device its events.
type robustTUN struct {
	tun.Device
	log       *slog.Logger
	events    chan tun.Event
	closeOnce sync.Once
	closing   chan struct{}
	wg        sync.WaitGroup
}

const pollEvery = time.Second

func newRobustTUN(inner tun.Device, log *slog.Logger) *robustTUN {
	r := &robustTUN{Device: inner, log: log, events: make(chan tun.Event, 8), closing: make(chan struct{})}
	r.wg.Add(1)
	go r.forward()
	return r
}

// Read retries after the listener's ENOBUFS; every other error passes.
func (r *robustTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := r.Device.Read(bufs, sizes, offset)
		if err != nil && errors.Is(err, unix.ENOBUFS) {
			r.log.Warn("tun netlink listener overflowed (ENOBUFS); device kept, polling link state instead", "err", err)
			continue
		}
		return n, err
	}
}

func (r *robustTUN) Events() <-chan tun.Event { return r.events }

func (r *robustTUN) Close() error {
	r.closeOnce.Do(func() { close(r.closing) })
	err := r.Device.Close()
	r.wg.Wait()
	return err
}

func (r *robustTUN) send(e tun.Event) bool {
	select {
	case r.events <- e:
		return true
	case <-r.closing:
		return false
	}
}

func (r *robustTUN) forward() {
	defer r.wg.Done()
	defer close(r.events)
	for e := range r.Device.Events() {
		if !r.send(e) {
			return
		}
	}
	// Upstream listener gone: poll, unless we are closing.
	name, err := r.Device.Name()
	if err != nil {
		return
	}
	var lastMTU int
	var lastUp, known bool
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-r.closing:
			return
		case <-t.C:
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			continue
		}
		up := ifi.Flags&net.FlagRunning != 0
		if !known || ifi.MTU != lastMTU {
			if !r.send(tun.EventMTUUpdate) {
				return
			}
		}
		if !known || up != lastUp {
			var ev tun.Event = tun.EventDown
			if up {
				ev = tun.EventUp
			}
			if !r.send(ev) {
				return
			}
		}
		known, lastMTU, lastUp = true, ifi.MTU, up
	}
}
