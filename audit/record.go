package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Action names what happened. The list is open; these are the ones the
// agent writes.
type Action = string

// Actions written by fedgate.
const (
	ActionProxyRequest    Action = "proxy.request"
	ActionProxyConnection Action = "proxy.connection"
	ActionPeerTransition  Action = "peer.transition"
	ActionGrantIssue      Action = "grant.issue"
	ActionGrantRevoke     Action = "grant.revoke"
	ActionCertRevoke      Action = "cert.revoke"
	ActionVIPMount        Action = "vip.mount"
	ActionVIPUnmount      Action = "vip.unmount"
	ActionHandshake       Action = "handshake"
	ActionHeartbeat       Action = "heartbeat"
	ActionMigration       Action = "migration"
	// ActionDropped is written by the log itself after records were dropped
	// under PolicyDrop; metadata "dropped" holds the count.
	ActionDropped Action = "audit.dropped"
	// ActionRetention is written by the log itself when retention deleted
	// segments; metadata names the last deleted seq and hash.
	ActionRetention Action = "audit.retention"
)

// Decision is the authorization outcome of the action.
type Decision = string

// Decisions.
const (
	DecisionAllow Decision = "allow"
	DecisionDeny  Decision = "deny"
)

// Bounds on record strings. Longer values are cut at a rune boundary and end
// with TruncatedMarker.
const (
	MaxRemoteSubject = 256
	MaxPath          = 2048
	MaxReason        = 1024
	MaxString        = 512
	MaxMetadataKeys  = 32
	MaxMetadataKey   = 64
	MaxMetadataValue = 1024
	// TruncatedMarker ends every value the log had to cut.
	TruncatedMarker = "…[truncated]"
)

// Record is one audit record. Seq, Time, NodeID, PrevHash and Hash are set by
// the log; everything else by the caller.
type Record struct {
	Seq              uint64            `json:"seq"`
	Time             time.Time         `json:"time"`
	NodeID           string            `json:"node_id"`
	Action           string            `json:"action"`
	FederationPeerID string            `json:"federation_peer_id"`
	RemoteSubject    string            `json:"remote_subject"`
	Decision         string            `json:"decision"`
	Reason           string            `json:"reason"`
	Method           string            `json:"method"`
	Path             string            `json:"path"`
	Status           int               `json:"status"`
	BytesIn          int64             `json:"bytes_in"`
	BytesOut         int64             `json:"bytes_out"`
	DurationNS       int64             `json:"duration_ns"`
	TLSVersion       string            `json:"tls_version"`
	Resumed          bool              `json:"resumed"`
	CertSerial       string            `json:"cert_serial"`
	CertSPKISHA256   string            `json:"cert_spki_sha256"`
	GrantID          string            `json:"grant_id"`
	CorrelationID    string            `json:"correlation_id"`
	Metadata         map[string]string `json:"metadata"`
	PrevHash         string            `json:"prev_hash"`
	Hash             string            `json:"hash"`
}

// ZeroHash is the prev_hash of the first record of a log.
var ZeroHash = strings.Repeat("0", 64)

// bound returns s as valid UTF-8 of at most max bytes plus the marker.
func bound(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedMarker
}

// normalize bounds every caller-supplied string and canonicalizes metadata.
func (r *Record) normalize() {
	r.Action = bound(r.Action, MaxString)
	r.FederationPeerID = bound(r.FederationPeerID, MaxString)
	r.RemoteSubject = bound(r.RemoteSubject, MaxRemoteSubject)
	r.Decision = bound(r.Decision, MaxString)
	r.Reason = bound(r.Reason, MaxReason)
	r.Method = bound(r.Method, MaxString)
	r.Path = bound(r.Path, MaxPath)
	r.TLSVersion = bound(r.TLSVersion, MaxString)
	r.CertSerial = bound(r.CertSerial, MaxString)
	r.CertSPKISHA256 = bound(r.CertSPKISHA256, MaxString)
	r.GrantID = bound(r.GrantID, MaxString)
	r.CorrelationID = bound(r.CorrelationID, MaxString)
	if len(r.Metadata) == 0 {
		r.Metadata = nil
		return
	}
	if metadataInBounds(r.Metadata) {
		return // nothing to bound: no copy (the map is only read)
	}
	keys := sortedKeys(r.Metadata)
	m := make(map[string]string, min(len(keys), MaxMetadataKeys+1))
	for i, k := range keys {
		if i == MaxMetadataKeys {
			m[TruncatedMarker] = strconv.Itoa(len(keys)-MaxMetadataKeys) + " more keys"
			break
		}
		m[bound(k, MaxMetadataKey)] = bound(r.Metadata[k], MaxMetadataValue)
	}
	r.Metadata = m
}

// metadataInBounds reports whether normalize would leave m as it is.
func metadataInBounds(m map[string]string) bool {
	if len(m) > MaxMetadataKeys {
		return false
	}
	for k, v := range m {
		if len(k) > MaxMetadataKey || len(v) > MaxMetadataValue || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// appendBody appends the fields from node_id to metadata (inclusive),
// comma-separated, without braces: the part of the line the caller's
// goroutine can encode before the record is sequenced.
func (r *Record) appendBody(b []byte) []byte {
	b = append(b, `"node_id":`...)
	b = appendString(b, r.NodeID)
	b = append(b, `,"action":`...)
	b = appendString(b, r.Action)
	b = append(b, `,"federation_peer_id":`...)
	b = appendString(b, r.FederationPeerID)
	b = append(b, `,"remote_subject":`...)
	b = appendString(b, r.RemoteSubject)
	b = append(b, `,"decision":`...)
	b = appendString(b, r.Decision)
	b = append(b, `,"reason":`...)
	b = appendString(b, r.Reason)
	b = append(b, `,"method":`...)
	b = appendString(b, r.Method)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, r.DurationNS, 10)
	b = append(b, `,"tls_version":`...)
	b = appendString(b, r.TLSVersion)
	b = append(b, `,"resumed":`...)
	b = strconv.AppendBool(b, r.Resumed)
	b = append(b, `,"cert_serial":`...)
	b = appendString(b, r.CertSerial)
	b = append(b, `,"cert_spki_sha256":`...)
	b = appendString(b, r.CertSPKISHA256)
	b = append(b, `,"grant_id":`...)
	b = appendString(b, r.GrantID)
	b = append(b, `,"correlation_id":`...)
	b = appendString(b, r.CorrelationID)
	b = append(b, `,"metadata":`...)
	if r.Metadata == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		var small [8]string // the usual few keys, sorted without allocating
		keys := small[:0]
		for k := range r.Metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, r.Metadata[k])
		}
		b = append(b, '}')
	}
	return b
}

// appendHead appends `{"seq":N,"time":"T",`.
func appendHead(b []byte, seq uint64, t time.Time) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `",`...)
}

// appendTail appends `,"prev_hash":"P","hash":"` (the hash value and the
// closing `"}` follow).
func appendTail(b []byte, prev string) []byte {
	b = append(b, `,"prev_hash":`...)
	b = appendString(b, prev)
	return append(b, `,"hash":"`...)
}

// sealLine completes a line whose bytes from start end with `"hash":"`:
// it hashes line[start:] + `"}`, then appends the hex hash, `"}` and a
// newline. It returns the line and the hash.
func sealLine(b []byte, start int) ([]byte, string) {
	n := len(b)
	b = append(b, '"', '}')
	sum := sha256.Sum256(b[start:]) // no allocation, unlike sha256.New
	b = b[:n]
	b = hex.AppendEncode(b, sum[:])
	hs := string(b[n:])
	b = append(b, '"', '}', '\n')
	return b, hs
}

// sealInto is sealLine for the writer's hot path: the hex hash goes into
// *hash instead of a new string, and appendTailHex takes it back.
func sealInto(b []byte, start int, hash *[64]byte) []byte {
	n := len(b)
	b = append(b, '"', '}')
	sum := sha256.Sum256(b[start:])
	b = b[:n]
	hex.Encode(hash[:], sum[:])
	b = append(b, hash[:]...)
	return append(b, '"', '}', '\n')
}

// appendTailHex is appendTail for a hash held as hex bytes (never escaped).
func appendTailHex(b []byte, prev *[64]byte) []byte {
	b = append(b, `,"prev_hash":"`...)
	b = append(b, prev[:]...)
	return append(b, `","hash":"`...)
}

// MarshalJSON returns the canonical encoding of r (no trailing newline). It
// equals encoding/json's output for the same Record.
func (r Record) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 512)
	b = appendHead(b, r.Seq, r.Time)
	b = r.appendBody(b)
	b = append(b, `,"prev_hash":`...)
	b = appendString(b, r.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendString(b, r.Hash)
	b = append(b, '}')
	return b, nil
}

// ComputeHash returns the chain hash of r as defined in the package doc
// (r.Hash is ignored).
func (r Record) ComputeHash() string {
	r.Hash = ""
	b, _ := r.MarshalJSON()
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped exactly like
// encoding/json (HTML-safe, U+2028/2029 escaped, invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
