package netctl_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/netctl"
)

func TestMetrics(t *testing.T) {
	h := newHost(true)
	reg := prometheus.NewRegistry()
	m, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Announcer: h.Announcer(),
		Backend: netctl.BackendKernel, PrivateKey: nodeKey, Registerer: reg, AnnounceRefresh: -1, AnnounceBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	m.Reconcile(ctx, states[2].desired)
	h.Fail("addr-add", "192.0.2.100", errBoom)
	m.Reconcile(ctx, netctl.Desired{})
	m.Reconcile(ctx, states[2].desired)
	if _, err := m.Status(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"fedgate_netctl_reconciles_total":        3,
		"fedgate_netctl_failed_objects":          1,
		"fedgate_netctl_vip_announcements_total": 3, // site and site6, then site6 again (site fails)
		"fedgate_netctl_peers":                   2, // summed over health labels
	} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, mm := range mf.GetMetric() {
				switch {
				case mm.Counter != nil:
					got += mm.Counter.GetValue()
				case mm.Gauge != nil:
					got += mm.Gauge.GetValue()
				}
			}
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// A second Manager on the same registry is refused, not silently merged.
	if _, err := netctl.New(netctl.Config{WG: h.WG(), Netlink: h.Netlink(), Backend: netctl.BackendKernel,
		PrivateKey: nodeKey, Registerer: reg}); err == nil {
		t.Error("duplicate registration accepted")
	}
}
