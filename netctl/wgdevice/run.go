package wgdevice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// DefaultMTU is the TUN MTU at creation; netctl sets the desired one after.
const DefaultMTU = 1420

// Errors naming what the host lacks.
var (
	ErrNoTUN      = errors.New("tun device unavailable: needs /dev/net/tun (character device 10,200)")
	ErrPermission = errors.New("operation not permitted: creating a TUN interface needs CAP_NET_ADMIN")
	ErrExists     = errors.New("a wireguard device with this name already answers")
)

// Check reports whether this host can run a userspace device: /dev/net/tun
// present and openable (which needs CAP_NET_ADMIN for TUNSETIFF later).
func Check() error { return check(tunPath) }

const tunPath = "/dev/net/tun"

func check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoTUN, err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("%w: %s is not a character device", ErrNoTUN, path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w: %v", ErrPermission, err)
		}
		return fmt.Errorf("%w: %v", ErrNoTUN, err)
	}
	f.Close()
	return nil
}

// Run creates the TUN interface iface, starts wireguard-go on it with the
// default UDP bind and serves the UAPI socket until ctx ends or the device
// closes. It returns nil on a clean stop.
func Run(ctx context.Context, iface string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("iface", iface)
	if err := Check(); err != nil {
		return err
	}
	sock := SocketPath(iface)
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		return fmt.Errorf("uapi %s: %w", sock, ErrExists)
	}
	tdev, err := tun.CreateTUN(iface, DefaultMTU)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("create tun %s: %w: %v", iface, ErrPermission, err)
		}
		return fmt.Errorf("create tun %s: %w", iface, err)
	}
	uapiFile, err := ipc.UAPIOpen(iface)
	if err != nil {
		tdev.Close()
		return fmt.Errorf("uapi socket for %s: %w", iface, err)
	}
	defer uapiFile.Close()
	return serve(ctx, iface, tdev, uapiFile, logger)
}

// SocketPath is where the UAPI socket of iface lives.
func SocketPath(iface string) string { return "/var/run/wireguard/" + iface + ".sock" }

func serve(ctx context.Context, iface string, tdev tun.Device, uapiFile *os.File, logger *slog.Logger) error {
	wlog := newDeviceLogger(logger)
	dev := device.NewDevice(newRobustTUN(tdev, logger), conn.NewDefaultBind(), wlog)
	defer dev.Close()
	uapi, err := ipc.UAPIListen(iface, uapiFile)
	if err != nil {
		return fmt.Errorf("uapi listen %s: %w", iface, err)
	}
	defer uapi.Close()
	errc := make(chan error, 1)
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				errc <- err
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	logger.Info("userspace wireguard device up", "pid", os.Getpid())
	select {
	case <-ctx.Done():
		logger.Info("userspace wireguard device stopping", "reason", ctx.Err())
	case err := <-errc:
		logger.Info("userspace wireguard device stopping", "reason", "uapi socket gone", "err", err)
	case <-dev.Wait():
		logger.Info("userspace wireguard device stopping", "reason", "device closed (interface deleted)")
	}
	return nil
}
