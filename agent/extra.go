package agent

import (
	"io"
	"net/http"
)

// mountExtra adds the routes of the optional parts (audit, netctl, pki).
func (a *Agent) mountExtra(mux *http.ServeMux, handle func(string, func(http.ResponseWriter, *http.Request) error)) {
	handle("GET /v1/tunnels", a.handleTunnels)
	handle("GET /v1/vips", a.handleVIPs)
	handle("POST /v1/vips", a.handleVIPAdd)
	handle("DELETE /v1/vips/{name}", a.handleVIPDelete)
}

// printExtra prints where the optional parts listen.
func (a *Agent) printExtra(w io.Writer) {}
