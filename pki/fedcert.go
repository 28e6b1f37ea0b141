package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FederationCertConfig configures our outbound certificate towards one peer.
//
// Symmetric model: Issuer is our site CA (or the node's Issuer), Roots our
// site roots; the peer trusts our bundle. Hierarchical model: Issuer sends
// the CSR to the parent (the agent implements Issuer over the parent's
// API), Roots is the parent's bundle; the returned chain is validated
// against it before it is stored.
type FederationCertConfig struct {
	// Dir holds fed-<PeerID>.key (0600) and fed-<PeerID>.crt.
	Dir string
	// PeerID is our id for the peer (its FederationPeer id here).
	PeerID string
	// AssignedID is the id the peer assigned to us: the certificate
	// carries CN fed:<AssignedID> and URI SAN powernode://peer/<AssignedID>.
	AssignedID string
	Issuer     Issuer
	// Roots the issued chain must verify against.
	Roots *x509.CertPool
	// Lifetime; 0 means the issuer's default.
	Lifetime   time.Duration
	Renew      RenewPolicy
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Validate reports the first invalid field.
func (c *FederationCertConfig) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty", ErrConfig)
	case c.Issuer == nil:
		return fmt.Errorf("%w: Issuer is nil", ErrConfig)
	case c.Roots == nil:
		return fmt.Errorf("%w: Roots is nil", ErrConfig)
	}
	if _, err := CanonicalID(c.PeerID); err != nil {
		return fmt.Errorf("%w: PeerID: %w", ErrConfig, err)
	}
	if _, err := CanonicalID(c.AssignedID); err != nil {
		return fmt.Errorf("%w: AssignedID: %w", ErrConfig, err)
	}
	return c.Renew.validate()
}

// FederationCert is our client certificate towards one peer, with a key
// generated on this node, renewed like the node certificate.
type FederationCert struct {
	cfg FederationCertConfig
	m   *managed
}

// OpenFederationCert loads or creates the key for the peer, reuses a saved
// valid certificate or obtains one. Call Run to keep it renewed.
func OpenFederationCert(ctx context.Context, cfg FederationCertConfig) (*FederationCert, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Renew.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("federation cert: %w", err)
	}
	key, created, err := loadOrCreateKey(filepath.Join(cfg.Dir, "fed-"+cfg.PeerID+".key"))
	if err != nil {
		return nil, fmt.Errorf("federation cert: %w", err)
	}
	roots := cfg.Roots
	f := &FederationCert{cfg: cfg, m: &managed{
		name:     "fed:" + cfg.PeerID,
		kind:     KindFederation,
		id:       cfg.AssignedID,
		usage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		key:      key,
		certPath: filepath.Join(cfg.Dir, "fed-"+cfg.PeerID+".crt"),
		lifetime: cfg.Lifetime,
		issuer:   cfg.Issuer,
		roots:    func() *x509.CertPool { return roots },
		policy:   cfg.Renew,
		log:      cfg.Logger,
		m:        newMetrics(cfg.Registerer),
		kick:     make(chan struct{}, 1),
	}}
	if created || !f.m.loadPersisted(time.Now()) {
		if err := f.m.obtain(ctx); err != nil {
			return nil, fmt.Errorf("federation cert for peer %s: %w", cfg.PeerID, err)
		}
	}
	return f, nil
}

// Run renews until ctx ends.
func (f *FederationCert) Run(ctx context.Context) { f.m.run(ctx) }

// RenewNow asks Run to renew at once.
func (f *FederationCert) RenewNow() { f.m.renewNow() }

// Certificate returns the current certificate (Leaf set).
func (f *FederationCert) Certificate() *tls.Certificate { return f.m.cur.Load() }

// Get returns the current certificate, for tls.Config callbacks.
func (f *FederationCert) Get() (*tls.Certificate, error) { return f.m.current() }

// Status describes the certificate and renewal state.
func (f *FederationCert) Status() Status { return f.m.status() }
