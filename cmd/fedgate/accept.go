package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newPeersAcceptCmd(g *globals) *cobra.Command {
	var (
		tokenFile, kind string
		contract        int
	)
	cmd := &cobra.Command{
		Use:   "accept URL",
		Short: "Accept another site's invitation (peer becomes accepted on both sides)",
		Long: "Redeems the acceptance token in --token-file at the inviting site's bootstrap URL, acknowledging\n" +
			"federation contract --contract-version, and exchanges CA bundles, endpoints and the ids each side\n" +
			"assigns the other. The bootstrap server is verified against the root the URL pins.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tokenFile == "" {
				return fmt.Errorf("--token-file is required")
			}
			if contract <= 0 {
				return fmt.Errorf("--contract-version is required (the contract version you acknowledge, e.g. 1)")
			}
			fi, err := os.Stat(tokenFile)
			if err != nil {
				return fmt.Errorf("token file: %w", err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				return fmt.Errorf("token file %s has mode %v: want 0600 or tighter", tokenFile, fi.Mode().Perm())
			}
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("token file: %w", err)
			}
			var raw json.RawMessage
			body := map[string]any{"url": args[0], "acceptance_token": strings.TrimSpace(string(b)), "contract_version": contract, "peer_kind": kind}
			if err := g.client().post("/v1/lifecycle/accept", body, &raw); err != nil {
				return err
			}
			return printPeer(g, raw)
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the acceptance token (0600; required)")
	cmd.Flags().IntVar(&contract, "contract-version", 0, "federation contract version you acknowledge (required)")
	cmd.Flags().StringVar(&kind, "kind", "platform", "peer kind: platform or sdwan_only")
	return cmd
}
