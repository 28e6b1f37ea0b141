package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

type auditRecord struct {
	Seq              uint64            `json:"seq"`
	Time             time.Time         `json:"time"`
	Action           string            `json:"action"`
	FederationPeerID string            `json:"federation_peer_id"`
	RemoteSubject    string            `json:"remote_subject"`
	Decision         string            `json:"decision"`
	Reason           string            `json:"reason"`
	Method           string            `json:"method"`
	Path             string            `json:"path"`
	Status           int               `json:"status"`
	Metadata         map[string]string `json:"metadata"`
}

func newAuditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "The node's tamper-evident audit log: tail, query, export, verify"}
	c.AddCommand(newAuditTailCmd(g), newAuditQueryCmd(g), newAuditExportCmd(g), newAuditVerifyCmd(g))
	return c
}

func printRecords(rs []auditRecord) {
	rows := make([][]string, 0, len(rs))
	for _, r := range rs {
		detail := r.Method + " " + r.Path
		if r.Status != 0 {
			detail += " " + strconv.Itoa(r.Status)
		}
		rows = append(rows, []string{strconv.FormatUint(r.Seq, 10), r.Time.UTC().Format(time.RFC3339Nano), r.Action,
			r.FederationPeerID, r.RemoteSubject, r.Decision, r.Reason, detail})
	}
	table([]string{"SEQ", "TIME", "ACTION", "PEER", "REMOTE SUBJECT", "DECISION", "REASON", "DETAIL"}, rows)
}

func newAuditTailCmd(g *globals) *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Show the newest records (oldest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/audit/tail", url.Values{"n": {strconv.Itoa(n)}}, &raw); err != nil {
				return err
			}
			var rs []auditRecord
			dec := json.NewDecoder(bytes.NewReader(raw))
			for {
				var r json.RawMessage
				if err := dec.Decode(&r); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				if g.json {
					os.Stdout.Write(append(r, '\n'))
					continue
				}
				var ar auditRecord
				if err := json.Unmarshal(r, &ar); err != nil {
					return err
				}
				rs = append(rs, ar)
			}
			if !g.json {
				printRecords(rs)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many records")
	return cmd
}

func newAuditQueryCmd(g *globals) *cobra.Command {
	var peer, action, decision, since, until, order, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Query by peer, time window, action and decision (paged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"peer": peer, "action": action, "decision": decision, "since": since,
				"until": until, "order": order, "cursor": cursor} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var raw json.RawMessage
			if err := g.client().get("/v1/audit/query", q, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var page struct {
				Records    []auditRecord `json:"records"`
				NextCursor string        `json:"next_cursor"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return err
			}
			printRecords(page.Records)
			if page.NextCursor != "" {
				fmt.Printf("\nmore: --cursor %s\n", page.NextCursor)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&peer, "peer", "", "federation_peer_id")
	f.StringVar(&action, "action", "", "action (e.g. proxy.request, peer.transition)")
	f.StringVar(&decision, "decision", "", "allow or deny")
	f.StringVar(&since, "since", "", "RFC3339 time or a duration before now (e.g. 72h)")
	f.StringVar(&until, "until", "", "RFC3339 time or a duration before now")
	f.StringVar(&order, "order", "", "newest (default) or oldest")
	f.StringVar(&cursor, "cursor", "", "next page cursor")
	f.IntVar(&limit, "limit", 0, "records per page (default 100, max 5000)")
	return cmd
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var peer, since, until, out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export a peer's records (JSON Lines) with a manifest the peer can check",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if peer == "" || out == "" {
				return fmt.Errorf("--peer and --out are required")
			}
			q := url.Values{"peer": {peer}}
			if since != "" {
				q.Set("since", since)
			}
			if until != "" {
				q.Set("until", until)
			}
			var res struct {
				Records  string          `json:"records_jsonl"`
				Manifest json.RawMessage `json:"manifest"`
			}
			if err := g.client().get("/v1/audit/export", q, &res); err != nil {
				return err
			}
			if err := os.WriteFile(out, []byte(res.Records), 0o640); err != nil {
				return err
			}
			var man bytes.Buffer
			if err := json.Indent(&man, res.Manifest, "", "  "); err != nil {
				return err
			}
			if err := os.WriteFile(out+".manifest.json", append(man.Bytes(), '\n'), 0o640); err != nil {
				return err
			}
			if g.json {
				return printJSON(res.Manifest)
			}
			var m struct {
				Count  int    `json:"count"`
				SHA256 string `json:"sha256"`
			}
			_ = json.Unmarshal(res.Manifest, &m)
			fmt.Printf("%d records to %s (sha256 %s); manifest %s.manifest.json\n", m.Count, out, m.SHA256, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&peer, "peer", "", "federation_peer_id (required)")
	f.StringVar(&since, "since", "72h", "RFC3339 time or a duration before now")
	f.StringVar(&until, "until", "", "RFC3339 time or a duration before now (default now)")
	f.StringVar(&out, "out", "", "JSON Lines file to write (the manifest goes beside it)")
	return cmd
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Re-read every segment and check the hash chain; names the first bad record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/audit/verify", nil, &raw); err != nil {
				return err
			}
			var v struct {
				OK       bool   `json:"ok"`
				Records  int    `json:"records"`
				Segments int    `json:"segments"`
				LastSeq  uint64 `json:"last_seq"`
				BadSeq   uint64 `json:"bad_seq"`
				File     string `json:"file"`
				Offset   int64  `json:"offset"`
				Error    string `json:"error"`
			}
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			if g.json {
				if err := printJSON(raw); err != nil {
					return err
				}
			} else if v.OK {
				fmt.Printf("ok: %d records in %d segments, last seq %d\n", v.Records, v.Segments, v.LastSeq)
			}
			if !v.OK {
				return fmt.Errorf("audit log verification failed at seq %d (%s offset %d): %s", v.BadSeq, v.File, v.Offset, v.Error)
			}
			return nil
		},
	}
}
