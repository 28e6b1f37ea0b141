package netctl

import (
	"fmt"

	"golang.zx2c4.com/wireguard/wgctrl"
)

// NewWGClient returns a wgctrl client whose kernel (generic netlink) socket
// lives in the network namespace at nsPath ("" = current). Userspace devices
// are reached through their UAPI sockets under /var/run/wireguard whatever
// the namespace.
func NewWGClient(nsPath string) (WGClient, error) {
	var c *wgctrl.Client
	err := inNetns(nsPath, func() error {
		var err error
		c, err = wgctrl.New()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wgctrl: %w", mapErr(err))
	}
	return c, nil
}
