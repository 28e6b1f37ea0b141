package raftstore

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applyDuration     *prometheus.HistogramVec
	applied           *prometheus.CounterVec
	forwarded         *prometheus.CounterVec
	handshakeFailures prometheus.Counter
	leader            prometheus.Gauge
	watchCoalesced    prometheus.Counter
	diskWrite         prometheus.Histogram

	reg        prometheus.Registerer
	status     func() Status
	registered []prometheus.Collector
}

func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

func newMetrics(reg prometheus.Registerer, status func() Status) (*metrics, error) {
	m := &metrics{
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "apply_duration_seconds",
			Help:    "Time from Store.Apply to the command being applied (this node's view).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"path"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "commands_applied_total",
			Help: "Commands applied by this node's FSM, by type and outcome.",
		}, []string{"type", "outcome"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "forwarded_total",
			Help: "Requests this node forwarded to the leader, by operation.",
		}, []string{"op"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "tls_refused_total",
			Help: "Connections refused by the raft listener (TLS handshake, certificate or ALPN).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "leader",
			Help: "1 while this node is the raft leader.",
		}),
		diskWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "disk_write_seconds",
			Help:    "Duration of raft log and stable store writes (fsync included).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		watchCoalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "raft", Name: "watch_coalesced_total",
			Help: "Watch events folded into a resync event because a watcher was slow.",
		}),
	}
	m.status = status
	m.reg = reg
	return m, nil
}

// register adds the collectors to the Registerer (if any). Open calls it
// last, once raft exists, so a scrape never races the construction.
func (m *metrics) register() error {
	reg, status := m.reg, m.status
	if reg == nil {
		return nil
	}
	gauge := func(name, help string, f func(Status) uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "fedgate", Subsystem: "raft", Name: name, Help: help},
			func() float64 { return float64(f(status())) })
	}
	for _, c := range []prometheus.Collector{
		m.applyDuration, m.applied, m.forwarded, m.handshakeFailures, m.leader, m.watchCoalesced, m.diskWrite,
		gauge("term", "Current raft term.", func(s Status) uint64 { return s.Term }),
		gauge("commit_index", "Raft commit index.", func(s Status) uint64 { return s.CommitIndex }),
		gauge("applied_index", "Raft applied index.", func(s Status) uint64 { return s.AppliedIndex }),
	} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return fmt.Errorf("register metrics: %w", err)
		}
		m.registered = append(m.registered, c)
	}
	return nil
}
