package agent

import (
	"fmt"
	"io"

	"github.com/powernode/fedgate/audit"
	"net/http"
)

// mountExtra adds the routes of the optional parts (audit, netctl, pki).
func (a *Agent) mountExtra(mux *http.ServeMux, handle func(string, func(http.ResponseWriter, *http.Request) error)) {
	handle("GET /v1/tunnels", a.handleTunnels)
	handle("GET /v1/vips", a.handleVIPs)
	handle("POST /v1/vips", a.handleVIPAdd)
	handle("DELETE /v1/vips/{name}", a.handleVIPDelete)
	handle("POST /v1/vips/{name}/failover", a.handleVIPFailover)
	handle("GET /v1/certs", a.handleCerts)
	handle("POST /v1/certs/revoke", a.handleCertRevoke)
	handle("GET /v1/trust/{peer}", a.handleTrust)
	handle("POST /v1/lifecycle/invite", a.handleInvitePeer)
	handle("POST /v1/lifecycle/accept", a.handleAcceptPeer)
	handle("GET /v1/lifecycle", a.handleLifecycleStatus)
	handle("POST /v1/peers/{id}/revoke-notify", a.handleRevokeNotify)
	handle("POST /v1/compromise", a.handleCompromise)
	handle("GET /v1/findings", a.handleFindings)
	if a.audit != nil {
		mux.Handle(audit.HandlerPrefix, a.audit.Handler())
	}
}

// printExtra prints where the optional parts listen.
func (a *Agent) printExtra(w io.Writer) {
	if a.proxy != nil {
		for _, l := range proxyAddrs(a.proxy) {
			fmt.Fprintf(w, "  proxy:       %s\n", l)
		}
	}
	if a.net != nil {
		fmt.Fprintf(w, "  netctl:      on (WireGuard public key %s)\n", a.net.m.PublicKey())
	}
	if lc, err := a.lifecycle(); err == nil {
		if lc.bootstrapAddr != "" {
			fmt.Fprintf(w, "  bootstrap:   https://%s (peers accept invitations here)\n", lc.bootstrapAddr)
		}
		if lc.controlAddr != "" {
			fmt.Fprintf(w, "  federation:  mTLS %s (handshakes, heartbeats, notices)\n", lc.controlAddr)
		}
	}
}
