package audit

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stepClock advances by one millisecond per reading: deterministic times.
type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { c.t = c.t.Add(time.Millisecond); return c.t }

// fillLog writes n records with small segments and closes the log.
func fillLog(t *testing.T, dir string, n int) {
	t.Helper()
	l := openTest(t, dir, func(c *Config) {
		c.SegmentMaxBytes = 4096
		c.Clock = &stepClock{t: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	})
	for i := range n {
		if _, err := l.Append(t.Context(), rec("peer-"+string(rune('a'+i%3)), i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
}

// byteOwner maps a byte of a segment to the seq it belongs to (a header
// byte belongs to the segment's first seq).
type span struct {
	start, end int // [start, end) including the newline
	seq        uint64
}

func segmentSpans(t *testing.T, path string) []span {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := parseSegName(filepath.Base(path))
	var out []span
	off := 0
	for i, line := range bytes.SplitAfter(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		seq := first
		if i > 0 {
			seq = first + uint64(i) - 1
		}
		out = append(out, span{off, off + len(line), seq})
		off += len(line)
	}
	return out
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	names, err := listSegments(OSFS{}, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestTamperDetected edits, deletes or swaps one byte at random places of
// every segment and checks that Verify names the seq owning that byte.
func TestTamperDetected(t *testing.T) {
	src := t.TempDir()
	fillLog(t, src, 60)
	names, _ := listSegments(OSFS{}, src)
	if len(names) < 4 {
		t.Fatalf("want several segments, got %d", len(names))
	}
	v, err := VerifyDir(src)
	if err != nil || !v.OK || v.Records != 60 {
		t.Fatalf("clean log: %+v, %v", v, err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	trials := 0
	for trials < 400 {
		name := names[rng.IntN(len(names))]
		spans := segmentSpans(t, filepath.Join(src, name))
		size := spans[len(spans)-1].end
		off := rng.IntN(size)
		var want uint64
		for _, s := range spans {
			if off >= s.start && off < s.end {
				want = s.seq
			}
		}
		dir := copyDir(t, src)
		path := filepath.Join(dir, name)
		data, _ := os.ReadFile(path)
		op := []string{"edit", "delete", "swap"}[rng.IntN(3)]
		switch op {
		case "edit":
			data[off] ^= byte(1 + rng.IntN(255))
		case "delete":
			data = append(data[:off], data[off+1:]...)
		case "swap":
			if off+1 >= len(data) || data[off] == data[off+1] {
				continue
			}
			data[off], data[off+1] = data[off+1], data[off]
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := VerifyDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if v.OK || v.BadSeq != want || v.File != name {
			t.Fatalf("%s of byte %d in %s (seq %d): Verify = %+v", op, off, name, want, v)
		}
		trials++
	}
}

func TestReorderAndDeleteLines(t *testing.T) {
	src := t.TempDir()
	fillLog(t, src, 30)
	names, _ := listSegments(OSFS{}, src)
	name := names[1]
	spans := segmentSpans(t, filepath.Join(src, name))
	for _, tc := range []struct {
		op   string
		want uint64
	}{{"swap-lines", spans[2].seq}, {"delete-line", spans[2].seq}, {"delete-segment", spans[0].seq}} {
		dir := copyDir(t, src)
		path := filepath.Join(dir, name)
		data, _ := os.ReadFile(path)
		a, b := data[spans[2].start:spans[2].end], data[spans[3].start:spans[3].end]
		switch tc.op {
		case "swap-lines":
			data = bytes.Join([][]byte{data[:spans[2].start], b, a, data[spans[3].end:]}, nil)
		case "delete-line":
			data = append(data[:spans[2].start:spans[2].start], data[spans[2].end:]...)
		case "delete-segment":
			data = nil
			os.Remove(path)
		}
		if data != nil {
			os.WriteFile(path, data, 0o600)
		}
		v, _ := VerifyDir(dir)
		if v.OK || v.BadSeq != tc.want {
			t.Errorf("%s: Verify = %+v, want bad seq %d", tc.op, v, tc.want)
		}
	}
}

func TestLiveVerifySeesTamper(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	for i := range 10 {
		if _, err := l.Append(t.Context(), rec("p", i)); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := listSegments(OSFS{}, dir)
	path := filepath.Join(dir, names[0])
	spans := segmentSpans(t, path)
	data, _ := os.ReadFile(path)
	i := spans[5].start + 40
	data[i] ^= 0x20
	os.WriteFile(path, data, 0o600)
	v, err := l.Verify()
	if err != nil || v.OK || v.BadSeq != spans[5].seq || v.Offset != int64(spans[5].start) {
		t.Fatalf("Verify = %+v, %v; want bad seq %d at offset %d", v, err, spans[5].seq, spans[5].start)
	}
}

func TestCorruptMiddleSegment(t *testing.T) {
	dir := t.TempDir()
	fillLog(t, dir, 60)
	names, _ := listSegments(OSFS{}, dir)
	bad := names[2]
	spans := segmentSpans(t, filepath.Join(dir, bad))
	data, _ := os.ReadFile(filepath.Join(dir, bad))
	data[spans[3].start+20] ^= 0x01
	os.WriteFile(filepath.Join(dir, bad), data, 0o600)
	badSeq := spans[3].seq

	l := openTest(t, dir, func(c *Config) { c.SegmentMaxBytes = 4096 })
	st := l.Stats()
	if st.Writable || !strings.Contains(st.Err, bad) || !strings.Contains(st.Err, "offset") {
		t.Fatalf("stats = %+v, want not writable naming %s", st, bad)
	}
	_, err := l.Append(t.Context(), rec("p", 1))
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrUnavailable) || ce.File != bad || ce.Offset != int64(spans[3].start) || ce.Seq != badSeq {
		t.Fatalf("Append = %v, want CorruptError at %s:%d seq %d", err, bad, spans[3].start, badSeq)
	}
	p, err := l.Query(Query{Order: OldestFirst, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != int(badSeq-1) || p.Records[len(p.Records)-1].Seq != badSeq-1 {
		t.Fatalf("query served %d records, want the %d before the corruption", len(p.Records), badSeq-1)
	}
	v, _ := l.Verify()
	if v.OK || v.BadSeq != badSeq || v.File != bad {
		t.Fatalf("Verify = %+v", v)
	}
}

func TestTornTailTruncated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tail    string
		torn    bool
		wantErr bool
	}{
		{"partial line", `{"seq":11,"time":"2026-11-26T00:00:00Z","node_id":"no`, true, false},
		{"nul tail", "\x00\x00\x00\x00\x00\x00\x00\x00\n\x00\x00", true, false},
		{"complete bad line", `{"seq":11,"garbage":true}` + "\n", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fillLog(t, dir, 10)
			names, _ := listSegments(OSFS{}, dir)
			path := filepath.Join(dir, names[len(names)-1])
			before, _ := os.ReadFile(path)
			os.WriteFile(path, append(append([]byte(nil), before...), tc.tail...), 0o600)
			l := openTest(t, dir, nil)
			st := l.Stats()
			if tc.wantErr {
				if st.Writable {
					t.Fatalf("tampered complete line accepted: %+v", st)
				}
				return
			}
			if !st.Writable || st.LastSeq != 10 || st.TruncatedBytes != int64(len(tc.tail)) {
				t.Fatalf("stats = %+v", st)
			}
			// Cut back to the last good line (followed only by preallocated zeros).
			if after, _ := os.ReadFile(path); !bytes.Equal(after[:len(before)], before) || !allZero(after[len(before):]) {
				t.Fatal("torn tail not cut back to the last good line")
			}
			if s, err := l.Append(t.Context(), rec("p", 11)); err != nil || s != 11 {
				t.Fatalf("Append = %d, %v", s, err)
			}
		})
	}
}

func TestTornHeaderRemoved(t *testing.T) {
	dir := t.TempDir()
	fillLog(t, dir, 5)
	os.WriteFile(filepath.Join(dir, segName(6)), []byte(`{"audit_segment":1,"node_`), 0o600)
	l := openTest(t, dir, nil)
	if st := l.Stats(); !st.Writable || st.LastSeq != 5 {
		t.Fatalf("stats %+v", st)
	}
	if s, err := l.Append(t.Context(), rec("p", 6)); err != nil || s != 6 {
		t.Fatalf("Append = %d, %v", s, err)
	}
	if v, _ := l.Verify(); !v.OK || v.LastSeq != 6 {
		t.Fatalf("Verify %+v", v)
	}
}

func TestGoldenSegmentFixture(t *testing.T) {
	// testdata/segment.jsonl was written by this package; if the canonical
	// encoding or the hash definition ever changes, old logs stop verifying.
	data, err := os.ReadFile("testdata/" + segName(1))
	if err != nil {
		t.Fatal(err)
	}
	res := scanSegment(bytes.NewReader(data), scanOpts{name: "fixture", nameSeq: 1, full: true, limit: -1})
	if res.bad != nil || res.count != 5 || res.lastSeq != 5 {
		t.Fatalf("fixture: %+v", res)
	}
}

func FuzzSegmentReader(f *testing.F) {
	if data, err := os.ReadFile("testdata/" + segName(1)); err == nil {
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(bytes.ReplaceAll(data, []byte(`"seq":2`), []byte(`"seq":3`)))
	}
	f.Add([]byte{})
	f.Add([]byte("\n\n\x00"))
	f.Add([]byte(`{"audit_segment":1}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var prev *lineFacts
		res := scanSegment(bytes.NewReader(data), scanOpts{name: "f", nameSeq: 1, full: true, findTorn: true, limit: -1,
			onRecord: func(line []byte, fc lineFacts, off int64) bool {
				r, err := decodeRecord(line)
				if err != nil {
					t.Fatalf("accepted a line that does not decode: %v", err)
				}
				if r.ComputeHash() != fc.hash || r.Hash != fc.hash || r.Seq != fc.seq || r.PrevHash != fc.prevHash {
					t.Fatalf("accepted line with inconsistent facts")
				}
				if !bytes.Equal(data[off:off+int64(len(line))], line) {
					t.Fatalf("offset %d does not point at the line", off)
				}
				if prev != nil && (fc.seq != prev.seq+1 || fc.prevHash != prev.hash) {
					t.Fatalf("accepted a broken chain")
				}
				prev = &fc
				return true
			}})
		if res.end > int64(len(data)) || res.end < 0 {
			t.Fatalf("end %d outside data of %d bytes", res.end, len(data))
		}
		if res.bad == nil && res.end != int64(len(data)) {
			t.Fatalf("no error but only %d of %d bytes consumed", res.end, len(data))
		}
		if res.bad != nil && (res.bad.Offset != res.end) {
			t.Fatalf("bad offset %d != end %d", res.bad.Offset, res.end)
		}
	})
}

func TestZeroTailOnlyInLastSegment(t *testing.T) {
	src := t.TempDir()
	fillLog(t, src, 30)
	names, _ := listSegments(OSFS{}, src)
	for i, name := range []string{names[len(names)-1], names[1]} {
		dir := copyDir(t, src)
		f, _ := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND, 0)
		f.Write(make([]byte, 5000))
		f.Close()
		v, err := VerifyDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if last := i == 0; v.OK != last {
			t.Fatalf("zeros after %s (last=%v): Verify = %+v", name, last, v)
		}
	}
}
