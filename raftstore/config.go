package raftstore

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LAN defaults. A follower notices a dead leader after HeartbeatTimeout to
// 2×HeartbeatTimeout (raft randomizes), then an election takes one round
// trip: leader loss is detected and replaced in roughly 250–600 ms.
// LeaderLeaseTimeout is below HeartbeatTimeout so an isolated leader steps
// down before the majority side can elect a new one.
const (
	DefaultHeartbeatTimeout   = 250 * time.Millisecond
	DefaultElectionTimeout    = 250 * time.Millisecond
	DefaultLeaderLeaseTimeout = 125 * time.Millisecond
	DefaultCommitTimeout      = 10 * time.Millisecond
	DefaultSnapshotRetain     = 3
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 2 * time.Minute
	DefaultTrailingLogs       = 10240
	DefaultApplyTimeout       = 10 * time.Second
	DefaultDedupWindow        = 10000
)

// Config configures a Store. Zero values take the defaults above.
type Config struct {
	// NodeID is this node's raft server ID (the node instance UUID).
	NodeID string
	// DataDir holds raft.db (log + stable store) and snapshots/.
	DataDir string
	// BindAddr is the TCP address the listener binds (host:port; port 0
	// picks a free port, see Store.Addr).
	BindAddr string
	// AdvertiseAddr is the address other nodes dial; defaults to the bound
	// address when BindAddr has a concrete host.
	AdvertiseAddr string
	// ServerTLS is used for accepted connections. It must require and
	// verify a client certificate from the site CA
	// (tls.RequireAndVerifyClientCert); Validate refuses anything weaker.
	ServerTLS *tls.Config
	// ClientTLS is used to dial other nodes; it must carry this node's
	// certificate.
	ClientTLS *tls.Config
	// Logger receives raftstore and raft logs; defaults to slog.Default().
	Logger *slog.Logger

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotRetain is how many snapshots are kept on disk.
	SnapshotRetain int
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries are kept after a snapshot.
	TrailingLogs uint64
	// ApplyTimeout bounds one raft Apply on the leader when the caller's
	// context has no deadline.
	ApplyTimeout time.Duration
	// DedupWindow is how many applied command IDs State remembers.
	DedupWindow int
	// Registerer, when set, receives the store's metrics.
	Registerer prometheus.Registerer
	// NoSync disables fsync of the raft log. Only for benchmarks and
	// tests; never in production.
	NoSync bool
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = max(DefaultElectionTimeout, c.HeartbeatTimeout)
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
		if c.LeaderLeaseTimeout >= c.HeartbeatTimeout {
			c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
		}
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
}

// Validate reports the first problem with c (after defaults are applied).
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.NodeID == "":
		return bad("node_id is empty")
	case c.DataDir == "":
		return bad("data_dir is empty")
	case c.BindAddr == "":
		return bad("bind_addr is empty")
	case c.ServerTLS == nil:
		return bad("server TLS config is missing")
	case !verifiesClients(c.ServerTLS):
		return bad("server TLS config must require and verify client certificates (RequireAndVerifyClientCert with ClientCAs, or RequireAnyClientCert with VerifyConnection); got %v", c.ServerTLS.ClientAuth)
	case len(c.ServerTLS.Certificates) == 0 && c.ServerTLS.GetCertificate == nil && c.ServerTLS.GetConfigForClient == nil:
		return bad("server TLS config has no certificate")
	case c.ClientTLS == nil:
		return bad("client TLS config is missing")
	case len(c.ClientTLS.Certificates) == 0 && c.ClientTLS.GetClientCertificate == nil:
		return bad("client TLS config has no client certificate")
	case c.LeaderLeaseTimeout >= c.HeartbeatTimeout:
		return bad("leader_lease_timeout (%s) must be below heartbeat_timeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return bad("election_timeout (%s) must be at least heartbeat_timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout < time.Millisecond:
		return bad("commit_timeout (%s) is below 1ms", c.CommitTimeout)
	case c.SnapshotRetain < 1:
		return bad("snapshot_retain must be at least 1")
	case c.DedupWindow < 1:
		return bad("dedup window must be at least 1")
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return bad("bind_addr %q: %v", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		host, port, err := net.SplitHostPort(c.AdvertiseAddr)
		if err != nil {
			return bad("advertise_addr %q: %v", c.AdvertiseAddr, err)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() || port == "0" {
			return bad("advertise_addr %q must be a concrete host and port", c.AdvertiseAddr)
		}
	}
	return nil
}

// verifiesClients reports whether a server config refuses a client without
// a verified certificate: either Go verifies the chain against ClientCAs, or
// a certificate is required and a VerifyConnection/VerifyPeerCertificate
// hook checks it (the pki package's style, which also re-checks resumed
// sessions).
func verifiesClients(c *tls.Config) bool {
	switch c.ClientAuth {
	case tls.RequireAndVerifyClientCert:
		return c.ClientCAs != nil || c.GetConfigForClient != nil
	case tls.RequireAnyClientCert:
		return c.VerifyConnection != nil || c.VerifyPeerCertificate != nil
	}
	return false
}
