package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/wgdevice"
	"github.com/spf13/cobra"
)

// newWGDeviceCmd hosts one userspace WireGuard device (wireguard-go on
// TUN) as its own long-lived process, so the data plane survives an agent
// restart. netctl starts it; systemd can too (fedgate-wg@.service).
func newWGDeviceCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "wg-device IFACE",
		Short:  "Run a userspace WireGuard device (started by netctl; not for interactive use)",
		Args:   cobra.ExactArgs(1),
		Hidden: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := netctl.ValidateName(args[0]); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("iface", args[0])
			return wgdevice.Run(ctx, args[0], log)
		},
	}
}
