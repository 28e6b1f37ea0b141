package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

type vipRow struct {
	Name         string   `json:"name"`
	CIDR         string   `json:"cidr"`
	Interface    string   `json:"interface"`
	Holders      []string `json:"holder_node_ids"`
	Failovers    []string `json:"failover_node_ids"`
	Holder       string   `json:"holder"`
	State        string   `json:"state"`
	MountedHere  bool     `json:"mounted_here"`
	LastAnnounce string   `json:"last_announce"`
	Error        string   `json:"error"`
}

func newVIPsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "vips",
		Short: "The site's virtual IPs: holder, mounted here, last announce",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return listVIPs(g) },
	}
	var iface string
	var holders, failovers []string
	var peer string
	add := &cobra.Command{
		Use:   "add NAME CIDR",
		Short: "Add (or replace) a VIP; without --holder it follows the raft leader",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"name": args[0], "cidr": args[1], "interface": iface,
				"holder_node_ids": holders, "failover_node_ids": failovers, "peer_id": peer}
			var raw json.RawMessage
			if err := g.client().post("/v1/vips", body, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			fmt.Printf("vip %s (%s) added\n", args[0], args[1])
			return nil
		},
	}
	add.Flags().StringVar(&iface, "interface", "", "interface to mount on (default netctl.vip_interface)")
	add.Flags().StringSliceVar(&holders, "holder", nil, "holder node ids, primary first")
	add.Flags().StringSliceVar(&failovers, "failover", nil, "failover node ids")
	add.Flags().StringVar(&peer, "peer", "", "dedicate the VIP to this federation peer (unmounted when the peer is revoked)")
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a VIP (unmounted wherever it is held)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().do("DELETE", "/v1/vips/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
				return err
			}
			fmt.Printf("vip %s deleted\n", args[0])
			return nil
		},
	}
	var to string
	failover := &cobra.Command{
		Use:   "failover NAME",
		Short: "Move a VIP to another node (a leader-held VIP moves with raft leadership: run it on the leader)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res struct {
				VIP        string `json:"vip"`
				From       string `json:"from"`
				To         string `json:"to"`
				Reason     string `json:"reason"`
				Leadership bool   `json:"leadership_transfer"`
			}
			var raw json.RawMessage
			if err := g.client().post("/v1/vips/"+url.PathEscape(args[0])+"/failover", map[string]string{"to": to}, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			how := "holder reassigned"
			if res.Leadership {
				how = "raft leadership transferred"
			}
			fmt.Printf("vip %s moved from %s to %s (%s, %s)\n", res.VIP, nodeOrNone(res.From), nodeOrNone(res.To), how, res.Reason)
			return nil
		},
	}
	failover.Flags().StringVar(&to, "to", "", "node id to move the VIP to (default: the next reachable holder, or the best voter)")
	c.AddCommand(&cobra.Command{Use: "list", Short: "List VIPs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listVIPs(g) }}, add, del, failover)
	return c
}

func nodeOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func listVIPs(g *globals) error {
	var raw json.RawMessage
	if err := g.client().get("/v1/vips", nil, &raw); err != nil {
		return err
	}
	if g.json {
		return printJSON(raw)
	}
	var vs []vipRow
	if err := json.Unmarshal(raw, &vs); err != nil {
		return err
	}
	rows := [][]string{}
	for _, v := range vs {
		here := "no"
		if v.MountedHere {
			here = "yes"
		}
		holders := "leader"
		if len(v.Holders) > 0 {
			holders = strings.Join(append(append([]string{}, v.Holders...), v.Failovers...), ",")
		}
		rows = append(rows, []string{v.Name, v.CIDR, v.Interface, holders, v.Holder, v.State, here, v.LastAnnounce, v.Error})
	}
	table([]string{"NAME", "CIDR", "INTERFACE", "HOLDERS", "HOLDER", "STATE", "MOUNTED HERE", "LAST ANNOUNCE", "ERROR"}, rows)
	return nil
}
