package wgdevice

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckMissingTUN(t *testing.T) {
	err := check(filepath.Join(t.TempDir(), "tun"))
	if !errors.Is(err, ErrNoTUN) || !strings.Contains(err.Error(), "/dev/net/tun") {
		t.Fatalf("missing device: %v", err)
	}
	err = check(t.TempDir())
	if !errors.Is(err, ErrNoTUN) || !strings.Contains(err.Error(), "not a character device") {
		t.Fatalf("directory: %v", err)
	}
}
