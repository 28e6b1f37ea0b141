package agent

import (
	"io"
	"net/http"
)

// mountExtra adds the routes of the optional parts (audit, netctl, pki).
func (a *Agent) mountExtra(mux *http.ServeMux, handle func(string, func(http.ResponseWriter, *http.Request) error)) {
}

// printExtra prints where the optional parts listen.
func (a *Agent) printExtra(w io.Writer) {}
