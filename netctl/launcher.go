package netctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/powernode/fedgate/netctl/wgdevice"
)

// LauncherConfig configures a ProcessLauncher.
type LauncherConfig struct {
	// Command runs one device; the interface name is appended. Default:
	// os.Executable() followed by "wg-device".
	Command []string
	// Env is added to the inherited environment.
	Env []string
	// Netns is the namespace path the device (its TUN and UDP socket) lives
	// in; "" is the caller's.
	Netns string
	// LogDir receives wg-<iface>.log with the device's output (default
	// /run/fedgate). The device never writes to the agent's pipes, so it
	// outlives the agent.
	LogDir string
	// ReadyTimeout bounds Start (default 10s).
	ReadyTimeout time.Duration
	Logger       *slog.Logger
}

// maxDeviceLog bounds a device log kept across device restarts.
const maxDeviceLog = 4 << 20

// ProcessLauncher starts userspace devices as separate, long-lived
// processes (own session) and stops them. A device it did not start (left
// by a previous agent) is found through its UAPI socket's peer credentials.
type ProcessLauncher struct {
	cfg  LauncherConfig
	mu   sync.Mutex
	proc map[string]*exec.Cmd
	done map[string]chan struct{}
}

// NewProcessLauncher returns a launcher; it starts nothing by itself.
func NewProcessLauncher(cfg LauncherConfig) (*ProcessLauncher, error) {
	if len(cfg.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launcher: %w", err)
		}
		cfg.Command = []string{exe, "wg-device"}
	}
	if cfg.LogDir == "" {
		cfg.LogDir = "/run/fedgate"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &ProcessLauncher{cfg: cfg, proc: map[string]*exec.Cmd{}, done: map[string]chan struct{}{}}, nil
}

// Start launches the device process for name in the configured namespace
// and waits until its UAPI socket answers.
func (l *ProcessLauncher) Start(ctx context.Context, name string) error {
	if err := wgdevice.Check(); err != nil {
		if errors.Is(err, wgdevice.ErrPermission) {
			return fmt.Errorf("%w: %v", ErrPermission, err)
		}
		return fmt.Errorf("%w: %v", ErrNoTUN, err)
	}
	sock := wgdevice.SocketPath(name)
	if uapiAlive(sock) {
		return nil // adopted: a device for this name already runs
	}
	if err := os.MkdirAll(l.cfg.LogDir, 0o700); err != nil {
		return fmt.Errorf("%w: log dir: %v", ErrDeviceStart, err)
	}
	logPath := filepath.Join(l.cfg.LogDir, "wg-"+name+".log")
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > maxDeviceLog {
		flags |= os.O_TRUNC // keep history across restarts, but bounded
	}
	out, err := os.OpenFile(logPath, flags, 0o600)
	if err != nil {
		return fmt.Errorf("%w: log file: %v", ErrDeviceStart, err)
	}
	defer out.Close()
	args := append(append([]string(nil), l.cfg.Command[1:]...), name)
	cmd := exec.Command(l.cfg.Command[0], args...)
	cmd.Env = append(os.Environ(), l.cfg.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Own session: a signal to the agent's process group does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := inNetns(l.cfg.Netns, cmd.Start); err != nil {
		return fmt.Errorf("%w: %v", ErrDeviceStart, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	l.mu.Lock()
	l.proc[name], l.done[name] = cmd, exited
	l.mu.Unlock()
	l.cfg.Logger.Info("userspace wireguard device started", "iface", name, "pid", cmd.Process.Pid, "log", logPath)

	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if uapiAlive(sock) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%w: %s exited (%v): %s", ErrDeviceStart, name, waitErr, tail(logPath))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fmt.Errorf("%w: %s not ready after %s: %s", ErrDeviceStart, name, l.cfg.ReadyTimeout, tail(logPath))
		case <-tick.C:
		}
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

func uapiAlive(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// uapiPid returns the pid serving sock, from SO_PEERCRED.
func uapiPid(sock string) (int, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Pid), nil
}

// Stop ends the device for name: SIGTERM (the device closes its UAPI
// socket and TUN interface), then SIGKILL after 3 s. A device started by an
// earlier agent is found through its UAPI socket's peer credentials.
func (l *ProcessLauncher) Stop(ctx context.Context, name string) error {
	sock := wgdevice.SocketPath(name)
	l.mu.Lock()
	cmd, exited := l.proc[name], l.done[name]
	delete(l.proc, name)
	delete(l.done, name)
	l.mu.Unlock()
	pid := 0
	if cmd != nil {
		pid = cmd.Process.Pid
	} else if p, err := uapiPid(sock); err == nil {
		pid = p
	}
	if pid == 0 {
		return nil
	}
	gone := func() bool {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
				return false
			}
		}
		return processGone(pid)
	}
	wait := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for !gone() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}
	if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop device %s (pid %d): %w", name, pid, mapErr(err))
	}
	if wait(3 * time.Second) {
		return nil
	}
	l.cfg.Logger.Warn("userspace wireguard device ignored SIGTERM", "iface", name, "pid", pid)
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop device %s (pid %d): %w", name, pid, mapErr(err))
	}
	wait(time.Second)
	_ = os.Remove(sock)
	return nil
}

// processGone reports whether pid has exited (absent or a zombie).
func processGone(pid int) bool {
	if unix.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// Format: pid (comm) state ...; comm may hold spaces or parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// ProcessGone reports whether pid has exited (absent or a zombie); for
// tests and diagnostics.
func ProcessGone(pid int) bool { return processGone(pid) }

// Pids returns the pids of devices this launcher started and that still
// run (for tests and diagnostics).
func (l *ProcessLauncher) Pids() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for n, c := range l.proc {
		select {
		case <-l.done[n]:
		default:
			out[n] = c.Process.Pid
		}
	}
	return out
}

// removeStaleSockets deletes fg-*.sock UAPI sockets nobody serves (left by
// a killed device process). Live sockets, of any namespace, stay.
func removeStaleSockets() {
	socks, _ := filepath.Glob(filepath.Join(filepath.Dir(wgdevice.SocketPath("x")), InterfacePrefix+"*.sock"))
	for _, s := range socks {
		if !uapiAlive(s) {
			_ = os.Remove(s)
		}
	}
}
