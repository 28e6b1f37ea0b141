package pki_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
)

func newStorage(t *testing.T, kv pki.KV, secret []byte, owner string, ttl time.Duration) *pki.Storage {
	t.Helper()
	s, err := pki.NewStorage(pki.StorageConfig{KV: kv, Secret: secret, Owner: owner, LockTTL: ttl, LockPoll: 20 * time.Millisecond, Logger: pkitest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func secret(t *testing.T) []byte {
	t.Helper()
	k, err := pki.CreateSiteSecret(filepath.Join(t.TempDir(), "site.secret"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStorageContract(t *testing.T) {
	ctx := t.Context()
	kv := &pkitest.KV{}
	sec := secret(t)
	s := newStorage(t, kv, sec, "node-a", time.Second)
	s2 := newStorage(t, kv, sec, "node-b", time.Second) // another node of the site

	files := map[string]string{
		"certificates/acme/example.test/example.test.crt": "CERT",
		"certificates/acme/example.test/example.test.key": "SECRET KEY MATERIAL",
		"certificates/acme/other.test/other.test.crt":     "CERT2",
		"acme/accounts/a.json":                            "ACCOUNT",
	}
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range files {
		got, err := s2.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("Load %s on another node = %q, %v", k, got, err)
		}
	}
	if _, err := s.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load missing: %v", err)
	}
	for key, want := range map[string]bool{
		"certificates/acme/example.test/example.test.crt": true,
		"certificates/acme":      true,
		"certificates/acme/exam": false,
		"nothing":                false,
	} {
		if got := s2.Exists(ctx, key); got != want {
			t.Errorf("Exists(%s) = %v", key, got)
		}
	}
	got, err := s.List(ctx, "certificates/acme", false)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"certificates/acme/example.test", "certificates/acme/other.test"}, got); d != "" {
		t.Errorf("List non-recursive (-want +got):\n%s", d)
	}
	got, err = s.List(ctx, "certificates", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"certificates/acme",
		"certificates/acme/example.test",
		"certificates/acme/example.test/example.test.crt",
		"certificates/acme/example.test/example.test.key",
		"certificates/acme/other.test",
		"certificates/acme/other.test/other.test.crt",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("List recursive (-want +got):\n%s", d)
	}
	if _, err := s.List(ctx, "nothing", true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List missing: %v", err)
	}
	ki, err := s.Stat(ctx, "acme/accounts/a.json")
	if err != nil || !ki.IsTerminal || ki.Size != int64(len("ACCOUNT")) || time.Since(ki.Modified) > time.Minute {
		t.Errorf("Stat file = %+v, %v", ki, err)
	}
	ki, err = s.Stat(ctx, "certificates/acme")
	if err != nil || ki.IsTerminal {
		t.Errorf("Stat dir = %+v, %v", ki, err)
	}
	if _, err := s.Stat(ctx, "nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat missing: %v", err)
	}

	// Nothing readable enters the KV (the raft log).
	for k, v := range kv.Raw() {
		for _, plain := range files {
			if bytes.Contains(v, []byte(plain)) {
				t.Errorf("KV value at %s holds plaintext %q", k, plain)
			}
		}
	}
	// Another site's secret cannot read the values; a value moved to
	// another key does not open.
	other := newStorage(t, kv, secret(t), "intruder", time.Second)
	if _, err := other.Load(ctx, "acme/accounts/a.json"); !errors.Is(err, pki.ErrSealed) {
		t.Errorf("Load with another secret: %v", err)
	}
	raw := kv.Raw()
	if err := kv.Put(ctx, "certmagic/acme/accounts/b.json", raw["certmagic/certificates/acme/example.test/example.test.key"]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "acme/accounts/b.json"); !errors.Is(err, pki.ErrSealed) {
		t.Errorf("moved value opened: %v", err)
	}

	if err := s2.Delete(ctx, "certificates/acme/example.test"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/acme/example.test/example.test.key") || !s.Exists(ctx, "certificates/acme/other.test/other.test.crt") {
		t.Error("Delete of a directory removed the wrong keys")
	}
	if err := s.Delete(ctx, "certificates/never"); err != nil {
		t.Errorf("Delete missing: %v", err)
	}
}

func TestStorageLocks(t *testing.T) {
	ctx := t.Context()
	kv := &pkitest.KV{}
	sec := secret(t)
	const ttl = 300 * time.Millisecond
	a := newStorage(t, kv, sec, "node-a", ttl)
	b := newStorage(t, kv, sec, "node-b", ttl)

	if err := a.Lock(ctx, "issue"); err != nil {
		t.Fatal(err)
	}
	// A live holder keeps its lease beyond the TTL.
	time.Sleep(3 * ttl)
	if ok, err := b.TryLock(ctx, "issue"); ok || err != nil {
		t.Fatalf("b took a live lock: %v %v", ok, err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue") }()
	select {
	case err := <-got:
		t.Fatalf("b.Lock returned while a holds it: %v", err)
	case <-time.After(2 * ttl):
	}
	if err := a.Unlock(ctx, "issue"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b did not get the lock after a released it")
	}
	if err := b.Unlock(ctx, "issue"); err != nil {
		t.Fatal(err)
	}

	// A holder that dies (stops refreshing, never unlocks) loses the lock
	// after the TTL.
	dead := newStorage(t, kv, sec, "node-dead", ttl)
	if err := dead.Lock(ctx, "renew"); err != nil {
		t.Fatal(err)
	}
	dead.Close()
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Lock(lctx, "renew"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < ttl/2 {
		t.Fatalf("lock of a dead holder taken after %v, before its lease could expire", waited)
	}
	if h, _ := kv.Holder("certmagic/locks/renew"); h == "" || h[:6] != "node-b" {
		t.Fatalf("holder %q", h)
	}
	// Lock honours cancellation.
	cctx, ccancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer ccancel()
	if err := a.Lock(cctx, "renew"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with expired context: %v", err)
	}
}

func TestSiteSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	k, err := pki.CreateSiteSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := pki.LoadSiteSecret(p)
	if err != nil || !bytes.Equal(k, k2) {
		t.Fatalf("reload: %v", err)
	}
	if _, err := pki.CreateSiteSecret(p); !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwrite: %v", err)
	}
	os.Chmod(p, 0o640)
	if _, err := pki.LoadSiteSecret(p); !errors.Is(err, pki.ErrKeyFileMode) {
		t.Errorf("loose mode: %v", err)
	}
}
