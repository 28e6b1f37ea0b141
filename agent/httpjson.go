package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

// maxAPIBody bounds a local API request body.
const maxAPIBody = 1 << 20

// httpError is an error with the HTTP status the API answers with.
type httpError struct {
	status int
	reason string
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func errStatus(status int, reason string, format string, args ...any) error {
	return &httpError{status: status, reason: reason, err: fmt.Errorf(format, args...)}
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers err as {"error": ..., "reason": ...} with the status
// the error carries (500 when it carries none).
func writeError(w http.ResponseWriter, err error) {
	status, reason := http.StatusInternalServerError, ""
	var he *httpError
	if errors.As(err, &he) {
		status, reason = he.status, he.reason
	} else if s, r, ok := classify(err); ok {
		status, reason = s, r
	}
	writeJSON(w, status, map[string]string{"error": err.Error(), "reason": reason})
}

// decodeBody decodes a bounded JSON body into v, refusing unknown fields.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errStatus(http.StatusBadRequest, "bad_request", "request body is empty: want a JSON object")
		}
		return errStatus(http.StatusBadRequest, "bad_request", "malformed request body: %v", err)
	}
	if dec.More() {
		return errStatus(http.StatusBadRequest, "bad_request", "request body has trailing data after the JSON object")
	}
	return nil
}

// listenUnix listens on a unix socket at path with mode 0660, replacing a
// stale socket file but refusing to replace anything else.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another fedgated is listening on this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return ln, nil
}
