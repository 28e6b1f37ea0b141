package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/powernode/fedgate/agent"
	"github.com/spf13/cobra"
)

type flags struct {
	dev        bool
	dataDir    string
	configPath string
	socket     string
	cleanup    bool
}

func newRootCmd() *cobra.Command {
	f := &flags{}
	root := &cobra.Command{
		Use:   "fedgated",
		Short: "fedgate node agent: federation mTLS proxy, audit, WireGuard/VIPs, raft-replicated state",
		Long: "fedgated runs one node of a fedgate site.\n\n" +
			"  fedgated --dev [--data-dir DIR]   single-node site on the embedded default\n" +
			"  fedgated --config FILE            production, from a YAML config\n" +
			"  fedgated --cleanup --config FILE  remove every interface, address, route and nftables fence table fedgate created",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd, f) },
	}
	fl := root.Flags()
	fl.BoolVar(&f.dev, "dev", false, "start a single-node dev site (temp data dir unless --data-dir)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data dir (dev mode; production sets node.data_dir in the config)")
	fl.StringVar(&f.configPath, "config", "", "YAML config file")
	fl.StringVar(&f.socket, "socket", "", "local API socket (default /run/fedgate/fedgate.sock; dev: DATA_DIR/fedgate.sock)")
	fl.BoolVar(&f.cleanup, "cleanup", false, "remove everything fedgate created in the kernel, then exit")
	root.AddCommand(newWGDeviceCmd())
	return root
}

func loadConfig(f *flags) (agent.Config, error) {
	var cfg agent.Config
	switch {
	case f.dev && f.configPath != "":
		return cfg, fmt.Errorf("--dev and --config are exclusive")
	case f.dev:
		dir := f.dataDir
		if dir == "" {
			d, err := os.MkdirTemp("", "fedgate-dev-")
			if err != nil {
				return cfg, err
			}
			dir = d
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return cfg, err
		}
		cfg = agent.DevConfig(abs)
	case f.configPath != "":
		c, err := agent.LoadConfig(f.configPath)
		if err != nil {
			return cfg, err
		}
		cfg = c
		if f.dataDir != "" {
			return cfg, fmt.Errorf("--data-dir is for --dev; set node.data_dir in %s", f.configPath)
		}
	default:
		return cfg, fmt.Errorf("nothing to run: pass --dev or --config FILE (see --help)")
	}
	if f.socket != "" {
		cfg.API.Socket = f.socket
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func run(cmd *cobra.Command, f *flags) error {
	cfg, err := loadConfig(f)
	if err != nil {
		return err
	}
	if f.cleanup {
		return agent.Cleanup(cmd.Context(), cfg, os.Stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select { // SIGHUP storms coalesce into one pending reload
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return agent.Run(ctx, agent.Options{
		Config:     cfg,
		ConfigPath: f.configPath,
		Dev:        f.dev,
		Out:        os.Stdout,
		LogOutput:  os.Stderr,
		Reload:     reload,
	})
}
