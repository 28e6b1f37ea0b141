package netctl_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/powernode/fedgate/netctl"
)

// TestRunRetriesFailedObjects: a failing object is retried with backoff
// until it succeeds, without a new desired state.
func TestRunRetriesFailedObjects(t *testing.T) {
	h := newHost(true)
	m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(),
		PrivateKey: nodeKey, Logger: testLogger(t), RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h.Fail("addr-add", "192.0.2.100", errors.New("transient"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := make(chan netctl.Desired, 1)
	ch <- states[2].desired
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ch) }()
	waitFor(t, func() bool { return strings.Contains(h.Render(), "fg-a") })
	if strings.Contains(h.Render(), "192.0.2.100") {
		t.Fatal("failing object applied")
	}
	h.ClearFaults()
	waitFor(t, func() bool { return h.Render() == strings.Replace(states[2].want, "tuntap", "wireguard", 1) })
	// A new desired state is applied promptly.
	ch <- netctl.Desired{}
	waitFor(t, func() bool { return h.Render() == baseLinks })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunRepairsOutsideChanges: with change events, a VIP address removed
// from the outside is back long before the (1h) resync.
func TestRunRepairsOutsideChanges(t *testing.T) {
	h := newHost(true)
	m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(),
		PrivateKey: nodeKey, Logger: testLogger(t), Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := make(chan netctl.Desired, 1)
	ch <- states[2].desired
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, ch) }()
	want := strings.Replace(states[2].want, "tuntap", "wireguard", 1)
	waitFor(t, func() bool { return h.Render() == want })
	if err := m.MountVIP(ctx, netctl.VIP{Name: "ha", Addr: mp("192.0.2.200/32"), Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	h.RemoveAddr("eth0", vip1.Addr)
	h.RemoveAddr("eth0", mp("192.0.2.200/32"))
	waitFor(t, func() bool {
		r := h.Render()
		return strings.Contains(r, "192.0.2.100/32 fedgate") && strings.Contains(r, "192.0.2.200/32 fedgate")
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}
