// Command fedgated is the fedgate node agent. `fedgated --dev` starts a
// single-node site on its embedded default; `fedgated --config FILE` is
// production. See the README for the subcommands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "fedgated: %v\n", err)
		os.Exit(1)
	}
}
