package pki

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// KV is the replicated key/value store that certmagic data lives in. The
// raftstore implements it on the FSM: writes go through the log (forwarded
// to the leader), reads serve from the local copy. Keys are slash-separated
// paths; values arrive here already encrypted.
type KV interface {
	// Put stores value at key, returning after the write is committed.
	Put(ctx context.Context, key string, value []byte) error
	// Get returns the value at key and when it was last written; an error
	// wrapping fs.ErrNotExist when absent.
	Get(ctx context.Context, key string) (value []byte, modified time.Time, err error)
	// Delete removes key and every key under key+"/". Removing nothing is
	// not an error.
	Delete(ctx context.Context, key string) error
	// List returns every key that starts with prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// TryLock takes lock name for owner for ttl when it is free, expired,
	// or already held by owner (which extends it), and reports whether owner
	// holds it now. Expiry must be decided deterministically by the FSM from
	// a time carried in the command (the leader's clock), so that a lock
	// whose holder died is free again on every node after ttl.
	TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// Unlock releases name if owner holds it; otherwise it does nothing.
	Unlock(ctx context.Context, name, owner string) error
}

// SiteSecretSize is the size of the site secret key (AES-256).
const SiteSecretSize = 32

// LoadSiteSecret reads the site secret key (64 hex digits) from a file with
// mode 0600. Every node of a site holds the same secret (handed over by the
// join flow over mTLS); it never enters the raft log.
func LoadSiteSecret(path string) ([]byte, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != SiteSecretSize {
		return nil, fmt.Errorf("%w: %s must hold %d hex digits", ErrConfig, path, 2*SiteSecretSize)
	}
	return k, nil
}

// CreateSiteSecret writes a new random site secret to path (mode 0600); it
// refuses to overwrite an existing file.
func CreateSiteSecret(path string) ([]byte, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("create site secret: %s: %w", path, fs.ErrExist)
	}
	k := make([]byte, SiteSecretSize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("create site secret: %w", err)
	}
	if err := writeFileAtomic(path, []byte(hex.EncodeToString(k)+"\n"), keyFileMode); err != nil {
		return nil, err
	}
	return k, nil
}

// StorageConfig configures a certmagic Storage on a KV.
type StorageConfig struct {
	KV KV
	// Secret is the 32-byte site secret; values are sealed with AES-256-GCM
	// under it (the key name is the additional data) before they reach KV.
	Secret []byte
	// Owner identifies this holder of locks (e.g. the node id); a random
	// suffix is added per Storage.
	Owner string
	// Prefix namespaces the keys in KV ("certmagic/").
	Prefix string
	// LockTTL is how long a lock outlives its holder (30s); a held lock is
	// refreshed every LockTTL/3.
	LockTTL time.Duration
	// LockPoll is how often Lock retries a held lock (250ms).
	LockPoll time.Duration
	Logger   *slog.Logger
}

// Storage implements certmagic.Storage and certmagic.TryLocker on a KV,
// sharing certificates, ACME accounts and locks across a site's nodes.
type Storage struct {
	cfg   StorageConfig
	aead  cipher.AEAD
	owner string
	ctx   context.Context

	mu    sync.Mutex
	held  map[string]heldLock
	close context.CancelFunc
}

var (
	_ certmagic.Storage   = (*Storage)(nil)
	_ certmagic.TryLocker = (*Storage)(nil)
)

// NewStorage returns the storage. Close stops refreshing held locks.
func NewStorage(cfg StorageConfig) (*Storage, error) {
	if cfg.KV == nil {
		return nil, fmt.Errorf("%w: KV is nil", ErrConfig)
	}
	if len(cfg.Secret) != SiteSecretSize {
		return nil, fmt.Errorf("%w: Secret must be %d bytes", ErrConfig, SiteSecretSize)
	}
	if cfg.Owner == "" {
		return nil, fmt.Errorf("%w: Owner is empty", ErrConfig)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "certmagic/"
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 30 * time.Second
	}
	if cfg.LockPoll == 0 {
		cfg.LockPoll = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	block, err := aes.NewCipher(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Storage{cfg: cfg, aead: aead, owner: cfg.Owner + "/" + hex.EncodeToString(suffix),
		ctx: ctx, close: cancel, held: map[string]heldLock{}}, nil
}

// Close stops refreshing the locks this Storage holds without releasing
// them (they expire after LockTTL, as if the process had died).
func (s *Storage) Close() { s.close() }

// sealVersion prefixes every sealed value.
const sealVersion = 1

func (s *Storage) seal(key string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, plain, []byte(key)), nil
}

// ErrSealed is returned when a stored value cannot be opened with the site
// secret (wrong secret, tampering, or a value moved to another key).
var ErrSealed = errors.New("pki: stored value cannot be decrypted")

func (s *Storage) open(key string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: %s: malformed", ErrSealed, key)
	}
	p, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrSealed, key)
	}
	return p, nil
}

// kvKey maps a certmagic key to the KV key.
func (s *Storage) kvKey(key string) string {
	return s.cfg.Prefix + strings.Trim(path.Clean("/"+key), "/")
}

// Store implements certmagic.Storage.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	k := s.kvKey(key)
	sealed, err := s.seal(k, value)
	if err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	if err := s.cfg.KV.Put(ctx, k, sealed); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// Load implements certmagic.Storage.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	k := s.kvKey(key)
	v, _, err := s.cfg.KV.Get(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", key, err)
	}
	return s.open(k, v)
}

// Delete implements certmagic.Storage.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := s.cfg.KV.Delete(ctx, s.kvKey(key)); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Exists implements certmagic.Storage.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	k := s.kvKey(key)
	if _, _, err := s.cfg.KV.Get(ctx, k); err == nil {
		return true
	}
	keys, err := s.cfg.KV.List(ctx, k+"/")
	return err == nil && len(keys) > 0
}

// List implements certmagic.Storage: the keys under dir; with recursive,
// every key and intermediate directory below it, otherwise the direct
// children (files and directories).
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	base := strings.Trim(path.Clean("/"+dir), "/")
	prefix := s.cfg.Prefix
	if base != "" {
		prefix += base + "/"
	}
	keys, err := s.cfg.KV.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("list %s: %w", dir, fs.ErrNotExist)
	}
	seen := map[string]bool{}
	var out []string
	add := func(rel string) {
		full := rel
		if base != "" {
			full = base + "/" + rel
		}
		if !seen[full] {
			seen[full] = true
			out = append(out, full)
		}
	}
	for _, k := range keys {
		rel := strings.TrimPrefix(k, prefix)
		parts := strings.Split(rel, "/")
		if !recursive {
			add(parts[0])
			continue
		}
		for i := range parts {
			add(strings.Join(parts[:i+1], "/"))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Stat implements certmagic.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	k := s.kvKey(key)
	v, mod, err := s.cfg.KV.Get(ctx, k)
	if err == nil {
		size := int64(len(v) - 1 - s.aead.NonceSize() - s.aead.Overhead())
		return certmagic.KeyInfo{Key: key, Modified: mod, Size: max(size, 0), IsTerminal: true}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	keys, lerr := s.cfg.KV.List(ctx, k+"/")
	if lerr != nil || len(keys) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, fs.ErrNotExist)
	}
	var newest time.Time
	for _, kk := range keys {
		if _, m, err := s.cfg.KV.Get(ctx, kk); err == nil && m.After(newest) {
			newest = m
		}
	}
	return certmagic.KeyInfo{Key: key, Modified: newest, IsTerminal: false}, nil
}

func (s *Storage) lockName(name string) string { return s.cfg.Prefix + "locks/" + name }

// TryLock implements certmagic.TryLocker.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	ok, err := s.cfg.KV.TryLock(ctx, s.lockName(name), s.owner, s.cfg.LockTTL)
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", name, err)
	}
	if ok {
		s.keepAlive(name)
	}
	return ok, nil
}

// Lock implements certmagic.Locker: it waits until the lock is free or
// its holder's lease expired.
func (s *Storage) Lock(ctx context.Context, name string) error {
	t := time.NewTicker(s.cfg.LockPoll)
	defer t.Stop()
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil {
			s.cfg.Logger.Warn("lock attempt failed", "lock", name, "err", err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// keepAlive refreshes a held lock every LockTTL/3 until Unlock or Close.
func (s *Storage) keepAlive(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.held[name]; ok {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.held[name] = heldLock{cancel: cancel, done: done}
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ok, err := s.cfg.KV.TryLock(ctx, s.lockName(name), s.owner, s.cfg.LockTTL)
				if ctx.Err() != nil {
					return
				}
				if err != nil || !ok {
					s.cfg.Logger.Warn("lock refresh failed", "lock", name, "held", ok, "err", err)
				}
			}
		}
	}()
}

type heldLock struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Unlock implements certmagic.Locker.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h, ok := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if ok {
		// Stop the refresher first so that no refresh lands after the release.
		h.cancel()
		<-h.done
	}
	if err := s.cfg.KV.Unlock(ctx, s.lockName(name), s.owner); err != nil {
		return fmt.Errorf("unlock %s: %w", name, err)
	}
	return nil
}
