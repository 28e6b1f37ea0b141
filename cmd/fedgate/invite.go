package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newPeersInviteCmd(g *globals) *cobra.Command {
	var (
		tokenFile, kind string
		ttlSeconds      int64
	)
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Invite another site: a proposed peer, its bootstrap URL and a single-use acceptance token",
		Long: "Creates a proposed peer and an acceptance token (32 random bytes, URL-safe base64; only its SHA-256 is\n" +
			"kept). The token is written to --token-file (mode 0600), never printed; hand the URL and the file to the\n" +
			"other operator, who runs `fedgate peers accept URL --token-file F --contract-version 1`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tokenFile == "" {
				return fmt.Errorf("--token-file is required (the token is a secret: it is never printed)")
			}
			var resp struct {
				PeerID    string `json:"peer_id"`
				URL       string `json:"url"`
				Token     string `json:"acceptance_token"`
				ExpiresAt string `json:"expires_at"`
			}
			if err := g.client().post("/v1/lifecycle/invite", map[string]any{"ttl_seconds": ttlSeconds, "peer_kind": kind}, &resp); err != nil {
				return err
			}
			f, err := os.OpenFile(tokenFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("token file: %w", err)
			}
			if _, err := f.WriteString(resp.Token + "\n"); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if g.json {
				return printJSON(map[string]string{"peer_id": resp.PeerID, "url": resp.URL, "expires_at": resp.ExpiresAt, "token_file": tokenFile})
			}
			fmt.Printf("peer %s proposed\nbootstrap URL: %s\ntoken written to %s (single use, expires %s)\n",
				resp.PeerID, resp.URL, tokenFile, resp.ExpiresAt)
			return nil
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "write the acceptance token to this file (0600; required)")
	cmd.Flags().StringVar(&kind, "kind", "platform", "peer kind: platform or sdwan_only")
	cmd.Flags().Int64Var(&ttlSeconds, "ttl-seconds", 0, "token lifetime in seconds (default: lifecycle.invite_ttl)")
	return cmd
}

// printPeer prints a peer answer as JSON or one line.
func printPeer(g *globals, raw json.RawMessage) error {
	if g.json {
		return printJSON(raw)
	}
	var p peerView
	_ = json.Unmarshal(raw, &p)
	fmt.Printf("peer %s is %s (contract version %d)\n", p.ID, p.Status, p.ContractVersionAgreed)
	return nil
}
