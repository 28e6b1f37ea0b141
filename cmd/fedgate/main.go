// Command fedgate is the operator CLI of fedgate. It talks only to the local
// fedgated's API on a unix socket (--socket, FEDGATE_SOCKET, or the default
// /run/fedgate/fedgate.sock), prints human tables by default and the
// platform's snake_case JSON with --json.
package main

import (
	"fmt"
	"os"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "fedgate: %s\n", oneLine(err))
		os.Exit(1)
	}
}
