package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// manualClock is a settable clock.
type manualClock struct{ t time.Time }

func (c *manualClock) Now() time.Time { return c.t }

func seqs(rs []Record) []uint64 {
	out := []uint64{}
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

// queryLog: 30 records, one per second from T0, peers a/b/c in turn, every
// 4th a deny, in segments of 4 KiB.
func queryLog(t *testing.T) (*Log, time.Time) {
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clk := &manualClock{t: t0}
	l := openTest(t, t.TempDir(), func(c *Config) { c.SegmentMaxBytes = 4096; c.Clock = clk })
	for i := range 30 {
		clk.t = t0.Add(time.Duration(i) * time.Second)
		r := rec(string(rune('a'+i%3)), i)
		if i%4 == 3 {
			r.Decision = DecisionDeny
		}
		if i == 10 {
			r.Action = ActionGrantRevoke
		}
		if _, err := l.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	return l, t0
}

func TestQueryFiltersAndPaging(t *testing.T) {
	l, t0 := queryLog(t)
	if l.Stats().Segments < 3 {
		t.Fatalf("want several segments, got %d", l.Stats().Segments)
	}
	for _, tc := range []struct {
		name string
		q    Query
		want []uint64
	}{
		{"peer a newest", Query{Peer: "a"}, []uint64{28, 25, 22, 19, 16, 13, 10, 7, 4, 1}},
		{"peer b oldest deny", Query{Peer: "b", Decision: DecisionDeny, Order: OldestFirst}, []uint64{8, 20}},
		{"action", Query{Action: ActionGrantRevoke}, []uint64{11}},
		{"window", Query{Since: t0.Add(5 * time.Second), Until: t0.Add(9 * time.Second), Order: OldestFirst}, []uint64{6, 7, 8, 9}},
		{"window newest peer", Query{Peer: "c", Since: t0.Add(5 * time.Second), Until: t0.Add(15 * time.Second)}, []uint64{15, 12, 9, 6}},
		{"no match", Query{Peer: "zzz"}, []uint64{}},
		{"empty window", Query{Since: t0.Add(time.Hour)}, []uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.Query(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, seqs(p.Records)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if p.NextCursor != "" {
				t.Fatalf("unexpected cursor %q", p.NextCursor)
			}
		})
	}
	for _, order := range []Order{NewestFirst, OldestFirst} {
		var got []uint64
		q := Query{Order: order, Limit: 7}
		pages := 0
		for {
			p, err := l.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			got = append(got, seqs(p.Records)...)
			if p.NextCursor == "" {
				break
			}
			q.Cursor = p.NextCursor
		}
		want := []uint64{}
		for i := uint64(1); i <= 30; i++ {
			want = append(want, i)
		}
		if order == NewestFirst {
			for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
				want[i], want[j] = want[j], want[i]
			}
		}
		if diff := cmp.Diff(want, got); diff != "" || pages != 5 {
			t.Fatalf("%s paging, %d pages (-want +got):\n%s", order, pages, diff)
		}
	}
	for _, bad := range []Query{{Order: "sideways"}, {Limit: MaxQueryLimit + 1}, {Decision: "maybe"}, {Cursor: "x"},
		{Since: t0.Add(time.Hour), Until: t0}} {
		if _, err := l.Query(bad); err == nil {
			t.Errorf("Query(%+v) accepted", bad)
		}
	}
}

func TestExport(t *testing.T) {
	l, t0 := queryLog(t)
	var buf bytes.Buffer
	m, err := l.Export(&buf, ExportRequest{Peer: "b", Since: t0.Add(3 * time.Second), Until: t0.Add(20 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.Bytes != int64(buf.Len()) {
		t.Fatalf("manifest hash/bytes do not match the export: %+v", m)
	}
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), []byte{'\n'})
	var got []uint64
	for _, line := range lines {
		// Every line verifies on its own, as a receiving peer checks it.
		f, err := parseFacts(line)
		if err != nil {
			t.Fatalf("exported line does not verify: %v", err)
		}
		r, err := decodeRecord(line)
		if err != nil || r.FederationPeerID != "b" {
			t.Fatalf("exported record %+v, %v", r, err)
		}
		got = append(got, f.seq)
	}
	if diff := cmp.Diff([]uint64{5, 8, 11, 14, 17, 20}, got); diff != "" {
		t.Fatal(diff)
	}
	if m.Count != 6 || m.FirstSeq != 5 || m.LastSeq != 20 || m.Peer != "b" || m.NodeID != "node-1" || m.ChainHead.Seq != 30 ||
		m.FirstHash == "" || m.LastHash == "" || m.Format != ExportFormat {
		t.Fatalf("manifest %+v", m)
	}

	buf.Reset()
	m, err = l.Export(&buf, ExportRequest{Peer: "b", Since: t0.Add(time.Hour)})
	empty := sha256.Sum256(nil)
	if err != nil || buf.Len() != 0 || m.Count != 0 || m.SHA256 != hex.EncodeToString(empty[:]) || m.FirstHash != "" {
		t.Fatalf("empty export = %+v, %d bytes, %v", m, buf.Len(), err)
	}
	if _, err := l.Export(&buf, ExportRequest{}); err == nil {
		t.Fatal("export without peer accepted")
	}
}

func TestRetentionKeepsVerifiable(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clk := &manualClock{t: t0}
	dir := t.TempDir()
	l := openTest(t, dir, func(c *Config) { c.SegmentMaxBytes = 4096; c.Clock = clk; c.Retention = 72 * time.Hour })
	for i := range 40 {
		clk.t = t0.Add(time.Duration(i) * time.Hour)
		if _, err := l.Append(t.Context(), rec("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := l.Stats().Segments
	clk.t = t0.Add(100 * time.Hour) // cutoff: t0+28h
	l.housekeepNow()                // what the writer's ticker does
	st := l.Stats()
	if st.Segments >= before {
		t.Fatalf("retention removed nothing: %d segments", st.Segments)
	}
	v, err := l.Verify()
	if err != nil || !v.OK || v.FirstSeq <= 1 || v.AnchorHash == ZeroHash {
		t.Fatalf("after retention Verify = %+v, %v", v, err)
	}
	p, _ := l.Query(Query{Action: ActionRetention, Order: OldestFirst})
	if len(p.Records) == 0 || p.Records[0].Metadata["last_seq"] == "" {
		t.Fatalf("no audit.retention record: %+v", p)
	}
	// Everything older than 72h before "now" is gone, everything newer kept.
	all, _ := l.Query(Query{Order: OldestFirst, Limit: 1000})
	cutoff := clk.t.Add(-72 * time.Hour)
	names, _ := listSegments(OSFS{}, dir)
	first, _ := os.ReadFile(filepath.Join(dir, names[0]))
	h, err := decodeHeader(bytes.SplitN(first, []byte{'\n'}, 2)[0])
	if err != nil || h.PrevHash != v.AnchorHash {
		t.Fatalf("first kept segment header %+v, %v", h, err)
	}
	if all.Records[0].Seq != v.FirstSeq || all.Records[0].Time.Before(cutoff.Add(-4*time.Hour)) {
		t.Fatalf("kept records start at %d (verify says %d)", all.Records[0].Seq, v.FirstSeq)
	}
	l.Close()
	l2 := openTest(t, dir, nil)
	if st := l2.Stats(); !st.Writable {
		t.Fatalf("reopen after retention: %+v", st)
	}
}

func TestAgeRotation(t *testing.T) {
	clk := &manualClock{t: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	l := openTest(t, t.TempDir(), func(c *Config) { c.Clock = clk; c.SegmentMaxAge = time.Hour })
	if _, err := l.Append(t.Context(), rec("a", 1)); err != nil {
		t.Fatal(err)
	}
	l.housekeepNow()
	if n := l.Stats().Segments; n != 1 {
		t.Fatalf("rotated a young segment: %d segments", n)
	}
	clk.t = clk.t.Add(61 * time.Minute)
	l.housekeepNow()
	l.housekeepNow() // an empty new segment is not rotated again
	if n := l.Stats().Segments; n != 2 {
		t.Fatalf("after the max age: %d segments, want 2", n)
	}
	if s, err := l.Append(t.Context(), rec("a", 2)); err != nil || s != 2 {
		t.Fatalf("Append = %d, %v", s, err)
	}
	if v, _ := l.Verify(); !v.OK || v.Segments != 2 || v.LastSeq != 2 {
		t.Fatalf("Verify %+v", v)
	}
}
