package wgdevice

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestDeviceLoggerRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := newDeviceLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	for i := 0; i < 1000; i++ {
		l.Errorf("peer(%d) - Failed to send handshake initiation", i)
	}
	lines := strings.Count(buf.String(), "\n")
	if lines < 50 || lines > 51 {
		t.Fatalf("%d lines logged for 1000 errors, want the burst of 50", lines)
	}
	l.Verbosef("not shown at info level")
	if strings.Contains(buf.String(), "not shown") {
		t.Error("verbose message logged at info level")
	}
}
