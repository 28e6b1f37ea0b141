package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newClusterCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cluster", Short: "Grow, shrink and inspect this site's raft cluster"}
	c.AddCommand(newClusterInviteCmd(g), newClusterJoinCmd(g), newClusterRemoveCmd(g), newClusterMembersCmd(g))
	return c
}

func newClusterInviteCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Create a single-use join token for a new node (run on a member)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Token     string `json:"token"`
				JoinURL   string `json:"join_url"`
				ExpiresAt string `json:"expires_at"`
			}
			if err := g.client().post("/v1/cluster/invite", struct{}{}, &res); err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("--out FILE is required: the token is a secret and is written only to a file (mode 0600)")
			}
			if err := os.WriteFile(out, []byte(res.Token+"\n"), 0o600); err != nil {
				return fmt.Errorf("write token: %w", err)
			}
			if g.json {
				return printJSON(map[string]string{"token_file": out, "join_url": res.JoinURL, "expires_at": res.ExpiresAt})
			}
			fmt.Printf("join token written to %s (single use, expires %s)\n", out, res.ExpiresAt)
			fmt.Printf("on the new node: fedgate cluster join %s --token-file %s\n", res.JoinURL, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the join token to (mode 0600)")
	return cmd
}

func newClusterJoinCmd(g *globals) *cobra.Command {
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "join JOIN_URL",
		Short: "Join this (new, empty) node to a site through a member's cluster API",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tokenFile == "" {
				return fmt.Errorf("--token-file is required")
			}
			tok, err := readSecretFile(tokenFile)
			if err != nil {
				return err
			}
			var res json.RawMessage
			if err := g.client().post("/v1/cluster/join", map[string]string{"join_url": args[0], "token": tok}, &res); err != nil {
				return err
			}
			if g.json {
				return printJSON(res)
			}
			var v struct {
				NodeID string `json:"node_id"`
				Leader string `json:"leader"`
			}
			_ = json.Unmarshal(res, &v)
			fmt.Printf("joined: node %s, leader %s\n", v.NodeID, v.Leader)
			return nil
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the join token (from `fedgate cluster invite`)")
	return cmd
}

func newClusterRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NODE_ID",
		Short: "Remove a member from the site",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().do("DELETE", "/v1/cluster/members/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
				return err
			}
			if g.json {
				return printJSON(map[string]string{"removed": args[0]})
			}
			fmt.Printf("removed %s\n", args[0])
			return nil
		},
	}
}

func newClusterMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List members: suffrage, last contact, VIPs held",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/cluster/members", nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var ms []memberView
			if err := json.Unmarshal(raw, &ms); err != nil {
				return err
			}
			printMembers(ms)
			return nil
		},
	}
}

// readSecretFile reads a secret from a file that only its owner may read.
func readSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %04o: a secret file must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

func joinOr(s []string) string { return strings.Join(s, ",") }
