package netctl_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/powernode/fedgate/netctl/wgdevice"
)

// deviceEnv makes the test binary act as `fedgated wg-device <iface>`.
const deviceEnv = "FEDGATE_NETCTL_TEST_DEVICE"

func TestMain(m *testing.M) {
	if os.Getenv(deviceEnv) == "1" {
		iface := os.Args[len(os.Args)-1]
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if err := wgdevice.Run(ctx, iface, log); err != nil {
			fmt.Fprintln(os.Stderr, "wg-device:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
