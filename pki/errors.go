package pki

import "errors"

// Sentinel errors. Wrapped errors carry context; test with errors.Is.
var (
	// ErrKeyFileMode: a private key (or secret) file is readable by group or others.
	ErrKeyFileMode = errors.New("pki: key file mode too open")
	// ErrCSRExtraSANs: a CSR asks for names that the CA sets itself.
	ErrCSRExtraSANs = errors.New("pki: certificate request asks for extra SANs")
	// ErrCSRSubject: a CSR asks for a common name other than the one the CA sets.
	ErrCSRSubject = errors.New("pki: certificate request asks for another subject")
	// ErrBadCSR: a CSR cannot be parsed or its signature does not verify.
	ErrBadCSR = errors.New("pki: invalid certificate request")
	// ErrBadID: a node or peer id is not a canonical UUID.
	ErrBadID = errors.New("pki: invalid id")
	// ErrNoIdentity: a certificate carries no identity of the expected kind.
	ErrNoIdentity = errors.New("pki: certificate carries no identity")
	// ErrIdentityMismatch: CN and URI SAN of a certificate name different identities.
	ErrIdentityMismatch = errors.New("pki: certificate identities disagree")
	// ErrNoPeerCertificate: the other side presented no certificate.
	ErrNoPeerCertificate = errors.New("pki: no peer certificate")
	// ErrUntrusted: a chain does not verify against the trust anchors it must chain to.
	ErrUntrusted = errors.New("pki: certificate not trusted")
	// ErrRevoked: a certificate's serial or public key has been revoked.
	ErrRevoked = errors.New("pki: certificate revoked")
	// ErrPeerUnknown: a certificate claims a federation peer that is not known here.
	ErrPeerUnknown = errors.New("pki: unknown federation peer")
	// ErrPeerNotReachable: the claimed peer exists but its status does not allow calls.
	ErrPeerNotReachable = errors.New("pki: federation peer not reachable")
	// ErrBadPEM: PEM input is malformed or holds the wrong kind of block.
	ErrBadPEM = errors.New("pki: malformed PEM")
	// ErrChainOrder: a chain is not leaf-first with each certificate signed by the next.
	ErrChainOrder = errors.New("pki: certificate chain out of order")
	// ErrKeyMismatch: a certificate's public key does not match the private key.
	ErrKeyMismatch = errors.New("pki: certificate does not match private key")
	// ErrExpired: a certificate is outside its validity window.
	ErrExpired = errors.New("pki: certificate expired or not yet valid")
	// ErrConfig: a configuration is invalid.
	ErrConfig = errors.New("pki: invalid config")
	// ErrNoCertificate: no certificate has been obtained yet.
	ErrNoCertificate = errors.New("pki: no certificate yet")
)
