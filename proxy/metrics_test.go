package proxy_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metricValue sums the samples of family name whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func TestMetricsPerPeer(t *testing.T) {
	pr := newPair(t, nil, nil)
	for range 3 {
		if code, _, _ := do(t, pr.client, pr.req(t, http.MethodGet, "/api/status", nil)); code != 200 {
			t.Fatal(code)
		}
	}
	do(t, pr.client, pr.req(t, http.MethodGet, "/api/dns/x", nil)) // undeclared capability
	in := map[string]string{"direction": "inbound", "peer": pr.idA}
	out := map[string]string{"direction": "outbound", "peer": pr.idB}
	for _, c := range []struct {
		reg    *prometheus.Registry
		name   string
		labels map[string]string
		min    float64
	}{
		{pr.b.reg, "fedgate_proxy_requests_total", in, 3},
		{pr.b.reg, "fedgate_proxy_request_duration_seconds", in, 3},
		{pr.b.reg, "fedgate_proxy_denials_total", map[string]string{"peer": pr.idA, "reason": "capability_not_declared"}, 1},
		{pr.b.reg, "fedgate_proxy_bytes_total", map[string]string{"peer": pr.idA, "flow": "in"}, 100},
		{pr.b.reg, "fedgate_proxy_connections", in, 1},
		{pr.a.reg, "fedgate_proxy_requests_total", out, 4},
		{pr.a.reg, "fedgate_proxy_bytes_total", map[string]string{"peer": pr.idB, "flow": "out"}, 100},
	} {
		if got := metricValue(t, c.reg, c.name, c.labels); got < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.labels, got, c.min)
		}
	}
	// A handshake failure is counted by reason.
	stranger := directClient(pr.certB, false) // B's own cert is not a peer of B
	stranger.Get("https://" + pr.b.p.InboundAddr().String() + "/api/status")
	pr.b.audit.waitRecord(t, "stranger", func(r auditRecord) bool { return r.Decision == "deny" && r.Action == "proxy.connection" })
	if got := metricValue(t, pr.b.reg, "fedgate_proxy_handshake_failures_total", nil); got < 1 {
		t.Errorf("handshake failures %v", got)
	}
}
