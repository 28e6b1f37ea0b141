package agent

import (
	"io"
	"log/slog"
)

// Attribute keys used in fedgate's logs, in one place.
const (
	LogKeyNode   = "node_id"
	LogKeyPeer   = "federation_peer_id"
	LogKeyErr    = "err"
	LogKeyAddr   = "addr"
	LogKeySocket = "socket"
	LogKeyDir    = "data_dir"
)

// NewLogger builds the slog logger the config asks for. The returned
// LevelVar changes the level at run time (reload).
func NewLogger(w io.Writer, cfg LogConfig) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(parseLevel(cfg.Level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if cfg.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h), lv
}

func parseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
