package agent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Agent-level metric names (the packages register their own on a.reg).
const (
	metricReady           = "fedgate_agent_ready"
	metricInfo            = "fedgate_agent_info"
	metricRaftState       = "fedgate_agent_raft_state"
	metricRaftTerm        = "fedgate_agent_raft_term"
	metricRaftCommit      = "fedgate_agent_raft_commit_index"
	metricRaftApplied     = "fedgate_agent_raft_applied_index"
	metricRaftLast        = "fedgate_agent_raft_last_index"
	metricRaftLastContact = "fedgate_agent_raft_last_contact_seconds"
)

// raftStates are the values of the state label of fedgate_agent_raft_state;
// "none" means this node has no replicated store yet (waiting to join).
var raftStates = []string{"leader", "follower", "candidate", "shutdown", "none"}

// serveMetrics serves Prometheus metrics (/metrics), liveness (/healthz)
// and readiness (/readyz) on cfg.Metrics.Listen, a loopback address that
// Validate enforces. An empty address disables the listener.
func (a *Agent) serveMetrics() error {
	if a.cfg.Metrics.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return a.serveMetricsOn(ln)
}

// serveMetricsOn registers the agent's collectors and serves on ln until
// shutdown.
func (a *Agent) serveMetricsOn(ln net.Listener) error {
	for _, c := range []prometheus.Collector{
		agentCollector{a},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := a.reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				ln.Close()
				return fmt.Errorf("metrics: %w", err)
			}
		}
	}
	srv := &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	a.serve("metrics", srv, ln)
	a.log.Info("metrics listening", LogKeyAddr, ln.Addr().String())
	return nil
}

// metricsHandler routes /metrics, /healthz and /readyz.
func (a *Agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError, // one failing collector does not hide the rest
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	// Liveness: the process serves HTTP.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	// Readiness: raft has a leader and this node has applied what was
	// committed; the same moment READY=1 goes to systemd.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// agentCollector reads the agent's state at scrape time.
type agentCollector struct{ a *Agent }

var (
	descReady = prometheus.NewDesc(metricReady, "1 once the node is ready (raft has a leader and this node caught up).", nil, nil)
	descInfo  = prometheus.NewDesc(metricInfo, "Constant 1, labelled with this node's identity.", []string{"node_id", "site"}, nil)
	descState = prometheus.NewDesc(metricRaftState, "1 for this node's current raft state (none: not part of a site yet).",
		[]string{"state"}, nil)
	descTerm    = prometheus.NewDesc(metricRaftTerm, "Current raft term, as the agent sees it.", nil, nil)
	descCommit  = prometheus.NewDesc(metricRaftCommit, "Raft commit index, as the agent sees it.", nil, nil)
	descApplied = prometheus.NewDesc(metricRaftApplied, "Raft index applied to this node's FSM.", nil, nil)
	descLast    = prometheus.NewDesc(metricRaftLast, "Last raft log index stored on this node.", nil, nil)
	descContact = prometheus.NewDesc(metricRaftLastContact,
		"Seconds since this follower last heard from the leader (0 on the leader; absent before first contact or without a store).", nil, nil)
)

func (agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descInfo, descState, descTerm, descCommit, descApplied, descLast, descContact} {
		ch <- d
	}
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	ready := 0.0
	if a.ready.Load() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, a.nodeID, a.cfg.Node.SiteName)
	state := "none"
	s := a.store.Load()
	if s != nil {
		st := s.Status()
		state = st.State
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(st.Term))
		ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(st.CommitIndex))
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.AppliedIndex))
		ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(st.LastIndex))
		switch {
		case st.State == "leader":
			ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, 0)
		case !st.LastContact.IsZero():
			ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, time.Since(st.LastContact).Seconds())
		}
	}
	for _, v := range raftStates {
		val := 0.0
		if v == state {
			val = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, val, v)
	}
}
