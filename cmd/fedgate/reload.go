package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newReloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Re-read fedgated's config: apply what can change live, report what needs a restart",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().post("/v1/reload", struct{}{}, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var res struct {
				Applied      []string `json:"applied"`
				NeedsRestart []string `json:"needs_restart"`
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			fmt.Printf("applied: %s\n", orNone(res.Applied))
			fmt.Printf("needs restart: %s\n", orNone(res.NeedsRestart))
			return nil
		},
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
