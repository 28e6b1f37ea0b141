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
// goroutine takes every queued record and writes them with one pwrite; a
// syncer goroutine makes everything written so far durable with one
// fdatasync and then acknowledges it (group commit, pipelined: the writer
// writes batch N+1 while batch N syncs). When the syncer is idle and no
// record is queued, there is nothing to overlap with, and the writer syncs
// and acknowledges the batch itself: one goroutine hand-off per batch fewer
// (the proxy's light, steady load), and records arriving meanwhile gather
// into a larger next batch. Append callers encode their record
// bodies in parallel; the writer only adds seq, time and the chain. If a
// write or sync fails, nothing after the last durable byte is acknowledged
// and the segment is cut back to its durable size before writing again.
// A background goroutine keeps the active segment preallocated with synced
// zeros (Config.PreallocBytes), so a commit overwrites allocated blocks and
// its fdatasync flushes data only, with no file-system journal commit; the
// zero tail is cut when the segment is rotated or the log closed, so only
// the last segment ever ends in zeros.
//
// On Open, the last segment's tail is classified: zeros after the last
// complete line are free space; an incomplete final line, or a region with
// NUL bytes and no valid line after it (a power loss mid-write), is a torn
// tail and is truncated (logged, Stats.TruncatedBytes). Anything else that
// does not verify is corruption: appends are refused with a *CorruptError
// (matching ErrCorrupt) naming the file, byte offset and first bad seq, and
// queries keep serving the records before it. A record can exist on disk
// that Append never acknowledged (killed between sync and return); an
// acknowledged record is never missing. Open verifies every segment's chain
// (seals and links, without a full JSON decode); Verify also decodes every
// record and checks its canonical encoding.
//
// What the chain cannot show on its own: the removal of records from the
// very end of the log (or zeroing them, which looks like a torn tail). The
// last hash must be anchored elsewhere for that — in export manifests
// (chain_head) and in the records shipped to the platform.
//
// # Overload and disk errors
//
// The queue is bounded (Config.QueueSize). With PolicyFailClosed (the
// default) Append returns an error that matches ErrUnavailable (ErrQueueFull,
// ErrDiskFull, ErrReadOnly, ErrCorrupt, ErrClosed) and the proxy must refuse
// the call. With PolicyDrop, every such failure except ErrClosed becomes
// ErrDropped (which does not match ErrUnavailable), the drop is counted (Stats.Dropped and a Prometheus
// counter) and, once writes succeed again, an "audit.dropped" record carries
// the count.
//
// # Local API
//
// Log.Handler serves, under /v1/audit/ (export answers one JSON object
// holding the exact JSON Lines bytes as a string plus the manifest, so the
// CLI writes records_jsonl to a file and the manifest beside it):
//
//	GET tail?n=100&follow=1            JSON Lines (application/x-ndjson); follow streams new records
//	GET query?peer=&since=&until=&action=&decision=&order=newest|oldest&limit=&cursor=
//	                                   {"records":[…],"next_cursor":"…"}
//	GET export?peer=&since=&until=     {"records_jsonl":"…","manifest":{…}}
//	GET verify                         VerifyResult (200 with ok=false when the chain is broken)
//	GET stats                          Stats
//
// since/until take RFC3339 times or a Go duration meaning "that long ago"
// (export?peer=P&since=72h). Errors are {"error":"…"} with 400, 404, 405 or
// 503.
package audit
