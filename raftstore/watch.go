package raftstore

import (
	"sync"
	"time"
)

// Event types besides command types.
const (
	// EventRestore: the whole state was replaced from a snapshot.
	EventRestore = "restore"
	// EventResync: a slow watcher missed events; Index is the latest
	// applied index. Re-read the state.
	EventResync = "resync"
)

// Event tells a watcher that a command was applied. Type is the command
// type (or EventRestore / EventResync), Key what it touched ("peer/<id>",
// "grant/<id>", "kv/<key>", "vip/<name>", …).
type Event struct {
	Index uint64 `json:"index"`
	Type  string `json:"type"`
	Key   string `json:"key,omitempty"`
}

// watchQueueMax is how many events a watcher may have pending before they
// are folded into one EventResync.
const watchQueueMax = 256

type watcher struct {
	ch      chan Event
	mu      sync.Mutex
	pending []Event
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

type watchHub struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
	closed   bool
	metrics  *metrics
	wg       sync.WaitGroup
}

func newWatchHub(m *metrics) *watchHub {
	return &watchHub{watchers: map[*watcher]struct{}{}, metrics: m}
}

// publish never blocks: it appends to each watcher's queue, folding the
// queue into a single resync event once it is too long.
func (h *watchHub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.mu.Lock()
		if len(w.pending) >= watchQueueMax {
			h.metrics.watchCoalesced.Add(float64(len(w.pending)))
			idx := e.Index
			if idx == 0 {
				idx = w.pending[len(w.pending)-1].Index
			}
			w.pending = append(w.pending[:0], Event{Index: idx, Type: EventResync})
		} else if n := len(w.pending); n > 0 && w.pending[n-1].Type == EventResync {
			if e.Index > w.pending[n-1].Index {
				w.pending[n-1].Index = e.Index
			}
		} else {
			w.pending = append(w.pending, e)
		}
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (h *watchHub) watch() (<-chan Event, func()) {
	w := &watcher{ch: make(chan Event), wake: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(w.ch)
		return w.ch, func() {}
	}
	h.watchers[w] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		defer close(w.ch)
		for {
			w.mu.Lock()
			var next *Event
			if len(w.pending) > 0 {
				e := w.pending[0]
				next = &e
			}
			w.mu.Unlock()
			if next == nil {
				select {
				case <-w.wake:
					continue
				case <-w.done:
					return
				}
			}
			select {
			case w.ch <- *next:
				w.mu.Lock()
				if len(w.pending) > 0 && w.pending[0] == *next {
					w.pending = w.pending[1:]
				} else if len(w.pending) > 0 && w.pending[0].Type == EventResync && next.Type == EventResync {
					// The resync was extended while being delivered; keep
					// it only if it advanced.
					if w.pending[0].Index <= next.Index {
						w.pending = w.pending[1:]
					}
				}
				w.mu.Unlock()
			case <-w.wake:
			case <-w.done:
				return
			}
		}
	}()
	cancel := func() {
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
		w.stop()
	}
	return w.ch, cancel
}

func (h *watchHub) close() {
	h.mu.Lock()
	h.closed = true
	ws := h.watchers
	h.watchers = map[*watcher]struct{}{}
	h.mu.Unlock()
	for w := range ws {
		w.stop()
	}
	h.wg.Wait()
}

// leaderFanout delivers every leadership change, in order, to every
// subscriber. Queues are unbounded (changes are rare) so a slow reader
// never misses a false between two trues.
type leaderFanout struct {
	mu     sync.Mutex
	cur    bool
	subs   map[*leaderSub]struct{}
	closed bool
	wg     sync.WaitGroup
}

type leaderSub struct {
	ch    chan bool
	mu    sync.Mutex
	queue []bool
	wake  chan struct{}
	done  chan struct{}
}

func newLeaderFanout() *leaderFanout { return &leaderFanout{subs: map[*leaderSub]struct{}{}} }

// set records v and queues it for every subscriber; repeating the current
// value is a no-op.
func (f *leaderFanout) set(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v == f.cur {
		return
	}
	f.cur = v
	for s := range f.subs {
		s.mu.Lock()
		s.queue = append(s.queue, v)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (f *leaderFanout) subscribe() <-chan bool {
	s := &leaderSub{ch: make(chan bool, 4), wake: make(chan struct{}, 1), done: make(chan struct{})}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(s.ch)
		return s.ch
	}
	s.queue = []bool{f.cur}
	f.subs[s] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		defer close(s.ch)
		for {
			s.mu.Lock()
			if len(s.queue) == 0 {
				s.mu.Unlock()
				select {
				case <-s.wake:
					continue
				case <-s.done:
					s.flush()
					return
				}
			}
			v := s.queue[0]
			s.mu.Unlock()
			select {
			case s.ch <- v:
				s.mu.Lock()
				s.queue = s.queue[1:]
				s.mu.Unlock()
			case <-s.done:
				s.flush()
				return
			}
		}
	}()
	return s.ch
}

// leaderFlushTimeout bounds how long Close waits for a subscriber to take
// its last values (the final false of a closing leader matters to VIP
// holders).
const leaderFlushTimeout = 2 * time.Second

// flush delivers what is still queued, giving up after leaderFlushTimeout.
func (s *leaderSub) flush() {
	t := time.NewTimer(leaderFlushTimeout)
	defer t.Stop()
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, v := range q {
		select {
		case s.ch <- v:
		case <-t.C:
			return
		}
	}
}

func (f *leaderFanout) close() {
	f.mu.Lock()
	f.closed = true
	subs := f.subs
	f.subs = nil
	f.mu.Unlock()
	for s := range subs {
		close(s.done)
	}
	f.wg.Wait()
}
