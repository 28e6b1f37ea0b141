package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

type statusView struct {
	NodeID string `json:"node_id"`
	Site   string `json:"site"`
	Ready  bool   `json:"ready"`
	Raft   struct {
		State        string `json:"state"`
		Leader       string `json:"leader"`
		LeaderAddr   string `json:"leader_addr"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		LastContact  string `json:"last_contact"`
	} `json:"raft"`
	Members  []memberView `json:"members"`
	Warnings []string     `json:"warnings"`
}

type memberView struct {
	ID          string   `json:"id"`
	Address     string   `json:"address"`
	Suffrage    string   `json:"suffrage"`
	Leader      bool     `json:"leader"`
	LastContact string   `json:"last_contact"`
	VIPs        []string `json:"vips,omitempty"`
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this node: id, raft role, term, commit index, leader, members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/status", nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var s statusView
			if err := json.Unmarshal(raw, &s); err != nil {
				return err
			}
			fmt.Printf("node:          %s\n", s.NodeID)
			fmt.Printf("site:          %s\n", s.Site)
			fmt.Printf("ready:         %v\n", s.Ready)
			fmt.Printf("raft state:    %s\n", s.Raft.State)
			fmt.Printf("leader:        %s %s\n", s.Raft.Leader, s.Raft.LeaderAddr)
			fmt.Printf("term:          %d\n", s.Raft.Term)
			fmt.Printf("commit index:  %d\n", s.Raft.CommitIndex)
			fmt.Printf("applied index: %d\n", s.Raft.AppliedIndex)
			fmt.Printf("last contact:  %s\n", s.Raft.LastContact)
			for _, w := range s.Warnings {
				fmt.Printf("warning:       %s\n", w)
			}
			fmt.Println()
			printMembers(s.Members)
			return nil
		},
	}
}

func printMembers(ms []memberView) {
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		role := m.Suffrage
		if m.Leader {
			role += " (leader)"
		}
		rows = append(rows, []string{m.ID, m.Address, role, m.LastContact, joinOr(m.VIPs)})
	}
	table([]string{"MEMBER", "ADDRESS", "SUFFRAGE", "LAST CONTACT", "VIPS"}, rows)
}
