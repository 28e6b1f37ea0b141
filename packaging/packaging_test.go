package packaging

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/powernode/fedgate/agent"
)

const testVersion = "0.0.0~test-1"

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// packagePaths lists the absolute paths a .deb holds (files and dirs).
func packagePaths(t *testing.T, deb string) []string {
	t.Helper()
	var paths []string
	sc := bufio.NewScanner(strings.NewReader(run(t, "dpkg-deb", "-c", deb)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths
}

// TestPrivilegedDebInstall builds the package the way `make deb` does,
// checks it with lintian (when installed), installs it with dpkg -i, checks
// files, modes and the fedgate user, purges it with dpkg -P, and checks that
// every path is back to how it was before the install.
func TestPrivilegedDebInstall(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs a Debian package with dpkg -i")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg", "adduser"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian)", tool)
		}
	}
	if err := exec.Command("dpkg", "-s", "fedgate").Run(); err == nil {
		t.Skip("fedgate is already installed on this machine: not touching it")
	}
	if _, err := user.Lookup("fedgate"); err == nil {
		t.Skip("a fedgate user already exists on this machine: not touching it")
	}
	for _, p := range []string{"/etc/fedgate", "/var/lib/fedgate", "/run/fedgate"} {
		if exists(p) {
			t.Skipf("%s exists: not touching this machine", p)
		}
	}

	out := t.TempDir()
	build := exec.Command("./build-deb.sh", out)
	build.Env = append(os.Environ(), "VERSION="+testVersion)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "fedgate_"+testVersion+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one .deb in %s, got %v", out, debs)
	}
	deb := debs[0]

	t.Run("lintian", func(t *testing.T) {
		if _, err := exec.LookPath("lintian"); err != nil {
			t.Skip("lintian not installed (apt-get install lintian)")
		}
		b, err := exec.Command("lintian", "--fail-on", "error,warning,info", "--display-info", deb).CombinedOutput()
		text := strings.TrimSpace(strings.ReplaceAll(string(b), "running with root privileges is not recommended!", ""))
		if err != nil || text != "" {
			t.Errorf("lintian (every remaining tag must be fixed or overridden with a reason): %v\n%s", err, text)
		}
	})

	paths := packagePaths(t, deb)
	before := map[string]bool{}
	for _, p := range paths {
		before[p] = exists(p)
	}

	t.Cleanup(func() { _ = exec.Command("dpkg", "-P", "fedgate").Run() })
	run(t, "dpkg", "-i", deb)

	// Files.
	for _, p := range []string{
		"/usr/bin/fedgated", "/usr/bin/fedgate",
		"/lib/systemd/system/fedgated.service", "/lib/systemd/system/fedgate-wg@.service",
		"/usr/share/bash-completion/completions/fedgate", "/usr/share/zsh/vendor-completions/_fedgate",
		"/usr/share/fish/vendor_completions.d/fedgate.fish", "/usr/share/bash-completion/completions/fedgated",
		"/usr/share/man/man1/fedgate.1.gz", "/usr/share/man/man8/fedgated.8.gz",
		"/usr/share/doc/fedgate/examples/fedgated.yaml", "/usr/share/doc/fedgate/config.md.gz",
		"/usr/share/doc/fedgate/copyright", "/etc/fedgate/fedgated.yaml",
	} {
		if !exists(p) {
			t.Errorf("%s not installed", p)
		}
	}
	if b := run(t, "/usr/bin/fedgate", "--help"); !strings.Contains(b, "local API") {
		t.Errorf("installed fedgate --help: %s", b)
	}
	if b := run(t, "/usr/bin/fedgated", "--help"); !strings.Contains(b, "--config") {
		t.Errorf("installed fedgated --help: %s", b)
	}
	if b := run(t, "man", "-P", "cat", "fedgated"); !strings.Contains(b, "SIGHUP") {
		t.Errorf("man fedgated: %s", b)
	}
	if b := run(t, "man", "-P", "cat", "1", "fedgate"); !strings.Contains(b, "fedgate peers add") {
		t.Errorf("man fedgate has no subcommands: %s", b)
	}
	if _, err := agent.LoadConfig("/etc/fedgate/fedgated.yaml"); err != nil {
		t.Errorf("installed config does not load: %v", err)
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		// The installed units, with the man pages now present (no --man=no).
		run(t, "systemd-analyze", "verify", "/lib/systemd/system/fedgated.service")
	}

	// The user, the group and the config's ownership.
	u, err := user.Lookup("fedgate")
	if err != nil {
		t.Fatalf("fedgate user not created: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 {
		t.Errorf("fedgate uid %d is not a system uid", uid)
	}
	if u.HomeDir != "/var/lib/fedgate" {
		t.Errorf("fedgate home %q", u.HomeDir)
	}
	if pw := run(t, "getent", "passwd", "fedgate"); !strings.HasSuffix(strings.TrimSpace(pw), ":/usr/sbin/nologin") {
		t.Errorf("fedgate can log in: %s", pw)
	}
	g, err := user.LookupGroup("fedgate")
	if err != nil {
		t.Fatalf("fedgate group not created: %v", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	for p, mode := range map[string]fs.FileMode{"/etc/fedgate": fs.ModeDir | 0o750, "/etc/fedgate/fedgated.yaml": 0o640} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != mode || st.Uid != 0 || int(st.Gid) != gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v root:fedgate", p, fi.Mode(), st.Uid, st.Gid, mode)
		}
	}

	// What a running agent leaves: state and runtime files owned by fedgate.
	uid, _ := strconv.Atoi(u.Uid)
	for _, d := range []string{"/var/lib/fedgate/raft", "/run/fedgate"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, "state")
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{d, filepath.Dir(d), f} {
			if p != "/run" && p != "/var/lib" {
				_ = os.Chown(p, uid, gid)
			}
		}
	}

	// An upgrade to the same version keeps the user and the config.
	run(t, "dpkg", "-i", deb)
	if _, err := user.Lookup("fedgate"); err != nil {
		t.Fatal("reinstall lost the user")
	}

	run(t, "dpkg", "-P", "fedgate")
	if err := exec.Command("dpkg", "-s", "fedgate").Run(); err == nil {
		t.Error("dpkg still lists fedgate after purge")
	}
	var left []string
	for _, p := range append(paths, "/etc/fedgate", "/var/lib/fedgate", "/run/fedgate") {
		if exists(p) != before[p] {
			left = append(left, p)
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind after dpkg -P: %v", left)
	}
	if _, err := user.Lookup("fedgate"); err == nil {
		t.Error("fedgate user left behind")
	} else if !errors.As(err, new(user.UnknownUserError)) {
		t.Errorf("user lookup: %v", err)
	}
	if _, err := user.LookupGroup("fedgate"); err == nil {
		t.Error("fedgate group left behind")
	}
}
