package netctl

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reconciles     *prometheus.CounterVec
	duration       prometheus.Histogram
	failedObjects  prometheus.Gauge
	changes        prometheus.Counter
	dumpRetries    prometheus.Counter
	vipMounts      prometheus.Counter
	vipUnmounts    prometheus.Counter
	announces      prometheus.Counter
	announceErrors prometheus.Counter
	// vipRenewals counts RenewVIPs calls; announceSkipped the rounds not
	// sent because the VIP's lease had run out.
	vipRenewals     prometheus.Counter
	announceSkipped prometheus.Counter
	// fenceErrors counts failed Fence.Set calls (the fence failed open).
	fenceErrors prometheus.Counter
	peers       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "fedgate", "netctl"
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "reconciles_total", Help: "Reconcile passes by result (ok, partial)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "reconcile_duration_seconds", Help: "Duration of a reconcile pass.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		failedObjects: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "failed_objects", Help: "Objects refused or failed in the last reconcile pass."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "changes_total", Help: "Mutating netlink/WireGuard operations issued."}),
		dumpRetries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dump_retries_total", Help: "Netlink dumps retried after NLM_F_DUMP_INTR."}),
		vipMounts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "vip_mounts_total", Help: "MountVIP calls that succeeded."}),
		vipUnmounts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "vip_unmounts_total", Help: "UnmountVIP calls."}),
		announces: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "vip_announcements_total", Help: "Announcement rounds sent (GARP request+reply or unsolicited NA)."}),
		announceErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "vip_announcement_errors_total", Help: "Announcement rounds that failed."}),
		vipRenewals: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "vip_lease_renewals_total", Help: "RenewVIPs calls (kernel lease renewals of HA VIPs)."}),
		announceSkipped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "vip_announcements_skipped_total", Help: "Announcement rounds not sent because the VIP's lease had run out."}),
		fenceErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "l2_fence_errors_total", Help: "L2 fence updates that failed (the kernel answers for the VIPs concerned)."}),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "peers", Help: "WireGuard peers by health, as of the last Status call."}, []string{"health"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.reconciles, m.duration, m.failedObjects, m.changes,
			m.dumpRetries, m.vipMounts, m.vipUnmounts, m.announces, m.announceErrors, m.vipRenewals, m.announceSkipped, m.fenceErrors, m.peers} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(r Result, d time.Duration) {
	res := "ok"
	if len(r.Errors) > 0 {
		res = "partial"
	}
	m.reconciles.WithLabelValues(res).Inc()
	m.duration.Observe(d.Seconds())
	m.failedObjects.Set(float64(len(r.Errors)))
	m.changes.Add(float64(r.Changes))
}
