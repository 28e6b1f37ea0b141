package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ErrNotRoot is returned by CheckRoot when the process lacks the privileges
// the helpers need.
var ErrNotRoot = errors.New("needs root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN")

// CheckRoot returns ErrNotRoot unless the effective user is root.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return nil
}

// RequireRoot skips t with a clear message when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if err := CheckRoot(); err != nil {
		t.Skip(err.Error())
	}
}

// NS is a named network namespace created for one test.
type NS struct {
	// Name is the full name under /run/netns.
	Name   string
	handle netns.NsHandle
}

// New creates a named network namespace "fgt-<prefix>-<random>", brings its
// loopback up and removes it on cleanup. It skips the test when not root.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	ns, err := create(prefix)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("nstest: %v", err)
		}
	})
	if err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatalf("nstest: loopback up in %s: %v", ns.Name, err)
	}
	return ns
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func create(prefix string) (*NS, error) {
	name := fmt.Sprintf("fgt-%s-%s", prefix, randomSuffix())
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// The thread is in an unknown namespace: leave it locked so the
			// runtime discards it when this goroutine exits.
			ch <- res{err: fmt.Errorf("restore netns: %w", serr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("create netns %s: %w", name, err)
		}
		ch <- res{h: h, err: err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	return &NS{Name: name, handle: r.h}, nil
}

// Path returns the bind-mount path of the namespace (/run/netns/<name>).
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// NsHandle returns the open namespace handle, valid until cleanup.
func (n *NS) NsHandle() netns.NsHandle { return n.handle }

// Close deletes the namespace. New registers it with t.Cleanup; calling it
// again is harmless.
func (n *NS) Close() error {
	if n.handle.IsOpen() {
		n.handle.Close()
		n.handle = netns.None()
	}
	if err := netns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", n.Name, err)
	}
	return nil
}

// Do runs fn in a new goroutine whose OS thread is locked into the
// namespace, and returns fn's error. The calling goroutine's thread is never
// switched. Goroutines started by fn do NOT run in the namespace; sockets
// fn opens, and processes it starts, do.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("panic in netns %s: %v", n.Name, r)
				}
			}()
			ferr = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// MustDo is Do that fails the test on error.
func (n *NS) MustDo(t testing.TB, fn func() error) {
	t.Helper()
	if err := n.Do(fn); err != nil {
		t.Fatalf("in netns %s: %v", n.Name, err)
	}
}

// Handle returns a netlink handle bound to the namespace, closed on cleanup.
func (n *NS) Handle(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		t.Fatalf("nstest: netlink handle for %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth creates a veth pair with end aName in a and bName in b, both up. The
// pair disappears with either namespace; cleanup also deletes it explicitly.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	ha, hb := a.Handle(t), b.Handle(t)
	bfd := int(b.handle)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(bfd),
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("nstest: veth %s/%s: %v", aName, bName, err)
	}
	t.Cleanup(func() {
		if l, err := ha.LinkByName(aName); err == nil {
			_ = ha.LinkDel(l)
		}
	})
	for _, x := range []struct {
		h    *netlink.Handle
		name string
	}{{ha, aName}, {hb, bName}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatalf("nstest: find %s: %v", x.name, err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatalf("nstest: up %s: %v", x.name, err)
		}
	}
}

// AddAddr adds prefix to the link named dev in n (test setup, unmarked).
func AddAddr(t testing.TB, n *NS, dev string, prefix netip.Prefix) {
	t.Helper()
	h := n.Handle(t)
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("nstest: find %s in %s: %v", dev, n.Name, err)
	}
	a, err := netlink.ParseAddr(prefix.String())
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	if prefix.Addr().Is6() {
		a.Flags |= 0x02 // IFA_F_NODAD: usable at once
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("nstest: add %s to %s: %v", prefix, dev, err)
	}
}

// Start starts cmd inside the namespace in its own process group and, on
// cleanup, kills the whole group (SIGTERM, then SIGKILL after grace) and
// reaps it. It returns a channel closed when the process has exited; Wait
// must not be called on cmd by the test (Start does it).
func (n *NS) Start(t testing.TB, cmd *exec.Cmd, grace time.Duration) <-chan struct{} {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := n.Do(cmd.Start); err != nil {
		t.Fatalf("nstest: start %s in %s: %v", cmd.Path, n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		select {
		case <-done:
		case <-ctx.Done():
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		// Children that outlived the leader.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return done
}
