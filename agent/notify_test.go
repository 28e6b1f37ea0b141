package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// notifySocket is a real unixgram socket standing in for systemd's
// NOTIFY_SOCKET: it collects every datagram sent to it.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

// listenNotify binds a datagram socket in a short temp dir and points
// NOTIFY_SOCKET at it for the rest of the test.
func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "fgn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	ns := &notifySocket{conn: conn, msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return ns
}

// next waits for the next datagram.
func (ns *notifySocket) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case m := <-ns.msgs:
		return m
	case <-time.After(within):
		t.Fatalf("no sd_notify datagram within %s", within)
		return ""
	}
}

// drain returns what arrived within d (d == 0: what is queued now).
func (ns *notifySocket) drain(d time.Duration) []string {
	var got []string
	if d == 0 {
		for {
			select {
			case m := <-ns.msgs:
				got = append(got, m)
			default:
				return got
			}
		}
	}
	deadline := time.After(d)
	for {
		select {
		case m := <-ns.msgs:
			got = append(got, m)
		case <-deadline:
			return got
		}
	}
}

// testLogWriter sends log lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// syncBuffer is a goroutine-safe log sink the test can search.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfigYAML is a single-node site on free loopback ports in dir.
func testConfigYAML(dir, level string) string {
	return fmt.Sprintf(`node:
  data_dir: %s
  site_name: test-site
log:
  level: %s
api:
  socket: %s
raft:
  listen: 127.0.0.1:0
cluster:
  listen: 127.0.0.1:0
metrics:
  listen: ""
netctl:
  mode: "off"
proxy:
  outbound: 127.0.0.1:0
`, filepath.Join(dir, "data"), level, filepath.Join(dir, "api.sock"))
}

// runningAgent is a real agent.Run in this process.
type runningAgent struct {
	cfg    Config
	path   string // config file
	reload chan struct{}
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startRun writes the config file and runs the daemon's Run until the
// test ends (or stop is called).
func startRun(t *testing.T, level string) *runningAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "fga")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "fedgated.yaml")
	if err := os.WriteFile(path, []byte(testConfigYAML(dir, level)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{cfg: cfg, path: path, reload: make(chan struct{}, 1), logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		ra.done <- Run(ctx, Options{Config: cfg, ConfigPath: path, Out: io.Discard,
			LogOutput: io.MultiWriter(ra.logs, testLogWriter{t}), Reload: ra.reload})
	}()
	t.Cleanup(func() { ra.stop(t) })
	ra.waitSocket(t)
	return ra
}

func (ra *runningAgent) stop(t *testing.T) {
	t.Helper()
	ra.cancel()
	select {
	case err, ok := <-ra.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(ra.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("Run did not return within 30s of cancel")
	}
}

func (ra *runningAgent) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", ra.cfg.API.Socket)
		}}}
}

func (ra *runningAgent) waitSocket(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := ra.client().Get("http://fedgated/v1/status"); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case err := <-ra.done:
			t.Fatalf("Run returned before serving: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("local API did not answer within 60s")
}

// TestNotifySequence runs the real daemon against a real NOTIFY_SOCKET and
// checks the datagrams systemd would see, in order: a status while raft
// comes up, READY=1 with a status once raft is ready, RELOADING=1 then
// READY=1 around a SIGHUP reload, and STOPPING=1 on stop.
func TestNotifySequence(t *testing.T) {
	ns := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "") // this test is about the sequence, not the watchdog
	ra := startRun(t, "info")

	var got []string
	for len(got) < 2 {
		got = append(got, ns.next(t, 60*time.Second))
	}
	ra.reload <- struct{}{}
	got = append(got, ns.next(t, 10*time.Second), ns.next(t, 10*time.Second))
	ra.stop(t)
	got = append(got, ns.next(t, 10*time.Second))
	if extra := ns.drain(200 * time.Millisecond); len(extra) > 0 {
		t.Errorf("datagrams after STOPPING=1: %q", extra)
	}

	// Node ids are random: compare the shape, then the id separately.
	nodeID := ""
	if f := strings.Fields(got[1]); len(f) > 0 {
		nodeID = f[len(f)-1]
	}
	want := []string{
		"STATUS=waiting for raft",
		"READY=1\nSTATUS=serving; node " + nodeID,
		"RELOADING=1",
		"READY=1\nSTATUS=serving; reloaded",
		"STOPPING=1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("sd_notify sequence (-want +got):\n%s", diff)
	}
	if len(nodeID) != 36 {
		t.Fatalf("READY status does not name the node id: %q", got[1])
	}
}

// TestNotifyNoSocket: without NOTIFY_SOCKET every notification is a no-op
// and nothing is logged as a failure.
func TestNotifyNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var logs syncBuffer
	n := &notifier{log: slog.New(slog.NewTextHandler(&logs, nil))}
	n.status("x")
	n.ready("y")
	n.reloading()
	n.stopping()
	if logs.String() != "" {
		t.Fatalf("logged without a socket: %s", logs.String())
	}
}

// TestNotifySocketGone: a NOTIFY_SOCKET that nobody listens on is logged,
// never fatal.
func TestNotifySocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	var logs syncBuffer
	n := &notifier{log: slog.New(slog.NewTextHandler(&logs, nil))}
	n.ready("x")
	if !strings.Contains(logs.String(), "sd_notify failed") {
		t.Fatalf("failure not logged: %q", logs.String())
	}
}

// TestWatchdogStopsWhenMainLoopStuck: with WATCHDOG_USEC set, WATCHDOG=1 is
// sent while alive() is called; when the main loop stops calling it the
// pings stop (so systemd would restart the service), and they resume when
// it makes progress again.
func TestWatchdogStopsWhenMainLoopStuck(t *testing.T) {
	ns := listenNotify(t)
	const interval = 200 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(interval/time.Microsecond)))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var logs syncBuffer
	n := &notifier{log: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testLogWriter{t}), nil))}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wdDone := make(chan struct{})
	go func() { defer close(wdDone); n.watchdog(ctx) }()

	// A healthy main loop: alive() every 20ms.
	loop := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			n.alive()
			time.Sleep(20 * time.Millisecond)
		}
	}
	loop(6 * interval)
	healthy := ns.drain(0)
	if c := count(healthy, "WATCHDOG=1"); c < 3 {
		t.Fatalf("healthy loop: %d WATCHDOG=1 pings in %s (want >=3): %q", c, 6*interval, healthy)
	}
	if c := count(healthy, "WATCHDOG=1"); c != len(healthy) {
		t.Fatalf("unexpected datagrams: %q", healthy)
	}

	// Stuck: alive() no longer called. At most the pings already due in the
	// first interval may still go out; after that there must be none.
	_ = ns.drain(interval + interval/2)
	stuck := ns.drain(5 * interval)
	if len(stuck) != 0 {
		t.Fatalf("stuck loop still pinged the watchdog: %q", stuck)
	}
	if !strings.Contains(logs.String(), "main loop is stuck") {
		t.Errorf("stuck loop not logged: %s", logs.String())
	}

	// Progress again: pings resume.
	loop(4 * interval)
	if c := count(ns.drain(0), "WATCHDOG=1"); c < 2 {
		t.Fatalf("pings did not resume after the loop recovered (%d)", c)
	}

	cancel()
	select {
	case <-wdDone:
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog goroutine did not return after cancel")
	}
}

// TestWatchdogOtherPID: a WATCHDOG_PID naming another process means the
// watchdog is not ours; nothing is sent and the goroutine returns.
func TestWatchdogOtherPID(t *testing.T) {
	ns := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "50000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	n := &notifier{log: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))}
	done := make(chan struct{})
	go func() { defer close(done); n.watchdog(context.Background()) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog ran for another pid")
	}
	if got := ns.drain(200 * time.Millisecond); len(got) != 0 {
		t.Fatalf("sent %q", got)
	}
}

func count(msgs []string, s string) int {
	n := 0
	for _, m := range msgs {
		if m == s {
			n++
		}
	}
	return n
}
