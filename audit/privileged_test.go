package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/powernode/fedgate/audit"
)

// TestPrivilegedTmpfsFull fills a real 1 MiB tmpfs: appends fail closed with
// ENOSPC, the log stays verifiable, and appends resume once space is freed.
// The mount is made in the host mount namespace (the log's goroutines run on
// other OS threads, which would not see a per-thread namespace) on a fresh
// temp dir and unmounted in cleanup.
func TestPrivilegedTmpfsFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 700<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	l := open(t, filepath.Join(dir, "audit"), nil, func(c *audit.Config) { c.PreallocBytes = 64 << 10 })
	ctx := context.Background()
	var n uint64
	var err error
	for n < 100000 {
		if _, err = l.Append(ctx, r(int(n))); err != nil {
			break
		}
		n++
	}
	if !errors.Is(err, audit.ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) || n == 0 {
		t.Fatalf("after %d appends: %v, want ENOSPC", n, err)
	}
	if st := l.Stats(); st.Writable || st.LastSeq != n {
		t.Fatalf("stats on full tmpfs %+v", st)
	}
	mustVerify(t, l, n)
	os.Remove(filler)
	if s, err := l.Append(ctx, r(0)); err != nil || s != n+1 {
		t.Fatalf("Append after freeing space = %d, %v", s, err)
	}
	mustVerify(t, l, n+1)
	l.Close()
	if v, err := audit.VerifyDir(filepath.Join(dir, "audit")); err != nil || !v.OK || v.LastSeq != n+1 {
		t.Fatalf("VerifyDir = %+v, %v", v, err)
	}
}
