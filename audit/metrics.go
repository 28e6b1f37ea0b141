package audit

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	appends    prometheus.Counter
	errors     *prometheus.CounterVec
	dropped    prometheus.Counter
	bytes      prometheus.Counter
	fsync      prometheus.Histogram
	batch      prometheus.Histogram
	lastSeq    prometheus.Gauge
	segments   prometheus.Gauge
	shipped    prometheus.Gauge
	shipErrors prometheus.Counter
}

func newMetrics(l *Log, reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		appends: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "appends_total", Help: "Records made durable."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "append_errors_total", Help: "Appends refused, by reason."}, []string{"reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "dropped_total", Help: "Records dropped under the drop policy."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "written_bytes_total", Help: "Bytes of records written."}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "fsync_seconds", Help: "Latency of one group-commit sync.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "batch_records", Help: "Records per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		lastSeq: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "last_seq", Help: "Last durable sequence number."}),
		segments: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "segments", Help: "Segments on disk."}),
		shipped: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "shipped_seq", Help: "Last sequence number shipped to the platform."}),
		shipErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "fedgate", Subsystem: "audit",
			Name: "ship_errors_total", Help: "Failed shipping attempts."}),
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "fedgate", Subsystem: "audit",
		Name: "queue_depth", Help: "Records waiting for the writer."}, func() float64 { return float64(len(l.queue)) })
	m.collectors = []prometheus.Collector{m.appends, m.errors, m.dropped, m.bytes, m.fsync, m.batch, m.lastSeq, m.segments, m.shipped, m.shipErrors, queue}
	if reg != nil {
		for _, c := range m.collectors {
			if err := reg.Register(c); err != nil {
				l.cfg.Logger.Warn("audit: metric not registered", "err", err)
			}
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
