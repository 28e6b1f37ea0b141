package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Log is the audit log. It is safe for concurrent use.
type Log struct {
	cfg Config
	fs  FS
	lg  *slog.Logger
	m   *metrics

	queue   chan *pending
	sendMu  sync.RWMutex // Append holds R while enqueuing; Close holds W
	closed  bool         // guarded by sendMu
	quit    chan struct{}
	done    chan struct{}
	hk      chan chan struct{} // run housekeeping now (tests)
	shipper *shipper

	appended    atomic.Uint64
	dropped     atomic.Uint64
	dropPending atomic.Uint64

	mu        sync.RWMutex // guards the fields below
	segs      []segment    // verified segments, oldest first; the last may be active
	lastSeq   uint64
	lastHash  string
	lastTime  time.Time
	state     error // nil, a *CorruptError (permanent) or a transient write error
	truncated int64 // bytes cut from a torn tail at Open
	commitCh  chan struct{}

	// Owned by the writer goroutine (and Open before it starts).
	active      File
	activeName  string
	activeSize  int64 // durable data bytes
	activeAlloc int64 // file size including preallocated zeros
	activeMade  time.Time
	lastAlloc   int64 // file size of the last segment found by recover
	buf         []byte

	// Preallocation: the writer hands one request at a time to preallocLoop.
	preReq  chan preallocReq
	preDone chan int64
	preBusy bool
	preFrom int64 // start of the in-flight zero write
	preFail time.Time

	// Written (not yet durable) chain state, owned by the writer; the
	// durable state is lastSeq/lastHash/lastTime, published by syncLoop.
	wSeq       uint64
	wHash      [64]byte
	wTime      time.Time
	syncQ      chan syncJob
	syncDone   chan struct{}
	syncBusy   atomic.Int32 // jobs sent to syncLoop and not yet finished
	syncFailed atomic.Bool
}

type preallocReq struct {
	f        File
	from, to int64
}

// segment is the index entry of one verified segment.
type segment struct {
	name      string
	firstSeq  uint64
	lastSeq   uint64 // firstSeq-1 when empty
	prevHash  string
	lastHash  string
	firstTime time.Time
	lastTime  time.Time
	created   time.Time
	size      int64 // verified, durable bytes
}

func (s segment) empty() bool { return s.lastSeq < s.firstSeq }

type result struct {
	seq uint64
	err error
}

type pending struct {
	body []byte
	done chan result
}

var pendingPool = sync.Pool{New: func() any {
	return &pending{body: make([]byte, 0, 512), done: make(chan result, 1)}
}}

// Open opens (or creates) the log in cfg.Dir, recovers from a crash, and
// starts the writer. A read-only or corrupt log still opens: queries work,
// Append fails (see Stats.Err).
func Open(cfg Config) (*Log, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Log{
		cfg:      cfg,
		fs:       cfg.FS,
		lg:       cfg.Logger,
		queue:    make(chan *pending, cfg.QueueSize),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		hk:       make(chan chan struct{}),
		commitCh: make(chan struct{}),
		lastHash: ZeroHash,
		preReq:   make(chan preallocReq),
		preDone:  make(chan int64, 1),
		syncQ:    make(chan syncJob, 64),
		syncDone: make(chan struct{}),
	}
	l.m = newMetrics(l, cfg.Registerer)
	if err := l.fs.MkdirAll(cfg.Dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		l.m.unregister()
		return nil, fmt.Errorf("audit: create dir %s: %w", cfg.Dir, err)
	}
	if err := l.recover(); err != nil {
		l.m.unregister()
		return nil, err
	}
	l.resetWritten()
	go l.preallocLoop() // before openActive, which may request zeros
	go l.syncLoop()
	if l.state == nil {
		if err := l.openActive(); err != nil {
			l.state = err
		}
	}
	l.m.segments.Set(float64(len(l.segs)))
	l.m.lastSeq.Set(float64(l.lastSeq))
	attrs := []any{"dir", cfg.Dir, "segments", len(l.segs), "last_seq", l.lastSeq, "last_hash", l.lastHash, "truncated_bytes", l.truncated, "policy", cfg.Policy.String()}
	if l.state != nil {
		l.lg.Error("audit log opened without append", append(attrs, "err", l.state)...)
	} else {
		l.lg.Info("audit log opened", attrs...)
	}
	// The shipper is set before the writer starts: the syncer reads it.
	if cfg.Ship != nil {
		sh, err := newShipper(l, cfg.Ship)
		if err != nil {
			go l.run() // Close stops it
			l.Close()
			return nil, err
		}
		l.shipper = sh
	}
	go l.run()
	if l.shipper != nil {
		go l.shipper.run()
	}
	return l, nil
}

// listSegments returns segment file names sorted by first seq.
func listSegments(fs FS, dir string) ([]string, error) {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: list %s: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // 20-digit names sort by seq
	return names, nil
}

// recover scans every segment, truncates a torn tail of the last one and
// builds the index. Corruption sets l.state.
func (l *Log) recover() error {
	names, err := listSegments(l.fs, l.cfg.Dir)
	if err != nil {
		return err
	}
	for i, name := range names {
		last := i == len(names)-1
		seq, _ := parseSegName(name)
		var wantPrev string
		if len(l.segs) > 0 {
			p := l.segs[len(l.segs)-1]
			if seq != p.lastSeq+1 {
				l.state = &CorruptError{File: name, Offset: 0, Seq: p.lastSeq + 1,
					Reason: fmt.Sprintf("segment starts at seq %d, previous segment ends at %d", seq, p.lastSeq)}
				return nil
			}
			wantPrev = p.lastHash
		}
		res, err := l.scanFile(name, scanOpts{name: name, nameSeq: seq, wantPrev: wantPrev, limit: -1, findTorn: last, zeroTail: last})
		if err != nil {
			return err
		}
		if res.bad != nil && !(last && res.torn) {
			l.state = res.bad
			if res.hdrOK {
				l.addSeg(name, res)
			}
			return nil
		}
		if res.bad != nil {
			// Torn tail of the last segment: cut it.
			if err := l.cutTorn(name, res); err != nil {
				l.state = err
				if res.hdrOK {
					l.addSeg(name, res)
				}
				return nil
			}
			if !res.hdrOK {
				continue
			}
		}
		l.addSeg(name, res)
		if last {
			l.lastAlloc = res.end + res.zeroTail
		}
	}
	return nil
}

func (l *Log) scanFile(name string, o scanOpts) (scanResult, error) {
	f, err := l.fs.OpenFile(filepath.Join(l.cfg.Dir, name), os.O_RDONLY, 0)
	if err != nil {
		return scanResult{}, fmt.Errorf("audit: open segment %s: %w", name, err)
	}
	defer f.Close()
	return scanSegment(f, o), nil
}

func (l *Log) addSeg(name string, res scanResult) {
	s := segment{name: name, firstSeq: res.hdr.FirstSeq, lastSeq: res.lastSeq, prevHash: res.hdr.PrevHash,
		lastHash: res.lastHash, firstTime: res.firstTime, lastTime: res.lastTime, created: res.hdr.Created, size: res.end}
	l.segs = append(l.segs, s)
	l.lastSeq, l.lastHash = s.lastSeq, s.lastHash
	if !s.empty() {
		l.lastTime = s.lastTime
	}
}

// cutTorn truncates a torn tail (or removes a segment whose header is torn).
func (l *Log) cutTorn(name string, res scanResult) error {
	path := filepath.Join(l.cfg.Dir, name)
	cut := res.size - res.end
	if !res.hdrOK {
		l.lg.Warn("audit: removing segment with torn header", "file", name, "bytes", res.size)
		if err := l.fs.Remove(path); err != nil {
			return classify("remove torn segment "+name, err)
		}
		l.truncated += res.size
		return classify("sync dir", l.fs.SyncDir(l.cfg.Dir))
	}
	l.lg.Warn("audit: truncating torn tail", "file", name, "offset", res.end, "bytes", cut, "reason", res.bad.Reason)
	f, err := l.fs.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return classify("open "+name+" to truncate torn tail", err)
	}
	defer f.Close()
	if err := f.Truncate(res.end); err != nil {
		return classify("truncate torn tail of "+name, err)
	}
	if err := f.Sync(); err != nil {
		return classify("sync "+name, err)
	}
	l.truncated += cut
	return nil
}

// classify wraps an OS error into the matching sentinel.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		sentinel = ErrDiskFull
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		sentinel = ErrReadOnly
	default:
		sentinel = ErrWrite
	}
	return fmt.Errorf("%w: %s: %w", sentinel, op, err)
}

// openActive opens the last segment for appending, or starts a new one.
func (l *Log) openActive() error {
	if n := len(l.segs); n > 0 {
		s := l.segs[n-1]
		f, err := l.fs.OpenFile(filepath.Join(l.cfg.Dir, s.name), os.O_RDWR, 0)
		if err != nil {
			return classify("open active segment "+s.name, err)
		}
		l.active, l.activeName, l.activeSize, l.activeMade = f, s.name, s.size, s.created
		l.activeAlloc = max(l.lastAlloc, s.size)
		l.lastAlloc = 0 // only valid for the segment recover found last
		l.resetWritten()
		l.maybePrealloc()
		return nil
	}
	return l.newSegment()
}

// newSegment creates the next segment, durable header first, and makes it
// active. The previous active segment must already be synced.
func (l *Log) newSegment() error {
	first := l.wSeq + 1
	name := segName(first)
	path := filepath.Join(l.cfg.Dir, name)
	now := l.cfg.Clock.Now().UTC()
	hdr := segHeader{Version: 1, NodeID: l.cfg.NodeID, FirstSeq: first, PrevHash: string(l.wHash[:]), Created: now}
	line, _ := appendHeader(nil, hdr)
	if l.active != nil {
		// Seal the current segment: drop its preallocated tail first.
		if err := l.closeActive(); err != nil {
			return err
		}
	}
	f, err := l.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return classify("create segment "+name, err)
	}
	fail := func(op string, err error) error {
		f.Close()
		l.fs.Remove(path)
		return classify(op+" "+name, err)
	}
	if _, err := f.WriteAt(line, 0); err != nil {
		return fail("write header of", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
		return fail("sync dir for", err)
	}
	l.active, l.activeName, l.activeSize, l.activeMade = f, name, int64(len(line)), now
	l.activeAlloc = l.activeSize
	l.maybePrealloc()
	l.mu.Lock()
	l.segs = append(l.segs, segment{name: name, firstSeq: first, lastSeq: first - 1, prevHash: hdr.PrevHash,
		lastHash: hdr.PrevHash, created: now, size: int64(len(line))})
	l.mu.Unlock()
	l.m.segments.Set(float64(len(l.segs)))
	return nil
}

// Append makes r durable and returns its sequence number. It returns only
// after the record is synced to disk, or with an error matching
// ErrUnavailable (fail-closed) or ErrDropped (drop policy). Seq, Time,
// NodeID, PrevHash and Hash of r are set by the log; strings are bounded.
// If ctx ends first, Append returns an ErrUnavailable error, but the record
// may still become durable: treat it as not acknowledged.
func (l *Log) Append(ctx context.Context, r Record) (uint64, error) {
	t := l.Start(ctx, r)
	return t.Wait(ctx)
}

// Ticket is an append in flight: Start queued its record, Wait learns
// whether it became durable. Wait must be called exactly once.
type Ticket struct {
	l   *Log
	p   *pending // nil once answered (or when Start failed)
	seq uint64
	err error
}

// Start queues r for the next group commit and returns at once, so the
// caller can do other work (forward a call) while the record is written;
// the record is acknowledged only by the Ticket's Wait. Errors that Append
// would return before queueing (a bad record, a full queue, a closed or
// corrupt log) are returned by Wait.
func (l *Log) Start(ctx context.Context, r Record) Ticket {
	t := Ticket{l: l}
	if r.Action == "" {
		t.err = fmt.Errorf("%w: record without action", ErrBadRequest)
		return t
	}
	if r.Decision != "" && r.Decision != DecisionAllow && r.Decision != DecisionDeny {
		t.err = fmt.Errorf("%w: decision %q is neither allow nor deny", ErrBadRequest, r.Decision)
		return t
	}
	r.NodeID = l.cfg.NodeID
	r.normalize()
	p := pendingPool.Get().(*pending)
	p.body = r.appendBody(p.body[:0])
	if err := l.enqueue(ctx, p); err != nil {
		pendingPool.Put(p)
		if l.cfg.Policy == PolicyDrop && errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrClosed) {
			l.countDrop(1)
			t.err = ErrDropped
			return t
		}
		l.m.errors.WithLabelValues(errLabel(err)).Inc()
		t.err = err
		return t
	}
	t.p = p
	return t
}

// Wait returns the record's sequence number once it is durable, or the
// error that stopped it. If ctx ends first, Wait returns an ErrUnavailable
// error, but the record may still become durable: treat it as not
// acknowledged.
func (t *Ticket) Wait(ctx context.Context) (uint64, error) {
	if t.p == nil {
		return t.seq, t.err
	}
	select {
	case res := <-t.p.done:
		pendingPool.Put(t.p)
		t.p = nil
		if res.err != nil {
			t.l.m.errors.WithLabelValues(errLabel(res.err)).Inc()
		}
		t.seq, t.err = res.seq, res.err
		return res.seq, res.err
	case <-ctx.Done():
		// The writer still owns p; it is not returned to the pool.
		t.p = nil
		t.err = fmt.Errorf("%w: waiting for durability: %w", ErrUnavailable, ctx.Err())
		return 0, t.err
	}
}

func (l *Log) enqueue(ctx context.Context, p *pending) error {
	l.sendMu.RLock()
	defer l.sendMu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.mu.RLock()
	st := l.state
	l.mu.RUnlock()
	if st != nil && errors.Is(st, ErrCorrupt) {
		return st
	}
	select {
	case l.queue <- p:
		return nil
	default:
	}
	if l.cfg.QueueWait < 0 {
		return ErrQueueFull
	}
	t := time.NewTimer(l.cfg.QueueWait)
	defer t.Stop()
	select {
	case l.queue <- p:
		return nil
	case <-t.C:
		return ErrQueueFull
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrQueueFull, ctx.Err())
	}
}

func (l *Log) countDrop(n uint64) {
	l.dropped.Add(n)
	l.dropPending.Add(n)
	l.m.dropped.Add(float64(n))
}

func errLabel(err error) string {
	switch {
	case errors.Is(err, ErrQueueFull):
		return "queue_full"
	case errors.Is(err, ErrDiskFull):
		return "disk_full"
	case errors.Is(err, ErrReadOnly):
		return "read_only"
	case errors.Is(err, ErrCorrupt):
		return "corrupt"
	case errors.Is(err, ErrClosed):
		return "closed"
	}
	return "write"
}

// run is the writer goroutine: group commit plus housekeeping.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	batch := make([]*pending, 0, l.cfg.MaxBatch)
	lastN := 0
	drain := func() {
		for len(batch) < l.cfg.MaxBatch {
			select {
			case p := <-l.queue:
				batch = append(batch, p)
			default:
				return
			}
		}
	}
	for {
		select {
		case p := <-l.queue:
			batch = append(batch[:0], p)
			drain()
			// Appenders woken by the previous commit are usually runnable
			// but not queued yet: yield (no timed wait) so they join this
			// batch instead of waiting a whole extra sync.
			for i := 0; i < 4 && len(batch) < lastN && len(batch) < l.cfg.MaxBatch; i++ {
				runtime.Gosched()
				drain()
			}
			lastN = len(batch)
			l.commit(batch)
		case <-tick.C:
			l.housekeep()
		case c := <-l.hk:
			l.housekeep()
			close(c)
		case <-l.quit:
			for {
				batch = batch[:0]
				drain()
				if len(batch) == 0 {
					break
				}
				l.commit(batch)
			}
			if l.dropPending.Load() > 0 {
				l.commit(nil)
			}
			l.barrier()
			l.afterSyncFailure()
			if l.active != nil {
				if err := l.closeActive(); err != nil {
					l.lg.Warn("audit: close active segment", "err", err)
					l.active.Close()
				}
				l.active = nil
			}
			close(l.preReq)
			close(l.syncQ)
			<-l.syncDone
			return
		}
	}
}

// closeActive waits for preallocation, cuts the zero tail, syncs and closes
// the active segment. On error the segment stays active.
func (l *Log) closeActive() error {
	l.collectPrealloc(true)
	// Always cut: a failed preallocation may have left zeros past activeAlloc.
	if err := l.active.Truncate(l.activeSize); err != nil {
		return classify("cut preallocated tail of "+l.activeName, err)
	}
	if err := l.active.Sync(); err != nil {
		return classify("sync "+l.activeName, err)
	}
	l.activeAlloc = l.activeSize
	l.active.Close()
	l.active = nil
	return nil
}

// maybePrealloc asks preallocLoop for more zeros once less than half a
// chunk of preallocated space is left, up to the segment size limit.
func (l *Log) maybePrealloc() {
	l.collectPrealloc(false)
	if l.cfg.PreallocBytes < 0 || l.preBusy || l.active == nil || time.Since(l.preFail) < 10*time.Second {
		return
	}
	from := max(l.activeAlloc, l.activeSize)
	limit := l.cfg.SegmentMaxBytes + 256<<10
	if from-l.activeSize > l.cfg.PreallocBytes/2 || from >= limit {
		return
	}
	to := min(from+l.cfg.PreallocBytes, limit)
	l.preBusy, l.preFrom = true, from
	l.preReq <- preallocReq{f: l.active, from: from, to: to}
}

// collectPrealloc takes the result of the in-flight request, waiting for
// it if wait is set.
func (l *Log) collectPrealloc(wait bool) {
	if !l.preBusy {
		return
	}
	var end int64
	if wait {
		end = <-l.preDone
	} else {
		select {
		case end = <-l.preDone:
		default:
			return
		}
	}
	l.preBusy = false
	if end < 0 {
		l.preFail = time.Now() // e.g. disk full: retry later, not per batch
	}
	if end > l.activeAlloc {
		l.activeAlloc = end
	}
}

// preallocLoop writes and syncs zeros for the writer, off its path.
func (l *Log) preallocLoop() {
	zeros := make([]byte, 256<<10)
	for req := range l.preReq {
		end := req.from
		var err error
		for end < req.to && err == nil {
			n := min(int64(len(zeros)), req.to-end)
			_, err = req.f.WriteAt(zeros[:n], end)
			if err == nil {
				end += n
			}
		}
		if err == nil {
			err = req.f.Sync()
		}
		if err != nil {
			l.lg.Warn("audit: preallocation failed", "err", err)
			end = -1 // unknown: keep the old allocation size
		}
		l.preDone <- end
	}
}

// housekeepNow runs the writer's periodic housekeeping (age rotation,
// retention, pending drop record) and waits for it.
func (l *Log) housekeepNow() {
	c := make(chan struct{})
	select {
	case l.hk <- c:
		<-c
	case <-l.done:
	}
}

// housekeep rotates an old segment, applies retention and records pending
// drops.
func (l *Log) housekeep() {
	if l.active != nil && l.activeSize > 0 && l.cfg.Clock.Now().Sub(l.activeMade) >= l.cfg.SegmentMaxAge {
		l.mu.RLock()
		empty := l.segs[len(l.segs)-1].empty()
		l.mu.RUnlock()
		if !empty {
			l.barrier()
			err := l.afterSyncFailure()
			if err == nil {
				err = l.newSegment()
			}
			if err != nil {
				l.lg.Warn("audit: age rotation failed", "err", err)
			}
		}
	}
	if l.cfg.Retention > 0 {
		l.applyRetention()
	}
	if l.dropPending.Load() > 0 {
		l.commit(nil)
	}
}

// writable makes sure there is an active segment, retrying after a
// transient error. It returns the error to give appenders.
func (l *Log) writable() error {
	l.mu.RLock()
	st := l.state
	l.mu.RUnlock()
	if st != nil && errors.Is(st, ErrCorrupt) {
		return st
	}
	if l.active == nil {
		if err := l.openActive(); err != nil {
			l.setState(err)
			return err
		}
	}
	return nil
}

func (l *Log) setState(err error) {
	l.mu.Lock()
	if l.state == nil || !errors.Is(l.state, ErrCorrupt) {
		l.state = err
	}
	l.mu.Unlock()
}

// commit encodes and writes batch (plus an audit.dropped record when drops
// are pending) with one pwrite, then hands it to the syncer, which makes it
// durable and acknowledges it. The writer goes on with the next batch while
// the syncer's fdatasync runs; every fdatasync covers all batches written
// before it started. When the syncer is idle and nothing is queued, the
// writer syncs and acknowledges the batch itself (see writeBatch).
func (l *Log) commit(batch []*pending) {
	err := l.writable()
	if err == nil && l.activeSize >= l.cfg.SegmentMaxBytes {
		l.barrier()
		if err = l.afterSyncFailure(); err == nil {
			if err = l.newSegment(); err != nil {
				l.setState(err)
			}
		}
	}
	var dropN uint64
	if err == nil {
		dropN = l.dropPending.Load()
		if dropN == 0 && len(batch) == 0 {
			return
		}
		err = l.writeBatch(batch, dropN)
	}
	if err != nil {
		l.fail(batch, err)
	}
}

// fail answers every record of batch with err (or ErrDropped, counted).
func (l *Log) fail(batch []*pending, err error) {
	if l.cfg.Policy == PolicyDrop {
		l.countDrop(uint64(len(batch)))
		err = ErrDropped
	}
	for _, p := range batch {
		p.done <- result{err: err}
	}
}

// syncJob is one written batch waiting for fdatasync, or a barrier.
type syncJob struct {
	f       File
	batch   []*pending
	first   uint64 // seq of batch[0]
	n       int    // records written, the audit.dropped one included
	dropN   uint64
	seq     uint64 // last seq written
	hash    string // its hash
	t       time.Time
	end     int64 // written size of the segment after this batch
	bytes   int
	barrier chan struct{} // closed once every earlier job is done
}

// barrier waits until the syncer has finished every job sent before it.
func (l *Log) barrier() {
	c := make(chan struct{})
	l.syncQ <- syncJob{barrier: c}
	<-c
}

// afterSyncFailure runs on the writer after a barrier: if a sync failed, it
// cuts the segment back to its durable size and resets the written state.
func (l *Log) afterSyncFailure() error {
	if !l.syncFailed.Load() {
		return nil
	}
	l.syncFailed.Store(false)
	l.resetWritten()
	if l.active == nil {
		return l.writable()
	}
	l.collectPrealloc(true)
	if err := l.active.Truncate(l.activeSize); err != nil {
		l.lg.Error("audit: truncate after failed sync", "file", l.activeName, "err", err)
		l.active.Close()
		l.active = nil
		return classify("truncate "+l.activeName, err)
	}
	l.activeAlloc = l.activeSize
	return nil
}

// resetWritten sets the writer's state to the durable state.
func (l *Log) resetWritten() {
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.wSeq, l.wTime = l.lastSeq, l.lastTime
	copy(l.wHash[:], l.lastHash)
	if n := len(l.segs); n > 0 && l.segs[n-1].name == l.activeName {
		l.activeSize = l.segs[n-1].size
	}
}

func (l *Log) writeBatch(batch []*pending, dropN uint64) error {
	if l.syncFailed.Load() {
		l.barrier()
		if err := l.afterSyncFailure(); err != nil {
			return err
		}
	}
	buf := l.buf[:0]
	seq := l.wSeq
	prev := l.wHash
	now := l.cfg.Clock.Now().UTC()
	if now.Before(l.wTime) {
		now = l.wTime
	}
	var extra int
	if dropN > 0 {
		r := Record{NodeID: l.cfg.NodeID, Action: ActionDropped, Reason: "records dropped under drop policy",
			Metadata: map[string]string{"dropped": strconv.FormatUint(dropN, 10), "dropped_total": strconv.FormatUint(l.dropped.Load(), 10)}}
		seq++
		start := len(buf)
		buf = appendHead(buf, seq, now)
		buf = r.appendBody(buf)
		buf = appendTailHex(buf, &prev)
		buf = sealInto(buf, start, &prev)
		extra = 1
	}
	first := seq + 1
	for _, p := range batch {
		seq++
		start := len(buf)
		buf = appendHead(buf, seq, now)
		buf = append(buf, p.body...)
		buf = appendTailHex(buf, &prev)
		buf = sealInto(buf, start, &prev)
	}
	l.buf = buf
	if l.preBusy && l.activeSize+int64(len(buf)) > l.preFrom {
		l.collectPrealloc(true) // never write where zeros are being written
	}
	if _, err := l.active.WriteAt(buf, l.activeSize); err != nil {
		err = classify("append to "+l.activeName, err)
		l.lg.Error("audit: write failed", "file", l.activeName, "records", len(batch)+extra, "err", err)
		// Let earlier batches finish, then cut whatever part of this one
		// reached the file. If that fails too, drop the handle; the next
		// batch reopens (and Open's torn-tail logic covers a crash).
		l.barrier()
		l.syncFailed.Store(true)
		l.afterSyncFailure()
		l.setState(err)
		return err
	}
	if dropN > 0 {
		l.dropPending.Add(^(dropN - 1)) // given back if the sync fails
	}
	l.activeSize += int64(len(buf))
	l.wSeq, l.wHash, l.wTime = seq, prev, now
	job := syncJob{f: l.active, first: first, n: len(batch) + extra,
		dropN: dropN, seq: seq, hash: string(prev[:]), t: now, end: l.activeSize, bytes: len(buf)}
	if l.syncBusy.Load() == 0 && len(l.queue) == 0 {
		// Nothing to write while this batch syncs: sync it here rather
		// than wake the syncer (a goroutine hand-off per batch fewer).
		// The syncer is idle, so this fdatasync covers all written data.
		job.batch = batch
		l.syncJobs([]syncJob{job})
	} else {
		job.batch = append([]*pending(nil), batch...)
		l.syncBusy.Add(1)
		l.syncQ <- job
	}
	l.maybePrealloc()
	return nil
}

// syncLoop makes written batches durable: one fdatasync for every job
// queued when it starts, then publishes the durable state and acknowledges.
func (l *Log) syncLoop() {
	defer close(l.syncDone)
	var jobs []syncJob
	for job := range l.syncQ {
		jobs = append(jobs[:0], job)
	more:
		for {
			select {
			case j, ok := <-l.syncQ:
				if !ok {
					break more
				}
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		start := 0
		for i, j := range jobs {
			if j.barrier != nil {
				l.syncJobs(jobs[start:i])
				l.syncBusy.Add(-int32(i - start))
				close(j.barrier)
				start = i + 1
			}
		}
		l.syncJobs(jobs[start:])
		l.syncBusy.Add(-int32(len(jobs) - start))
	}
}

func (l *Log) syncJobs(jobs []syncJob) {
	if len(jobs) == 0 {
		return
	}
	var err error
	if l.syncFailed.Load() {
		err = classify("sync", errors.New("an earlier sync failed"))
	} else {
		t0 := time.Now()
		err = jobs[len(jobs)-1].f.Sync()
		l.m.fsync.Observe(time.Since(t0).Seconds())
	}
	if err != nil {
		if !l.syncFailed.Load() {
			err = classify("sync", err)
			l.lg.Error("audit: sync failed", "err", err)
			l.setState(err)
		}
		l.syncFailed.Store(true)
		for _, j := range jobs {
			if j.dropN > 0 {
				l.dropPending.Add(j.dropN)
			}
			l.fail(j.batch, err)
		}
		return
	}
	last := jobs[len(jobs)-1]
	var n, bytes uint64
	l.mu.Lock()
	s := &l.segs[len(l.segs)-1]
	if s.empty() {
		s.firstTime = jobs[0].t
	}
	s.lastSeq, s.lastHash, s.lastTime, s.size = last.seq, last.hash, last.t, last.end
	l.lastSeq, l.lastHash, l.lastTime = last.seq, last.hash, last.t
	if l.state != nil && !errors.Is(l.state, ErrCorrupt) {
		l.lg.Info("audit: writes succeed again", "last_seq", last.seq)
		l.state = nil
	}
	close(l.commitCh)
	l.commitCh = make(chan struct{})
	l.mu.Unlock()
	for _, j := range jobs {
		n += uint64(j.n)
		bytes += uint64(j.bytes)
	}
	l.appended.Add(n)
	l.m.appends.Add(float64(n))
	l.m.bytes.Add(float64(bytes))
	l.m.batch.Observe(float64(n))
	l.m.lastSeq.Set(float64(last.seq))
	for _, j := range jobs {
		for i, p := range j.batch {
			p.done <- result{seq: j.first + uint64(i)}
		}
	}
	if l.shipper != nil {
		l.shipper.wake()
	}
}

// applyRetention deletes closed segments whose newest record is older than
// the retention age, oldest first, and records what it deleted.
func (l *Log) applyRetention() {
	cutoff := l.cfg.Clock.Now().Add(-l.cfg.Retention)
	for {
		l.mu.RLock()
		if len(l.segs) < 2 {
			l.mu.RUnlock()
			return
		}
		s := l.segs[0]
		l.mu.RUnlock()
		t := s.lastTime
		if s.empty() {
			t = s.created
		}
		if !t.Before(cutoff) {
			return
		}
		if err := l.fs.Remove(filepath.Join(l.cfg.Dir, s.name)); err != nil {
			l.lg.Warn("audit: retention could not remove segment", "file", s.name, "err", err)
			return
		}
		if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
			l.lg.Warn("audit: retention sync dir", "err", err)
		}
		l.mu.Lock()
		l.segs = l.segs[1:]
		n := len(l.segs)
		l.mu.Unlock()
		l.m.segments.Set(float64(n))
		l.lg.Info("audit: retention removed segment", "file", s.name, "last_seq", s.lastSeq, "last_hash", s.lastHash)
		p := &pending{done: make(chan result, 1)}
		r := Record{NodeID: l.cfg.NodeID, Action: ActionRetention, Reason: "segment older than retention removed",
			Metadata: map[string]string{"file": s.name, "first_seq": strconv.FormatUint(s.firstSeq, 10),
				"last_seq": strconv.FormatUint(s.lastSeq, 10), "last_hash": s.lastHash}}
		p.body = r.appendBody(nil)
		l.commit([]*pending{p})
	}
}

// Stats is a snapshot of the log's state.
type Stats struct {
	LastSeq        uint64 `json:"last_seq"`
	LastHash       string `json:"last_hash"`
	Segments       int    `json:"segments"`
	Appended       uint64 `json:"appended"`
	Dropped        uint64 `json:"dropped"`
	QueueDepth     int    `json:"queue_depth"`
	Writable       bool   `json:"writable"`
	Err            string `json:"error,omitempty"`
	TruncatedBytes int64  `json:"truncated_bytes"`
	ShippedSeq     uint64 `json:"shipped_seq"`
	ShipErr        string `json:"ship_error,omitempty"`
}

// Stats returns the current state.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	st := Stats{LastSeq: l.lastSeq, LastHash: l.lastHash, Segments: len(l.segs), TruncatedBytes: l.truncated, Writable: l.state == nil}
	if l.state != nil {
		st.Err = l.state.Error()
	}
	l.mu.RUnlock()
	st.Appended = l.appended.Load()
	st.Dropped = l.dropped.Load()
	st.QueueDepth = len(l.queue)
	if l.shipper != nil {
		st.ShippedSeq, st.ShipErr = l.shipper.status()
	}
	return st
}

// Close stops accepting records, writes everything queued, and stops the
// writer and the shipper.
func (l *Log) Close() error {
	l.sendMu.Lock()
	if l.closed {
		l.sendMu.Unlock()
		return nil
	}
	l.closed = true
	l.sendMu.Unlock()
	close(l.quit)
	<-l.done
	if l.shipper != nil {
		l.shipper.stop()
	}
	l.m.unregister()
	return nil
}

// snapshot returns a copy of the segment index.
func (l *Log) snapshot() []segment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]segment(nil), l.segs...)
}

// waitCommit returns a channel closed at the next commit, and the last seq.
func (l *Log) waitCommit() (<-chan struct{}, uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.commitCh, l.lastSeq
}

var _ io.Closer = (*Log)(nil)
