package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
)

// StateView is the proxy's read-only view of the node's copy of the
// replicated state. Every method must be safe for concurrent use and must not
// block on raft: the proxy calls Peer and Grant on every request.
type StateView interface {
	// Peer returns the peer with id, and whether it exists.
	Peer(id string) (federation.Peer, bool)
	// Grant returns the grant with id, and whether it exists.
	Grant(id string) (federation.Grant, bool)
	// Contracts returns the contract versions this site knows.
	Contracts() federation.Registry
	// Peers returns every known peer. It is called only to resolve an
	// absolute-form outbound request by endpoint host, and to re-evaluate
	// live connections after StateChanged.
	Peers() []federation.Peer
}

// Auditor is the audit log's durable, fail-closed append. Append returns only
// once the record is durable (the log may group-commit); an error means the
// record is not durable, and the proxy then refuses the call with 503.
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (uint64, error)
}

// AuditStarter is an Auditor that can queue a record and be waited on
// later (audit.Log). The proxy uses it, when the Auditor has it, for calls
// whose append overlaps the forward; otherwise it runs Append on a
// goroutine of its own.
type AuditStarter interface {
	Start(ctx context.Context, r audit.Record) audit.Ticket
}

// Verifier proves peer identity from certificate chains. It is what the pki
// package's per-peer verifier provides.
type Verifier interface {
	// VerifyClient verifies the client chain of an inbound connection against
	// the trust bundle of the peer the leaf claims (and only that bundle),
	// checks revocation and returns the proven peer id. It runs on every
	// handshake, resumed ones included.
	VerifyClient(cs tls.ConnectionState) (peerID string, err error)
	// VerifyServer verifies that the server of an outbound connection is
	// peer peerID, against peerID's own bundle, and checks revocation.
	VerifyServer(peerID string, cs tls.ConnectionState) error
	// Revoked reports whether cert's serial or public key is revoked now.
	Revoked(cert *x509.Certificate) bool
}

// Certificates supplies this site's certificates. Implementations swap
// certificates atomically; the proxy asks on every new handshake, so renewals
// apply to new connections without touching live ones.
type Certificates interface {
	// ServerCertificate returns the certificate the inbound listener presents.
	ServerCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCertificate returns the federation client certificate this site
	// presents to peer peerID.
	ClientCertificate(peerID string) (*tls.Certificate, error)
}

// Findings receives contract findings the proxy raises (for example
// peer_capability_drift when a peer calls a route whose resource kind it has
// not declared, commitment 3). Optional; Report must not block for long.
type Findings interface {
	Report(ctx context.Context, peerID string, kind federation.FindingKind, detail string)
}

// HandshakeSink receives accepted peer handshakes, so the agent can record
// last_handshake_at and the declared capabilities in the replicated state.
// Optional.
type HandshakeSink interface {
	PeerHandshake(ctx context.Context, peerID string, hs federation.Handshake) error
}
