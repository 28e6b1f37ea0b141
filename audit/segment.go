package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

const (
	segPrefix = "audit-"
	segSuffix = ".jsonl"
	// maxLine bounds one line; records are bounded well below it.
	maxLine = 256 << 10
	// hashTailLen is len(`<64 hex>"}`).
	hashTailLen = 64 + 2
	// recTailLen is len(`,"prev_hash":"<64>","hash":"<64>"}`).
	recTailLen = len(`,"prev_hash":"`) + 64 + len(`","hash":"`) + 64 + 2
)

func segName(firstSeq uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, firstSeq, segSuffix) }

// parseSegName returns the first seq encoded in a segment file name.
func parseSegName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
		return 0, false
	}
	digits := name[len(segPrefix) : len(name)-len(segSuffix)]
	if len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// segHeader is the first line of every segment.
type segHeader struct {
	Version  int       `json:"audit_segment"`
	NodeID   string    `json:"node_id"`
	FirstSeq uint64    `json:"first_seq"`
	PrevHash string    `json:"prev_hash"`
	Created  time.Time `json:"created"`
	Hash     string    `json:"hash"`
}

// appendHeader appends the sealed header line.
func appendHeader(b []byte, h segHeader) ([]byte, string) {
	start := len(b)
	b = append(b, `{"audit_segment":`...)
	b = strconv.AppendInt(b, int64(h.Version), 10)
	b = append(b, `,"node_id":`...)
	b = appendString(b, h.NodeID)
	b = append(b, `,"first_seq":`...)
	b = strconv.AppendUint(b, h.FirstSeq, 10)
	b = append(b, `,"prev_hash":`...)
	b = appendString(b, h.PrevHash)
	b = append(b, `,"created":"`...)
	b = h.Created.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","hash":"`...)
	return sealLine(b, start)
}

// checkSeal verifies that line (no newline) ends with `"hash":"<hex>"}` and
// that hex is the SHA-256 of the line with the hash value removed.
func checkSeal(line []byte) bool {
	n := len(line)
	if n < hashTailLen+len(`"hash":"`) || line[n-1] != '}' || line[n-2] != '"' ||
		!bytes.HasSuffix(line[:n-hashTailLen], []byte(`"hash":"`)) {
		return false
	}
	h := sha256.New()
	h.Write(line[:n-hashTailLen])
	h.Write([]byte(`"}`))
	var sum [sha256.Size]byte
	var hx [64]byte
	hex.Encode(hx[:], h.Sum(sum[:0]))
	return bytes.Equal(hx[:], line[n-hashTailLen:n-2])
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lineFacts are the chain facts of one record line, read without a full
// JSON decode.
type lineFacts struct {
	seq      uint64
	time     time.Time
	prevHash string
	hash     string
}

// parseFacts checks a record line's structure and seal and extracts its
// chain facts.
func parseFacts(line []byte) (lineFacts, error) {
	var f lineFacts
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !ok {
		return f, errors.New(`line does not start with {"seq"`)
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > 20 || (i > 1 && rest[0] == '0') {
		return f, errors.New("bad seq")
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return f, errors.New("bad seq")
	}
	f.seq = seq
	rest, ok = bytes.CutPrefix(rest[i:], []byte(`,"time":"`))
	if !ok {
		return f, errors.New("missing time")
	}
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 40 {
		return f, errors.New("bad time")
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	if err != nil || t.Location() != time.UTC {
		return f, errors.New("bad time")
	}
	f.time = t
	n := len(line)
	if n < recTailLen+len(`{"seq":0,"time":"`) {
		return f, errors.New("line too short")
	}
	tail := line[n-recTailLen:]
	if !bytes.HasPrefix(tail, []byte(`,"prev_hash":"`)) || !bytes.Equal(tail[14+64:14+64+10], []byte(`","hash":"`)) {
		return f, errors.New("bad hash fields")
	}
	ph, hh := tail[14:14+64], tail[14+64+10:14+64+10+64]
	if !isLowerHex(ph) || !isLowerHex(hh) {
		return f, errors.New("bad hash fields")
	}
	if !checkSeal(line) {
		return f, errors.New("hash mismatch")
	}
	f.prevHash, f.hash = string(ph), string(hh)
	return f, nil
}

// decodeRecord decodes a line with encoding/json and checks that it is in
// canonical form (re-encoding gives the same bytes).
func decodeRecord(line []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("decode record: %w", err)
	}
	if len(r.Metadata) == 0 && r.Metadata != nil {
		return r, errors.New("record is not canonical")
	}
	again, _ := r.MarshalJSON()
	if !bytes.Equal(again, line) {
		return r, errors.New("record is not canonical")
	}
	return r, nil
}

func decodeHeader(line []byte) (segHeader, error) {
	var h segHeader
	if !bytes.HasPrefix(line, []byte(`{"audit_segment":`)) {
		return h, errors.New("missing segment header")
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("decode segment header: %w", err)
	}
	again, _ := appendHeader(nil, h)
	if !bytes.Equal(again[:len(again)-1], line) {
		return h, errors.New("segment header is not canonical or its hash does not match")
	}
	if h.Version != 1 {
		return h, fmt.Errorf("unsupported segment version %d", h.Version)
	}
	if len(h.PrevHash) != 64 || !isLowerHex([]byte(h.PrevHash)) {
		return h, errors.New("bad segment prev_hash")
	}
	return h, nil
}

// scanOpts controls scanSegment.
type scanOpts struct {
	name     string // file name, for errors
	nameSeq  uint64 // first seq from the file name
	wantPrev string // if set, the header's prev_hash must equal it
	full     bool   // decode every record and require canonical form
	limit    int64  // read at most this many bytes (<0: to EOF)
	findTorn bool   // classify a bad tail as torn (only for the last segment)
	zeroTail bool   // a tail of zeros after a complete line is free space (last segment)
	onRecord func(line []byte, f lineFacts, off int64) bool
}

// scanResult describes one scanned segment.
type scanResult struct {
	hdr       segHeader
	hdrOK     bool
	count     int
	lastSeq   uint64 // nameSeq-1 when empty
	lastHash  string // header prev_hash when empty
	firstTime time.Time
	lastTime  time.Time
	end       int64 // offset just after the last good line
	bad       *CorruptError
	torn      bool  // bad region is a torn tail: safe to truncate at end
	zeroTail  int64 // bytes of preallocated zeros after end
	size      int64 // bytes read
	stopped   bool  // onRecord returned false
}

// scanSegment reads one segment, verifying the header, every seal and the
// chain inside it. It stops at the first bad line.
func scanSegment(r io.Reader, o scanOpts) scanResult {
	if o.limit >= 0 {
		r = io.LimitReader(r, o.limit)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	res := scanResult{lastSeq: o.nameSeq - 1}
	var off int64
	fail := func(seq uint64, reason string, complete bool, line []byte) {
		res.bad = &CorruptError{File: o.name, Offset: off, Seq: seq, Reason: reason}
		if o.findTorn {
			var rest int64
			res.torn, rest = isTornTail(br, complete, line)
			res.size += rest
		}
	}
	readLine := func() ([]byte, bool, error) {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Accumulate long lines up to maxLine.
			buf := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull && len(buf) <= maxLine {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
			if err == bufio.ErrBufferFull {
				return line, false, errors.New("line too long")
			}
		}
		if err == io.EOF {
			if len(line) == 0 {
				return nil, false, io.EOF
			}
			return line, false, nil
		}
		if err != nil {
			return line, false, err
		}
		return line[:len(line)-1], true, nil
	}
	line, complete, err := readLine()
	res.size += int64(len(line))
	if complete {
		res.size++
	}
	if err == io.EOF {
		fail(o.nameSeq, "empty segment (no header)", false, nil)
		if o.findTorn {
			res.torn = true
		}
		return res
	}
	if err != nil || !complete {
		reason := "incomplete segment header"
		if err != nil {
			reason = err.Error()
		}
		fail(o.nameSeq, reason, complete, line)
		return res
	}
	h, herr := decodeHeader(line)
	if herr == nil && h.FirstSeq != o.nameSeq {
		herr = fmt.Errorf("header first_seq %d does not match file name", h.FirstSeq)
	}
	if herr == nil && o.wantPrev != "" && h.PrevHash != o.wantPrev {
		herr = fmt.Errorf("header prev_hash %.16s… does not chain from previous segment's last hash %.16s…", h.PrevHash, o.wantPrev)
	}
	if herr != nil {
		fail(o.nameSeq, herr.Error(), complete, line)
		return res
	}
	res.hdr, res.hdrOK = h, true
	res.lastHash = h.PrevHash
	off += int64(len(line)) + 1
	res.end = off
	want := h.FirstSeq
	for {
		if o.zeroTail {
			if b, _ := br.Peek(1); len(b) == 1 && b[0] == 0 {
				rest, _ := io.ReadAll(br)
				res.size += int64(len(rest))
				if allZero(rest) {
					res.zeroTail = int64(len(rest))
					return res
				}
				res.bad = &CorruptError{File: o.name, Offset: off, Seq: want, Reason: "NUL bytes before data"}
				res.torn = o.findTorn && !hasSealedLine(rest)
				return res
			}
		}
		line, complete, err := readLine()
		if err == io.EOF {
			return res
		}
		res.size += int64(len(line))
		if complete {
			res.size++
		}
		if err != nil {
			fail(want, err.Error(), complete, line)
			return res
		}
		if !complete {
			fail(want, "incomplete last line", false, line)
			return res
		}
		f, ferr := parseFacts(line)
		switch {
		case ferr != nil:
		case f.seq != want:
			ferr = fmt.Errorf("seq %d where %d expected", f.seq, want)
		case f.prevHash != res.lastHash:
			ferr = errors.New("prev_hash does not match the previous record's hash")
		case res.count > 0 && f.time.Before(res.lastTime):
			ferr = errors.New("time goes backwards")
		}
		if ferr == nil && o.full {
			if _, derr := decodeRecord(line); derr != nil {
				ferr = derr
			}
		}
		if ferr != nil {
			fail(want, ferr.Error(), complete, line)
			return res
		}
		if res.count == 0 {
			res.firstTime = f.time
		}
		res.count++
		res.lastSeq, res.lastHash, res.lastTime = f.seq, f.hash, f.time
		want++
		if o.onRecord != nil && !o.onRecord(line, f, off) {
			res.stopped = true
			return res
		}
		off += int64(len(line)) + 1
		res.end = off
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func hasSealedLine(b []byte) bool {
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if len(l) > 0 && checkSeal(l) {
			return true
		}
	}
	return false
}

// isTornTail reports whether the bad line and everything after it look like
// an interrupted write rather than tampering: the bad line is the last and
// incomplete, or the rest holds NUL bytes (a power loss leaves zero-filled
// pages) and no further line carries a valid seal.
func isTornTail(br *bufio.Reader, complete bool, bad []byte) (bool, int64) {
	rest, _ := io.ReadAll(br)
	n := int64(len(rest))
	if !complete && len(rest) == 0 {
		return true, n
	}
	if bytes.IndexByte(bad, 0) < 0 && bytes.IndexByte(rest, 0) < 0 {
		return false, n
	}
	return !hasSealedLine(rest), n
}
