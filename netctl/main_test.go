package netctl_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/powernode/fedgate/netctl"

	"github.com/powernode/fedgate/netctl/wgdevice"
)

// deviceEnv makes the test binary act as `fedgated wg-device <iface>`.
const deviceEnv = "FEDGATE_NETCTL_TEST_DEVICE"

// holderEnv makes the test binary a VIP holder (see runHolder).
const holderEnv = "FEDGATE_NETCTL_TEST_HOLDER"

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
	if os.Getenv(holderEnv) == "1" {
		os.Exit(runHolder(os.Args[len(os.Args)-2:]))
	}
	os.Exit(m.Run())
}

// runHolder is a VIP holder process, started inside a namespace by a
// privileged test: it mounts the VIPs in args[1] (comma-separated) on the
// interface args[0] with a 30s lease and the real L2 fence, prints
// "ready", and renews them on each SIGUSR1 (printing "renewed"), the way
// the agent renews after each confirmed lease. It runs until SIGTERM.
func runHolder(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "holder:", err); return 1 }
	nl, err := netctl.NewNetlink("")
	if err != nil {
		return fail(err)
	}
	wg, err := netctl.NewWGClient("")
	if err != nil {
		return fail(err)
	}
	m, err := netctl.New(netctl.Config{WG: wg, Netlink: nl, Backend: netctl.BackendKernel,
		Announcer: netctl.NewAnnouncer(""), Fence: netctl.NewFenceConfig(netctl.FenceConfig{Logger: log}),
		Logger: log, PrivateKey: nodeKey, VIPLease: 30 * time.Second})
	if err != nil {
		return fail(err)
	}
	defer m.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	for i, a := range strings.Split(args[1], ",") {
		v := netctl.VIP{Name: fmt.Sprintf("v%d", i), Addr: netip.MustParsePrefix(a), Interface: args[0]}
		if err := m.MountVIP(ctx, v); err != nil {
			return fail(err)
		}
	}
	fmt.Println("ready")
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-usr1:
			if err := m.RenewVIPs(ctx); err != nil {
				return fail(err)
			}
			fmt.Println("renewed")
		}
	}
}
