// Package freebind opens TCP listeners with IP_FREEBIND / IPV6_FREEBIND, so
// a listener can bind an address this node does not hold yet: an HA site's
// VIP is mounted only by the node that wins leadership, after fedgated has
// started, yet every node listens on it (the kernel delivers connections
// to the listener once the address is up).
package freebind

import (
	"context"
	"net"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenConfig is a net.ListenConfig whose TCP sockets may bind addresses
// that are not (yet) assigned to this host.
func ListenConfig() net.ListenConfig {
	return net.ListenConfig{Control: control}
}

// Listen is net.Listen with free binding for TCP; other networks are
// passed through unchanged.
func Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	lc := ListenConfig()
	return lc.Listen(ctx, network, addr)
}

func control(network, _ string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp") && !strings.HasPrefix(network, "udp") {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
