package agent

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/powernode/fedgate/netctl"
)

// Cleanup removes everything fedgate created in the kernel: fg- WireGuard
// interfaces (and their userspace device processes), marked addresses and
// routes with fedgate's protocol. Nothing unmarked is touched. It needs the
// same privileges as the daemon and refuses to run beside a live fedgated.
func Cleanup(ctx context.Context, cfg Config, out io.Writer) error {
	lock, err := lockDataDir(cfg.Node.DataDir)
	if err != nil {
		return fmt.Errorf("cleanup: %w (stop fedgated first)", err)
	}
	defer lock.Close()
	if err := netctl.Preflight(cfg.Net.Backend); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	log, _ := NewLogger(os.Stderr, cfg.Log)
	a := &Agent{cfg: cfg, log: log}
	m, err := newNetManager(cfg, a.netKeyFile(), a)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	defer m.Close()
	if err := m.Cleanup(ctx); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Fprintln(out, "removed every interface, address, route and nftables fence table fedgate created")
	return nil
}
