package wgdevice_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/powernode/fedgate/internal/nstest"
	"github.com/powernode/fedgate/netctl/wgdevice"
)

// TestPrivilegedRun hosts a device in a namespace, configures it through
// wgctrl (UAPI), refuses a second device of the same name, and stops when
// its interface is deleted.
func TestPrivilegedRun(t *testing.T) {
	ns := nstest.New(t, "wgd")
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "fg-d" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	done := make(chan error, 1)
	go func() { done <- ns.Do(func() error { return wgdevice.Run(ctx, name, log) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("device did not stop")
		}
	})
	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var dev *wgtypes.Device
	for deadline := time.Now().Add(5 * time.Second); ; {
		if dev, err = c.Device(name); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s never answered: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dev.Type != wgtypes.Userspace {
		t.Errorf("type %v", dev.Type)
	}
	k, _ := wgtypes.GeneratePrivateKey()
	port := 40123
	if err := c.ConfigureDevice(name, wgtypes.Config{PrivateKey: &k, ListenPort: &port}); err != nil {
		t.Fatal(err)
	}
	if dev, err = c.Device(name); err != nil || dev.PublicKey != k.PublicKey() || dev.ListenPort != port {
		t.Fatalf("after configure: %+v %v", dev, err)
	}
	// A second device of the same name is refused.
	if err := ns.Do(func() error { return wgdevice.Run(ctx, name, log) }); !errors.Is(err, wgdevice.ErrExists) {
		t.Errorf("second Run: %v, want ErrExists", err)
	}
	// Deleting the interface stops the device.
	h := ns.Handle(t)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if l.Type() != "tuntap" {
		t.Errorf("link type %s", l.Type())
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("device still running after its interface was deleted")
	}
	if _, err := os.Stat(wgdevice.SocketPath(name)); err == nil {
		t.Error("uapi socket left behind")
	}
}
