package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Order of query results.
type Order string

// Orders.
const (
	NewestFirst Order = "newest"
	OldestFirst Order = "oldest"
)

// MaxQueryLimit bounds one page.
const MaxQueryLimit = 5000

// Query selects records. Empty fields match everything; Since is inclusive,
// Until exclusive.
type Query struct {
	Peer     string
	Action   string
	Decision string
	Since    time.Time
	Until    time.Time
	Order    Order  // default NewestFirst
	Limit    int    // default 100, at most MaxQueryLimit
	Cursor   string // NextCursor of the previous page
}

// Page is one page of results.
type Page struct {
	Records    []Record `json:"records"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

func (q *Query) normalize() error {
	if q.Order == "" {
		q.Order = NewestFirst
	}
	if q.Order != NewestFirst && q.Order != OldestFirst {
		return fmt.Errorf("%w: order %q is neither newest nor oldest", ErrBadRequest, q.Order)
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 0 || q.Limit > MaxQueryLimit {
		return fmt.Errorf("%w: limit %d outside 1..%d", ErrBadRequest, q.Limit, MaxQueryLimit)
	}
	if q.Decision != "" && q.Decision != DecisionAllow && q.Decision != DecisionDeny {
		return fmt.Errorf("%w: decision %q is neither allow nor deny", ErrBadRequest, q.Decision)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return fmt.Errorf("%w: until is not after since", ErrBadRequest)
	}
	return nil
}

// matcher filters lines cheaply before decoding them.
type matcher struct {
	q                   Query
	peerB, actB, decB   []byte
	afterSeq, beforeSeq uint64 // exclusive bounds; beforeSeq 0 = none
}

func newMatcher(q Query) *matcher {
	m := &matcher{q: q}
	if q.Peer != "" {
		m.peerB = appendString([]byte(`"federation_peer_id":`), q.Peer)
	}
	if q.Action != "" {
		m.actB = appendString([]byte(`"action":`), q.Action)
	}
	if q.Decision != "" {
		m.decB = appendString([]byte(`"decision":`), q.Decision)
	}
	return m
}

func (m *matcher) inWindow(t time.Time) bool {
	return (m.q.Since.IsZero() || !t.Before(m.q.Since)) && (m.q.Until.IsZero() || t.Before(m.q.Until))
}

// match decodes a line that passes the filters.
func (m *matcher) match(line []byte, f lineFacts) (Record, bool) {
	if f.seq <= m.afterSeq || (m.beforeSeq != 0 && f.seq >= m.beforeSeq) || !m.inWindow(f.time) {
		return Record{}, false
	}
	for _, b := range [][]byte{m.peerB, m.actB, m.decB} {
		if b != nil && !bytes.Contains(line, b) {
			return Record{}, false
		}
	}
	r, err := decodeRecord(line)
	if err != nil {
		return Record{}, false
	}
	if (m.q.Peer != "" && r.FederationPeerID != m.q.Peer) || (m.q.Action != "" && r.Action != m.q.Action) ||
		(m.q.Decision != "" && r.Decision != m.q.Decision) {
		return Record{}, false
	}
	return r, true
}

// segOverlaps reports whether a segment can hold matches.
func (m *matcher) segOverlaps(s segment) bool {
	if s.empty() || s.lastSeq <= m.afterSeq || (m.beforeSeq != 0 && s.firstSeq >= m.beforeSeq) {
		return false
	}
	if !m.q.Since.IsZero() && s.lastTime.Before(m.q.Since) {
		return false
	}
	if !m.q.Until.IsZero() && !s.firstTime.Before(m.q.Until) {
		return false
	}
	return true
}

// scanIndexed reads one indexed segment up to its durable size.
func (l *Log) scanIndexed(s segment, fn func(line []byte, f lineFacts) bool) error {
	res, err := l.scanFile(s.name, scanOpts{name: s.name, nameSeq: s.firstSeq, limit: s.size,
		onRecord: func(line []byte, f lineFacts, _ int64) bool { return fn(line, f) }})
	if err != nil {
		return err
	}
	if res.bad != nil {
		return res.bad
	}
	return nil
}

// Query returns one page of records.
func (l *Log) Query(q Query) (Page, error) {
	if err := q.normalize(); err != nil {
		return Page{}, err
	}
	m := newMatcher(q)
	if q.Cursor != "" {
		c, err := strconv.ParseUint(q.Cursor, 10, 64)
		if err != nil {
			return Page{}, fmt.Errorf("%w: bad cursor", ErrBadRequest)
		}
		if q.Order == OldestFirst {
			m.afterSeq = c
		} else {
			m.beforeSeq = c
			if c == 0 {
				return Page{Records: []Record{}}, nil
			}
		}
	}
	segs := l.snapshot()
	want := q.Limit + 1
	var out []Record
	if q.Order == OldestFirst {
		for _, s := range segs {
			if len(out) >= want {
				break
			}
			if !m.segOverlaps(s) {
				continue
			}
			err := l.scanIndexed(s, func(line []byte, f lineFacts) bool {
				if !m.q.Until.IsZero() && !f.time.Before(m.q.Until) {
					return false
				}
				if r, ok := m.match(line, f); ok {
					out = append(out, r)
				}
				return len(out) < want
			})
			if err != nil {
				return Page{}, err
			}
		}
	} else {
		for i := len(segs) - 1; i >= 0 && len(out) < want; i-- {
			s := segs[i]
			if !m.segOverlaps(s) {
				continue
			}
			// Keep the newest `need` matches of this segment in a ring.
			need := want - len(out)
			ring := make([]Record, 0, min(need, 1024))
			head := 0
			err := l.scanIndexed(s, func(line []byte, f lineFacts) bool {
				if m.beforeSeq != 0 && f.seq >= m.beforeSeq {
					return false
				}
				if r, ok := m.match(line, f); ok {
					if len(ring) < need {
						ring = append(ring, r)
					} else {
						ring[head] = r
						head = (head + 1) % need
					}
				}
				return true
			})
			if err != nil {
				return Page{}, err
			}
			for j := len(ring) - 1; j >= 0; j-- {
				out = append(out, ring[(head+j)%len(ring)])
			}
		}
	}
	p := Page{Records: out}
	if len(out) > q.Limit {
		p.Records = out[:q.Limit]
		p.NextCursor = strconv.FormatUint(out[q.Limit-1].Seq, 10)
	}
	if p.Records == nil {
		p.Records = []Record{}
	}
	return p, nil
}

// ExportRequest selects the records of one peer in a window.
type ExportRequest struct {
	Peer  string    // required
	Since time.Time // inclusive
	Until time.Time // exclusive; zero = now
}

// ChainPoint is a (seq, hash) position in the chain.
type ChainPoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Manifest describes an export so the receiving peer can check it: the
// SHA-256 of the JSON Lines bytes, the count, and the first and last records.
// Each line verifies on its own (see the package doc); records of one peer
// are not contiguous in the chain, so ChainHead anchors the whole log at
// generation time.
type Manifest struct {
	Format      string     `json:"format"`
	NodeID      string     `json:"node_id"`
	Peer        string     `json:"federation_peer_id"`
	Since       time.Time  `json:"since"`
	Until       time.Time  `json:"until"`
	GeneratedAt time.Time  `json:"generated_at"`
	Count       int        `json:"count"`
	SHA256      string     `json:"sha256"`
	Bytes       int64      `json:"bytes"`
	FirstSeq    uint64     `json:"first_seq"`
	LastSeq     uint64     `json:"last_seq"`
	FirstHash   string     `json:"first_hash"`
	LastHash    string     `json:"last_hash"`
	ChainHead   ChainPoint `json:"chain_head"`
}

// ExportFormat names the export format in manifests.
const ExportFormat = "fedgate-audit-export/1"

// Export writes the peer's records in the window to w as JSON Lines (the
// exact stored lines) and returns the manifest. An empty window gives an
// empty, valid export (count 0, SHA-256 of no bytes).
func (l *Log) Export(w io.Writer, req ExportRequest) (Manifest, error) {
	now := l.cfg.Clock.Now().UTC()
	if req.Peer == "" {
		return Manifest{}, fmt.Errorf("%w: export needs a peer", ErrBadRequest)
	}
	if req.Until.IsZero() {
		req.Until = now.Add(time.Nanosecond)
		if !req.Since.Before(req.Until) {
			req.Until = req.Since.Add(time.Nanosecond) // a future window: empty
		}
	}
	if !req.Since.IsZero() && !req.Until.After(req.Since) {
		return Manifest{}, fmt.Errorf("%w: until is not after since", ErrBadRequest)
	}
	_, headSeq := l.waitCommit()
	l.mu.RLock()
	head := ChainPoint{Seq: headSeq, Hash: l.lastHash}
	l.mu.RUnlock()
	man := Manifest{Format: ExportFormat, NodeID: l.cfg.NodeID, Peer: req.Peer, Since: req.Since.UTC(), Until: req.Until.UTC(),
		GeneratedAt: now, ChainHead: head}
	m := newMatcher(Query{Peer: req.Peer, Since: req.Since, Until: req.Until})
	m.beforeSeq = head.Seq + 1
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var werr error
	for _, s := range l.snapshot() {
		if !m.segOverlaps(s) {
			continue
		}
		err := l.scanIndexed(s, func(line []byte, f lineFacts) bool {
			if f.seq > head.Seq {
				return false
			}
			r, ok := m.match(line, f)
			if !ok {
				return true
			}
			if _, werr = mw.Write(line); werr == nil {
				_, werr = mw.Write([]byte{'\n'})
			}
			if werr != nil {
				return false
			}
			if man.Count == 0 {
				man.FirstSeq, man.FirstHash = r.Seq, r.Hash
			}
			man.Count++
			man.Bytes += int64(len(line)) + 1
			man.LastSeq, man.LastHash = r.Seq, r.Hash
			return true
		})
		if werr != nil {
			return Manifest{}, fmt.Errorf("audit: export write: %w", werr)
		}
		if err != nil {
			return Manifest{}, err
		}
	}
	man.SHA256 = hex.EncodeToString(h.Sum(nil))
	return man, nil
}

// VerifyResult is the outcome of a verification. When OK is false, BadSeq,
// File and Offset name the first record that cannot be trusted.
type VerifyResult struct {
	OK         bool   `json:"ok"`
	Segments   int    `json:"segments"`
	Records    int    `json:"records"`
	FirstSeq   uint64 `json:"first_seq"`
	LastSeq    uint64 `json:"last_seq"`
	AnchorHash string `json:"anchor_hash"` // prev_hash of the oldest kept segment
	LastHash   string `json:"last_hash"`
	BadSeq     uint64 `json:"bad_seq,omitempty"`
	File       string `json:"file,omitempty"`
	Offset     int64  `json:"offset,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Verify re-reads every segment from disk and checks headers, seals, the
// chain across segments and canonical encoding. The active segment is read
// up to its durable size.
func (l *Log) Verify() (VerifyResult, error) {
	l.mu.RLock()
	var activeName string
	var activeSize int64 = -1
	if n := len(l.segs); n > 0 && (l.state == nil || !errors.Is(l.state, ErrCorrupt)) {
		activeName, activeSize = l.segs[n-1].name, l.segs[n-1].size
	}
	l.mu.RUnlock()
	return verifyDir(l.fs, l.cfg.Dir, activeName, activeSize)
}

// VerifyDir verifies the segments in dir strictly, without the log open:
// an incomplete last line is reported, not truncated.
func VerifyDir(dir string) (VerifyResult, error) {
	return verifyDir(OSFS{}, dir, "", -1)
}

func verifyDir(fs FS, dir, activeName string, activeSize int64) (VerifyResult, error) {
	names, err := listSegments(fs, dir)
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{OK: true, AnchorHash: ZeroHash, LastHash: ZeroHash}
	bad := func(c *CorruptError) (VerifyResult, error) {
		res.OK, res.BadSeq, res.File, res.Offset, res.Error = false, c.Seq, c.File, c.Offset, c.Error()
		return res, nil
	}
	var prevLast uint64
	for i, name := range names {
		seq, _ := parseSegName(name)
		// Only the last segment may end in preallocated zeros.
		o := scanOpts{name: name, nameSeq: seq, full: true, limit: -1, zeroTail: i == len(names)-1}
		if i > 0 {
			if seq != prevLast+1 {
				return bad(&CorruptError{File: name, Seq: prevLast + 1, Reason: fmt.Sprintf("segment starts at seq %d, previous segment ends at %d", seq, prevLast)})
			}
			o.wantPrev = res.LastHash
		}
		if name == activeName {
			o.limit = activeSize
		}
		f, err := fs.OpenFile(filepath.Join(dir, name), os.O_RDONLY, 0)
		if err != nil {
			return res, fmt.Errorf("audit: open segment %s: %w", name, err)
		}
		sr := scanSegment(f, o)
		f.Close()
		if name == activeName && sr.bad == nil && sr.end < activeSize {
			sr.bad = &CorruptError{File: name, Offset: sr.end, Seq: sr.lastSeq + 1, Reason: "segment is shorter than its durable size"}
		}
		if sr.bad != nil {
			if i == 0 && sr.hdrOK {
				res.AnchorHash = sr.hdr.PrevHash
			}
			res.Records += sr.count
			return bad(sr.bad)
		}
		if i == 0 {
			res.AnchorHash = sr.hdr.PrevHash
			res.FirstSeq = sr.hdr.FirstSeq
		}
		res.Segments++
		res.Records += sr.count
		res.LastSeq, res.LastHash = sr.lastSeq, sr.lastHash
		prevLast = sr.lastSeq
	}
	if res.Records == 0 {
		res.FirstSeq = 0
	}
	return res, nil
}
