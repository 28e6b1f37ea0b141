package netctl_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/powernode/fedgate/netctl"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "wg.key")
	k1, err := netctl.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, err := netctl.LoadOrCreateKey(path)
	if err != nil || k2 != k1 {
		t.Fatalf("reload: %v (same key: %v)", err, k2 == k1)
	}
	if k1.PublicKey() == k1 || k1.PublicKey().String() == k1.String() {
		t.Fatal("public key equals private key")
	}
	// No temporary files left beside it.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(ents))
	}
	// A looser mode is refused, and the error does not leak the key.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = netctl.LoadOrCreateKey(path)
	if !errors.Is(err, netctl.ErrKeyFileMode) {
		t.Fatalf("mode 0640: %v, want ErrKeyFileMode", err)
	}
	if strings.Contains(err.Error(), k1.String()) {
		t.Fatal("error leaks the key")
	}
	// Malformed content is refused without echoing it.
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("sekrit-not-a-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := netctl.LoadKey(bad); err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("malformed key: %v", err)
	}
}
