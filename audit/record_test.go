package audit

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// plain has Record's fields without its MarshalJSON method, so
// encoding/json encodes it by reflection.
type plain Record

func fullRecord() Record {
	return Record{
		Seq: 42, Time: time.Date(2026, 11, 26, 3, 4, 5, 123456789, time.UTC), NodeID: "node-1",
		Action: ActionProxyRequest, FederationPeerID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		RemoteSubject: "fed:<peer>&\"quoted\"\\ \u2028\u2029 \x01\x1f\t\n\r\b\f é 日本 \x7f",
		Decision:      DecisionDeny, Reason: "grant expired", Method: "POST", Path: "/api/v1/things?a=1&b=<2>",
		Status: 403, BytesIn: 1 << 40, BytesOut: -1, DurationNS: 1234567, TLSVersion: "1.3", Resumed: true,
		CertSerial: "0a:0b", CertSPKISHA256: strings.Repeat("ab", 32), GrantID: "g-1", CorrelationID: "c-1",
		Metadata: map[string]string{"z": "last", "a": "first", "cross_jurisdiction": "true", "<k>": "v&"},
		PrevHash: ZeroHash, Hash: strings.Repeat("f", 64),
	}
}

func TestMarshalMatchesEncodingJSON(t *testing.T) {
	cases := map[string]Record{
		"full":         fullRecord(),
		"zero":         {Time: time.Unix(0, 0).UTC()},
		"nil-meta":     {Seq: 1, Time: time.Unix(1, 5).UTC(), Action: "x"},
		"whole-second": {Seq: 18446744073709551615, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			got, _ := r.MarshalJSON()
			want, err := json.Marshal(plain(r))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Fatalf("encoding differs from encoding/json (-want +got):\n%s", diff)
			}
			var back Record
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(r, back); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "abc", "<>&", "\u2028", "\xff\xfe", "\x00\x1f\"\\", "日本語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestSealMatchesComputeHash(t *testing.T) {
	r := fullRecord()
	r.NodeID = "node-1"
	b := appendHead(nil, r.Seq, r.Time)
	b = r.appendBody(b)
	b = appendTail(b, r.PrevHash)
	line, h := sealLine(b, 0)
	var prev, got [64]byte
	copy(prev[:], r.PrevHash)
	hot := appendHead(nil, r.Seq, r.Time)
	hot = r.appendBody(hot)
	hot = appendTailHex(hot, &prev)
	if hot = sealInto(hot, 0, &got); !bytes.Equal(hot, line) || string(got[:]) != h {
		t.Fatalf("sealInto differs from sealLine:\n%s\n%s", hot, line)
	}
	if h != r.ComputeHash() {
		t.Fatalf("seal hash %s != ComputeHash %s", h, r.ComputeHash())
	}
	r.Hash = h
	want, _ := r.MarshalJSON()
	if !bytes.Equal(line, append(want, '\n')) {
		t.Fatalf("sealed line\n%s\nwant\n%s", line, want)
	}
	f, err := parseFacts(line[:len(line)-1])
	if err != nil || f.seq != 42 || f.hash != h || f.prevHash != ZeroHash {
		t.Fatalf("parseFacts = %+v, %v", f, err)
	}
	if _, err := decodeRecord(line[:len(line)-1]); err != nil {
		t.Fatal(err)
	}
}

func TestNormalizeBoundsStrings(t *testing.T) {
	huge := strings.Repeat("é", 1<<20) // 2 MiB of two-byte runes
	r := Record{Action: "x", RemoteSubject: huge, Path: huge, Reason: "bad \xff utf8", Metadata: map[string]string{}}
	for i := range 40 {
		r.Metadata[string(rune('A'+i))+strings.Repeat("k", 100)] = huge
	}
	r.normalize()
	if len(r.RemoteSubject) > MaxRemoteSubject+len(TruncatedMarker) || !strings.HasSuffix(r.RemoteSubject, TruncatedMarker) || !utf8.ValidString(r.RemoteSubject) {
		t.Fatalf("remote_subject not bounded: %d bytes", len(r.RemoteSubject))
	}
	if len(r.Path) > MaxPath+len(TruncatedMarker) || !strings.HasSuffix(r.Path, TruncatedMarker) {
		t.Fatalf("path not bounded: %d bytes", len(r.Path))
	}
	if r.Reason != "bad \uFFFD utf8" {
		t.Fatalf("invalid UTF-8 not replaced: %q", r.Reason)
	}
	if len(r.Metadata) != MaxMetadataKeys+1 || r.Metadata[TruncatedMarker] != "8 more keys" {
		t.Fatalf("metadata not bounded: %d keys", len(r.Metadata))
	}
	for k, v := range r.Metadata {
		if len(k) > MaxMetadataKey+len(TruncatedMarker) || len(v) > MaxMetadataValue+len(TruncatedMarker) {
			t.Fatalf("metadata entry not bounded: %d/%d", len(k), len(v))
		}
	}
	line, _ := r.MarshalJSON()
	if len(line) > 64<<10 {
		t.Fatalf("record line is %d bytes", len(line))
	}
}

func TestHugeRemoteSubjectAppended(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	huge := strings.Repeat("s", 10<<20)
	seq, err := l.Append(t.Context(), Record{Action: ActionProxyRequest, FederationPeerID: "p", RemoteSubject: huge, Decision: DecisionAllow})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Query(Query{Peer: "p"})
	if err != nil || len(p.Records) != 1 || p.Records[0].Seq != seq {
		t.Fatalf("query = %+v, %v", p, err)
	}
	want := strings.Repeat("s", MaxRemoteSubject) + TruncatedMarker
	if got := p.Records[0].RemoteSubject; got != want {
		t.Fatalf("remote_subject = %d bytes, want %d", len(got), len(want))
	}
}

// A few metadata keys still have their values bounded and invalid UTF-8
// replaced (normalize keeps the caller's map only when nothing changes).
func TestNormalizeMetadataFewKeys(t *testing.T) {
	long := strings.Repeat("v", MaxMetadataValue+10)
	for _, tc := range []struct {
		name     string
		in, want map[string]string
	}{
		{"long value", map[string]string{"a": long, "c": "fine"},
			map[string]string{"a": long[:MaxMetadataValue] + TruncatedMarker, "c": "fine"}},
		{"long key", map[string]string{long: "x"},
			map[string]string{long[:MaxMetadataKey] + TruncatedMarker: "x"}},
		{"invalid key", map[string]string{"b\xff": "ok"}, map[string]string{"b\uFFFD": "ok"}},
		{"invalid value", map[string]string{"b": "\xffok"}, map[string]string{"b": "\uFFFDok"}},
		{"in bounds", map[string]string{"direction": "inbound", "route": "api"},
			map[string]string{"direction": "inbound", "route": "api"}},
	} {
		r := Record{Action: "x", Metadata: tc.in}
		r.normalize()
		if !maps.Equal(r.Metadata, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, r.Metadata, tc.want)
		}
	}
}
