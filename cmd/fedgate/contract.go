package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
)

type contractView struct {
	Version      int     `json:"version"`
	Digest       string  `json:"digest"`
	EffectiveAt  *string `json:"effective_at"`
	DeprecatedAt *string `json:"deprecated_at"`
}

func newContractCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "contract", Short: "Federation contract versions"}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List contract versions with their SHA-256 digests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/contracts", nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var cs []contractView
			if err := json.Unmarshal(raw, &cs); err != nil {
				return err
			}
			rows := make([][]string, 0, len(cs))
			for _, c := range cs {
				rows = append(rows, []string{strconv.Itoa(c.Version), c.Digest, deref(c.EffectiveAt), deref(c.DeprecatedAt)})
			}
			table([]string{"VERSION", "DIGEST (SHA-256)", "EFFECTIVE", "DEPRECATED"}, rows)
			return nil
		},
	}, &cobra.Command{
		Use:   "show VERSION",
		Short: "Print a contract version's text",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := strconv.Atoi(args[0]); err != nil {
				return fmt.Errorf("version %q is not a number", args[0])
			}
			var v struct {
				contractView
				Text string `json:"contract_text"`
			}
			var raw json.RawMessage
			if err := g.client().get("/v1/contracts/"+url.PathEscape(args[0]), nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			fmt.Print(v.Text)
			return nil
		},
	})
	return c
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
