// Command fedgate-docgen writes fedgate's generated documentation:
//
//	fedgate-docgen config [-src agent] [-o docs/config.md]
//	fedgate-docgen man -bin bin/fedgate -section 1 [-version V] [-date YYYY-MM-DD] [-o fedgate.1]
//
// config renders agent.Config (defaults from agent.DefaultConfig, text from
// the doc comments in -src); man renders a man page from a built binary's
// --help output. Both write to stdout without -o.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/powernode/fedgate/agent"
	"github.com/powernode/fedgate/internal/docgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "fedgate-docgen: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: fedgate-docgen config|man [flags]")
	}
	switch args[0] {
	case "config":
		fs := flag.NewFlagSet("config", flag.ContinueOnError)
		src := fs.String("src", "agent", "directory of package agent (for doc comments)")
		out := fs.String("o", "", "output file (default stdout)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		c, err := docgen.ParseComments(*src)
		if err != nil {
			return err
		}
		b, err := docgen.ConfigReference(agent.DefaultConfig(), c)
		if err != nil {
			return err
		}
		return write(*out, b)
	case "man":
		fs := flag.NewFlagSet("man", flag.ContinueOnError)
		bin := fs.String("bin", "", "built binary to read --help from")
		section := fs.Int("section", 1, "man section")
		version := fs.String("version", "dev", "version for the footer")
		date := fs.String("date", time.Now().UTC().Format("2006-01-02"), "date for the header")
		out := fs.String("o", "", "output file (default stdout)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *bin == "" {
			return errors.New("man: -bin is required")
		}
		name := filepath.Base(*bin)
		spec := docgen.ManSpec{Name: name, Section: *section, Version: *version, Date: *date,
			Help: func(path []string) (string, error) {
				b, err := exec.Command(*bin, append(append([]string(nil), path...), "--help")...).Output()
				return string(b), err
			}}
		spec.Extra, spec.SeeAlso = pageExtras(name)
		b, err := docgen.ManPage(spec)
		if err != nil {
			return err
		}
		return write(*out, b)
	}
	return fmt.Errorf("unknown command %q (config, man)", args[0])
}

// pageExtras are the hand-written parts of each page.
func pageExtras(name string) ([]docgen.Section, []string) {
	switch name {
	case "fedgated":
		return []docgen.Section{
			{Title: "Files", Text: "/etc/fedgate/fedgated.yaml: the configuration (reference: /usr/share/doc/fedgate/config.md.gz).\n\n" +
				"/var/lib/fedgate: raft state, the site CA, keys and the audit log (mode 0700, owned by fedgate).\n\n" +
				"/run/fedgate/fedgate.sock: the local API the fedgate CLI talks to (mode 0660)."},
			{Title: "Signals", Text: "SIGHUP re-reads the configuration: what can change live is applied, what needs a restart is logged, " +
				"and an invalid file is refused with the running configuration kept. Signal storms are coalesced. " +
				"SIGTERM and SIGINT stop gracefully."},
			{Title: "Systemd", Text: "fedgated.service runs as Type=notify: READY=1 is sent once raft has a leader and this node has applied what was committed; " +
				"the main loop pings the watchdog and stops when it is stuck. fedgate-wg@IFACE.service runs one userspace WireGuard device."},
		}, []string{"fedgate(1)", "systemd.service(5)"}
	default:
		return []docgen.Section{
			{Title: "Environment", Text: "FEDGATE_SOCKET: the local API socket when --socket is not given (default /run/fedgate/fedgate.sock)."},
			{Title: "Exit status", Text: "0 on success; 1 when the command failed, with one line on standard error."},
		}, []string{"fedgated(8)"}
	}
}

func write(path string, b []byte) error {
	if path == "" {
		_, err := os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
