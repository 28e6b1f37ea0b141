package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

type certRow struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	PeerID    string    `json:"federation_peer_id"`
	Subject   string    `json:"subject"`
	Serial    string    `json:"serial"`
	Issuer    string    `json:"issuer"`
	NotAfter  time.Time `json:"not_after"`
	RenewAt   time.Time `json:"renew_at"`
	DaysLeft  float64   `json:"days_left"`
	State     string    `json:"state"`
	LastError string    `json:"last_error"`
}

func newCertsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "certs", Short: "This node's certificates: list and revoke"}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Subject, serial, issuer, not-after, days left, renew-at of every certificate here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/certs", nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var cs []certRow
			if err := json.Unmarshal(raw, &cs); err != nil {
				return err
			}
			rows := [][]string{}
			for _, c := range cs {
				renew := ""
				if !c.RenewAt.IsZero() {
					renew = c.RenewAt.UTC().Format(time.RFC3339)
				}
				state := c.State
				if c.LastError != "" {
					state += ": " + c.LastError
				}
				name := c.Name
				if c.PeerID != "" {
					name += " " + c.PeerID
				}
				rows = append(rows, []string{c.Kind, name, c.Subject, c.Serial, c.Issuer, c.NotAfter.UTC().Format(time.RFC3339),
					fmt.Sprintf("%.1f", c.DaysLeft), renew, state})
			}
			table([]string{"KIND", "NAME", "SUBJECT", "SERIAL", "ISSUER", "NOT AFTER", "DAYS LEFT", "RENEW AT", "STATE"}, rows)
			return nil
		},
	})
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke serial:<hex>|spki:<sha256 hex>",
		Short: "Revoke a certificate on every node of the site (live connections using it are closed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := g.client().post("/v1/certs/revoke", map[string]string{"target": args[0], "reason": reason}, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			fmt.Printf("revoked %s\n", args[0])
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "revocation reason")
	c.AddCommand(revoke)
	return c
}

func newTrustCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "trust", Short: "Per-peer trust: the peer's CA bundle and our certificate for it"}
	c.AddCommand(&cobra.Command{
		Use:   "show PEER_ID",
		Short: "Show a peer's trust anchors, subjects and our federation certificate for it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/trust/"+args[0], nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var tv struct {
				PeerID          string `json:"federation_peer_id"`
				Status          string `json:"status"`
				InboundSubject  string `json:"inbound_subject"`
				OutboundSubject string `json:"outbound_subject"`
				Anchors         []struct {
					Subject  string    `json:"subject"`
					SHA256   string    `json:"sha256"`
					NotAfter time.Time `json:"not_after"`
				} `json:"anchors"`
				Ours *certRow `json:"our_certificate"`
			}
			if err := json.Unmarshal(raw, &tv); err != nil {
				return err
			}
			fmt.Printf("peer:              %s (%s)\n", tv.PeerID, tv.Status)
			fmt.Printf("it presents:       %s\n", tv.InboundSubject)
			fmt.Printf("we present:        %s\n", orDash(tv.OutboundSubject))
			if tv.Ours != nil {
				fmt.Printf("our certificate:   serial %s, not after %s\n", tv.Ours.Serial, tv.Ours.NotAfter.UTC().Format(time.RFC3339))
			}
			fmt.Println()
			rows := [][]string{}
			for _, a := range tv.Anchors {
				rows = append(rows, []string{a.Subject, a.SHA256, a.NotAfter.UTC().Format(time.RFC3339)})
			}
			table([]string{"TRUST ANCHOR", "SHA-256", "NOT AFTER"}, rows)
			return nil
		},
	})
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
