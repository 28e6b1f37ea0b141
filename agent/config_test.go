package agent

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/powernode/fedgate/proxy"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Socket != DefaultSocket || cfg.Node.DataDir != "/var/lib/fedgate" || cfg.PKI.NodeCertLifetime != 24*time.Hour {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestParseConfigFull(t *testing.T) {
	cfg, err := ParseConfig("full.yaml", []byte(`
node:
  data_dir: /srv/fedgate
  site_name: site-a
log: {level: debug, format: json}
api: {socket: /run/fg/api.sock}
raft:
  listen: 10.0.0.1:7400
  advertise: 10.0.0.1:7400
  bootstrap: false
  heartbeat_timeout: 300ms
  leader_lease_timeout: 150ms
cluster: {listen: 10.0.0.1:7401}
pki: {node_cert_lifetime: 12h}
metrics: {listen: "127.0.0.1:9999"}
federation: {platform_version: 2.3.4}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Raft.Bootstrap == nil || *cfg.Raft.Bootstrap || cfg.Raft.HeartbeatTimeout != 300*time.Millisecond || cfg.Log.Format != "json" {
		t.Fatalf("decoded wrong: %+v", cfg)
	}
}

// Every refusal names the file, the line and the key.
func TestParseConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "node:\n  data_dir: /x\n  colour: blue\n", []string{"bad.yaml", "line 3", "colour"}},
		{"unknown section", "nodes:\n  data_dir: /x\n", []string{"line 1", "nodes"}},
		{"wrong type", "raft:\n  heartbeat_timeout: soon\n", []string{"line 2", "heartbeat_timeout"}},
		{"relative data dir", "log:\n  level: info\nnode:\n  data_dir: relative/dir\n", []string{"line 4", "node.data_dir", "absolute"}},
		{"bad level", "log:\n  level: loud\n", []string{"line 2", "log.level"}},
		{"bad listen", "raft:\n  listen: nowhere\n", []string{"line 2", "raft.listen"}},
		{"hostname listen", "cluster:\n  listen: example.com:7401\n", []string{"line 2", "cluster.listen"}},
		{"public metrics", "metrics:\n  listen: 0.0.0.0:9464\n", []string{"line 2", "metrics.listen", "loopback"}},
		{"lease above heartbeat", "raft:\n  heartbeat_timeout: 100ms\n  leader_lease_timeout: 200ms\n", []string{"line 3", "leader_lease_timeout"}},
		{"same ports", "raft:\n  listen: 127.0.0.1:7000\ncluster:\n  listen: 127.0.0.1:7000\n", []string{"line 4", "cluster.listen"}},
		{"short lifetime", "pki:\n  node_cert_lifetime: 1s\n", []string{"line 2", "pki.node_cert_lifetime"}},
		{"malformed yaml", "node: [unclosed\n", []string{"bad.yaml"}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", []string{"line 3", "level"}},
		{"negative body limit", "proxy:\n  limits:\n    max_body_bytes: -1\n", []string{"line 3", "proxy.limits.max_body_bytes", "negative"}},
		{"negative timeout", "proxy:\n  limits:\n    idle_timeout: -5s\n", []string{"line 3", "proxy.limits.idle_timeout", "negative"}},
		{"tiny header limit", "proxy:\n  limits:\n    max_header_bytes: 100\n", []string{"line 3", "proxy.limits.max_header_bytes", "4096"}},
		{"limit not a number", "proxy:\n  limits:\n    max_conns: many\n", []string{"line 3", "max_conns"}},
		{"unknown limit", "proxy:\n  limits:\n    max_bodies: 1\n", []string{"line 3", "max_bodies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDevConfigValid(t *testing.T) {
	c := DevConfig("/tmp/x")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.API.Socket != "/tmp/x/fedgate.sock" {
		t.Fatalf("dev socket %q", c.API.Socket)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("node:\n  data_dir: /x\n"))
	f.Add([]byte("raft: {listen: '127.0.0.1:1'}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig("fuzz.yaml", b)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("ParseConfig accepted a config Validate refuses: %v", verr)
			}
		}
	})
}

// proxy.limits and proxy.audit_strict_all reach the proxy's configuration;
// limits left out stay zero there, which the proxy turns into its defaults.
func TestProxyLimitsConfig(t *testing.T) {
	cfg, err := ParseConfig("limits.yaml", []byte(`
proxy:
  audit_strict_all: true
  limits:
    max_conns: 100
    read_header_timeout: 2s
    write_stall_timeout: 45s
    max_header_bytes: 8192
    max_body_bytes: 1073741824
    connect_timeout: 500ms
    max_in_flight_per_peer: 64
`))
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	pc := a.proxyConfig()
	want := proxy.Limits{MaxConns: 100, ReadHeaderTimeout: 2 * time.Second, WriteStallTimeout: 45 * time.Second,
		MaxHeaderBytes: 8192, MaxBodyBytes: 1 << 30, ConnectTimeout: 500 * time.Millisecond, MaxInFlightPerPeer: 64}
	if diff := cmp.Diff(want, pc.Limits); diff != "" || !pc.AuditStrictAll {
		t.Fatalf("proxy config (-want +got):\n%s\nAuditStrictAll=%v", diff, pc.AuditStrictAll)
	}
}
