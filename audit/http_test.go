package audit_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/audit"
)

func getJSON(t *testing.T, url string, code int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != code {
		t.Fatalf("GET %s = %d, want %d", url, resp.StatusCode, code)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestHandler(t *testing.T) {
	l := open(t, t.TempDir(), nil, nil)
	for i := range 12 {
		rec := r(i)
		if i%2 == 1 {
			rec.FederationPeerID = "peer-y"
			rec.Decision = audit.DecisionDeny
		}
		if _, err := l.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	base := srv.URL + audit.HandlerPrefix

	var page audit.Page
	getJSON(t, base+"query?peer=peer-y&order=oldest&limit=4", 200, &page)
	if len(page.Records) != 4 || page.Records[0].Seq != 2 || page.NextCursor != "8" {
		t.Fatalf("query page %+v", page)
	}
	cursor := page.NextCursor
	page = audit.Page{}
	getJSON(t, base+"query?peer=peer-y&order=oldest&limit=4&cursor="+cursor, 200, &page)
	if len(page.Records) != 2 || page.Records[1].Seq != 12 || page.NextCursor != "" {
		t.Fatalf("second page %+v", page)
	}
	getJSON(t, base+"query?decision=deny&since=1h", 200, &page)
	if len(page.Records) != 6 {
		t.Fatalf("deny since 1h: %d records", len(page.Records))
	}

	var ex audit.ExportResponse
	getJSON(t, base+"export?peer=peer-x&since=72h", 200, &ex)
	sum := sha256.Sum256([]byte(ex.RecordsJSONL))
	if ex.Manifest.Count != 6 || ex.Manifest.SHA256 != hex.EncodeToString(sum[:]) || strings.Count(ex.RecordsJSONL, "\n") != 6 {
		t.Fatalf("export %+v", ex.Manifest)
	}
	ex = audit.ExportResponse{}
	getJSON(t, base+"export?peer=nobody&since=72h", 200, &ex)
	if ex.Manifest.Count != 0 || ex.RecordsJSONL != "" {
		t.Fatalf("empty export %+v", ex)
	}

	var v audit.VerifyResult
	getJSON(t, base+"verify", 200, &v)
	if !v.OK || v.LastSeq != 12 {
		t.Fatalf("verify %+v", v)
	}

	var e map[string]string
	for url, code := range map[string]int{
		base + "query?order=up":        400,
		base + "query?limit=x":         400,
		base + "query?since=yesterday": 400,
		base + "export":                400,
		base + "tail?n=-1":             400,
		base + "nope":                  404,
	} {
		e = nil
		getJSON(t, url, code, &e)
		if e["error"] == "" {
			t.Fatalf("%s: no error message", url)
		}
	}
	resp, err := http.Post(base+"verify", "application/json", nil)
	if err != nil || resp.StatusCode != 405 {
		t.Fatalf("POST verify = %v, %v", resp.Status, err)
	}
	resp.Body.Close()
}

func TestHandlerTailFollow(t *testing.T) {
	l := open(t, t.TempDir(), nil, nil)
	for i := range 5 {
		l.Append(context.Background(), r(i))
	}
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/audit/tail?n=3&follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var got []uint64
	next := func() {
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Seq)
	}
	for range 3 {
		next()
	}
	go func() {
		for i := range 2 {
			l.Append(context.Background(), r(10+i))
		}
	}()
	next()
	next()
	if want := []uint64{3, 4, 5, 6, 7}; !equal(got, want) {
		t.Fatalf("tail follow seqs %v, want %v", got, want)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
