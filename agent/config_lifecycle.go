package agent

import (
	"fmt"
	"net/netip"
	"net/url"
	"time"

	"github.com/powernode/fedgate/federation"
)

// LifecycleConfig configures the federation lifecycle (accept, handshake,
// heartbeat, revoke, compromise, findings, platform events). The lifecycle
// is off until Listen is set.
type LifecycleConfig struct {
	// BootstrapListen is the HTTPS listener (node certificate of the site
	// CA) where a peer redeems an acceptance token (POST
	// /api/v1/system/federation_api/accept). Empty: no invitations here.
	BootstrapListen string `yaml:"bootstrap_listen"`
	// BootstrapAdvertise is host:port put in invitation URLs (default: the
	// bound BootstrapListen address).
	BootstrapAdvertise string `yaml:"bootstrap_advertise"`
	// Listen is the peer-facing mTLS listener for handshakes, heartbeats
	// and notices (federation certificates, per-peer trust). Empty: off.
	Listen string `yaml:"listen"`
	// Advertise is host:port peers reach Listen at (default: bound address).
	Advertise string `yaml:"advertise"`
	// Endpoints are what we declare to peers (the proxy inbound addresses).
	// Default: https://<proxy.inbound>, scope lan, priority 10.
	Endpoints []LifecycleEndpoint `yaml:"endpoints"`
	// Identity disclosure (commitment 1).
	OperatorContact      string `yaml:"operator_contact"`
	Jurisdiction         string `yaml:"jurisdiction"`
	LastKnownGoodRelease string `yaml:"last_known_good_release"`
	DataResidency        string `yaml:"data_residency"`
	// VIPs are the /32 or /128 site VIPs declared at the handshake.
	VIPs []string `yaml:"vips"`
	// WireGuardInterface is the netctl interface peer tunnels go on; with
	// WireGuardEndpoint (our underlay ip:port) and WireGuardAllowedIPs (what
	// the peer routes to us) it is declared at the handshake.
	WireGuardInterface  string   `yaml:"wireguard_interface"`
	WireGuardEndpoint   string   `yaml:"wireguard_endpoint"`
	WireGuardAllowedIPs []string `yaml:"wireguard_allowed_ips"`
	// InviteTTL bounds an acceptance token's life (default 24h).
	InviteTTL time.Duration `yaml:"invite_ttl"`
	// HeartbeatInterval is how often we send heartbeats (default 60s).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// StaleAfter moves an active peer without heartbeats to degraded
	// (default 5m).
	StaleAfter time.Duration `yaml:"stale_after"`
	// HeartbeatRate / HeartbeatBurst limit heartbeats and handshakes per
	// peer (default 1 per 10s, burst 6).
	HeartbeatRate  float64 `yaml:"heartbeat_rate"`
	HeartbeatBurst int     `yaml:"heartbeat_burst"`
	// NoticeTimeout bounds each notification attempt; NoticeAttempts is how
	// many are made before a revocation proceeds without delivery
	// (defaults 5s, 3).
	NoticeTimeout  time.Duration `yaml:"notice_timeout"`
	NoticeAttempts int           `yaml:"notice_attempts"`
	// NoticeMaxSkew is how far a notice's timestamp may be from our clock
	// (default 10m); older notices are refused, replays inside it ignored.
	NoticeMaxSkew time.Duration `yaml:"notice_max_skew"`
	// SuspendPolicy auto-suspends after repeated hard-norm findings
	// (default 3 within 24h).
	SuspendPolicy LifecycleSuspendPolicy `yaml:"suspend_policy"`
	// PlatformURL is the Powernode platform's base URL; events are posted to
	// PlatformURL/api/v1/system/node_api/fleet/events. Empty: no events.
	PlatformURL string `yaml:"platform_url"`
	// PlatformTokenFile holds the node API bearer token (0600).
	PlatformTokenFile string `yaml:"platform_token_file"`
	// EventAttempts is how often an event batch is tried (default 5).
	EventAttempts int `yaml:"event_attempts"`
}

// LifecycleEndpoint is one endpoint we declare.
type LifecycleEndpoint struct {
	URL      string `yaml:"url"`
	Scope    string `yaml:"scope"`
	Priority int    `yaml:"priority"`
}

// LifecycleSuspendPolicy is federation.SuspendPolicy in YAML.
type LifecycleSuspendPolicy struct {
	Threshold int           `yaml:"threshold"`
	Window    time.Duration `yaml:"window"`
}

// withDefaults returns l with every zero field set to its default.
func (l LifecycleConfig) withDefaults() LifecycleConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&l.InviteTTL, 24*time.Hour)
	def(&l.HeartbeatInterval, federation.HeartbeatInterval)
	def(&l.StaleAfter, federation.HeartbeatStaleAfter)
	def(&l.NoticeTimeout, 5*time.Second)
	def(&l.NoticeMaxSkew, 10*time.Minute)
	if l.HeartbeatRate == 0 {
		l.HeartbeatRate = 0.1
	}
	if l.HeartbeatBurst == 0 {
		l.HeartbeatBurst = 6
	}
	if l.NoticeAttempts == 0 {
		l.NoticeAttempts = 3
	}
	if l.EventAttempts == 0 {
		l.EventAttempts = 5
	}
	dp := federation.DefaultSuspendPolicy()
	if l.SuspendPolicy.Threshold == 0 {
		l.SuspendPolicy.Threshold = dp.Threshold
	}
	if l.SuspendPolicy.Window == 0 {
		l.SuspendPolicy.Window = dp.Window
	}
	return l
}

func (l LifecycleConfig) suspendPolicy() federation.SuspendPolicy {
	return federation.SuspendPolicy{Threshold: l.SuspendPolicy.Threshold, Window: l.SuspendPolicy.Window}
}

func (l *LifecycleConfig) validate() error {
	for k, v := range map[string]string{"lifecycle.bootstrap_listen": l.BootstrapListen, "lifecycle.listen": l.Listen,
		"lifecycle.bootstrap_advertise": l.BootstrapAdvertise, "lifecycle.advertise": l.Advertise} {
		if v != "" {
			if err := checkHostPort(k, v, false); err != nil {
				return err
			}
		}
	}
	for k, d := range map[string]time.Duration{"lifecycle.invite_ttl": l.InviteTTL, "lifecycle.heartbeat_interval": l.HeartbeatInterval,
		"lifecycle.stale_after": l.StaleAfter, "lifecycle.notice_timeout": l.NoticeTimeout, "lifecycle.notice_max_skew": l.NoticeMaxSkew,
		"lifecycle.suspend_policy.window": l.SuspendPolicy.Window} {
		if d < 0 || (d > 0 && d < 10*time.Millisecond) {
			return badField(k, "must be 0 (default) or at least 10ms, got %s", d)
		}
	}
	if l.HeartbeatRate < 0 || l.HeartbeatBurst < 0 || l.NoticeAttempts < 0 || l.EventAttempts < 0 || l.SuspendPolicy.Threshold < 0 {
		return badField("lifecycle", "rates, bursts, attempts and thresholds must not be negative")
	}
	d := l.withDefaults()
	if d.StaleAfter <= d.HeartbeatInterval {
		return badField("lifecycle.stale_after", "must exceed heartbeat_interval (%s)", d.HeartbeatInterval)
	}
	for i, e := range l.Endpoints {
		fe := federation.Endpoint{URL: e.URL, Scope: federation.EndpointScope(e.Scope), Priority: e.Priority}
		if fe.Scope == "" {
			fe.Scope = federation.ScopeLAN
		}
		if err := fe.Validate(); err != nil {
			return badField(fmt.Sprintf("lifecycle.endpoints[%d]", i), "%v", err)
		}
	}
	if err := federation.ValidateVIPs("lifecycle.vips", l.VIPs); err != nil {
		return badField("lifecycle.vips", "%v", err)
	}
	if l.WireGuardEndpoint != "" {
		if _, err := netip.ParseAddrPort(l.WireGuardEndpoint); err != nil {
			return badField("lifecycle.wireguard_endpoint", "%v", err)
		}
	}
	for _, a := range l.WireGuardAllowedIPs {
		if _, err := netip.ParsePrefix(a); err != nil {
			return badField("lifecycle.wireguard_allowed_ips", "%q: %v", a, err)
		}
	}
	if l.PlatformURL != "" {
		u, err := url.Parse(l.PlatformURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return badField("lifecycle.platform_url", "%q is not an http(s) URL", l.PlatformURL)
		}
	}
	return nil
}
