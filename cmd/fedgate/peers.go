package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// peerView is the part of a FederationPeer the tables show.
type peerView struct {
	ID                    string `json:"id"`
	Status                string `json:"status"`
	RemoteInstanceURL     string `json:"remote_instance_url"`
	PeerKind              string `json:"peer_kind"`
	ContractVersionAgreed int    `json:"contract_version_agreed"`
	PlatformVersion       string `json:"platform_version"`
	DataResidency         string `json:"data_residency"`
	InboundSubject        string `json:"inbound_subject"`
}

func newPeersCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "peers", Short: "Federation peers: add, list, show, transition, revoke"}
	c.AddCommand(newPeersAddCmd(g), newPeersListCmd(g), newPeersShowCmd(g), newPeersTransitionCmd(g), newPeersRevokeCmd(g))
	c.AddCommand(newPeersInviteCmd(g), newPeersAcceptCmd(g))
	return c
}

func newPeersAddCmd(g *globals) *cobra.Command {
	var (
		fromFile, caFile                              string
		url_, instanceID, kind, contact, jurisdiction string
		platformVersion, lkg, residency, wgKey        string
		contract                                      int
		endpoints, kinds, vips                        []string
	)
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Propose a new federation peer (status proposed)",
		Long: "Add a peer from flags, or from a JSON FederationPeer record with --from-file.\n" +
			"Endpoints are URL[,scope[,priority]] with scope lan|sdwan|wan (default wan) and priority (default 10).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{}
			if fromFile != "" {
				b, err := os.ReadFile(fromFile)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(b, &body); err != nil {
					return fmt.Errorf("%s: %w", fromFile, err)
				}
			}
			set := func(k string, v any, changed bool) {
				if changed {
					body[k] = v
				}
			}
			f := cmd.Flags()
			set("remote_instance_url", url_, f.Changed("url"))
			set("remote_instance_id", instanceID, f.Changed("instance-id"))
			set("peer_kind", kind, f.Changed("kind") || body["peer_kind"] == nil)
			set("contract_version_agreed", contract, f.Changed("contract-version"))
			set("operator_contact", contact, f.Changed("operator-contact"))
			set("jurisdiction", jurisdiction, f.Changed("jurisdiction"))
			set("platform_version", platformVersion, f.Changed("platform-version"))
			set("last_known_good_release", lkg, f.Changed("last-known-good-release"))
			set("data_residency", residency, f.Changed("data-residency"))
			set("wireguard_public_key", wgKey, f.Changed("wg-public-key"))
			set("vips", vips, f.Changed("vip"))
			if f.Changed("resource-kind") {
				body["capabilities"] = map[string]any{"resource_kinds": kinds}
			}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return err
				}
				body["trusted_ca_pem"] = string(b)
			}
			if len(endpoints) > 0 {
				var eps []map[string]any
				for _, e := range endpoints {
					ep, err := parseEndpoint(e)
					if err != nil {
						return err
					}
					eps = append(eps, ep)
				}
				body["endpoints"] = eps
			}
			var raw json.RawMessage
			if err := g.client().post("/v1/peers", body, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var p peerView
			_ = json.Unmarshal(raw, &p)
			fmt.Printf("peer %s added (%s)\n", p.ID, p.Status)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&fromFile, "from-file", "", "JSON FederationPeer record")
	f.StringVar(&url_, "url", "", "remote_instance_url")
	f.StringVar(&instanceID, "instance-id", "", "remote_instance_id")
	f.StringVar(&kind, "kind", "platform", "peer_kind: platform or sdwan_only")
	f.IntVar(&contract, "contract-version", 1, "contract_version_agreed")
	f.StringVar(&caFile, "trusted-ca-file", "", "PEM file with the peer's CA bundle (trusted_ca_pem)")
	f.StringArrayVar(&endpoints, "endpoint", nil, "URL[,scope[,priority]] (repeatable)")
	f.StringSliceVar(&kinds, "resource-kind", nil, "declared resource kinds (capabilities)")
	f.StringVar(&contact, "operator-contact", "", "operator contact (identity disclosure)")
	f.StringVar(&jurisdiction, "jurisdiction", "", "declared jurisdiction (identity disclosure)")
	f.StringVar(&platformVersion, "platform-version", "", "peer's platform version (semver)")
	f.StringVar(&lkg, "last-known-good-release", "", "peer's last known-good release tag")
	f.StringVar(&residency, "data-residency", "", "peer's declared data residency")
	f.StringVar(&wgKey, "wg-public-key", "", "peer's WireGuard public key (base64)")
	f.StringSliceVar(&vips, "vip", nil, "peer's VIPs (/32 or /128)")
	return cmd
}

func parseEndpoint(s string) (map[string]any, error) {
	parts := strings.Split(s, ",")
	ep := map[string]any{"url": parts[0], "scope": "wan", "priority": 10}
	if len(parts) > 1 && parts[1] != "" {
		ep["scope"] = parts[1]
	}
	if len(parts) > 2 {
		p, err := strconv.Atoi(parts[2])
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: priority %q is not a number", s, parts[2])
		}
		ep["priority"] = p
	}
	if len(parts) > 3 {
		return nil, fmt.Errorf("endpoint %q: want URL[,scope[,priority]]", s)
	}
	return ep, nil
}

func newPeersListCmd(g *globals) *cobra.Command {
	var status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List federation peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if status != "" {
				q.Set("status", status)
			}
			var raw json.RawMessage
			if err := g.client().get("/v1/peers", q, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var ps []peerView
			if err := json.Unmarshal(raw, &ps); err != nil {
				return err
			}
			rows := make([][]string, 0, len(ps))
			for _, p := range ps {
				rows = append(rows, []string{p.ID, p.Status, p.PeerKind, strconv.Itoa(p.ContractVersionAgreed), p.PlatformVersion, p.DataResidency, p.RemoteInstanceURL})
			}
			table([]string{"ID", "STATUS", "KIND", "CONTRACT", "PLATFORM", "RESIDENCY", "URL"}, rows)
			return nil
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only peers with this status")
	return cmd
}

func newPeersShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show PEER_ID",
		Short: "Show one peer's whole record",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/peers/"+url.PathEscape(args[0]), nil, &raw); err != nil {
				return err
			}
			return printJSON(raw)
		},
	}
}

func newPeersTransitionCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "transition PEER_ID STATUS",
		Short: "Move a peer to another status (proposed accepted enrolled active degraded suspended revoked)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return peerAction(g, args[0], "transition", map[string]string{"status": args[1], "reason": reason})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "reason recorded with the transition")
	return cmd
}

func newPeersRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke PEER_ID",
		Short: "Revoke a peer (from any status; terminal)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return fmt.Errorf("--reason is required")
			}
			return peerAction(g, args[0], "revoke", map[string]string{"reason": reason})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "revocation reason (required)")
	return cmd
}

func peerAction(g *globals, id, action string, body any) error {
	var raw json.RawMessage
	if err := g.client().post("/v1/peers/"+url.PathEscape(id)+"/"+action, body, &raw); err != nil {
		return err
	}
	if g.json {
		return printJSON(raw)
	}
	var p peerView
	_ = json.Unmarshal(raw, &p)
	fmt.Printf("peer %s is %s\n", p.ID, p.Status)
	return nil
}
