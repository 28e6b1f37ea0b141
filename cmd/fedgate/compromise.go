package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCompromiseCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "compromise", Short: "Compromise notification to federation partners (commitment 9)"}
	var reason string
	notify := &cobra.Command{
		Use:   "notify",
		Short: "Send a signed compromise notice to every federation partner (they suspend us pending review)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reason == "" {
				return fmt.Errorf("--reason is required")
			}
			var out []struct {
				PeerID    string `json:"federation_peer_id"`
				Delivered bool   `json:"delivered"`
				Error     string `json:"error"`
			}
			if err := g.client().post("/v1/compromise", map[string]string{"reason": reason}, &out); err != nil {
				return err
			}
			if g.json {
				return printJSON(out)
			}
			rows := [][]string{}
			for _, r := range out {
				rows = append(rows, []string{r.PeerID, fmt.Sprint(r.Delivered), r.Error})
			}
			table([]string{"PEER", "DELIVERED", "ERROR"}, rows)
			return nil
		},
	}
	notify.Flags().StringVar(&reason, "reason", "", "what happened (required)")
	status := &cobra.Command{
		Use:   "status",
		Short: "Peers that sent us a compromise notice (suspended pending operator review)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st struct {
				Peers []struct {
					ID               string `json:"id"`
					Status           string `json:"status"`
					SuspensionReason string `json:"suspension_reason"`
					CompromiseNotice string `json:"compromise_notice"`
				} `json:"peers"`
			}
			if err := g.client().get("/v1/lifecycle", nil, &st); err != nil {
				return err
			}
			rows := [][]string{}
			for _, p := range st.Peers {
				if p.CompromiseNotice != "" {
					rows = append(rows, []string{p.ID, p.Status, p.CompromiseNotice, p.SuspensionReason})
				}
			}
			if g.json {
				return printJSON(rows)
			}
			table([]string{"PEER", "STATUS", "NOTICE", "SUSPENSION REASON"}, rows)
			return nil
		},
	}
	c.AddCommand(notify, status)
	return c
}
