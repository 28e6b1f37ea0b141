package netctl_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/powernode/fedgate/netctl"
)

// FuzzDesired feeds arbitrary JSON desired states (they come from the
// replicated log) through validation and a reconcile on the fakes: no
// panic, and a second pass is always a no-op.
func FuzzDesired(f *testing.F) {
	for _, s := range states {
		b, _ := json.Marshal(s.desired)
		f.Add(b)
	}
	f.Add([]byte(`{"interfaces":[{"name":"fg-x","mtu":1,"peers":[{"public_key":"","allowed_ips":["0.0.0.0/0"]}]}],"vips":[{"name":"v","addr":"::/128","interface":"eth0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d netctl.Desired
		if err := json.Unmarshal(data, &d); err != nil {
			return
		}
		_ = d.Validate()
		h := newHost(true)
		m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Launcher: h.Launcher(), PrivateKey: nodeKey})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ctx := context.Background()
		m.Reconcile(ctx, d)
		before := h.Render()
		if r := m.Reconcile(ctx, d); r.Changes != 0 {
			t.Fatalf("second pass made %d changes\n%s", r.Changes, before)
		}
		if err := m.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if got := h.Render(); got != "link eth0 veth mtu=1500 up\nlink lo device mtu=1500 up\n" {
			t.Fatalf("cleanup left:\n%s", got)
		}
	})
}
