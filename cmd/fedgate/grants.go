package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type grantView struct {
	ID               string     `json:"id"`
	FederationPeerID string     `json:"federation_peer_id"`
	RemoteSubject    string     `json:"remote_subject"`
	ResourceKind     string     `json:"resource_kind"`
	ResourceID       *string    `json:"resource_id"`
	PermissionScopes []string   `json:"permission_scopes"`
	ExpiresAt        *time.Time `json:"expires_at"`
	RevokedAt        *time.Time `json:"revoked_at"`
}

func newGrantsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "grants", Short: "Federation grants: issue, list, revoke"}
	c.AddCommand(newGrantsIssueCmd(g), newGrantsListCmd(g), newGrantsRevokeCmd(g))
	return c
}

func newGrantsIssueCmd(g *globals) *cobra.Command {
	var (
		peer, subject, kind, resource, tokenOut string
		scopes, nodes, networks, cidrs          []string
		ttl                                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a grant to a peer's remote subject; the bearer token is written to --token-out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokenOut == "" {
				return fmt.Errorf("--token-out FILE is required: the grant token is a secret and is written only to a file (mode 0600)")
			}
			body := map[string]any{
				"federation_peer_id": peer, "remote_subject": subject, "resource_kind": kind,
				"permission_scopes": scopes, "node_instance_ids": nodes, "sdwan_network_ids": networks, "source_cidrs": cidrs,
			}
			if resource != "" {
				body["resource_id"] = resource
			}
			if ttl > 0 {
				body["ttl_seconds"] = int64(ttl / time.Second)
			}
			var res struct {
				Grant json.RawMessage `json:"grant"`
				Token string          `json:"token"`
			}
			if err := g.client().post("/v1/grants", body, &res); err != nil {
				return err
			}
			if err := os.WriteFile(tokenOut, []byte(res.Token+"\n"), 0o600); err != nil {
				return fmt.Errorf("grant issued but token not written: %w", err)
			}
			if g.json {
				return printJSON(res.Grant)
			}
			var gv grantView
			_ = json.Unmarshal(res.Grant, &gv)
			fmt.Printf("grant %s issued to %s (%s), expires %s; token in %s\n", gv.ID, gv.FederationPeerID, gv.RemoteSubject, fmtTime(gv.ExpiresAt), tokenOut)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&peer, "peer", "", "federation_peer_id (required)")
	f.StringVar(&subject, "subject", "", "remote_subject on the peer's side (required)")
	f.StringVar(&kind, "kind", "", "resource_kind (required)")
	f.StringVar(&resource, "resource", "", "resource_id (empty: every resource of the kind)")
	f.StringSliceVar(&scopes, "scope", []string{"read"}, "permission scopes: read, write, admin, migrate")
	f.StringSliceVar(&nodes, "node", nil, "allowed node_instance_ids")
	f.StringSliceVar(&networks, "network", nil, "allowed sdwan_network_ids")
	f.StringSliceVar(&cidrs, "source-cidr", nil, "allowed source CIDRs")
	f.DurationVar(&ttl, "ttl", 0, "lifetime (default 30 days)")
	f.StringVar(&tokenOut, "token-out", "", "file to write the bearer token to (mode 0600)")
	return cmd
}

func newGrantsListCmd(g *globals) *cobra.Command {
	var peer string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if peer != "" {
				q.Set("peer", peer)
			}
			var raw json.RawMessage
			if err := g.client().get("/v1/grants", q, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var gs []grantView
			if err := json.Unmarshal(raw, &gs); err != nil {
				return err
			}
			rows := make([][]string, 0, len(gs))
			for _, gv := range gs {
				res := "*"
				if gv.ResourceID != nil {
					res = *gv.ResourceID
				}
				state := "valid"
				if gv.RevokedAt != nil {
					state = "revoked"
				} else if gv.ExpiresAt != nil && time.Now().After(*gv.ExpiresAt) {
					state = "expired"
				}
				rows = append(rows, []string{gv.ID, gv.FederationPeerID, gv.RemoteSubject, gv.ResourceKind, res, strings.Join(gv.PermissionScopes, ","), fmtTime(gv.ExpiresAt), state})
			}
			table([]string{"ID", "PEER", "SUBJECT", "KIND", "RESOURCE", "SCOPES", "EXPIRES", "STATE"}, rows)
			return nil
		},
	}
	cmd.Flags().StringVar(&peer, "peer", "", "only grants of this peer")
	return cmd
}

func newGrantsRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke GRANT_ID",
		Short: "Revoke a grant on every node of the site",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := g.client().post("/v1/grants/"+url.PathEscape(args[0])+"/revoke", map[string]string{"reason": reason}, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			fmt.Printf("grant %s revoked\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "revocation_reason")
	return cmd
}
