package raftstore

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogHclog bridges hashicorp/raft's hclog.Logger onto a *slog.Logger. It
// is created once per Store; raft's Named/With loggers share its level.
type slogHclog struct {
	l     *slog.Logger
	name  string
	args  []any
	level *atomic.Int32 // hclog.Level
}

func newHclog(l *slog.Logger, level hclog.Level) hclog.Logger {
	lv := new(atomic.Int32)
	lv.Store(int32(level))
	return &slogHclog{l: l, level: lv}
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *slogHclog) enabled(l hclog.Level) bool {
	cur := hclog.Level(h.level.Load())
	return cur != hclog.Off && l >= cur
}

func (h *slogHclog) Log(level hclog.Level, msg string, args ...any) {
	if !h.enabled(level) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		all = append(all, "component", h.name)
	}
	all = append(all, h.args...)
	all = append(all, normArgs(args)...)
	h.l.Log(context.Background(), toSlogLevel(level), msg, all...)
}

// normArgs turns hclog's loosely typed key/value pairs into slog pairs;
// an odd trailing value is kept under "extra".
func normArgs(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			out = append(out, "extra", args[i])
			break
		}
		k, ok := args[i].(string)
		if !ok {
			k = fmt.Sprint(args[i])
		}
		v := args[i+1]
		if e, ok := v.(error); ok {
			v = e.Error()
		}
		out = append(out, k, v)
	}
	return out
}

func (h *slogHclog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHclog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHclog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHclog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHclog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *slogHclog) IsTrace() bool                 { return h.enabled(hclog.Trace) }
func (h *slogHclog) IsDebug() bool                 { return h.enabled(hclog.Debug) }
func (h *slogHclog) IsInfo() bool                  { return h.enabled(hclog.Info) }
func (h *slogHclog) IsWarn() bool                  { return h.enabled(hclog.Warn) }
func (h *slogHclog) IsError() bool                 { return h.enabled(hclog.Error) }
func (h *slogHclog) ImpliedArgs() []any            { return h.args }
func (h *slogHclog) Name() string                  { return h.name }
func (h *slogHclog) SetLevel(l hclog.Level)        { h.level.Store(int32(l)) }
func (h *slogHclog) GetLevel() hclog.Level         { return hclog.Level(h.level.Load()) }

func (h *slogHclog) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), normArgs(args)...)
	return &c
}

func (h *slogHclog) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *slogHclog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *slogHclog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHclog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
