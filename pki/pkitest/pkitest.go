package pkitest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/powernode/fedgate/pki"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Logger returns a slog.Logger writing to t.Log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// NewID returns a fresh UUIDv7 string.
func NewID(t testing.TB) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// NewCA opens a real embedded site CA in a temporary directory, with no
// backdate and a one-second minimum lifetime so tests can use short-lived
// certificates. mod may adjust the config.
func NewCA(t testing.TB, mod ...func(*pki.Config)) *pki.CA {
	t.Helper()
	cfg := pki.Config{
		Dir:      filepath.Join(t.TempDir(), "ca"),
		SiteName: "test-" + NewID(t)[:8],
		Logger:   Logger(t),
		Backdate: -1,
	}
	for _, m := range mod {
		m(&cfg)
	}
	ca, err := pki.OpenCA(cfg)
	if err != nil {
		t.Fatalf("OpenCA: %v", err)
	}
	return ca
}

// Fault is what a FaultyIssuer does to the next Sign calls.
type Fault int

// Faults.
const (
	// None passes calls through.
	None Fault = iota
	// Unreachable fails every call with ErrUnreachable.
	Unreachable
	// Garbage answers with bytes that are not PEM.
	Garbage
	// WrongOrder answers with the chain reversed (intermediate first).
	WrongOrder
	// OtherKey answers with a certificate for a different key than the CSR's.
	OtherKey
)

// ErrUnreachable is returned by a FaultyIssuer in the Unreachable state.
var ErrUnreachable = errors.New("pkitest: issuer unreachable")

// FaultyIssuer wraps a real Issuer and applies the current Fault to Sign.
// It counts calls. Safe for concurrent use.
type FaultyIssuer struct {
	Next pki.Issuer

	mu    sync.Mutex
	fault Fault
	calls int
}

// SetFault sets what later calls do.
func (f *FaultyIssuer) SetFault(x Fault) { f.mu.Lock(); f.fault = x; f.mu.Unlock() }

// Calls returns how many Sign calls were made.
func (f *FaultyIssuer) Calls() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

// TrustBundle passes through.
func (f *FaultyIssuer) TrustBundle(ctx context.Context) ([]byte, error) {
	return f.Next.TrustBundle(ctx)
}

// Sign applies the fault.
func (f *FaultyIssuer) Sign(ctx context.Context, req pki.SignRequest) ([]byte, error) {
	f.mu.Lock()
	fault := f.fault
	f.calls++
	f.mu.Unlock()
	switch fault {
	case Unreachable:
		return nil, ErrUnreachable
	case Garbage:
		return []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"), nil
	case OtherKey:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		req.CSR, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			return nil, err
		}
	}
	p, err := f.Next.Sign(ctx, req)
	if err != nil || fault != WrongOrder {
		return p, err
	}
	chain, err := pki.ParseCertificatesPEM(p)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return pki.EncodeCertificatesPEM(chain), nil
}
