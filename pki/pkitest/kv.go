package pkitest

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"
)

// KV is an in-memory pki.KV with lock leases, standing in for the raftstore
// FSM in tests. Shared by several pki.Storage values it models several
// nodes of one site. Safe for concurrent use.
type KV struct {
	// Now is the lease clock; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	data  map[string]kvEntry
	locks map[string]lease
}

type kvEntry struct {
	value    []byte
	modified time.Time
}

type lease struct {
	owner   string
	expires time.Time
}

func (k *KV) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// Put implements pki.KV.
func (k *KV) Put(_ context.Context, key string, value []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.data == nil {
		k.data = map[string]kvEntry{}
	}
	k.data[key] = kvEntry{value: slices.Clone(value), modified: k.now()}
	return nil
}

// Get implements pki.KV.
func (k *KV) Get(_ context.Context, key string) ([]byte, time.Time, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.data[key]
	if !ok {
		return nil, time.Time{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return slices.Clone(e.value), e.modified, nil
}

// Delete implements pki.KV.
func (k *KV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for kk := range k.data {
		if kk == key || strings.HasPrefix(kk, key+"/") {
			delete(k.data, kk)
		}
	}
	return nil
}

// List implements pki.KV.
func (k *KV) List(_ context.Context, prefix string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for kk := range k.data {
		if strings.HasPrefix(kk, prefix) {
			out = append(out, kk)
		}
	}
	slices.Sort(out)
	return out, nil
}

// TryLock implements pki.KV.
func (k *KV) TryLock(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]lease{}
	}
	now := k.now()
	l, ok := k.locks[name]
	if ok && l.owner != owner && now.Before(l.expires) {
		return false, nil
	}
	k.locks[name] = lease{owner: owner, expires: now.Add(ttl)}
	return true, nil
}

// Unlock implements pki.KV.
func (k *KV) Unlock(_ context.Context, name, owner string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.locks[name]; ok && l.owner == owner {
		delete(k.locks, name)
	}
	return nil
}

// Raw returns every stored key and value as the KV holds them (what would
// enter the raft log).
func (k *KV) Raw() map[string][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string][]byte{}
	for kk, e := range k.data {
		out[kk] = slices.Clone(e.value)
	}
	return out
}

// Holder returns the current, unexpired holder of a lock.
func (k *KV) Holder(name string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.locks[name]
	if !ok || !k.now().Before(l.expires) {
		return "", false
	}
	return l.owner, true
}
