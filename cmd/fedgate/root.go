package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
)

const defaultSocket = "/run/fedgate/fedgate.sock"

// globals are the flags every subcommand shares.
type globals struct {
	socket string
	json   bool
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "fedgate",
		Short:         "Operate a fedgate node through its local API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	sock := os.Getenv("FEDGATE_SOCKET")
	if sock == "" {
		sock = defaultSocket
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", sock, "local API socket (env FEDGATE_SOCKET)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print JSON (the platform's snake_case fields) instead of tables")
	root.AddCommand(
		newStatusCmd(g),
		newClusterCmd(g),
		newPeersCmd(g),
		newGrantsCmd(g),
		newContractCmd(g),
		newReloadCmd(g),
		newTunnelsCmd(g),
		newAuditCmd(g),
		newCertsCmd(g),
		newTrustCmd(g),
		newVIPsCmd(g),
	)
	root.AddCommand(newCompromiseCmd(g), newFindingsCmd(g))
	return root
}

// oneLine folds an error into the single line the CLI prints.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
