package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

func newStorage(t *testing.T, c *raftstoretest.Cluster, i int, secret []byte, owner string, ttl time.Duration) *pki.Storage {
	t.Helper()
	st, err := pki.NewStorage(pki.StorageConfig{KV: raftKV{c.Nodes[i].Store}, Secret: secret, Owner: owner, LockTTL: ttl,
		LockPoll: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCertmagicStorageOnThreeNodes checks each certmagic.Storage method's
// contract on a real three-node raft cluster (boltdb files, mTLS with the
// real site CA): a write on one node is read on the others, deletes are
// recursive, listing is recursive or not, Stat reports key, size and
// modification time, and a lock held by a node that dies is taken over by
// another node after the lock's TTL.
func TestCertmagicStorageOnThreeNodes(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{LogLevel: slog.LevelWarn})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	secret := make([]byte, 32)
	rand.Read(secret)
	var s [3]*pki.Storage
	for i := range s {
		s[i] = newStorage(t, c, i, secret, c.Nodes[i].ID, 2*time.Second)
	}
	var _ certmagic.Storage = s[0]

	// Store on node 0, Load/Exists/Stat on nodes 1 and 2.
	if err := s[0].Store(ctx, "certificates/acme/site.example/site.example.crt", []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	if err := s[0].Store(ctx, "certificates/acme/site.example/site.example.key", []byte("KEY")); err != nil {
		t.Fatal(err)
	}
	if err := s[1].Store(ctx, "acme/account.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		waitUntil(t, 5*time.Second, func() bool { return s[i].Exists(ctx, "certificates/acme/site.example/site.example.key") })
		v, err := s[i].Load(ctx, "certificates/acme/site.example/site.example.crt")
		if err != nil || string(v) != "CERT" {
			t.Fatalf("node %d Load = %q, %v", i, v, err)
		}
		info, err := s[i].Stat(ctx, "certificates/acme/site.example/site.example.crt")
		if err != nil || info.Key != "certificates/acme/site.example/site.example.crt" || info.Size != 4 || !info.IsTerminal || info.Modified.IsZero() {
			t.Fatalf("node %d Stat = %+v, %v", i, info, err)
		}
		dir, err := s[i].Stat(ctx, "certificates/acme")
		if err != nil || dir.IsTerminal {
			t.Fatalf("node %d Stat(dir) = %+v, %v", i, dir, err)
		}
	}
	// Values are sealed before they reach the replicated log.
	if e, ok := c.Nodes[2].Store.State().KVGet("certmagic/certificates/acme/site.example/site.example.key"); ok && string(e.Value) == "KEY" {
		t.Fatal("a private key reached raft in clear")
	}
	// List: non-recursive returns direct children, recursive every terminal key.
	top, err := s[2].List(ctx, "certificates", false)
	if err != nil || !slices.Equal(top, []string{"certificates/acme"}) {
		t.Fatalf("List(non-recursive) = %v, %v", top, err)
	}
	all, err := s[2].List(ctx, "certificates", true)
	if err != nil || len(all) < 2 {
		t.Fatalf("List(recursive) = %v, %v", all, err)
	}
	// Missing keys are fs.ErrNotExist.
	if _, err := s[1].Load(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) err = %v", err)
	}
	// Delete is recursive and visible everywhere.
	if err := s[2].Delete(ctx, "certificates/acme"); err != nil {
		t.Fatal(err)
	}
	for i := range s {
		waitUntil(t, 5*time.Second, func() bool { return !s[i].Exists(ctx, "certificates/acme/site.example/site.example.crt") })
	}

	// Locks: node 0 takes the lock; node 1 cannot; node 0 dies; node 1
	// takes it over once the TTL has passed on the leader's clock.
	if err := s[0].Lock(ctx, "issue_cert_site.example"); err != nil {
		t.Fatal(err)
	}
	ok, err := s[1].TryLock(ctx, "issue_cert_site.example")
	if err != nil || ok {
		t.Fatalf("second holder TryLock = %v, %v", ok, err)
	}
	c.Stop(0) // the holder dies (leader or not: two of three remain)
	start := time.Now()
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	defer lcancel()
	if err := s[1].Lock(lctx, "issue_cert_site.example"); err != nil {
		t.Fatalf("lock of a dead holder was not taken over: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("lock taken over after %s, before the holder's lease could have run out", waited)
	}
	if err := s[1].Unlock(ctx, "issue_cert_site.example"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s[2].TryLock(ctx, "issue_cert_site.example"); err != nil || !ok {
		t.Fatalf("TryLock after Unlock = %v, %v", ok, err)
	}
}

func waitUntil(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
