package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// maxExposure is the ceiling for our units' offline exposure score; it only
// ever goes down.
const maxExposure = 2.0

func needAnalyze(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze missing (install systemd)")
		}
		t.Skip("systemd-analyze not installed")
	}
}

// buildFedgated builds the daemon once for the units' ExecStart.
func buildFedgated(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "fedgated")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/powernode/fedgate/cmd/fedgated")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build fedgated: %v\n%s", err, out)
	}
	return bin
}

// copyUnit writes unit src into dir as name, with /usr/bin/fedgated
// replaced by bin.
func copyUnit(t *testing.T, src, dir, name, bin string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if bin != "" {
		if !strings.Contains(s, "ExecStart=/usr/bin/fedgated ") {
			t.Fatalf("%s: ExecStart does not run /usr/bin/fedgated", src)
		}
		s = strings.ReplaceAll(s, "/usr/bin/fedgated", bin)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerify: `systemd-analyze verify` accepts both units (the template as
// an instance). Man pages are checked by the package test, where they are
// installed; here --man=no.
func TestVerify(t *testing.T) {
	needAnalyze(t)
	dir := t.TempDir()
	bin := buildFedgated(t, dir)
	units := []string{
		copyUnit(t, "fedgated.service", dir, "fedgated.service", bin),
		copyUnit(t, "fedgate-wg@.service", dir, "fedgate-wg@fg-wg0.service", bin),
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// A broken unit is reported: the check is real.
	bad := copyUnit(t, "fedgated.service", dir, "broken.service", bin)
	b, _ := os.ReadFile(bad)
	os.WriteFile(bad, []byte(strings.Replace(string(b), "Type=notify", "Type=notifyy", 1)), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", bad).CombinedOutput(); err == nil && !strings.Contains(string(out), "notifyy") {
		t.Fatalf("verify accepted a bad Type=: %s", out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func exposure(t *testing.T, unit string) float64 {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", unit, err, out)
	}
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSecurityScore measures the offline exposure of our units and of
// tailscaled's and step-ca's shipped units (lower is better); ours must be
// better than both and no worse than maxExposure.
func TestSecurityScore(t *testing.T) {
	needAnalyze(t)
	dir := t.TempDir()
	scores := map[string]float64{
		"fedgated":   exposure(t, copyUnit(t, "fedgated.service", dir, "fedgated.service", "")),
		"fedgate-wg": exposure(t, copyUnit(t, "fedgate-wg@.service", dir, "fedgate-wg@fg-wg0.service", "")),
		"tailscaled": exposure(t, copyUnit(t, "compare/tailscaled.service", dir, "tailscaled.service", "")),
		"step-ca":    exposure(t, copyUnit(t, "compare/step-ca.service", dir, "step-ca.service", "")),
	}
	t.Logf("systemd-analyze security --offline=yes (systemd %s): %v", systemdVersion(t), scores)
	for _, ours := range []string{"fedgated", "fedgate-wg"} {
		if scores[ours] > maxExposure {
			t.Errorf("%s exposure %.1f above %.1f", ours, scores[ours], maxExposure)
		}
		for _, other := range []string{"tailscaled", "step-ca"} {
			if scores[ours] >= scores[other] {
				t.Errorf("%s (%.1f) is not better than %s (%.1f)", ours, scores[ours], other, scores[other])
			}
		}
	}
}

func systemdVersion(t *testing.T) string {
	out, err := exec.Command("systemd-analyze", "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "?"
	}
	return f[1]
}

// directives parses the [Service] section into key -> values.
func directives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: malformed line %q", path, line)
		}
		out[section+k] = append(out[section+k], v)
	}
	return out
}

func words(v []string) []string {
	var w []string
	for _, s := range v {
		w = append(w, strings.Fields(s)...)
	}
	sort.Strings(w)
	return w
}

// TestDirectives pins what the issue asks of the units, so a later edit
// cannot silently drop a capability bound or a sandbox setting.
func TestDirectives(t *testing.T) {
	d := directives(t, "fedgated.service")
	s := "[Service]"
	for key, want := range map[string][]string{
		"AmbientCapabilities":     {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"},
		"CapabilityBoundingSet":   {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"},
		"RestrictAddressFamilies": {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"},
		"DeviceAllow":             {"/dev/net/tun", "rw"},
		"Type":                    {"notify"},
		"NotifyAccess":            {"main"},
		"Restart":                 {"on-failure"},
		"User":                    {"fedgate"},
		"NoNewPrivileges":         {"yes"},
		"ProtectSystem":           {"strict"},
		"ProtectHome":             {"yes"},
		"PrivateTmp":              {"yes"},
		"LockPersonality":         {"yes"},
		"MemoryDenyWriteExecute":  {"yes"},
		"StateDirectory":          {"fedgate"},
		"ConfigurationDirectory":  {"fedgate"},
		"RuntimeDirectory":        {"fedgate", "wireguard"},
		"SystemCallFilter":        {"@obsolete", "@privileged", "@resources", "@system-service"},
	} {
		got := words(d[s+key])
		for i := range got {
			got[i] = strings.TrimPrefix(got[i], "~")
		}
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("fedgated.service %s (-want +got):\n%s", key, diff)
		}
	}
	if len(d[s+"WatchdogSec"]) != 1 {
		t.Error("fedgated.service: WatchdogSec missing")
	}
	if !cmp.Equal(d[s+"ExecReload"], []string{"/bin/kill -HUP $MAINPID"}) {
		t.Errorf("ExecReload = %q, want SIGHUP", d[s+"ExecReload"])
	}

	w := directives(t, "fedgate-wg@.service")
	if !cmp.Equal(w[s+"ExecStart"], []string{"/usr/bin/fedgated wg-device %i"}) {
		t.Errorf("fedgate-wg@.service ExecStart = %q", w[s+"ExecStart"])
	}
	if !cmp.Equal(words(w[s+"AmbientCapabilities"]), []string{"CAP_NET_ADMIN"}) {
		t.Errorf("device capabilities = %q, want CAP_NET_ADMIN only", w[s+"AmbientCapabilities"])
	}
	if len(w["[Unit]PartOf"]) != 0 || len(w["[Unit]BindsTo"]) != 0 {
		t.Error("the device must survive an agent restart: no PartOf/BindsTo")
	}
}
