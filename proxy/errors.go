package proxy

import "errors"

// Sentinel errors. Wrapped errors carry context; test with errors.Is.
var (
	// ErrConfig marks an invalid Config.
	ErrConfig = errors.New("proxy: invalid config")
	// ErrNotPeerHost marks a Host that is not "<peer-id>.peer.fedgate".
	ErrNotPeerHost = errors.New("proxy: host does not name a peer")
	// ErrUnknownPeer marks a peer id or endpoint that no known peer has.
	ErrUnknownPeer = errors.New("proxy: unknown peer")
	// ErrNoEndpoint marks a peer none of whose endpoints could be reached.
	ErrNoEndpoint = errors.New("proxy: no reachable peer endpoint")
	// ErrBadCertHeader marks a malformed X-Forwarded-Tls-Client-Cert value.
	ErrBadCertHeader = errors.New("proxy: malformed forwarded certificate header")
	// ErrStarted marks a second call to Start.
	ErrStarted = errors.New("proxy: already started")
	// ErrClosed marks a call after Shutdown.
	ErrClosed = errors.New("proxy: shut down")
)
