package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/powernode/fedgate/audit"
)

func (a *Agent) openAudit() error {
	dir := a.cfg.Audit.Dir
	if dir == "" {
		dir = a.dataPath("audit")
	}
	cfg := audit.Config{Dir: dir, NodeID: a.nodeID, Retention: a.cfg.Audit.Retention,
		SegmentMaxBytes: a.cfg.Audit.SegmentMaxBytes, Logger: a.log.With("component", "audit"), Registerer: a.reg}
	if a.cfg.Audit.Policy == "drop" {
		cfg.Policy = audit.PolicyDrop
	}
	if a.cfg.Audit.PlatformURL != "" {
		cfg.Ship = &audit.ShipConfig{PlatformURL: a.cfg.Audit.PlatformURL, TokenFile: a.cfg.Audit.PlatformTokenFile}
	}
	l, err := audit.Open(cfg)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	a.audit = l
	a.closers = append(a.closers, func() { _ = l.Close() })
	return nil
}

// operatorKey carries the unix credentials of a local API client.
type operatorKey struct{}

// withPeerCred records the uid/pid of the process on the other end of a
// local API connection (SO_PEERCRED): the kernel's word, not the client's.
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, operatorKey{}, "operator:uid="+strconv.Itoa(int(cred.Uid))+",pid="+strconv.Itoa(int(cred.Pid)))
}

func operatorOf(r *http.Request) string {
	if s, ok := r.Context().Value(operatorKey{}).(string); ok {
		return s
	}
	return "operator:unknown"
}

// auditLocal writes one record for an operator action on the local API.
// Local actions are audited fail-closed too: the caller learns when the
// record could not be written.
func (a *Agent) auditLocal(r *http.Request, action, peerID, reason string, meta map[string]string) error {
	if a.audit == nil {
		return nil
	}
	_, err := a.audit.Append(r.Context(), audit.Record{Action: action, FederationPeerID: peerID, RemoteSubject: operatorOf(r),
		Decision: audit.DecisionAllow, Reason: reason, Method: r.Method, Path: r.URL.Path, Metadata: meta})
	if err != nil {
		return fmt.Errorf("the change was applied but its audit record could not be written: %w", err)
	}
	return nil
}
