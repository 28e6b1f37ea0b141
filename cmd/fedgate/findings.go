package main

import (
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func newFindingsCmd(g *globals) *cobra.Command {
	var peer string
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "Governance findings recorded against peers (capability drift, stale heartbeats, …)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if peer != "" {
				q.Set("peer", peer)
			}
			var out []struct {
				ID     string    `json:"id"`
				PeerID string    `json:"peer_id"`
				Kind   string    `json:"kind"`
				Detail string    `json:"detail"`
				At     time.Time `json:"at"`
			}
			if err := g.client().get("/v1/findings", q, &out); err != nil {
				return err
			}
			if g.json {
				return printJSON(out)
			}
			rows := [][]string{}
			for _, f := range out {
				rows = append(rows, []string{fmtTime(&f.At), f.PeerID, f.Kind, f.Detail})
			}
			table([]string{"AT", "PEER", "KIND", "DETAIL"}, rows)
			return nil
		},
	}
	cmd.Flags().StringVar(&peer, "peer", "", "only this peer's findings")
	return cmd
}
