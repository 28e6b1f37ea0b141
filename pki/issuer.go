package pki

import (
	"context"
	"time"
)

// Kind is the kind of certificate a SignRequest asks for.
type Kind int

// Certificate kinds.
const (
	// KindNode: a node of this site (CN <uuid>, URI SAN powernode://instance/<uuid>).
	KindNode Kind = iota + 1
	// KindFederation: our outbound federation certificate towards a peer
	// (CN fed:<id>, URI SAN powernode://peer/<id>, id = what the peer calls us).
	KindFederation
)

// String returns "node" or "federation".
func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node"
	case KindFederation:
		return "federation"
	}
	return "unknown"
}

// SignRequest asks an Issuer for a certificate.
type SignRequest struct {
	Kind Kind
	// ID is the node instance UUID (KindNode) or the id the peer assigned
	// us (KindFederation). The issuer sets CN and SANs from it.
	ID string
	// CSR is the DER certificate request; its key stays with the requester.
	CSR []byte
	// Lifetime of the certificate; 0 means the issuer's default.
	Lifetime time.Duration
}

// Issuer signs certificate requests. The embedded CA implements it; on a
// joining node the agent implements it over its join API (send the request,
// return the chain PEM), and ExternalIssuer implements it over a step-ca.
type Issuer interface {
	// Sign returns the chain for req in PEM, leaf first. It refuses a CSR
	// that asks for names the issuer does not set (ErrCSRExtraSANs). The
	// caller validates the result before use.
	Sign(ctx context.Context, req SignRequest) (chainPEM []byte, err error)
	// TrustBundle returns the site's root certificates in PEM.
	TrustBundle(ctx context.Context) ([]byte, error)
}
