package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HandlerPrefix is where Handler's routes live.
const HandlerPrefix = "/v1/audit/"

// MaxTail bounds tail?n=.
const MaxTail = 10000

// ExportResponse is the body of GET /v1/audit/export.
type ExportResponse struct {
	RecordsJSONL string   `json:"records_jsonl"`
	Manifest     Manifest `json:"manifest"`
}

// Handler serves the local-API routes documented in the package doc. Mount
// it at "/v1/audit/" on the agent's unix-socket mux.
func (l *Log) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(HandlerPrefix+"tail", l.serveTail)
	mux.HandleFunc(HandlerPrefix+"query", l.serveQuery)
	mux.HandleFunc(HandlerPrefix+"export", l.serveExport)
	mux.HandleFunc(HandlerPrefix+"verify", l.serveVerify)
	mux.HandleFunc(HandlerPrefix+"stats", l.serveStats)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route %s", r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func onlyGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", r.Method))
		return false
	}
	return true
}

// parseTime takes RFC3339(Nano) or a duration meaning "that long before now".
func parseTime(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%w: %q is neither an RFC3339 time nor a duration", ErrBadRequest, v)
}

func parseQuery(r *http.Request, now time.Time) (Query, error) {
	v := r.URL.Query()
	q := Query{Peer: v.Get("peer"), Action: v.Get("action"), Decision: v.Get("decision"), Order: Order(v.Get("order")), Cursor: v.Get("cursor")}
	var err error
	if q.Since, err = parseTime(v.Get("since"), now); err != nil {
		return q, err
	}
	if q.Until, err = parseTime(v.Get("until"), now); err != nil {
		return q, err
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 {
			return q, fmt.Errorf("%w: bad limit %q", ErrBadRequest, s)
		}
	}
	return q, q.normalize()
}

func (l *Log) serveQuery(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	q, err := parseQuery(r, l.cfg.Clock.Now())
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	p, err := l.Query(q)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (l *Log) serveExport(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	v := r.URL.Query()
	now := l.cfg.Clock.Now()
	req := ExportRequest{Peer: v.Get("peer")}
	var err error
	if req.Since, err = parseTime(v.Get("since"), now); err == nil {
		req.Until, err = parseTime(v.Get("until"), now)
	}
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	var sb strings.Builder
	man, err := l.Export(&sb, req)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, ExportResponse{RecordsJSONL: sb.String(), Manifest: man})
}

func (l *Log) serveVerify(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	res, err := l.Verify()
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (l *Log) serveStats(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, l.Stats())
}

// serveTail writes the last n records oldest first as JSON Lines; with
// follow=1 (or true) it then streams every new record until the client
// goes away or the log closes.
func (l *Log) serveTail(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	v := r.URL.Query()
	n := 20
	if s := v.Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 0 || n > MaxTail {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: n must be 0..%d", ErrBadRequest, MaxTail))
			return
		}
	}
	follow, _ := strconv.ParseBool(v.Get("follow"))
	var last []Record
	var cursor string
	for len(last) < n {
		p, err := l.Query(Query{Order: NewestFirst, Limit: min(n-len(last), MaxQueryLimit), Cursor: cursor})
		if err != nil {
			writeError(w, statusFor(err), err)
			return
		}
		last = append(last, p.Records...)
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for i := len(last) - 1; i >= 0; i-- {
		enc.Encode(last[i])
	}
	if !follow {
		return
	}
	fl, _ := w.(http.Flusher)
	ch, sent := l.waitCommit()
	if len(last) > 0 {
		sent = last[0].Seq
	}
	for {
		if fl != nil {
			fl.Flush()
		}
		for {
			p, err := l.Query(Query{Order: OldestFirst, Limit: MaxQueryLimit, Cursor: strconv.FormatUint(sent, 10)})
			if err != nil {
				return
			}
			for _, rec := range p.Records {
				if enc.Encode(rec) != nil {
					return
				}
				sent = rec.Seq
			}
			if p.NextCursor == "" {
				break
			}
		}
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-l.done:
			return
		case <-ch:
			ch, _ = l.waitCommit()
		}
	}
}
