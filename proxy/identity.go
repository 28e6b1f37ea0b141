package proxy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/powernode/fedgate/federation"
)

// Header names. Identity headers are always removed from what a client sent
// before the verified ones are set.
const (
	HeaderPeerID         = "X-Federation-Peer-Id"
	HeaderRemoteSubject  = "X-Remote-Subject"
	HeaderClientCert     = "X-Forwarded-Tls-Client-Cert"
	HeaderClientCertInfo = "X-Forwarded-Tls-Client-Cert-Info"
	// HeaderAssertedSubject is the subject a peer's own sidecar asserts
	// (accepted only from an authenticated peer) and the subject a local
	// platform service passes to the outbound side.
	HeaderAssertedSubject = "Powernode-Remote-Subject"
	// HeaderMigrationID marks migration traffic (grace period on revoke).
	HeaderMigrationID = "Powernode-Migration-Id"
	// HeaderCorrelationID is copied into the audit record when present.
	HeaderCorrelationID = "Powernode-Correlation-Id"
)

// PeerHostSuffix is the host suffix naming a peer on the outbound side.
const PeerHostSuffix = ".peer.fedgate"

// strippedHeaders are removed from every inbound request (canonical keys).
var strippedHeaders = []string{
	HeaderPeerID, HeaderRemoteSubject, HeaderClientCert, HeaderClientCertInfo,
	HeaderAssertedSubject,
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Server", "X-Real-Ip",
	"X-Forwarded-Tls-Client-Cert-Chain", "X-Ssl-Client-Cert", "Ssl-Client-Cert",
	"X-Client-Cert", "Client-Cert", "Client-Cert-Chain", "X-Client-Verify",
	"X-Ssl-Client-Verify", "X-Ssl-Client-S-Dn", "X-Client-Dn",
}

// outboundStripped are removed from what a local service sends to a peer;
// Powernode-Remote-Subject passes (checked).
var outboundStripped = strippedHeaders[:4]

// stripIdentity removes every identity header a client may have sent.
func stripIdentity(h http.Header) {
	for _, k := range strippedHeaders {
		delete(h, k)
	}
	// Non-canonical spellings cannot reach us through net/http (it
	// canonicalizes), but HTTP/2 lower-case keys are canonicalized too.
}

// EncodeClientCert renders a chain the way Traefik's passTLSClientCert (pem)
// does: each certificate as base64 of its DER (PEM without armor and line
// breaks), leaf first, comma-joined.
func EncodeClientCert(chain []*x509.Certificate) string {
	var b strings.Builder
	n := 0
	for _, c := range chain {
		n += base64.StdEncoding.EncodedLen(len(c.Raw)) + 1
	}
	b.Grow(n)
	for i, c := range chain {
		if i > 0 {
			b.WriteByte(',')
		}
		enc := base64.NewEncoder(base64.StdEncoding, &b)
		enc.Write(c.Raw)
		enc.Close()
	}
	return b.String()
}

// ParseClientCert parses an X-Forwarded-Tls-Client-Cert value: certificates
// separated by commas, each PEM (armored or not, line breaks allowed) or
// base64 DER, optionally URL-escaped as older Traefik versions do.
func ParseClientCert(v string) ([]*x509.Certificate, error) {
	if len(v) > 1<<20 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCertHeader, len(v))
	}
	if strings.Contains(v, "%") {
		u, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadCertHeader, err)
		}
		v = u
	}
	var out []*x509.Certificate
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		var der []byte
		if strings.HasPrefix(part, "-----BEGIN") {
			blk, rest := pem.Decode([]byte(part))
			if blk == nil || blk.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
				return nil, fmt.Errorf("%w: bad PEM block", ErrBadCertHeader)
			}
			der = blk.Bytes
		} else {
			s := strings.Map(func(r rune) rune {
				switch r {
				case '\n', '\r', ' ', '\t':
					return -1
				case '-', '_': // tolerate URL-safe alphabet
					if r == '-' {
						return '+'
					}
					return '/'
				}
				return r
			}, part)
			var err error
			der, err = base64.StdEncoding.DecodeString(s)
			if err != nil {
				if der, err = base64.RawStdEncoding.DecodeString(s); err != nil {
					return nil, fmt.Errorf("%w: %v", ErrBadCertHeader, err)
				}
			}
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadCertHeader, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCertHeader)
	}
	return out, nil
}

// EncodeClientCertInfo renders Traefik's X-Forwarded-Tls-Client-Cert-Info
// with the subject common name of each certificate: `Subject="CN=…"`,
// certificates comma-separated, the whole value URL-encoded.
func EncodeClientCertInfo(chain []*x509.Certificate) string {
	var b strings.Builder
	for i, c := range chain {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`Subject="CN=`)
		b.WriteString(c.Subject.CommonName)
		b.WriteByte('"')
	}
	return url.QueryEscape(b.String())
}

// ParseClientCertInfoCN returns the leaf's CN from an
// X-Forwarded-Tls-Client-Cert-Info value (the inverse of
// EncodeClientCertInfo for the first certificate).
func ParseClientCertInfoCN(v string) (string, error) {
	s, err := url.QueryUnescape(v)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadCertHeader, err)
	}
	rest, ok := strings.CutPrefix(s, `Subject="`)
	if !ok {
		return "", fmt.Errorf("%w: no Subject", ErrBadCertHeader)
	}
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return "", fmt.Errorf("%w: unterminated Subject", ErrBadCertHeader)
	}
	for f := range strings.SplitSeq(rest[:end], ",") {
		if cn, ok := strings.CutPrefix(f, "CN="); ok {
			return cn, nil
		}
	}
	return "", fmt.Errorf("%w: no CN", ErrBadCertHeader)
}

// ParsePeerHost returns the peer id a Host names: "<peer-id>.peer.fedgate",
// optionally with a port and a trailing dot, case-insensitive. The id must be
// a canonical UUIDv7.
func ParsePeerHost(host string) (string, error) {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(h, ".")
	if len(h) != 36+len(PeerHostSuffix) {
		return "", fmt.Errorf("%w: %q", ErrNotPeerHost, truncate(host, 80))
	}
	if !strings.EqualFold(h[36:], PeerHostSuffix) {
		return "", fmt.Errorf("%w: %q", ErrNotPeerHost, truncate(host, 80))
	}
	id := strings.ToLower(h[:36])
	if err := federation.ParseID(id); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotPeerHost, err)
	}
	return id, nil
}

// PeerHost is the outbound Host naming peer id.
func PeerHost(id string) string { return id + PeerHostSuffix }

// validSubject reports whether an asserted remote subject is acceptable:
// non-empty UTF-8 of at most federation.MaxSubjectLen bytes without control
// characters.
func validSubject(s string) bool {
	if s == "" || len(s) > federation.MaxSubjectLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// spkiHash is the hex SHA-256 of a certificate's SubjectPublicKeyInfo.
func spkiHash(c *x509.Certificate) string {
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

// remoteIP extracts the IP of a net.Addr.
func remoteIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}
