package agent

import (
	"errors"

	"net/http"
	"reflect"
	"sync"
)

// reloadResult says what a reload changed and what needs a restart.
type reloadResult struct {
	Applied      []string `json:"applied"`
	NeedsRestart []string `json:"needs_restart"`
}

var reloadMu sync.Mutex

// reload re-reads the config file, validates it whole, applies what can
// change live and reports the rest. An invalid file changes nothing.
func (a *Agent) reload() (reloadResult, error) {
	reloadMu.Lock()
	defer reloadMu.Unlock()
	res := reloadResult{Applied: []string{}, NeedsRestart: []string{}}
	if a.opts.ConfigPath == "" {
		return res, errors.New("no config file to reload (started with --dev)")
	}
	next, err := LoadConfig(a.opts.ConfigPath)
	if err != nil {
		return res, err
	}
	next.API.Socket = a.cfg.API.Socket // the socket may come from --socket
	if next.Log != a.cfg.Log {
		if next.Log.Format != a.cfg.Log.Format {
			res.NeedsRestart = append(res.NeedsRestart, "log.format")
		}
		if next.Log.Level != a.cfg.Log.Level {
			a.level.Set(parseLevel(next.Log.Level))
			res.Applied = append(res.Applied, "log.level")
		}
	}
	for _, f := range []struct {
		name     string
		old, new any
	}{
		{"node", a.cfg.Node, next.Node}, {"raft", a.cfg.Raft, next.Raft}, {"cluster", a.cfg.Cluster, next.Cluster},
		{"pki", a.cfg.PKI, next.PKI}, {"metrics", a.cfg.Metrics, next.Metrics}, {"federation", a.cfg.Federation, next.Federation},
	} {
		if !reflect.DeepEqual(f.old, f.new) {
			res.NeedsRestart = append(res.NeedsRestart, f.name)
		}
	}
	a.cfg.Log.Level = next.Log.Level
	return res, nil
}

func (a *Agent) handleReload(w http.ResponseWriter, r *http.Request) error {
	res, err := a.reload()
	if err != nil {
		return errStatus(http.StatusUnprocessableEntity, "invalid_config", "reload refused, running config kept: %v", err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
