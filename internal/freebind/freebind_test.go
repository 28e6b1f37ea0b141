package freebind

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestListenAddressNotHeld: 192.0.2.77 (TEST-NET-1) is on no interface of
// this host: a plain listen fails with EADDRNOTAVAIL, a free-bind listen
// succeeds, and a connection from loopback still works for listeners on
// held addresses (the option changes nothing else).
func TestListenAddressNotHeld(t *testing.T) {
	const notHeld = "192.0.2.77:0"
	if ln, err := net.Listen("tcp", notHeld); err == nil {
		ln.Close()
		t.Skip("192.0.2.77 is assigned on this host")
	} else if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("plain listen: %v, want EADDRNOTAVAIL", err)
	}
	ln, err := Listen(context.Background(), "tcp", notHeld)
	if err != nil {
		t.Fatalf("free-bind listen on an address not held: %v", err)
	}
	ln.Close()

	ln, err = Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "ok" {
		t.Fatalf("read %q %v", b, err)
	}
}

// TestListenIPv6NotHeld is the IPv6 side (2001:db8::/32 is documentation
// space), skipped where the host has no IPv6.
func TestListenIPv6NotHeld(t *testing.T) {
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 on this host")
	}
	probe.Close()
	ln, err := Listen(context.Background(), "tcp", "[2001:db8::77]:0")
	if err != nil {
		t.Fatalf("free-bind listen on an IPv6 address not held: %v", err)
	}
	ln.Close()
}
