package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RenewPolicy says when a certificate is renewed and how failures retry.
type RenewPolicy struct {
	// Fraction of the lifetime after which to renew (2/3).
	Fraction float64
	// Jitter is the ± fraction of the lifetime added at random to the renew
	// time (0.05), so that nodes do not renew in lockstep.
	Jitter float64
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// renewal (1s, 5m). A retry never waits past the certificate's expiry.
	RetryMin, RetryMax time.Duration
}

func (p *RenewPolicy) setDefaults() {
	if p.Fraction == 0 {
		p.Fraction = 2.0 / 3.0
	}
	if p.Jitter == 0 {
		p.Jitter = 0.05
	}
	if p.RetryMin == 0 {
		p.RetryMin = time.Second
	}
	if p.RetryMax == 0 {
		p.RetryMax = 5 * time.Minute
	}
}

func (p *RenewPolicy) validate() error {
	switch {
	case p.Fraction <= 0 || p.Fraction >= 1:
		return fmt.Errorf("%w: renew Fraction %v outside (0,1)", ErrConfig, p.Fraction)
	case p.Jitter < 0 || p.Jitter >= p.Fraction || p.Fraction+p.Jitter >= 1:
		return fmt.Errorf("%w: renew Jitter %v invalid for Fraction %v", ErrConfig, p.Jitter, p.Fraction)
	case p.RetryMin <= 0 || p.RetryMax < p.RetryMin:
		return fmt.Errorf("%w: retry bounds [%v, %v]", ErrConfig, p.RetryMin, p.RetryMax)
	}
	return nil
}

// renewAt returns when a certificate valid in [nb, na] is due for renewal.
func (p *RenewPolicy) renewAt(nb, na time.Time) time.Time {
	life := na.Sub(nb)
	j := (mrand.Float64()*2 - 1) * p.Jitter
	return nb.Add(time.Duration(float64(life) * (p.Fraction + j)))
}

// metrics are shared by every managed certificate on one Registerer.
type metrics struct {
	notAfter  *prometheus.GaugeVec
	renewals  *prometheus.CounterVec
	failures  *prometheus.CounterVec
	failState *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "fedgate", Subsystem: "pki", Name: "certificate_not_after_seconds",
			Help: "Expiry (unix seconds) of the certificate currently served.",
		}, []string{"cert"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "pki", Name: "renewals_total",
			Help: "Certificates obtained and swapped in.",
		}, []string{"cert"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "pki", Name: "renewal_failures_total",
			Help: "Failed attempts to obtain or validate a certificate.",
		}, []string{"cert"}),
		failState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "fedgate", Subsystem: "pki", Name: "renewal_consecutive_failures",
			Help: "Consecutive failed attempts since the last success.",
		}, []string{"cert"}),
	}
	if reg == nil {
		return m
	}
	m.notAfter = register(reg, m.notAfter)
	m.renewals = register(reg, m.renewals)
	m.failures = register(reg, m.failures)
	m.failState = register(reg, m.failState)
	return m
}

// register registers c, or returns the collector already registered under
// the same descriptor.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// Status describes a managed certificate for humans and the local API.
type Status struct {
	Name      string    `json:"name"`
	Subject   string    `json:"subject"`
	Serial    string    `json:"serial"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	RenewAt   time.Time `json:"renew_at"`
	// Failures counts consecutive failed attempts since the last success.
	Failures  int    `json:"failures"`
	LastError string `json:"last_error,omitempty"`
	// State is "ok", "renewing-failed" (old certificate still valid) or "expired".
	State string `json:"state"`
}

// String is the one-line status.
func (s Status) String() string {
	switch s.State {
	case "ok":
		return fmt.Sprintf("%s: ok, serial %s valid until %s, renew at %s", s.Name, s.Serial,
			s.NotAfter.UTC().Format(time.RFC3339), s.RenewAt.UTC().Format(time.RFC3339))
	case "":
		return fmt.Sprintf("%s: no certificate: %s", s.Name, s.LastError)
	default:
		return fmt.Sprintf("%s: %s after %d failures (%s); keeping serial %s valid until %s", s.Name, s.State,
			s.Failures, s.LastError, s.Serial, s.NotAfter.UTC().Format(time.RFC3339))
	}
}

// managed is one certificate with a node-local key: obtained by CSR through
// an Issuer, validated, swapped whole behind an atomic pointer, persisted,
// and renewed by run.
type managed struct {
	name     string
	kind     Kind
	id       string
	usage    []x509.ExtKeyUsage
	key      crypto.Signer
	certPath string
	lifetime time.Duration
	issuer   Issuer
	roots    func() *x509.CertPool
	policy   RenewPolicy
	log      *slog.Logger
	m        *metrics

	cur  atomic.Pointer[tls.Certificate]
	kick chan struct{}

	mu       sync.Mutex
	renewAt  time.Time
	failures int
	lastErr  error
}

func (m *managed) current() (*tls.Certificate, error) {
	c := m.cur.Load()
	if c == nil {
		return nil, ErrNoCertificate
	}
	return c, nil
}

// validate turns an issuer's answer into a servable certificate: the chain
// parses and is in order, the leaf's key is ours, it is valid now, it
// verifies against the trust anchors, and it names the identity we asked for.
func (m *managed) validate(chainPEM []byte, now time.Time) (*tls.Certificate, error) {
	chain, err := ParseChainPEM(chainPEM)
	if err != nil {
		return nil, err
	}
	return m.validateChain(chain, now)
}

func (m *managed) validateChain(chain []*x509.Certificate, now time.Time) (*tls.Certificate, error) {
	if err := CheckChainOrder(chain); err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !keyMatches(leaf, m.key) {
		return nil, ErrKeyMismatch
	}
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: valid %s to %s", ErrExpired, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := verifyChain(chain, m.roots(), now, m.usage); err != nil {
		return nil, err
	}
	var (
		got string
		err error
	)
	if m.kind == KindNode {
		got, err = NodeIDFromCert(leaf)
	} else {
		got, err = PeerIDFromCert(leaf)
	}
	if err != nil {
		return nil, err
	}
	if got != m.id {
		return nil, fmt.Errorf("%w: issued for %q, want %q", ErrIdentityMismatch, got, m.id)
	}
	tc := &tls.Certificate{PrivateKey: m.key, Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

// verifyChain verifies a leaf-first chain against roots at now.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, usage []x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, ErrNoPeerCertificate
	}
	if roots == nil {
		return nil, fmt.Errorf("%w: no trust anchors", ErrUntrusted)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: usage})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return chains, nil
}

// loadPersisted serves the certificate saved by a previous run if it is
// still valid for our key and anchors.
func (m *managed) loadPersisted(now time.Time) bool {
	b, err := os.ReadFile(m.certPath)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("cannot read saved certificate", "cert", m.name, "path", m.certPath, "err", err)
		}
		return false
	}
	tc, err := m.validate(b, now)
	if err != nil {
		m.log.Info("saved certificate not usable, obtaining a new one", "cert", m.name, "err", err)
		return false
	}
	m.swap(tc)
	return true
}

// obtain requests, validates, swaps and persists a new certificate. On any
// failure the current certificate stays.
func (m *managed) obtain(ctx context.Context) error {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, m.key)
	if err != nil {
		return m.fail(fmt.Errorf("create csr: %w", err))
	}
	p, err := m.issuer.Sign(ctx, SignRequest{Kind: m.kind, ID: m.id, CSR: csr, Lifetime: m.lifetime})
	if err != nil {
		return m.fail(fmt.Errorf("sign: %w", err))
	}
	tc, err := m.validate(p, time.Now())
	if err != nil {
		return m.fail(fmt.Errorf("validate issued certificate: %w", err))
	}
	if err := writeFileAtomic(m.certPath, p, certFileMode); err != nil {
		// Still serve it: the key and certificate are good in memory.
		m.log.Warn("cannot save certificate", "cert", m.name, "err", err)
	}
	m.swap(tc)
	m.m.renewals.WithLabelValues(m.name).Inc()
	m.log.Info("certificate renewed", "cert", m.name, "serial", tc.Leaf.SerialNumber.Text(16), "not_after", tc.Leaf.NotAfter)
	return nil
}

func (m *managed) swap(tc *tls.Certificate) {
	m.cur.Store(tc)
	m.mu.Lock()
	m.renewAt = m.policy.renewAt(tc.Leaf.NotBefore, tc.Leaf.NotAfter)
	m.failures, m.lastErr = 0, nil
	m.mu.Unlock()
	m.m.notAfter.WithLabelValues(m.name).Set(float64(tc.Leaf.NotAfter.Unix()))
	m.m.failState.WithLabelValues(m.name).Set(0)
}

func (m *managed) fail(err error) error {
	m.mu.Lock()
	m.failures++
	m.lastErr = err
	n := m.failures
	m.mu.Unlock()
	m.m.failures.WithLabelValues(m.name).Inc()
	m.m.failState.WithLabelValues(m.name).Set(float64(n))
	m.log.Warn("certificate renewal failed; keeping the current certificate", "cert", m.name, "failures", n, "err", err)
	return err
}

// nextAttempt returns when to try next.
func (m *managed) nextAttempt(now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failures == 0 {
		return m.renewAt
	}
	backoff := m.policy.RetryMin
	for i := 1; i < m.failures && backoff < m.policy.RetryMax; i++ {
		backoff *= 2
	}
	backoff = min(backoff, m.policy.RetryMax)
	// ±10% so that a site's nodes do not retry in lockstep.
	backoff += time.Duration((mrand.Float64()*0.2 - 0.1) * float64(backoff))
	return now.Add(backoff)
}

// run renews until ctx ends.
func (m *managed) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		t.Reset(time.Until(m.nextAttempt(time.Now())))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		_ = m.obtain(ctx)
	}
}

// renewNow asks run to renew at once.
func (m *managed) renewNow() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *managed) status() Status {
	s := Status{Name: m.name}
	m.mu.Lock()
	s.Failures = m.failures
	if m.lastErr != nil {
		s.LastError = m.lastErr.Error()
	}
	s.RenewAt = m.renewAt
	m.mu.Unlock()
	c := m.cur.Load()
	if c == nil {
		return s
	}
	s.Subject = c.Leaf.Subject.String()
	s.Serial = c.Leaf.SerialNumber.Text(16)
	s.Issuer = c.Leaf.Issuer.String()
	s.NotBefore, s.NotAfter = c.Leaf.NotBefore, c.Leaf.NotAfter
	switch {
	case !time.Now().Before(c.Leaf.NotAfter):
		s.State = "expired"
	case s.Failures > 0:
		s.State = "renewing-failed"
	default:
		s.State = "ok"
	}
	return s
}

// SPKIHash returns the SHA-256 of a certificate's SubjectPublicKeyInfo.
func SPKIHash(c *x509.Certificate) [32]byte { return sha256Sum(c.RawSubjectPublicKeyInfo) }

// RevocationChecker answers whether a certificate has been revoked, by
// serial or by SPKI hash. Implementations read the local replicated copy and
// must be fast and safe for concurrent use.
type RevocationChecker interface {
	Revoked(serial *big.Int, spkiSHA256 [32]byte) bool
}
