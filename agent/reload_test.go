package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// postReload calls the local API's reload (what `fedgate reload` does).
func (ra *runningAgent) postReload(t *testing.T) (int, map[string]any) {
	t.Helper()
	resp, err := ra.client().Post("http://fedgated/v1/reload", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("reload answer %q: %v", b, err)
	}
	return resp.StatusCode, out
}

// debugVisible makes the daemon log one debug line (a refused local API
// call) and reports whether it reached the log.
func (ra *runningAgent) debugVisible(t *testing.T, marker string) bool {
	t.Helper()
	resp, err := ra.client().Get("http://fedgated/v1/peers/" + marker)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET unknown peer: %d", resp.StatusCode)
	}
	return strings.Contains(ra.logs.String(), marker)
}

func (ra *runningAgent) rewrite(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(ra.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (ra *runningAgent) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ra.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func strs(v any) []string {
	out := []string{}
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, x.(string))
	}
	return out
}

// TestReloadLogLevelLive: a SIGHUP (the coalesced reload channel) after
// the file switched to debug makes debug lines appear in the running
// daemon, with no restart.
func TestReloadLogLevelLive(t *testing.T) {
	ra := startRun(t, "info")
	if ra.debugVisible(t, "before-reload-marker") {
		t.Fatal("debug line logged at level info")
	}
	dir := filepath.Dir(ra.path)
	ra.rewrite(t, testConfigYAML(dir, "debug"))
	ra.reload <- struct{}{}
	ra.waitLog(t, "applied=[log.level] needs_restart=[]")
	if !ra.debugVisible(t, "after-reload-marker") {
		t.Fatal("debug line missing after reloading with level debug")
	}
	// And back, through the local API this time.
	ra.rewrite(t, testConfigYAML(dir, "warn"))
	code, res := ra.postReload(t)
	if code != http.StatusOK || !cmp.Equal(strs(res["applied"]), []string{"log.level"}) {
		t.Fatalf("reload to warn: %d %v", code, res)
	}
	if ra.debugVisible(t, "after-warn-marker") {
		t.Fatal("debug line logged at level warn")
	}
}

// TestReloadRefusesInvalidFile: an invalid file (unknown key, wrong type,
// invalid value, missing file) is refused with the line and key, and the
// running config is kept: the level stays, and a later valid file applies
// against the config that was running, not the refused one.
func TestReloadRefusesInvalidFile(t *testing.T) {
	ra := startRun(t, "info")
	dir := filepath.Dir(ra.path)
	good := testConfigYAML(dir, "info")
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"unknown key", strings.Replace(good, "  level: info\n", "  level: debug\n  colour: blue\n", 1), []string{"line 6", "colour"}},
		{"wrong type", good + "pki:\n  node_cert_lifetime: soon\n", []string{"node_cert_lifetime", "line"}},
		{"invalid value", strings.Replace(good, "  level: info\n", "  level: loud\n", 1), []string{"line 5", "log.level"}},
		{"public metrics", strings.Replace(good, `  listen: ""`, "  listen: 0.0.0.0:9464", 1), []string{"metrics.listen", "loopback"}},
		{"not yaml", "log: [unclosed\n", []string{ra.path}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra.rewrite(t, tc.content)
			code, res := ra.postReload(t)
			if code != http.StatusUnprocessableEntity || res["reason"] != "invalid_config" {
				t.Fatalf("invalid file answered %d %v", code, res)
			}
			msg, _ := res["error"].(string)
			for _, w := range append(tc.want, "running config kept") {
				if !strings.Contains(msg, w) {
					t.Errorf("refusal %q does not mention %q", msg, w)
				}
			}
			if ra.debugVisible(t, "refused-"+strings.ReplaceAll(tc.name, " ", "-")) {
				t.Fatal("refused file changed the log level")
			}
		})
	}

	// Missing file, through SIGHUP: logged, kept.
	if err := os.Remove(ra.path); err != nil {
		t.Fatal(err)
	}
	ra.reload <- struct{}{}
	ra.waitLog(t, "reload refused; the running config is kept")

	// The daemon still serves and a valid file applies against what ran.
	ra.rewrite(t, testConfigYAML(dir, "debug"))
	code, res := ra.postReload(t)
	if code != http.StatusOK || !cmp.Equal(strs(res["applied"]), []string{"log.level"}) || len(strs(res["needs_restart"])) != 0 {
		t.Fatalf("valid reload after refusals: %d %v", code, res)
	}
}

// TestReloadReportsRestartFields: changes that cannot apply live are named
// (by section, plus log.format) and not applied; a reload with no change
// applies nothing.
func TestReloadReportsRestartFields(t *testing.T) {
	ra := startRun(t, "info")
	dir := filepath.Dir(ra.path)
	good := testConfigYAML(dir, "info")

	code, res := ra.postReload(t)
	if code != http.StatusOK || len(strs(res["applied"])) != 0 || len(strs(res["needs_restart"])) != 0 {
		t.Fatalf("no-op reload: %d %v", code, res)
	}

	changed := strings.Replace(good, "  level: info\n", "  level: debug\n  format: json\n", 1)
	changed = strings.Replace(changed, "raft:\n  listen: 127.0.0.1:0\n", "raft:\n  listen: 127.0.0.1:0\n  heartbeat_timeout: 2s\n", 1)
	changed = strings.Replace(changed, `  listen: ""`, "  listen: 127.0.0.1:9999", 1)
	changed = strings.Replace(changed, "site_name: test-site", "site_name: renamed", 1)
	changed += "pki:\n  node_cert_lifetime: 12h\nfederation:\n  platform_version: 9.9.9\n"
	ra.rewrite(t, changed)
	code, res = ra.postReload(t)
	if code != http.StatusOK {
		t.Fatalf("reload: %d %v", code, res)
	}
	got := map[string][]string{"applied": strs(res["applied"]), "needs_restart": strs(res["needs_restart"])}
	want := map[string][]string{
		"applied":       {"log.level"},
		"needs_restart": {"log.format", "node", "raft", "pki", "metrics", "federation"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("reload result (-want +got):\n%s", diff)
	}
	// Text logs are still text (format needs a restart); the site name in
	// status is still the running one.
	if !ra.debugVisible(t, "format-marker") {
		t.Fatal("log level did not apply")
	}
	if strings.Contains(ra.logs.String(), `{"time"`) {
		t.Fatal("log format switched without a restart")
	}
}

// TestReloadWithoutConfigFile: --dev has no file to re-read; the refusal
// says so and nothing changes.
func TestReloadWithoutConfigFile(t *testing.T) {
	lv := new(slog.LevelVar)
	a := &Agent{cfg: DevConfig(t.TempDir()), level: lv}
	res, err := a.reload()
	if err == nil || !strings.Contains(err.Error(), "--dev") {
		t.Fatalf("reload in dev: %v %v", res, err)
	}
	if lv.Level() != slog.LevelInfo || a.cfg.Log.Level != "info" {
		t.Fatal("dev reload changed the level")
	}
}

// TestReloadSIGHUPStormProcess runs the real fedgated binary under a real
// NOTIFY_SOCKET with a watchdog (pings must arrive), sends it a storm of
// SIGHUPs and checks that they are
// coalesced (far fewer reloads than signals, at least one), that each
// reload is framed by RELOADING=1 / READY=1, that the daemon still serves,
// and that SIGTERM ends with STOPPING=1 and exit status 0.
func TestReloadSIGHUPStormProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs fedgated")
	}
	ns := listenNotify(t)
	dir, err := os.MkdirTemp("", "fgs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "fedgated")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/powernode/fedgate/cmd/fedgated").CombinedOutput(); err != nil {
		t.Fatalf("build fedgated: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "fedgated.yaml")
	if err := os.WriteFile(cfgPath, []byte(testConfigYAML(dir, "info")), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	// The main loop feeds systemd's watchdog (200ms here) in the real binary.
	cmd.Env = append(os.Environ(), "WATCHDOG_USEC=200000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("fedgated log:\n%s", logs.String())
		}
	})

	for m := ""; !strings.HasPrefix(m, "READY=1"); {
		m = ns.next(t, 90*time.Second)
	}
	time.Sleep(time.Second) // watchdog pings accumulate
	const storm = 300
	for range storm {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// Let the pending reload (if any) finish, then stop.
	time.Sleep(500 * time.Millisecond)
	ra := &runningAgent{cfg: Config{API: APIConfig{Socket: filepath.Join(dir, "api.sock")}}}
	resp, err := ra.client().Get("http://fedgated/v1/status")
	if err != nil {
		t.Fatalf("daemon stopped serving after the storm: %v", err)
	}
	resp.Body.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("fedgated exit: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("fedgated did not stop within 60s of SIGTERM")
	}

	msgs := ns.drain(200 * time.Millisecond)
	reloading, readyAgain := count(msgs, "RELOADING=1"), count(msgs, "READY=1\nSTATUS=serving; reloaded")
	reloads := strings.Count(logs.String(), "msg=reloaded")
	t.Logf("%d SIGHUPs -> %d reloads (%d RELOADING=1, %d READY=1)", storm, reloads, reloading, readyAgain)
	if reloads < 1 || reloads >= storm/2 {
		t.Errorf("%d SIGHUPs gave %d reloads: not coalesced", storm, reloads)
	}
	if reloading != reloads || readyAgain != reloads {
		t.Errorf("reloads %d, RELOADING=1 %d, READY=1 after reload %d: want equal", reloads, reloading, readyAgain)
	}
	if pings := count(msgs, "WATCHDOG=1"); pings < 3 {
		t.Errorf("%d WATCHDOG=1 pings from the running daemon in over 1.5s (WATCHDOG_USEC=200ms)", pings)
	}
	var state []string // everything but the watchdog pings, which may race STOPPING=1
	for _, m := range msgs {
		if m != "WATCHDOG=1" {
			state = append(state, m)
		}
	}
	if len(state) == 0 || state[len(state)-1] != "STOPPING=1" {
		t.Errorf("last state datagram of %q, want STOPPING=1", state)
	}
	// RELOADING=1 and READY=1 alternate.
	want := "RELOADING=1"
	for _, m := range msgs {
		if m == "RELOADING=1" || strings.HasPrefix(m, "READY=1") {
			if !strings.HasPrefix(m, want) {
				t.Fatalf("datagram order %q", msgs)
			}
			if want == "RELOADING=1" {
				want = "READY=1"
			} else {
				want = "RELOADING=1"
			}
		}
	}
}
