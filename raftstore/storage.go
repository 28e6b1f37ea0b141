package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Files under Config.DataDir.
const (
	raftDBFile  = "raft.db"
	snapshotDir = "snapshots"
)

// checkDataDir validates existing raft files without writing anything: the
// bolt file is opened read-only and fully checked, snapshot metadata is
// parsed. A damaged file is reported (ErrCorrupt, naming the file) and left
// exactly as it was, for an operator to inspect.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: data dir %s is not a directory", ErrCorrupt, dir)
	}
	if err := checkBolt(filepath.Join(dir, raftDBFile)); err != nil {
		return err
	}
	return checkSnapshots(filepath.Join(dir, snapshotDir))
}

func checkBolt(path string) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raft log %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%w: raft log %s is empty (a crash during creation?); move it away to start fresh", ErrCorrupt, path)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: raft log %s: %v", ErrCorrupt, path, r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("raft log %s is locked by another process (is fedgated already running?): %w", path, err)
		}
		return fmt.Errorf("%w: raft log %s: %v", ErrCorrupt, path, err)
	}
	defer db.Close()
	// Walk every bucket with cursors in this goroutine: bbolt asserts page
	// ids and types as it reads, and those panics (and faults on a
	// damaged mmap offset, via SetPanicOnFault) are recovered above.
	// tx.Check is not used: it panics in its own goroutine.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = db.View(func(tx *bbolt.Tx) error {
		for _, b := range []string{"logs", "conf"} {
			if tx.Bucket([]byte(b)) == nil {
				return fmt.Errorf("bucket %q is missing", b)
			}
		}
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return walkBucket(b)
		})
	})
	if err != nil {
		return fmt.Errorf("%w: raft log %s: %v", ErrCorrupt, path, err)
	}
	return nil
}

func walkBucket(b *bbolt.Bucket) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				if err := walkBucket(nb); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkSnapshots(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshots %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || filepath.Ext(e.Name()) == ".tmp" {
			continue
		}
		meta := filepath.Join(dir, e.Name(), "meta.json")
		b, err := os.ReadFile(meta)
		if err != nil {
			return fmt.Errorf("%w: snapshot %s: %v", ErrCorrupt, meta, err)
		}
		var m struct {
			Index uint64
			Term  uint64
			Size  int64
		}
		if err := json.Unmarshal(b, &m); err != nil || m.Index == 0 {
			return fmt.Errorf("%w: snapshot metadata %s is unreadable", ErrCorrupt, meta)
		}
		st, err := os.Stat(filepath.Join(dir, e.Name(), "state.bin"))
		if err != nil || st.Size() != m.Size {
			return fmt.Errorf("%w: snapshot %s: state.bin missing or not %d bytes", ErrCorrupt, filepath.Join(dir, e.Name()), m.Size)
		}
	}
	return nil
}

// openBolt opens the raft log read-write; a bbolt panic on a damaged file
// becomes ErrCorrupt.
func openBolt(path string, noSync bool) (b *raftboltdb.BoltStore, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("%w: raft log %s: %v", ErrCorrupt, path, r)
		}
	}()
	b, err = raftboltdb.New(raftboltdb.Options{Path: path, NoSync: noSync})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", path, err)
	}
	return b, nil
}
