// Package audittest holds test doubles for package audit: FaultFS, a real
// file system with a switchable disk-full, read-only and sync-failure mode.
package audittest

import (
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/powernode/fedgate/audit"
)

// FaultFS passes calls to the real file system and injects faults: a byte
// budget for growing files (a write that would grow a file past it is cut
// short and fails with ENOSPC, as a full disk does; overwriting allocated
// bytes takes no space), a read-only mode (EROFS on every modification) and
// sync failures. Truncate gives bytes back to the budget. Safe for
// concurrent use.
type FaultFS struct {
	mu       sync.Mutex
	space    int64 // remaining bytes; <0 unlimited
	readOnly bool
	syncErr  error
	delay    time.Duration
	writes   int
	syncs    int
}

// New returns a FaultFS without faults.
func New() *FaultFS { return &FaultFS{space: -1} }

// SetSpace leaves n bytes of room for writes (n < 0: unlimited).
func (f *FaultFS) SetSpace(n int64) { f.mu.Lock(); f.space = n; f.mu.Unlock() }

// SetReadOnly switches the read-only mode.
func (f *FaultFS) SetReadOnly(ro bool) { f.mu.Lock(); f.readOnly = ro; f.mu.Unlock() }

// FailSync makes every Sync return err (nil: syncs succeed).
func (f *FaultFS) FailSync(err error) { f.mu.Lock(); f.syncErr = err; f.mu.Unlock() }

// SetSyncDelay makes every Sync take at least d (a slow disk).
func (f *FaultFS) SetSyncDelay(d time.Duration) { f.mu.Lock(); f.delay = d; f.mu.Unlock() }

// Counts returns the number of successful writes and syncs.
func (f *FaultFS) Counts() (writes, syncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.syncs
}

func (f *FaultFS) ro(op, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readOnly {
		return &os.PathError{Op: op, Path: name, Err: syscall.EROFS}
	}
	return nil
}

// OpenFile implements audit.FS.
func (f *FaultFS) OpenFile(name string, flag int, perm os.FileMode) (audit.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		if err := f.ro("open", name); err != nil {
			return nil, err
		}
	}
	inner, err := audit.OSFS{}.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &file{File: inner, fs: f, name: name}, nil
}

// ReadDir implements audit.FS.
func (f *FaultFS) ReadDir(dir string) ([]os.DirEntry, error) { return os.ReadDir(dir) }

// Remove implements audit.FS.
func (f *FaultFS) Remove(name string) error {
	if err := f.ro("remove", name); err != nil {
		return err
	}
	return os.Remove(name)
}

// Rename implements audit.FS.
func (f *FaultFS) Rename(oldpath, newpath string) error {
	if err := f.ro("rename", oldpath); err != nil {
		return err
	}
	return os.Rename(oldpath, newpath)
}

// SyncDir implements audit.FS.
func (f *FaultFS) SyncDir(dir string) error { return audit.OSFS{}.SyncDir(dir) }

// MkdirAll implements audit.FS.
func (f *FaultFS) MkdirAll(dir string, perm os.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := f.ro("mkdir", dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, perm)
}

type file struct {
	audit.File
	fs   *FaultFS
	name string
}

func (w *file) WriteAt(p []byte, off int64) (int, error) {
	if err := w.fs.ro("write", w.name); err != nil {
		return 0, err
	}
	st, err := os.Stat(w.name)
	if err != nil {
		return 0, err
	}
	// Only bytes past the end of the file take space; overwriting
	// allocated bytes (preallocated zeros) does not.
	w.fs.mu.Lock()
	n := len(p)
	full := false
	grow := max(0, off+int64(n)-st.Size())
	if w.fs.space >= 0 && grow > w.fs.space {
		n = max(0, n-int(grow-w.fs.space))
		grow, full = w.fs.space, true
	}
	if w.fs.space >= 0 {
		w.fs.space -= grow
	}
	w.fs.mu.Unlock()
	m, err := w.File.WriteAt(p[:n], off)
	if err == nil && full {
		err = &os.PathError{Op: "write", Path: w.name, Err: syscall.ENOSPC}
	}
	if err == nil {
		w.fs.mu.Lock()
		w.fs.writes++
		w.fs.mu.Unlock()
	}
	return m, err
}

func (w *file) Sync() error {
	w.fs.mu.Lock()
	err, delay := w.fs.syncErr, w.fs.delay
	w.fs.mu.Unlock()
	time.Sleep(delay)
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: w.name, Err: err}
	}
	if err := w.File.Sync(); err != nil {
		return err
	}
	w.fs.mu.Lock()
	w.fs.syncs++
	w.fs.mu.Unlock()
	return nil
}

func (w *file) Truncate(size int64) error {
	if err := w.fs.ro("truncate", w.name); err != nil {
		return err
	}
	st, err := os.Stat(w.name)
	if err != nil {
		return err
	}
	if err := w.File.Truncate(size); err != nil {
		return err
	}
	w.fs.mu.Lock()
	if w.fs.space >= 0 && st.Size() > size {
		w.fs.space += st.Size() - size
	}
	w.fs.mu.Unlock()
	return nil
}
