// Package audit is the node's own append-only, hash-chained, crash-safe
// audit log: one Record per cross-peer action (contract commitment 5), with
// query, export (72-hour excerpts for a requesting peer), verification,
// retention and optional shipping to the platform as FleetEvents.
//
// # On-disk format
//
// The log lives in Config.Dir as JSON Lines segments named
// audit-<first seq, 20 digits>.jsonl. The first line of every segment is a
// header:
//
//	{"audit_segment":1,"node_id":"…","first_seq":N,"prev_hash":"<hex>","created":"<RFC3339Nano>","hash":"<hex>"}
//
// where prev_hash is the hash of the last record before this segment (64
// zeros for the very first segment). Every following line is one Record in
// the canonical encoding produced by Record.MarshalJSON: fields in the fixed
// order of the Record struct, every field present, metadata keys sorted,
// strings escaped exactly as encoding/json escapes them, time in UTC
// RFC3339Nano, seq first and prev_hash, hash last.
//
// # Hash chain
//
// hash is the lowercase hex SHA-256 of the record's line with the hash value
// left empty, without the trailing newline; that is, of the bytes
//
//	{"seq":…, … ,"prev_hash":"<hex>","hash":""}
//
// A receiving peer checks a line by replacing the 64 hex digits of the hash
// with nothing, hashing, and comparing. prev_hash of record n is the hash of
// record n-1; seq increases by exactly one. The segment header is hashed the
// same way, so an edit anywhere in a segment is detected. The chain detects
// any edit, deletion or reordering of bytes; anchoring the last hash outside
// the node (export manifests, shipping) is what makes a rewrite of the whole
// tail detectable as well.
//
// # Durability
//
// Append returns only after the record is written and fdatasync'd. One writer
// goroutine takes every queued record, writes them with one write and makes
// them durable with one sync (group commit). On Open, a torn tail of the last
// segment (an incomplete final line, or a tail of NUL bytes left by a power
// loss) is truncated; anything else that does not verify is corruption:
// appends are refused with ErrCorrupt naming the file and byte offset, and
// queries keep serving the records before it. A record can exist on disk
// that Append never acknowledged (killed between sync and return); an
// acknowledged record is never missing.
//
// # Overload and disk errors
//
// The queue is bounded (Config.QueueSize). With PolicyFailClosed (the
// default) Append returns an error that matches ErrUnavailable (ErrQueueFull,
// ErrDiskFull, ErrReadOnly, ErrCorrupt, ErrClosed) and the proxy must refuse
// the call. With PolicyDrop, Append returns ErrDropped (which does not match
// ErrUnavailable), the drop is counted (Stats.Dropped and a Prometheus
// counter) and, once writes succeed again, an "audit.dropped" record carries
// the count.
//
// # Local API
//
// Log.Handler serves, under /v1/audit/:
//
//	GET tail?n=100&follow=1            JSON Lines (application/x-ndjson); follow streams new records
//	GET query?peer=&since=&until=&action=&decision=&order=newest|oldest&limit=&cursor=
//	                                   {"records":[…],"next_cursor":"…"}
//	GET export?peer=&since=&until=     {"records_jsonl":"…","manifest":{…}}
//	GET verify                         VerifyResult (200 with ok=false when the chain is broken)
//
// since/until take RFC3339 times or a Go duration meaning "that long ago"
// (export?peer=P&since=72h). Errors are {"error":"…"} with 400, 404, 405 or
// 503.
package audit
