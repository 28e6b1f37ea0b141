package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultSocket is the local API socket of a production node.
const DefaultSocket = "/run/fedgate/fedgate.sock"

// ErrConfig marks a configuration that cannot be used; the message names the
// file, line and key that are wrong.
var ErrConfig = errors.New("invalid config")

// Config is fedgated's whole configuration: one YAML file, unknown keys
// rejected. Every field has a default that a single-node site can run on.
type Config struct {
	// Node identifies this host within the site.
	Node NodeConfig `yaml:"node"`
	// Log selects the log format and level.
	Log LogConfig `yaml:"log"`
	// API is the local API on a unix socket, the only thing the CLI talks to.
	API APIConfig `yaml:"api"`
	// Raft is the replicated state.
	Raft RaftConfig `yaml:"raft"`
	// Cluster is the cluster-internal HTTPS API (join, certificate renewal).
	Cluster ClusterConfig `yaml:"cluster"`
	// PKI selects the certificate authority.
	PKI PKIConfig `yaml:"pki"`
	// Metrics is the Prometheus listener.
	Metrics MetricsConfig `yaml:"metrics"`
	// Federation holds what this site tells its peers about itself.
	Federation FederationConfig `yaml:"federation"`
	// Net is netctl: WireGuard interfaces and VIP mounts.
	Net NetConfig `yaml:"netctl"`
	// Audit is the node's tamper-evident audit log.
	Audit AuditConfig `yaml:"audit"`
	// Proxy is the federation data path.
	Proxy ProxyConfig `yaml:"proxy"`
	// Lifecycle is the federation lifecycle: invitations, handshakes,
	// heartbeats, revocation and compromise notices, platform events.
	Lifecycle LifecycleConfig `yaml:"lifecycle"`
}

// ProxyConfig configures the federation proxy. Empty addresses disable
// the listener.
type ProxyConfig struct {
	// Inbound is the peer-facing mTLS listener (e.g. the site VIP :8443).
	// It binds with IP_FREEBIND: every node of an HA site listens on the
	// VIP from start-up, and only the VIP holder receives connections.
	Inbound string `yaml:"inbound"`
	// Outbound is the loopback listener platform services send peer calls to.
	Outbound string `yaml:"outbound"`
	// OutboundSocket is the unix socket for the same (mode 0660).
	OutboundSocket string `yaml:"outbound_socket"`
	// SDWANNetworkID names the overlay inbound calls arrive on (grants'
	// sdwan_network_ids allowlist).
	SDWANNetworkID string `yaml:"sdwan_network_id"`
	// ResourceKinds are the capabilities this site declares to its peers.
	ResourceKinds []string `yaml:"resource_kinds"`
	// MigrationGrace is how long Powernode-Migration-Id calls outlive a
	// revocation (default 5m, commitment 4).
	MigrationGrace time.Duration `yaml:"migration_grace"`
	// AuditStrictAll forwards every call only once its audit record is
	// durable, GET, HEAD and OPTIONS too. By default those safe methods are
	// forwarded while their record is written; no response is released
	// before its record is durable either way.
	AuditStrictAll bool `yaml:"audit_strict_all"`
	// Limits bound connections, sizes and timeouts of the data path; a
	// field left out (or 0) keeps its default.
	Limits ProxyLimits `yaml:"limits"`
	// Routes are the inbound routes to local backends.
	Routes []ProxyRoute `yaml:"routes"`
	// OutboundL4 are local TCP listeners bound to an L4 route of a peer.
	OutboundL4 []ProxyOutboundL4 `yaml:"outbound_l4"`
}

// ProxyLimits bound the data path's resources. Zero keeps the default.
type ProxyLimits struct {
	// MaxConns caps concurrent inbound (peer) connections (default 4096).
	MaxConns int `yaml:"max_conns"`
	// HandshakeTimeout bounds a peer's TLS handshake (default 10s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// ReadHeaderTimeout bounds reading a request's header, the first one
	// from the connection's start (slowloris; default 10s).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included (default
	// none: long uploads such as migrations are bounded by max_body_bytes).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long (default 120s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteStallTimeout cuts a client that stops reading its response: each
	// wait for it to take bytes is bounded, not the response (default 30s).
	WriteStallTimeout time.Duration `yaml:"write_stall_timeout"`
	// MaxHeaderBytes caps a request header; more is answered 431 (default
	// 65536; at least 4096).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytes caps a request body; more is answered 413 (default 64 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// BackendTimeout bounds the wait for a backend's or peer's response
	// header (default 60s).
	BackendTimeout time.Duration `yaml:"backend_timeout"`
	// ConnectTimeout bounds a TCP connect to one peer endpoint before the
	// next is tried (default 200ms).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// EndpointTimeout bounds the TLS handshake with one peer endpoint
	// (default 3s).
	EndpointTimeout time.Duration `yaml:"endpoint_timeout"`
	// EndpointBackoff is how long a failed peer endpoint is skipped
	// (default 5s).
	EndpointBackoff time.Duration `yaml:"endpoint_backoff"`
	// MaxIdlePerHost caps pooled idle connections per backend or peer
	// (default 256).
	MaxIdlePerHost int `yaml:"max_idle_per_host"`
	// MaxConnsPerHost caps open connections per backend or peer; more calls
	// wait for one (default 256).
	MaxConnsPerHost int `yaml:"max_conns_per_host"`
	// MaxInFlightPerPeer caps one peer's inbound calls in flight; more are
	// answered 429 (default half of max_conns_per_host, so no peer can take
	// every backend connection).
	MaxInFlightPerPeer int `yaml:"max_in_flight_per_peer"`
}

// validate refuses negative values and a header limit too small to carry
// the federation headers.
func (l *ProxyLimits) validate() error {
	for k, d := range map[string]time.Duration{"handshake_timeout": l.HandshakeTimeout, "read_header_timeout": l.ReadHeaderTimeout,
		"read_timeout": l.ReadTimeout, "idle_timeout": l.IdleTimeout, "write_stall_timeout": l.WriteStallTimeout,
		"backend_timeout": l.BackendTimeout, "connect_timeout": l.ConnectTimeout, "endpoint_timeout": l.EndpointTimeout,
		"endpoint_backoff": l.EndpointBackoff} {
		if d < 0 {
			return badField("proxy.limits."+k, "must not be negative (0 keeps the default), got %s", d)
		}
	}
	for k, n := range map[string]int64{"max_conns": int64(l.MaxConns), "max_header_bytes": int64(l.MaxHeaderBytes),
		"max_body_bytes": l.MaxBodyBytes, "max_idle_per_host": int64(l.MaxIdlePerHost), "max_conns_per_host": int64(l.MaxConnsPerHost),
		"max_in_flight_per_peer": int64(l.MaxInFlightPerPeer)} {
		if n < 0 {
			return badField("proxy.limits."+k, "must not be negative (0 keeps the default), got %d", n)
		}
	}
	if l.MaxHeaderBytes > 0 && l.MaxHeaderBytes < 4096 {
		return badField("proxy.limits.max_header_bytes", "must be 0 (default) or at least 4096, got %d", l.MaxHeaderBytes)
	}
	return nil
}

// ProxyRoute is one inbound route.
type ProxyRoute struct {
	Name         string `yaml:"name"`
	Kind         string `yaml:"kind"` // http (default) or tcp
	PathPrefix   string `yaml:"path_prefix"`
	Backend      string `yaml:"backend"`
	ResourceKind string `yaml:"resource_kind"`
	RequireGrant bool   `yaml:"require_grant"`
	Scope        string `yaml:"scope"`
	RateLimited  bool   `yaml:"rate_limited"`
}

// ProxyOutboundL4 is a local TCP listener for one peer's L4 route.
type ProxyOutboundL4 struct {
	Listen string `yaml:"listen"`
	Peer   string `yaml:"peer"`
	Route  string `yaml:"route"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// Dir holds the segments. Default DATA_DIR/audit.
	Dir string `yaml:"dir"`
	// Retention deletes whole segments older than this (0 keeps all).
	// The contract asks for 72-hour excerpts: keep at least that.
	Retention time.Duration `yaml:"retention"`
	// SegmentMaxBytes rotates segments by size (default 64 MiB).
	SegmentMaxBytes int64 `yaml:"segment_max_bytes"`
	// Policy when the disk cannot keep up or fills: fail_closed (refuse
	// the audited call; default) or drop (count, and record the count).
	Policy string `yaml:"policy"`
	// PlatformURL, when set, ships records to the platform as FleetEvents.
	PlatformURL string `yaml:"platform_url"`
	// PlatformTokenFile holds the node API bearer token (0600).
	PlatformTokenFile string `yaml:"platform_token_file"`
}

// NetConfig configures netctl.
type NetConfig struct {
	// Mode is on (refuse to start without CAP_NET_ADMIN/CAP_NET_RAW and a
	// WireGuard backend), off, or auto (on when the host allows it, else
	// off with a warning). Default on; --dev uses auto.
	Mode string `yaml:"mode"`
	// Backend is auto (kernel WireGuard when the module exists, else
	// userspace wireguard-go on TUN), kernel or userspace. Default auto.
	Backend string `yaml:"backend"`
	// KeyFile holds this node's WireGuard private key (0600, generated on
	// first start, never replicated). Default DATA_DIR/wireguard/private.key.
	KeyFile string `yaml:"key_file"`
	// VIPInterface is where VIPs without an interface of their own are
	// mounted (e.g. eth0).
	VIPInterface string `yaml:"vip_interface"`
	// Interfaces are this node's WireGuard interfaces, one per overlay
	// network; their peers come from the replicated state.
	Interfaces []NetInterface `yaml:"interfaces"`
	// DeviceLogDir receives userspace device logs. Default /run/fedgate
	// (dev: DATA_DIR/run).
	DeviceLogDir string `yaml:"device_log_dir"`
}

// NetInterface is one local WireGuard interface.
type NetInterface struct {
	// Name starts with fg- and has at most 15 bytes.
	Name string `yaml:"name"`
	// ListenPort is the UDP port (default 51820).
	ListenPort int `yaml:"listen_port"`
	// MTU defaults to 1420.
	MTU int `yaml:"mtu"`
	// Addresses are this node's overlay addresses (CIDR).
	Addresses []string `yaml:"addresses"`
}

// NodeConfig identifies this node.
type NodeConfig struct {
	// DataDir holds raft, the CA, keys and the audit log. Default /var/lib/fedgate.
	DataDir string `yaml:"data_dir"`
	// SiteName names the site in certificates. Default "fedgate-site".
	SiteName string `yaml:"site_name"`
}

// LogConfig selects slog's handler.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// APIConfig is the local API.
type APIConfig struct {
	// Socket is the unix socket path, mode 0660. Default /run/fedgate/fedgate.sock.
	Socket string `yaml:"socket"`
}

// RaftConfig is the replicated state's listener and timing.
type RaftConfig struct {
	// Listen is the raft mTLS address. Default 127.0.0.1:7400.
	Listen string `yaml:"listen"`
	// Advertise is the address other nodes dial. Default Listen.
	Advertise string `yaml:"advertise"`
	// Bootstrap starts a new site with this node as its only voter when the
	// data dir holds no raft state. A node that joins an existing site sets false.
	Bootstrap *bool `yaml:"bootstrap"`
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout override raftstore's LAN defaults.
	HeartbeatTimeout   time.Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
}

// ClusterConfig is the cluster-internal HTTPS API.
type ClusterConfig struct {
	// Listen is the address of the join and renewal endpoint. Default 127.0.0.1:7401.
	Listen string `yaml:"listen"`
	// Advertise is the address other nodes dial. Default Listen.
	Advertise string `yaml:"advertise"`
}

// PKIConfig selects the CA.
type PKIConfig struct {
	// NodeCertLifetime is the lifetime of node certificates. Default 24h.
	NodeCertLifetime time.Duration `yaml:"node_cert_lifetime"`
}

// MetricsConfig is the Prometheus and health listener.
type MetricsConfig struct {
	// Listen is a loopback address; empty disables it. Default 127.0.0.1:9464 (dev: off).
	Listen string `yaml:"listen"`
}

// FederationConfig is what this site declares to its peers.
type FederationConfig struct {
	// GrantSecretFile holds the HMAC secret for grant tokens (mode 0600 or
	// tighter). Default DATA_DIR/secrets/grant.key, created on first start.
	GrantSecretFile string `yaml:"grant_secret_file"`
	// PlatformVersion is the Powernode build this site runs (semver).
	PlatformVersion string `yaml:"platform_version"`
}

// DefaultConfig returns the configuration a production node starts from.
func DefaultConfig() Config {
	return Config{
		Node:    NodeConfig{DataDir: "/var/lib/fedgate", SiteName: "fedgate-site"},
		Log:     LogConfig{Level: "info", Format: "text"},
		API:     APIConfig{Socket: DefaultSocket},
		Raft:    RaftConfig{Listen: "127.0.0.1:7400"},
		Cluster: ClusterConfig{Listen: "127.0.0.1:7401"},
		PKI:     PKIConfig{NodeCertLifetime: 24 * time.Hour},
		Metrics: MetricsConfig{Listen: "127.0.0.1:9464"},
		Federation: FederationConfig{
			PlatformVersion: "1.0.0",
		},
		Net:   NetConfig{Mode: "on", Backend: "auto"},
		Audit: AuditConfig{Policy: "fail_closed"},
	}
}

// LoadConfig reads and validates the YAML file at path. Unknown keys, wrong
// types and invalid values are refused with the file, line and key.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes data (named name in errors) over DefaultConfig and validates it.
func ParseConfig(name string, data []byte) (Config, error) {
	cfg := DefaultConfig()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %s", ErrConfig, name, cleanYAMLError(err))
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("%w: %s: %s", ErrConfig, name, nameKeys(&root, cleanYAMLError(err)))
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %s", ErrConfig, name, locate(&root, err))
	}
	return cfg, nil
}

// fieldError names the YAML key path of an invalid value.
type fieldError struct {
	key string // dotted path, e.g. raft.listen
	msg string
}

func (e *fieldError) Error() string { return e.key + ": " + e.msg }

func badField(key, format string, args ...any) error {
	return &fieldError{key: key, msg: fmt.Sprintf(format, args...)}
}

// locate prefixes a validation error with the line of its key in the file.
func locate(root *yaml.Node, err error) string {
	var fe *fieldError
	if !errors.As(err, &fe) {
		return err.Error()
	}
	if line := keyLine(root, strings.Split(fe.key, ".")); line > 0 {
		return fmt.Sprintf("line %d: %s", line, fe.Error())
	}
	return fe.Error()
}

func keyLine(n *yaml.Node, path []string) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return keyLine(n.Content[0], path)
	}
	if n.Kind != yaml.MappingNode || len(path) == 0 {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == path[0] {
			if len(path) == 1 {
				return n.Content[i].Line
			}
			if l := keyLine(n.Content[i+1], path[1:]); l > 0 {
				return l
			}
			return n.Content[i].Line
		}
	}
	return 0
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// nameKeys adds the dotted key of each "line N:" in msg.
func nameKeys(root *yaml.Node, msg string) string {
	return lineRE.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if key := keyAtLine(root, n, ""); key != "" {
			return fmt.Sprintf("line %d: %s: ", n, key)
		}
		return m
	})
}

func keyAtLine(n *yaml.Node, line int, prefix string) string {
	if n == nil {
		return ""
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return keyAtLine(n.Content[0], line, prefix)
	}
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if prefix != "" {
			k = prefix + "." + k
		}
		if n.Content[i].Line == line {
			return k
		}
		if got := keyAtLine(n.Content[i+1], line, k); got != "" {
			return got
		}
	}
	return ""
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "in type agent.", "in section ")
	return s
}

// Validate checks every field and names the first bad key.
func (c *Config) Validate() error {
	if c.Node.DataDir == "" {
		return badField("node.data_dir", "must be set")
	}
	if !filepath.IsAbs(c.Node.DataDir) {
		return badField("node.data_dir", "must be an absolute path, got %q", c.Node.DataDir)
	}
	if c.Node.SiteName == "" || len(c.Node.SiteName) > 64 {
		return badField("node.site_name", "must be 1..64 characters")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return badField("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return badField("log.format", "must be text or json, got %q", c.Log.Format)
	}
	if c.API.Socket == "" || !filepath.IsAbs(c.API.Socket) {
		return badField("api.socket", "must be an absolute path, got %q", c.API.Socket)
	}
	if len(c.API.Socket) > 107 {
		return badField("api.socket", "path longer than a unix socket allows (107 bytes)")
	}
	if err := checkHostPort("raft.listen", c.Raft.Listen, false); err != nil {
		return err
	}
	if err := checkHostPort("raft.advertise", c.Raft.Advertise, true); err != nil {
		return err
	}
	if err := checkHostPort("cluster.listen", c.Cluster.Listen, false); err != nil {
		return err
	}
	if err := checkHostPort("cluster.advertise", c.Cluster.Advertise, true); err != nil {
		return err
	}
	if c.Raft.Listen == c.Cluster.Listen && !strings.HasSuffix(c.Raft.Listen, ":0") {
		return badField("cluster.listen", "must differ from raft.listen (%s)", c.Raft.Listen)
	}
	for k, d := range map[string]time.Duration{
		"raft.heartbeat_timeout": c.Raft.HeartbeatTimeout, "raft.election_timeout": c.Raft.ElectionTimeout,
		"raft.leader_lease_timeout": c.Raft.LeaderLeaseTimeout,
	} {
		if d < 0 || (d > 0 && d < 10*time.Millisecond) {
			return badField(k, "must be 0 (default) or at least 10ms, got %s", d)
		}
	}
	if c.Raft.LeaderLeaseTimeout > 0 && c.Raft.HeartbeatTimeout > 0 && c.Raft.LeaderLeaseTimeout >= c.Raft.HeartbeatTimeout {
		return badField("raft.leader_lease_timeout", "must be below raft.heartbeat_timeout so an isolated leader steps down first")
	}
	if c.PKI.NodeCertLifetime < time.Minute || c.PKI.NodeCertLifetime > 90*24*time.Hour {
		return badField("pki.node_cert_lifetime", "must be between 1m and 2160h, got %s", c.PKI.NodeCertLifetime)
	}
	if c.Metrics.Listen != "" {
		if err := checkHostPort("metrics.listen", c.Metrics.Listen, false); err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(c.Metrics.Listen)
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
			if host != "localhost" {
				return badField("metrics.listen", "must be a loopback address, got %q", c.Metrics.Listen)
			}
		}
	}
	if c.Federation.GrantSecretFile != "" && !filepath.IsAbs(c.Federation.GrantSecretFile) {
		return badField("federation.grant_secret_file", "must be an absolute path")
	}
	if c.Federation.PlatformVersion == "" {
		return badField("federation.platform_version", "must be set (semver)")
	}
	if err := c.Net.validate(); err != nil {
		return err
	}
	if err := c.Audit.validate(); err != nil {
		return err
	}
	if err := c.Proxy.validate(); err != nil {
		return err
	}
	return c.Lifecycle.validate()
}

func (p *ProxyConfig) validate() error {
	for k, v := range map[string]string{"proxy.inbound": p.Inbound, "proxy.outbound": p.Outbound} {
		if v != "" {
			if err := checkHostPort(k, v, false); err != nil {
				return err
			}
		}
	}
	if p.Outbound != "" {
		host, _, _ := net.SplitHostPort(p.Outbound)
		if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
			return badField("proxy.outbound", "must be a loopback address: local services reach peers through it without credentials")
		}
	}
	if p.OutboundSocket != "" && !filepath.IsAbs(p.OutboundSocket) {
		return badField("proxy.outbound_socket", "must be an absolute path")
	}
	if p.MigrationGrace < 0 {
		return badField("proxy.migration_grace", "must not be negative")
	}
	if err := p.Limits.validate(); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, r := range p.Routes {
		switch {
		case r.Name == "" || names[r.Name]:
			return badField("proxy.routes", "routes[%d]: name %q is empty or repeated", i, r.Name)
		case r.Kind != "" && r.Kind != "http" && r.Kind != "tcp":
			return badField("proxy.routes", "routes[%d] (%s): kind must be http or tcp", i, r.Name)
		case r.Backend == "":
			return badField("proxy.routes", "routes[%d] (%s): backend must be set", i, r.Name)
		case r.ResourceKind == "":
			return badField("proxy.routes", "routes[%d] (%s): resource_kind must be set (default deny)", i, r.Name)
		case (r.Kind == "" || r.Kind == "http") && !strings.HasPrefix(r.PathPrefix, "/"):
			return badField("proxy.routes", "routes[%d] (%s): path_prefix must start with /", i, r.Name)
		}
		names[r.Name] = true
	}
	for i, o := range p.OutboundL4 {
		if err := checkHostPort("proxy.outbound_l4", o.Listen, false); err != nil {
			return badField("proxy.outbound_l4", "outbound_l4[%d]: listen %q is not host:port", i, o.Listen)
		}
		if o.Peer == "" || o.Route == "" {
			return badField("proxy.outbound_l4", "outbound_l4[%d]: peer and route must be set", i)
		}
	}
	return nil
}

func (a *AuditConfig) validate() error {
	if a.Dir != "" && !filepath.IsAbs(a.Dir) {
		return badField("audit.dir", "must be an absolute path")
	}
	if a.Retention < 0 || (a.Retention > 0 && a.Retention < 72*time.Hour) {
		return badField("audit.retention", "must be 0 (keep all) or at least 72h (contract commitment 5), got %s", a.Retention)
	}
	if a.SegmentMaxBytes < 0 || (a.SegmentMaxBytes > 0 && a.SegmentMaxBytes < 4096) {
		return badField("audit.segment_max_bytes", "must be 0 (default) or at least 4096")
	}
	switch a.Policy {
	case "fail_closed", "drop":
	default:
		return badField("audit.policy", "must be fail_closed or drop, got %q", a.Policy)
	}
	if a.PlatformURL != "" {
		u, err := url.Parse(a.PlatformURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return badField("audit.platform_url", "must be an http(s) URL, got %q", a.PlatformURL)
		}
		if a.PlatformTokenFile == "" {
			return badField("audit.platform_token_file", "must be set with audit.platform_url")
		}
	}
	return nil
}

func (n *NetConfig) validate() error {
	switch n.Mode {
	case "on", "off", "auto":
	default:
		return badField("netctl.mode", "must be on, off or auto, got %q", n.Mode)
	}
	switch n.Backend {
	case "auto", "kernel", "userspace":
	default:
		return badField("netctl.backend", "must be auto, kernel or userspace, got %q", n.Backend)
	}
	if n.KeyFile != "" && !filepath.IsAbs(n.KeyFile) {
		return badField("netctl.key_file", "must be an absolute path")
	}
	seen := map[string]bool{}
	for i, ifc := range n.Interfaces {
		const key = "netctl.interfaces"
		if !strings.HasPrefix(ifc.Name, "fg-") || len(ifc.Name) > 15 {
			return badField(key, "interfaces[%d].name %q must start with fg- and have at most 15 bytes", i, ifc.Name)
		}
		if seen[ifc.Name] {
			return badField(key, "interfaces[%d].name %q is listed twice", i, ifc.Name)
		}
		seen[ifc.Name] = true
		if ifc.ListenPort < 0 || ifc.ListenPort > 65535 {
			return badField(key, "interfaces[%d].listen_port %d out of range", i, ifc.ListenPort)
		}
		if ifc.MTU != 0 && (ifc.MTU < 1280 || ifc.MTU > 9000) {
			return badField(key, "interfaces[%d].mtu %d must be 1280..9000", i, ifc.MTU)
		}
		for _, a := range ifc.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				return badField(key, "interfaces[%d].addresses: %q is not a CIDR", i, a)
			}
		}
	}
	return nil
}

func checkHostPort(key, v string, optional bool) error {
	if v == "" {
		if optional {
			return nil
		}
		return badField(key, "must be set (host:port)")
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return badField(key, "must be host:port, got %q", v)
	}
	if port == "" {
		return badField(key, "missing port in %q", v)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return badField(key, "host must be an IP address or localhost, got %q", host)
		}
	}
	return nil
}

// DevConfig is the embedded default of `fedgated --dev`: a single-node site
// in dataDir with the socket in dataDir and free loopback ports.
func DevConfig(dataDir string) Config {
	c := DefaultConfig()
	c.Node.DataDir = dataDir
	c.Node.SiteName = "fedgate-dev"
	c.API.Socket = filepath.Join(dataDir, "fedgate.sock")
	c.Raft.Listen = "127.0.0.1:0"
	c.Cluster.Listen = "127.0.0.1:0"
	c.Metrics.Listen = ""
	c.Net.Mode = "auto"
	c.Net.DeviceLogDir = filepath.Join(dataDir, "run")
	c.Proxy.Inbound = "127.0.0.1:0"
	c.Proxy.Outbound = "127.0.0.1:0"
	c.Lifecycle.Listen = "127.0.0.1:0"
	c.Lifecycle.BootstrapListen = "127.0.0.1:0"
	return c
}
