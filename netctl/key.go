package netctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// LoadOrCreateKey returns the node's WireGuard private key from path,
// generating it on first use. The file holds the base64 key and must have
// mode 0600 (or tighter): a looser file is refused with ErrKeyFileMode. A
// new key is written to a 0600 temporary file in the same directory, synced
// and renamed into place. The key never leaves the node; replicate only
// key.PublicKey().
func LoadOrCreateKey(path string) (wgtypes.Key, error) {
	k, err := LoadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generate wireguard key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return wgtypes.Key{}, fmt.Errorf("key dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".wgkey-*")
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("write key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return wgtypes.Key{}, fmt.Errorf("write key: %w", err)
	}
	if _, err := f.WriteString(k.String() + "\n"); err != nil {
		f.Close()
		return wgtypes.Key{}, fmt.Errorf("write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return wgtypes.Key{}, fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return wgtypes.Key{}, fmt.Errorf("write key: %w", err)
	}
	// Link, not rename: never replace a key another process wrote meanwhile.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadKey(path)
		}
		return wgtypes.Key{}, fmt.Errorf("install key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return k, nil
}

// LoadKey reads an existing key file, refusing modes looser than 0600.
func LoadKey(path string) (wgtypes.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("open key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("stat key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return wgtypes.Key{}, fmt.Errorf("key %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return wgtypes.Key{}, fmt.Errorf("key %s has mode %04o: %w", path, fi.Mode().Perm(), ErrKeyFileMode)
	}
	buf := make([]byte, 256)
	n, _ := f.Read(buf)
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		// Do not echo the file content: it is a secret.
		return wgtypes.Key{}, fmt.Errorf("key %s: malformed", path)
	}
	return k, nil
}
