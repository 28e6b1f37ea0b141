package raftstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/powernode/fedgate/raftstore"
	"github.com/powernode/fedgate/raftstore/raftstoretest"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func kvPut(key, val string) raftstore.Command {
	return raftstore.MustCommand(raftstore.CmdKVPut, raftstore.KVPutPayload{Key: key, Value: []byte(val)})
}

func TestClusterSmoke(t *testing.T) {
	c := raftstoretest.NewCluster(t, 3, raftstoretest.Options{})
	f := c.Follower()
	if f < 0 {
		t.Fatal("no follower")
	}
	res, err := c.Nodes[f].Store.Apply(ctxT(t, 10*time.Second), kvPut("a", "1"))
	if err != nil {
		t.Fatalf("apply on follower: %v", err)
	}
	t.Logf("result %+v", res)
	var want string
	for i := range c.Nodes {
		got, err := c.StateJSON(i)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = got
		} else if got != want {
			t.Errorf("node %d state differs", i)
		}
		if e, ok := c.Nodes[i].Store.State().KVGet("a"); !ok || string(e.Value) != "1" {
			t.Errorf("node %d: kv a = %+v, %v", i, e, ok)
		}
	}
	_ = errors.Is
}
