package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newTunnelsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tunnels",
		Short: "WireGuard interfaces and peers: backend, endpoint, handshake age, traffic, health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := g.client().get("/v1/tunnels", nil, &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(raw)
			}
			var res struct {
				Enabled bool `json:"enabled"`
				Status  struct {
					Interfaces []struct {
						Name       string   `json:"name"`
						Backend    string   `json:"backend"`
						ListenPort int      `json:"listen_port"`
						PublicKey  string   `json:"public_key"`
						Addresses  []string `json:"addresses"`
						Error      string   `json:"error"`
						Peers      []struct {
							PublicKey  string   `json:"public_key"`
							Endpoint   string   `json:"endpoint"`
							AllowedIPs []string `json:"allowed_ips"`
							Age        float64  `json:"handshake_age_seconds"`
							Rx         int64    `json:"rx_bytes"`
							Tx         int64    `json:"tx_bytes"`
							Health     string   `json:"health"`
						} `json:"peers"`
					} `json:"interfaces"`
					Errors []string `json:"errors"`
				} `json:"status"`
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			if !res.Enabled {
				fmt.Println("netctl is off on this node (netctl.mode)")
				return nil
			}
			rows := [][]string{}
			for _, i := range res.Status.Interfaces {
				rows = append(rows, []string{i.Name, i.Backend, fmt.Sprint(i.ListenPort), strings.Join(i.Addresses, ","), short(i.PublicKey), "", "", "", "", i.Error})
				for _, p := range i.Peers {
					age := "never"
					if p.Age >= 0 {
						age = fmt.Sprintf("%.0fs", p.Age)
					}
					rows = append(rows, []string{"  peer", "", "", strings.Join(p.AllowedIPs, ","), short(p.PublicKey), p.Endpoint, age,
						fmt.Sprintf("%d/%d", p.Rx, p.Tx), p.Health, ""})
				}
			}
			table([]string{"INTERFACE", "BACKEND", "PORT", "ADDRESSES/ALLOWED", "KEY", "ENDPOINT", "HANDSHAKE", "RX/TX", "HEALTH", "ERROR"}, rows)
			for _, e := range res.Status.Errors {
				fmt.Println("error:", e)
			}
			return nil
		},
	}
}

func short(k string) string {
	if len(k) > 12 {
		return k[:12] + "…"
	}
	return k
}
