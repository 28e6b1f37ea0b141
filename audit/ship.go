package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FleetEventsPath is where the platform takes agent events.
const FleetEventsPath = "/api/v1/system/node_api/fleet/events"

// shipCursorFile holds the last shipped seq in Config.Dir.
const shipCursorFile = "ship.cursor"

// FleetEvent is one event as the platform's node API takes it.
type FleetEvent struct {
	Kind          string `json:"kind"`
	Severity      string `json:"severity"`
	Payload       Record `json:"payload"`
	CorrelationID string `json:"correlation_id"`
}

// FleetEventBatch is the body of one POST.
type FleetEventBatch struct {
	Events []FleetEvent `json:"events"`
}

// EventFor maps a record to its FleetEvent: kind "federation.audit.<action>",
// severity high for audit.dropped and revocations, medium for denials, low
// otherwise; the correlation id falls back to "audit:<node>:<seq>".
func EventFor(r Record) FleetEvent {
	sev := "low"
	switch {
	case r.Action == ActionDropped || r.Action == ActionCertRevoke:
		sev = "high"
	case r.Decision == DecisionDeny || r.Action == ActionGrantRevoke:
		sev = "medium"
	}
	cid := r.CorrelationID
	if cid == "" {
		cid = "audit:" + r.NodeID + ":" + strconv.FormatUint(r.Seq, 10)
	}
	return FleetEvent{Kind: "federation.audit." + r.Action, Severity: sev, Payload: r, CorrelationID: cid}
}

type shipper struct {
	l     *Log
	cfg   *ShipConfig
	url   string
	token string
	wakeC chan struct{}
	quit  chan struct{}
	done  chan struct{}
	ctx   context.Context
	stopF context.CancelFunc

	mu      sync.Mutex
	shipped uint64
	lastErr string
}

func newShipper(l *Log, cfg *ShipConfig) (*shipper, error) {
	s := &shipper{l: l, cfg: cfg, url: strings.TrimSuffix(cfg.PlatformURL, "/") + FleetEventsPath,
		wakeC: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if cfg.TokenFile != "" {
		fi, err := os.Stat(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("audit: ship token file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("audit: ship token file %s has mode %v, want 0600 or tighter", cfg.TokenFile, fi.Mode().Perm())
		}
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("audit: ship token file: %w", err)
		}
		s.token = strings.TrimSpace(string(b))
	}
	c, err := readCursor(l.fs, filepath.Join(l.cfg.Dir, shipCursorFile))
	if err != nil {
		return nil, err
	}
	s.shipped = c
	l.m.shipped.Set(float64(c))
	s.ctx, s.stopF = context.WithCancel(context.Background())
	return s, nil
}

func readCursor(fs FS, path string) (uint64, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit: read ship cursor: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, fmt.Errorf("audit: read ship cursor: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("audit: ship cursor %s is not a number", path)
	}
	return n, nil
}

// writeCursor replaces the cursor file atomically and durably.
func writeCursor(fs FS, dir string, seq uint64) error {
	tmp := filepath.Join(dir, shipCursorFile+".tmp")
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(strconv.FormatUint(seq, 10)+"\n"), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, filepath.Join(dir, shipCursorFile))
	}
	if err == nil {
		err = fs.SyncDir(dir)
	}
	return err
}

func (s *shipper) wake() {
	select {
	case s.wakeC <- struct{}{}:
	default:
	}
}

func (s *shipper) stop() {
	s.stopF()
	close(s.quit)
	<-s.done
}

func (s *shipper) status() (uint64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shipped, s.lastErr
}

func (s *shipper) run() {
	defer close(s.done)
	backoff := time.Duration(0)
	for {
		wait := s.cfg.Interval
		more, err := s.shipOnce()
		s.mu.Lock()
		if err != nil {
			s.lastErr = err.Error()
		} else {
			s.lastErr = ""
		}
		s.mu.Unlock()
		switch {
		case err != nil:
			s.l.m.shipErrors.Inc()
			backoff = min(max(backoff*2, s.cfg.MinBackoff), s.cfg.MaxBackoff)
			wait = backoff/2 + rand.N(backoff/2+1)
			s.l.lg.Warn("audit: shipping failed", "err", err, "retry_in", wait)
		case more:
			backoff = 0
			continue
		default:
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-s.wakeC:
			if err != nil {
				// Keep the backoff: wait for the timer.
				select {
				case <-s.quit:
					t.Stop()
					return
				case <-t.C:
				}
			}
		case <-t.C:
		}
		t.Stop()
	}
}

// shipOnce posts the next batch. more reports a full batch (ship again now).
func (s *shipper) shipOnce() (more bool, err error) {
	s.mu.Lock()
	cur := s.shipped
	s.mu.Unlock()
	page, err := s.l.Query(Query{Order: OldestFirst, Cursor: strconv.FormatUint(cur, 10), Limit: min(s.cfg.BatchSize, MaxQueryLimit)})
	if err != nil {
		return false, fmt.Errorf("read records after %d: %w", cur, err)
	}
	if len(page.Records) == 0 {
		return false, nil
	}
	batch := FleetEventBatch{Events: make([]FleetEvent, len(page.Records))}
	for i, r := range page.Records {
		batch.Events[i] = EventFor(r)
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return false, fmt.Errorf("post events: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return false, fmt.Errorf("post events: platform answered %s", resp.Status)
	}
	last := page.Records[len(page.Records)-1].Seq
	if err := writeCursor(s.l.fs, s.l.cfg.Dir, last); err != nil {
		return false, fmt.Errorf("persist ship cursor: %w", err)
	}
	s.mu.Lock()
	s.shipped = last
	s.mu.Unlock()
	s.l.m.shipped.Set(float64(last))
	return page.NextCursor != "", nil
}
