// Package proxy is fedgate's data path. It terminates peer mTLS (inbound),
// originates peer mTLS for local platform services (outbound), authorizes
// every call against the node's copy of the replicated peer/grant state,
// passes the verified identity on to the local backend, and writes one audit
// record per L7 request and per L4 connection through a fail-closed append.
//
// Inbound, a single TLS 1.3 listener serves three things, chosen by ALPN:
// HTTP/1.1 and HTTP/2 (L7 routes by path prefix to local backends, plus the
// peer handshake endpoint), and raw TCP streams for L4 routes (ALPN
// "fedgate-l4/<route>"), which reach their backend behind a PROXY protocol v2
// header whose TLVs carry the verified identity.
//
// Outbound, a plain HTTP listener on loopback and a unix socket lets a
// platform service reach peer P without holding TLS material: it names P by
// Host "<peer-id>.peer.fedgate" (or by an absolute-form URI whose host is one
// of P's endpoints). The proxy picks P's endpoints by priority, probes each
// with a short connect timeout, fails over, presents the site's federation
// certificate for P and verifies P's server certificate against P's bundle.
//
// Authorization order for inbound L7 requests: peer reachable (enrolled,
// active, degraded), contract version agreed, capability declared for the
// route's resource kind, then the grant (when the route requires one) in the
// platform's order: token present, resolves, belongs to the calling peer, not
// expired or revoked (401), kind, resource, scope, instance, network, source
// CIDR (403). Every denial is answered with a JSON body
// {"error":"<reason>","status":N} and audited.
//
// Identity reaches the backend in X-Federation-Peer-Id, X-Remote-Subject
// and the Traefik-compatible X-Forwarded-Tls-Client-Cert (base64 DER per
// certificate, leaf first, comma-joined) and X-Forwarded-Tls-Client-Cert-Info
// (URL-encoded Subject="CN=…"); every client-supplied identity header
// (including Forwarded, X-Forwarded-*, X-Real-Ip and RFC 9440 Client-Cert)
// is removed first.
//
// Audit: one record per L7 request and per L4 connection through the
// Auditor's fail-closed Append; a response is never released before its
// record is durable (503 audit_unavailable otherwise). Unsafe methods and
// migration calls are forwarded only after the record is durable; for safe
// methods the append runs while the call is forwarded (Config.AuditStrictAll
// turns that off). A failed forward (backend down, 502) adds a follow-up
// record naming the request's sequence number.
//
// Hot path: HTTP/1.x connections (inbound and outbound) are served by a
// connection loop of this package (h1server.go: net/http's request parser,
// limits and error answers; one goroutine per connection, nothing per
// request), HTTP/2 by net/http's server. Requests are forwarded by a small
// HTTP/1.1 client (upstream.go) that pools keep-alive connections per
// backend and per peer and does each exchange on the handler's goroutine;
// httputil.ReverseProxy only carries protocol upgrades (and HTTP/2 to peers
// when Config.HTTP2ToPeers is set). A client that goes away mid-call is
// noticed when its response is written; the upstream call is bounded by
// Limits.BackendTimeout. A client that stops reading its response is cut
// after Limits.WriteStallTimeout without progress (HTTP/2: the stream is
// reset, and the connection cut by WriteByteTimeout), so it cannot hold an
// upstream connection that other calls need. Backend connection pools are
// shared by all peers; one peer's inbound calls in flight are capped
// (Limits.MaxInFlightPerPeer, half the pool by default; 429
// peer_concurrency_limit, audited) so it cannot take them all.
// A connection closed while its client may still be sending (an error
// answer, a request body left unread) is closed lingering: half-closed, the
// rest of the input discarded for up to two seconds, so that the reset of a
// plain close does not destroy the response in flight.
//
// Lifecycle: trust and certificate changes apply to new handshakes only.
// StateChanged re-evaluates live connections: those of a peer that is no
// longer reachable, or whose certificate has been revoked, are closed, except
// requests marked with Powernode-Migration-Id, which keep running for the
// migration grace period (default five minutes). Shutdown drains with the
// caller's deadline: idle connections are closed at once, a connection that
// has not yet sent its first request gets up to five seconds to send it,
// busy ones finish their request and are answered with Connection: close.
package proxy
