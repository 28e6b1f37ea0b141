package proxy

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/powernode/fedgate/federation"
)

// RouteKind is how an inbound route carries traffic.
type RouteKind string

// Route kinds.
const (
	// RouteHTTP is an L7 route: HTTP/1.1 or HTTP/2 requests by path prefix.
	RouteHTTP RouteKind = "http"
	// RouteTCP is an L4 route: a TLS stream (ALPN "fedgate-l4/<name>") spliced
	// to a TCP backend behind a PROXY protocol v2 header.
	RouteTCP RouteKind = "tcp"
)

// ALPNPrefix prefixes the ALPN protocol of an L4 route.
const ALPNPrefix = "fedgate-l4/"

// Route is one inbound route.
type Route struct {
	// Name identifies the route in audit metadata, metrics and (for L4) ALPN.
	Name string
	// Kind is RouteHTTP (default) or RouteTCP.
	Kind RouteKind
	// PathPrefix selects L7 requests (longest prefix wins). Ignored for L4.
	PathPrefix string
	// Backend is the local backend: an http:// URL for L7, host:port for L4.
	Backend string
	// ResourceKind is the capability the calling peer must have declared
	// (required: default deny).
	ResourceKind string
	// RequireGrant demands a valid grant token (L7 only).
	RequireGrant bool
	// Scope is the scope the grant must hold; empty derives it from the
	// method (GET, HEAD, OPTIONS read; others write) and from
	// Powernode-Migration-Id (migrate).
	Scope federation.Scope
	// RateLimited marks capability calls: per-peer token bucket.
	RateLimited bool
}

// OutboundL4 is a local TCP listener whose connections go to route Route of
// peer PeerID.
type OutboundL4 struct {
	Listen string
	PeerID string
	Route  string
}

// Limits bound resource use. Zero values take defaults.
type Limits struct {
	MaxConns          int           // inbound concurrent connections (4096)
	HandshakeTimeout  time.Duration // TLS handshake (10s)
	ReadHeaderTimeout time.Duration // request headers, slowloris bound (10s)
	ReadTimeout       time.Duration // whole request incl. body (0: none)
	IdleTimeout       time.Duration // keep-alive idle (120s)
	// WriteStallTimeout cuts a client that stops reading its response (30s;
	// negative: none). It bounds each wait for the client to take bytes,
	// not the response: the kernel wakes a blocked writer once about half
	// the socket send buffer has drained, so a client reading slower than
	// (send buffer / 2) per timeout is cut (4 MiB buffer: ~70 KiB/s).
	WriteStallTimeout time.Duration
	MaxHeaderBytes    int           // request headers (64 KiB), else 431
	MaxBodyBytes      int64         // request body (64 MiB), else 413
	BackendTimeout    time.Duration // response headers from backend or peer (60s)
	ConnectTimeout    time.Duration // TCP connect per peer endpoint (200ms)
	EndpointTimeout   time.Duration // TLS handshake per peer endpoint (3s)
	EndpointBackoff   time.Duration // skip a failed endpoint for (5s)
	MaxIdlePerHost    int           // pooled idle connections per backend/peer (256)
	MaxConnsPerHost   int           // open connections per backend/peer; more requests queue (256)
	// MaxInFlightPerPeer caps one peer's inbound calls in flight; more are
	// answered 429 peer_concurrency_limit (default MaxConnsPerHost/2, so no
	// peer can take every backend connection; negative: no limit).
	MaxInFlightPerPeer int
}

// Config configures a Proxy.
type Config struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time

	// NodeID is this node's instance id (grant node_instance_ids allowlist).
	NodeID string
	// SDWANNetworkID is the overlay network inbound calls arrive on (grant
	// sdwan_network_ids allowlist); empty matches only grants without one.
	SDWANNetworkID string

	State      StateView
	Auditor    Auditor
	Verifier   Verifier
	Certs      Certificates
	Findings   Findings      // optional
	Handshakes HandshakeSink // optional
	// GrantKey returns the prepared grant-token key (federation.NewTokenKey
	// of the secret, swapped whole on rotation); grant checks fail closed
	// while it returns nil.
	GrantKey func() *federation.TokenKey

	// PlatformVersion is this site's Powernode platform version (semver),
	// compared N-1 with a peer's at handshake.
	PlatformVersion string
	// Capabilities are what this site declares in its handshake answer.
	Capabilities federation.Capabilities

	InboundAddr    string // "" disables inbound
	OutboundAddr   string // loopback host:port; "" disables
	OutboundSocket string // unix socket path; "" disables
	Routes         []Route
	OutboundL4     []OutboundL4

	// HandshakePath is the inbound peer handshake endpoint.
	HandshakePath string
	// HandshakeRate/HandshakeBurst bound re-handshakes per peer;
	// CapabilityRate/CapabilityBurst bound calls to RateLimited routes.
	HandshakeRate   rate.Limit
	HandshakeBurst  int
	CapabilityRate  rate.Limit
	CapabilityBurst int
	// MigrationGrace is how long a Powernode-Migration-Id request keeps
	// running after its peer or certificate was revoked (5 min).
	MigrationGrace time.Duration
	// Audit order. A response is never released before its audit record is
	// durable (an append failure answers 503 audit_unavailable instead). For
	// safe methods (GET, HEAD, OPTIONS) without Powernode-Migration-Id the
	// append runs while the call is forwarded; every other call is forwarded
	// only after its record is durable ("no durable record, no call").
	// AuditStrictAll makes every call strict. OutboundAuditOverlap lets the
	// outbound side overlap for every method (the peer may then see a call
	// whose record on this side failed; the peer audits it strictly).
	AuditStrictAll       bool
	OutboundAuditOverlap bool
	// HTTP2ToPeers lets the outbound side negotiate HTTP/2 with peers;
	// HTTP/1.1 with a pool of connections is the default (faster here).
	HTTP2ToPeers bool

	Limits Limits
}

// Defaults.
const (
	DefaultHandshakePath  = "/.well-known/fedgate/handshake"
	DefaultMigrationGrace = 5 * time.Minute
)

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HandshakePath == "" {
		c.HandshakePath = DefaultHandshakePath
	}
	if c.HandshakeRate == 0 {
		c.HandshakeRate = rate.Every(10 * time.Second)
	}
	if c.HandshakeBurst == 0 {
		c.HandshakeBurst = 3
	}
	if c.CapabilityRate == 0 {
		c.CapabilityRate = 10
	}
	if c.CapabilityBurst == 0 {
		c.CapabilityBurst = 20
	}
	if c.MigrationGrace == 0 {
		c.MigrationGrace = DefaultMigrationGrace
	}
	if c.GrantKey == nil {
		c.GrantKey = func() *federation.TokenKey { return nil }
	}
	l := &c.Limits
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if l.MaxConns == 0 {
		l.MaxConns = 4096
	}
	def(&l.HandshakeTimeout, 10*time.Second)
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.IdleTimeout, 120*time.Second)
	def(&l.WriteStallTimeout, 30*time.Second)
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = 64 << 20
	}
	def(&l.BackendTimeout, 60*time.Second)
	def(&l.ConnectTimeout, 200*time.Millisecond)
	def(&l.EndpointTimeout, 3*time.Second)
	def(&l.EndpointBackoff, 5*time.Second)
	if l.MaxIdlePerHost == 0 {
		l.MaxIdlePerHost = 256
	}
	if l.MaxConnsPerHost == 0 {
		l.MaxConnsPerHost = 256
	}
	if l.MaxInFlightPerPeer == 0 {
		l.MaxInFlightPerPeer = max(1, l.MaxConnsPerHost/2)
	}
	for i := range c.Routes {
		if c.Routes[i].Kind == "" {
			c.Routes[i].Kind = RouteHTTP
		}
	}
}

// Validate checks c after defaults.
func (c *Config) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if c.State == nil {
		add("State is required")
	}
	if c.Auditor == nil {
		add("Auditor is required")
	}
	if c.InboundAddr == "" && c.OutboundAddr == "" && c.OutboundSocket == "" && len(c.OutboundL4) == 0 {
		add("no listener configured")
	}
	if c.InboundAddr != "" || c.OutboundAddr != "" || c.OutboundSocket != "" || len(c.OutboundL4) > 0 {
		if c.Verifier == nil {
			add("Verifier is required")
		}
		if c.Certs == nil {
			add("Certs is required")
		}
	}
	if c.InboundAddr != "" {
		if _, err := federation.ParseVersion(c.PlatformVersion); err != nil {
			add("PlatformVersion: %v", err)
		}
	}
	if c.OutboundAddr != "" {
		if err := checkLoopback(c.OutboundAddr); err != nil {
			add("OutboundAddr: %v", err)
		}
	}
	if !strings.HasPrefix(c.HandshakePath, "/") {
		add("HandshakePath %q must start with /", c.HandshakePath)
	}
	names := map[string]bool{}
	for i, r := range c.Routes {
		if r.Name == "" || strings.ContainsAny(r.Name, " /\t") {
			add("Routes[%d]: name %q must be non-empty without spaces or /", i, r.Name)
		}
		if names[r.Name] {
			add("Routes[%d]: duplicate name %q", i, r.Name)
		}
		names[r.Name] = true
		switch r.Kind {
		case RouteHTTP:
			u, err := url.Parse(r.Backend)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add("Routes[%d]: backend %q is not an http(s) URL", i, r.Backend)
			}
			if !strings.HasPrefix(r.PathPrefix, "/") {
				add("Routes[%d]: path prefix %q must start with /", i, r.PathPrefix)
			}
			if strings.HasPrefix(c.HandshakePath, r.PathPrefix) && r.PathPrefix == c.HandshakePath {
				add("Routes[%d]: path prefix shadows the handshake path", i)
			}
		case RouteTCP:
			if !strings.Contains(r.Backend, ":") {
				add("Routes[%d]: backend %q is not host:port", i, r.Backend)
			}
			if r.RequireGrant {
				add("Routes[%d]: an L4 route cannot require a grant (no request to carry a token)", i)
			}
		default:
			add("Routes[%d]: unknown kind %q", i, r.Kind)
		}
		if r.ResourceKind == "" {
			add("Routes[%d]: resource kind is required (calls are refused unless the peer declared it)", i)
		}
		if r.Scope != "" && !r.Scope.Valid() {
			add("Routes[%d]: scope %q is not read, write, admin or migrate", i, r.Scope)
		}
	}
	for i, o := range c.OutboundL4 {
		if err := checkLoopback(o.Listen); err != nil {
			add("OutboundL4[%d]: %v", i, err)
		}
		if err := federation.ParseID(o.PeerID); err != nil {
			add("OutboundL4[%d]: peer: %v", i, err)
		}
		if o.Route == "" {
			add("OutboundL4[%d]: route is required", i)
		}
	}
	l := c.Limits
	if l.MaxConns < 1 || l.MaxHeaderBytes < 1024 || l.MaxBodyBytes < 1 || l.MaxIdlePerHost < 1 || l.MaxConnsPerHost < 1 {
		add("Limits: MaxConns, MaxHeaderBytes (>= 1024), MaxBodyBytes and MaxIdlePerHost must be positive")
	}
	if c.MigrationGrace < 0 {
		add("MigrationGrace must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
	}
	return nil
}
