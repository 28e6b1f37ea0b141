package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/powernode/fedgate/raftstore"
)

// applyLocal applies cmd through raft (forwarded to the leader when this
// node follows) and returns once this node's own copy has applied it, so
// that a read after the write on this node sees the write.
func applyLocal(ctx context.Context, s *raftstore.Store, cmd raftstore.Command) (raftstore.Result, error) {
	res, err := s.Apply(ctx, cmd)
	if err != nil {
		return res, err
	}
	for s.Status().AppliedIndex < res.Index {
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("applied at index %d on the leader, not yet here: %w", res.Index, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return res, nil
}

// raftKV implements pki.KV (the certmagic storage seam) on the replicated
// state: every node shares certificates, ACME accounts and locks. Values
// arrive sealed by pki.Storage; lock expiry is decided by the FSM from the
// leader's command time, so a dead holder's lock frees itself on every node.
type raftKV struct{ s *raftstore.Store }

func (k raftKV) apply(ctx context.Context, typ string, payload any) (raftstore.Result, error) {
	cmd, err := raftstore.NewCommand(typ, payload)
	if err != nil {
		return raftstore.Result{}, err
	}
	return applyLocal(ctx, k.s, cmd)
}

func (k raftKV) Put(ctx context.Context, key string, value []byte) error {
	_, err := k.apply(ctx, raftstore.CmdKVPut, raftstore.KVPutPayload{Key: key, Value: value})
	return err
}

func (k raftKV) Get(_ context.Context, key string) ([]byte, time.Time, error) {
	e, ok := k.s.State().KVGet(key)
	if !ok {
		return nil, time.Time{}, fmt.Errorf("kv %q: %w", key, fs.ErrNotExist)
	}
	return e.Value, e.Modified, nil
}

func (k raftKV) Delete(ctx context.Context, key string) error {
	_, err := k.apply(ctx, raftstore.CmdKVDelete, raftstore.KVDeletePayload{Key: key, Prefix: true})
	if errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	return err
}

func (k raftKV) List(_ context.Context, prefix string) ([]string, error) {
	es := k.s.State().KVList(prefix)
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out, nil
}

func (k raftKV) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	_, err := k.apply(ctx, raftstore.CmdLockAcquire, raftstore.LockAcquirePayload{Name: name, Owner: owner, TTL: ttl})
	var re *raftstore.RefusedError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &re) && !re.NotFound:
		return false, nil // held by another owner
	}
	return false, err
}

func (k raftKV) Unlock(ctx context.Context, name, owner string) error {
	_, err := k.apply(ctx, raftstore.CmdLockRelease, raftstore.LockReleasePayload{Name: name, Owner: owner})
	if errors.Is(err, raftstore.ErrRefused) {
		return nil // not held, or held by someone else: nothing to do
	}
	return err
}
