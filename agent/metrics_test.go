package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/powernode/fedgate/internal/testport"
	"github.com/powernode/fedgate/netctl"
	"github.com/powernode/fedgate/netctl/netctltest"
	"github.com/powernode/fedgate/raftstore"
)

// newTestAgent builds an Agent the way Run does (lock, node id, logger,
// registry), without starting anything; the test calls start itself.
func newTestAgent(t *testing.T) *Agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "fgm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := ParseConfig("test.yaml", []byte(testConfigYAML(dir, "info")))
	if err != nil {
		t.Fatal(err)
	}
	log, level := NewLogger(testLogWriter{t}, cfg.Log)
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: cfg, opts: Options{Config: cfg}, log: log, level: level, reg: prometheus.NewRegistry(), runCtx: ctx, cancel: cancel}
	a.notify = &notifier{log: log}
	lock, err := lockDataDir(cfg.Node.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if a.nodeID, err = loadNodeID(cfg.Node.DataDir); err != nil {
		t.Fatal(err)
	}
	a.log = log.With(LogKeyNode, a.nodeID)
	t.Cleanup(func() { a.shutdown(); lock.Close() })
	return a
}

// serveTestMetrics serves the agent's metrics on a free loopback port and
// returns its base URL.
func serveTestMetrics(t *testing.T, a *Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.serveMetricsOn(ln); err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics and parses the text exposition.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// value returns the value of the sample of name whose labels include want
// (sum over matches; counters, gauges and untyped).
func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	if _, ok := mf[name]; !ok {
		t.Fatalf("metric %s not exposed", name)
	}
	sum, found := sample(mf, name, want)
	if !found {
		t.Fatalf("metric %s has no sample with labels %v", name, want)
	}
	return sum
}

// sample sums the samples of metric name that have the labels want; found
// is false when there are none (a labelled child not created yet).
func sample(mf map[string]*dto.MetricFamily, name string, want map[string]string) (sum float64, found bool) {
	fam := mf[name]
next:
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// TestMetricsLifecycle: before start the listener is live but not ready;
// after start it is ready, the raft role is leader, and under a burst of
// replicated writes the raft indices and apply counters move.
func TestMetricsLifecycle(t *testing.T) {
	a := newTestAgent(t)
	base := serveTestMetrics(t, a)

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz before start: %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before start: %d, want 503", code)
	}
	mf := scrape(t, base)
	if v := value(t, mf, metricReady, nil); v != 0 {
		t.Fatalf("%s before start = %v", metricReady, v)
	}
	if v := value(t, mf, metricRaftState, map[string]string{"state": "none"}); v != 1 {
		t.Fatalf("raft state none before start = %v", v)
	}
	if v := value(t, mf, metricInfo, map[string]string{"node_id": a.nodeID, "site": "test-site"}); v != 1 {
		t.Fatalf("info = %v", v)
	}
	if _, ok := mf["go_goroutines"]; !ok {
		t.Error("Go runtime metrics missing")
	}
	if _, ok := mf["process_open_fds"]; !ok {
		t.Error("process metrics missing")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.start(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after start: %d %q", code, body)
	}
	before := scrape(t, base)
	if v := value(t, before, metricReady, nil); v != 1 {
		t.Fatalf("%s after start = %v", metricReady, v)
	}
	if v := value(t, before, metricRaftState, map[string]string{"state": "leader"}); v != 1 {
		t.Fatalf("single node is not leader: %v", v)
	}
	if v := value(t, before, metricRaftLastContact, nil); v != 0 {
		t.Fatalf("leader last contact = %v, want 0", v)
	}
	for _, name := range []string{"fedgate_raft_term", "fedgate_raft_commit_index", "fedgate_raft_leader"} {
		value(t, before, name, nil) // raftstore's own metrics on the same registry
	}

	const writes = 40
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.apply(ctx, raftstore.CmdKVPut, raftstore.KVPutPayload{Key: fmt.Sprintf("metrics-test/%d", i), Value: []byte("v")})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	after := scrape(t, base)
	for _, name := range []string{metricRaftCommit, metricRaftApplied, metricRaftLast, "fedgate_raft_commit_index"} {
		b, n := value(t, before, name, nil), value(t, after, name, nil)
		if n < b+writes {
			t.Errorf("%s moved from %v to %v under %d writes", name, b, n, writes)
		}
	}
	if v := value(t, after, metricRaftTerm, nil); v < 1 {
		t.Errorf("term = %v", v)
	}
	// No kv.put sample yet is 0: the labelled counter appears with the
	// first one applied.
	b, _ := sample(before, "fedgate_raft_commands_applied_total", map[string]string{"type": raftstore.CmdKVPut})
	if b != 0 {
		// the CA node may already have published its URL with kv.put
		t.Logf("kv.put applied before the burst: %v", b)
	}
	if n := value(t, after, "fedgate_raft_commands_applied_total", map[string]string{"type": raftstore.CmdKVPut}); n < b+writes {
		t.Errorf("kv.put applied count moved from %v to %v under %d writes", b, n, writes)
	}
}

// TestMetricsRoutes: only GET on the three paths; everything else is refused.
func TestMetricsRoutes(t *testing.T) {
	a := newTestAgent(t)
	base := serveTestMetrics(t, a)
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}
	resp, err := http.Post(base+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", resp.StatusCode)
	}
	a.ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with ready set: %d", code)
	}
	a.ready.Store(false)
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with ready cleared: %d", code)
	}
}

// TestServeMetricsConfig: an empty listen address serves nothing; a busy
// port is a clear error; serving twice on one registry is fine (reload or
// restart of the listener does not trip duplicate registration).
func TestServeMetricsConfig(t *testing.T) {
	a := newTestAgent(t)
	a.cfg.Metrics.Listen = ""
	if err := a.serveMetrics(); err != nil {
		t.Fatalf("disabled listener: %v", err)
	}
	if len(a.closers) != 0 {
		t.Fatal("disabled listener started a server")
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	a.cfg.Metrics.Listen = busy.Addr().String()
	if err := a.serveMetrics(); err == nil || !strings.Contains(err.Error(), "metrics listener") {
		t.Fatalf("busy port: %v", err)
	}

	addr := testport.Addr(t)
	a.cfg.Metrics.Listen = addr
	if err := a.serveMetrics(); err != nil {
		t.Fatal(err)
	}
	serveTestMetrics(t, a) // second registration of the same collectors
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz on %s: %d", addr, code)
	}
}

// registeredNames lists every metric family the collectors on reg
// describe (counters, gauges, histograms and vectors, observed or not),
// with the _bucket/_sum/_count series of histograms and summaries.
func registeredNames(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { reg.Describe(ch); close(ch) }()
	names := map[string]bool{}
	for d := range ch {
		m := fqNameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names[m[1]] = true
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Logf("gather: %v", err)
	}
	typ := map[string]dto.MetricType{}
	for _, mf := range mfs {
		typ[mf.GetName()] = mf.GetType()
	}
	// A histogram's series: known from its gathered type, or (a vector with
	// no child yet, so not gathered) allowed on its described name.
	for n := range maps.Clone(names) {
		t, gathered := typ[n]
		if !gathered || t == dto.MetricType_HISTOGRAM || t == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[n+s] = true
			}
		}
	}
	return names
}

var (
	fqNameRE     = regexp.MustCompile(`fqName: "([^"]+)"`)
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promBraces   = regexp.MustCompile(`\{[^}]*\}`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "bool": true,
		"and": true, "or": true, "unless": true, "offset": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promBraces.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promIdent.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") || promKeywords[strings.ToLower(m)] {
			continue // a function call or an operator keyword
		}
		out = append(out, m)
	}
	return out
}

func TestMetricNamesFromPromQL(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (le, peer) (rate(fedgate_proxy_request_duration_seconds_bucket{instance=~"$instance"}[5m])))`: {"fedgate_proxy_request_duration_seconds_bucket"},
		`fedgate_audit_last_seq{instance=~"a"} - fedgate_audit_shipped_seq`:                                                            {"fedgate_audit_last_seq", "fedgate_audit_shipped_seq"},
		`fedgate_agent_raft_state == 1 and on (instance) up`:                                                                           {"fedgate_agent_raft_state", "up"},
		`fedgate_pki_certificate_not_after_seconds - time()`:                                                                           {"fedgate_pki_certificate_not_after_seconds"},
	} {
		if diff := cmp.Diff(want, metricNames(expr)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", expr, diff)
		}
	}
}

// TestDashboardMetricsExist: every metric the Grafana dashboard queries is
// registered by the real code: a started agent (raft, pki, audit, proxy,
// the agent's own gauges, Go and process) and netctl's manager on a fake
// host (the agent runs with netctl off here: it would touch the host).
func TestDashboardMetricsExist(t *testing.T) {
	a := newTestAgent(t)
	serveTestMetrics(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.start(ctx); err != nil {
		t.Fatal(err)
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	host := netctltest.NewHost(true)
	nm, err := netctl.New(netctl.Config{WG: host.WG(), Netlink: host.Netlink(), Announcer: host.Announcer(),
		Backend: netctl.BackendKernel, PrivateKey: key, Registerer: a.reg, AnnounceRefresh: -1, AnnounceBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer nm.Close()
	have := registeredNames(t, a.reg)

	b, err := os.ReadFile("../dashboards/fedgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	queries := map[string]string{} // expr -> where
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries[tg.Expr] = "panel " + p.Title
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			queries[strings.TrimSuffix(strings.TrimPrefix(v.Definition, "label_values("), ", instance)")] = "variable " + v.Name
		}
	}
	if len(queries) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(queries))
	}
	used := map[string]bool{}
	for expr, where := range queries {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !have[n] {
				t.Errorf("%s queries %s, which no code registers", where, n)
			}
		}
	}
	// The dashboard covers each part.
	for _, prefix := range []string{"fedgate_agent_", "fedgate_raft_", "fedgate_proxy_", "fedgate_audit_", "fedgate_netctl_", "fedgate_pki_"} {
		found := false
		for n := range used {
			found = found || strings.HasPrefix(n, prefix)
		}
		if !found {
			t.Errorf("dashboard has no %s* panel", prefix)
		}
	}
}
