package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// CRLValidity is how long a CRL produced by CA.CRL stays current.
const CRLValidity = 24 * time.Hour

// CRL returns a DER certificate revocation list signed by the site
// intermediate listing every revocation that names a serial. (Revocations by
// SPKI hash only cannot be expressed in a CRL; they are enforced from the
// replicated list.) CRL numbers increase with time, so they stay monotonic
// across restarts and nodes without shared state.
func (ca *CA) CRL(revoked []Revocation) ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := time.Now()
	n := now.UnixNano()
	if n <= ca.crlNumber {
		n = ca.crlNumber + 1
	}
	ca.crlNumber = n
	var entries []x509.RevocationListEntry
	for _, r := range revoked {
		if r.Serial == nil {
			continue
		}
		at := r.RevokedAt
		if at.IsZero() {
			at = now
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: at.UTC()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    big.NewInt(n),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(CRLValidity),
	}, ca.intermediate, ca.interKey)
	if err != nil {
		return nil, fmt.Errorf("create crl: %w", err)
	}
	return der, nil
}

// TrustBundleResponse is the body of GET /trust_bundle, as the platform
// returns it.
type TrustBundleResponse struct {
	CABundlePEM string    `json:"ca_bundle_pem"`
	GeneratedAt time.Time `json:"generated_at"`
}

// TrustHandler serves GET /trust_bundle (JSON {ca_bundle_pem, generated_at})
// and GET /crl (DER, application/pkix-crl) for the site CA. revoked returns
// the current replicated revocation list. Mount it on an HTTPS listener.
func TrustHandler(ca *CA, revoked func() []Revocation) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /trust_bundle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(TrustBundleResponse{CABundlePEM: string(ca.BundlePEM()), GeneratedAt: time.Now().UTC()})
	})
	// A CRL is signed at most once per minute per revocation list, so that
	// the endpoint cannot be used to make the CA sign in a loop.
	var (
		mu      sync.Mutex
		lastKey [32]byte
		lastDER []byte
		lastAt  time.Time
	)
	mux.HandleFunc("GET /crl", func(w http.ResponseWriter, r *http.Request) {
		revs := revoked()
		h := sha256.New()
		for _, e := range revs {
			if e.Serial != nil {
				b := e.Serial.Bytes()
				h.Write([]byte{byte(len(b))})
				h.Write(b)
			}
		}
		var key [32]byte
		h.Sum(key[:0])
		mu.Lock()
		der := lastDER
		if der == nil || key != lastKey || time.Since(lastAt) > time.Minute {
			var err error
			if der, err = ca.CRL(revs); err != nil {
				mu.Unlock()
				http.Error(w, "crl unavailable", http.StatusInternalServerError)
				return
			}
			lastKey, lastDER, lastAt = key, der, time.Now()
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(der)
	})
	return mux
}
