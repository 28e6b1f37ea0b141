package audit

import (
	"os"

	"syscall"
)

// FS is the seam between the log and the file system. Tests substitute a
// fault-injecting implementation (audittest.FaultFS) to simulate a full disk
// or a read-only directory.
type FS interface {
	// OpenFile opens a file like os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// ReadDir lists a directory like os.ReadDir.
	ReadDir(dir string) ([]os.DirEntry, error)
	// Remove removes a file.
	Remove(name string) error
	// Rename renames a file atomically.
	Rename(oldpath, newpath string) error
	// SyncDir makes directory entries (created, renamed, removed files) durable.
	SyncDir(dir string) error
	// MkdirAll creates a directory and its parents like os.MkdirAll.
	MkdirAll(dir string, perm os.FileMode) error
}

// File is an open file. The log writes with WriteAt only (records into
// preallocated space, zeros to preallocate). Sync must make written data and
// the file size durable (fdatasync is enough).
type File interface {
	Read(p []byte) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

// OSFS is the real file system; Sync is fdatasync(2).
type OSFS struct{}

type osFile struct{ *os.File }

// Sync uses fdatasync: appends change the size, which fdatasync persists.
func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]os.DirEntry, error) { return os.ReadDir(dir) }

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename implements FS.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
