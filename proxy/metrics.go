package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Direction labels.
const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"
)

// metrics are the proxy's Prometheus collectors, labelled per peer.
type metrics struct {
	requests    *prometheus.CounterVec   // direction, peer
	denials     *prometheus.CounterVec   // direction, peer, reason
	hsFailures  *prometheus.CounterVec   // peer, reason
	latency     *prometheus.HistogramVec // direction, peer
	bytes       *prometheus.CounterVec   // direction, peer, flow (in|out)
	conns       *prometheus.GaugeVec     // direction, peer
	auditErrors prometheus.Counter

	mu    sync.Mutex
	peers map[[2]string]*peerMetrics
}

// peerMetrics caches one peer's children so the hot path does no label
// hashing.
type peerMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	conns    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "requests_total",
			Help: "Allowed L7 requests and L4 connections, by direction and peer.",
		}, []string{"direction", "peer"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "denials_total",
			Help: "Refused calls, by direction, peer and reason.",
		}, []string{"direction", "peer", "reason"}),
		hsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "handshake_failures_total",
			Help: "Failed inbound TLS handshakes, by claimed peer and reason.",
		}, []string{"peer", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "request_duration_seconds",
			Help:    "Time from request received to response finished, by direction and peer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"direction", "peer"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "bytes_total",
			Help: "Bytes on peer connections (TLS records included), by direction, peer and flow.",
		}, []string{"direction", "peer", "flow"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "connections",
			Help: "Open peer connections, by direction and peer.",
		}, []string{"direction", "peer"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fedgate", Subsystem: "proxy", Name: "audit_failures_total",
			Help: "Audit appends that failed (the call was refused).",
		}),
		peers: map[[2]string]*peerMetrics{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.denials, m.hsFailures, m.latency, m.bytes, m.conns, m.auditErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) peer(direction, peer string) *peerMetrics {
	k := [2]string{direction, peer}
	m.mu.Lock()
	defer m.mu.Unlock()
	if pm := m.peers[k]; pm != nil {
		return pm
	}
	pm := &peerMetrics{
		requests: m.requests.WithLabelValues(direction, peer),
		latency:  m.latency.WithLabelValues(direction, peer),
		bytesIn:  m.bytes.WithLabelValues(direction, peer, "in"),
		bytesOut: m.bytes.WithLabelValues(direction, peer, "out"),
		conns:    m.conns.WithLabelValues(direction, peer),
	}
	m.peers[k] = pm
	return pm
}

func (m *metrics) deny(direction, peer, reason string) {
	m.denials.WithLabelValues(direction, peer, reason).Inc()
}
