package agent

import (
	"errors"

	"net/http"
	"reflect"
	"strings"
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
	// Every other section needs a restart; compare them all by reflection so
	// a new section can never be silently ignored.
	cur, nxt := reflect.ValueOf(a.cfg), reflect.ValueOf(next)
	for i := 0; i < cur.NumField(); i++ {
		f := cur.Type().Field(i)
		if f.Name == "Log" || f.Name == "API" {
			continue
		}
		if !reflect.DeepEqual(cur.Field(i).Interface(), nxt.Field(i).Interface()) {
			res.NeedsRestart = append(res.NeedsRestart, strings.Split(f.Tag.Get("yaml"), ",")[0])
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
