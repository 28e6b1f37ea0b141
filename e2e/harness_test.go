package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/powernode/fedgate/internal/testport"
)

// bins holds the binaries built once for the whole test run.
var bins struct {
	once     sync.Once
	dir      string
	fedgated string
	fedgate  string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// buildBinaries builds cmd/fedgated and cmd/fedgate (with -race when the
// tests run with it) into a temp dir, once.
func buildBinaries(t *testing.T) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "fedgate-e2e-bin-")
		if err != nil {
			bins.err = err
			return
		}
		bins.dir = dir
		bins.fedgated = filepath.Join(dir, "fedgated")
		bins.fedgate = filepath.Join(dir, "fedgate")
		for out, pkg := range map[string]string{bins.fedgated: "../cmd/fedgated", bins.fedgate: "../cmd/fedgate"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// freeAddr returns a loopback address for a fedgated process to bind
// (outside the ephemeral port range: see internal/testport).
func freeAddr(t *testing.T) string { return testport.Addr(t) }

// node is one fedgated process with its config and data dir.
type node struct {
	t       *testing.T
	name    string
	dir     string
	socket  string
	config  string
	raft    string
	cluster string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{}
}

// newNode writes a config for a node in its own temp dir. extra is appended
// to the YAML.
func newNode(t *testing.T, name string, bootstrap bool, extra string) *node {
	t.Helper()
	buildBinaries(t)
	dir := t.TempDir()
	if !strings.Contains(extra, "netctl:") {
		extra += "\nnetctl:\n  mode: off\n" // loopback clusters share the host's network namespace
	}
	n := &node{t: t, name: name, dir: dir, socket: filepath.Join(dir, "api.sock"),
		config: filepath.Join(dir, "fedgated.yaml"), raft: freeAddr(t), cluster: freeAddr(t)}
	cfg := fmt.Sprintf(`node:
  data_dir: %s
  site_name: e2e-site
log:
  level: debug
api:
  socket: %s
raft:
  listen: %s
  bootstrap: %v
cluster:
  listen: %s
metrics:
  listen: ""
%s`, filepath.Join(dir, "data"), n.socket, n.raft, bootstrap, n.cluster, extra)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			n.mu.Lock()
			t.Logf("--- %s log (last 6000 bytes) ---\n%s", n.name, tail(n.logs.String(), 6000))
			n.mu.Unlock()
		}
	})
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// start runs fedgated and waits until its local API answers.
func (n *node) start() {
	n.t.Helper()
	n.startWith([]string{"--config", n.config})
}

func (n *node) startWith(args []string) {
	n.t.Helper()
	n.launch(args, func(cmd *exec.Cmd) error { return cmd.Start() })
	n.waitAPI()
}

// launch starts fedgated with args through start (which may run it in a
// network namespace), capturing its output in the node's log.
func (n *node) launch(args []string, start func(*exec.Cmd) error) {
	n.t.Helper()
	n.mu.Lock()
	cmd := exec.Command(bins.fedgated, args...)
	if n.logs == nil {
		n.logs = &bytes.Buffer{}
	}
	w := &lockedWriter{mu: &n.mu, b: n.logs}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := start(cmd); err != nil {
		n.mu.Unlock()
		n.t.Fatal(err)
	}
	n.cmd = cmd
	done := make(chan struct{})
	n.done = done
	n.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
}

// waitAPI waits until the launched fedgated's local API answers and
// returns its status; it fails the test if the process exits first.
func (n *node) waitAPI() status {
	n.t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s, err := n.status(); err == nil {
			return s
		}
		select {
		case <-done:
			n.t.Fatalf("%s exited during start-up:\n%s", n.name, tail(n.logText(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: local API not up after 60s", n.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady waits until the node reports ready (raft leader known and
// caught up, every part started).
func (n *node) waitReady(timeout time.Duration) {
	n.t.Helper()
	eventually(n.t, timeout, n.name+" ready", func() error {
		st, err := n.status()
		if err != nil {
			return err
		}
		if !st.Ready {
			return fmt.Errorf("not ready")
		}
		return nil
	})
}

func (n *node) logText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.String()
}

// kill sends SIGKILL and waits for the process to go.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM and waits up to 30 s for a clean exit.
func (n *node) stop() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if cmd.ProcessState != nil && !cmd.ProcessState.Success() {
			return fmt.Errorf("%s exited with %v", n.name, cmd.ProcessState)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", n.name)
	}
}

// cli runs the fedgate CLI against this node and returns stdout; an error
// carries stderr.
func (n *node) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.fedgate, append([]string{"--socket", n.socket}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("fedgate %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// mustCLI is cli that fails the test on error.
func (n *node) mustCLI(args ...string) string {
	n.t.Helper()
	out, err := n.cli(args...)
	if err != nil {
		n.t.Fatalf("%s: %v", n.name, err)
	}
	return out
}

// cliJSON runs a --json command and decodes its output into v.
func (n *node) cliJSON(v any, args ...string) error {
	out, err := n.cli(append(args, "--json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("decode %q: %v", out, err)
	}
	return nil
}

type status struct {
	NodeID string `json:"node_id"`
	Ready  bool   `json:"ready"`
	Raft   struct {
		State       string `json:"state"`
		Leader      string `json:"leader"`
		Term        uint64 `json:"term"`
		CommitIndex uint64 `json:"commit_index"`
	} `json:"raft"`
	Members []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
	} `json:"members"`
}

func (n *node) status() (status, error) {
	var s status
	err := n.cliJSON(&s, "status")
	return s, err
}

// eventually polls f every 100 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
