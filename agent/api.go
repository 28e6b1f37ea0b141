package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/raftstore"
)

// classify maps package errors to HTTP status and reason.
func classify(err error) (int, string, bool) {
	var ae *federation.AuthError
	var re *raftstore.RefusedError
	switch {
	case errors.As(err, &ae):
		return ae.Status, ae.Reason, true
	case errors.Is(err, raftstore.ErrNotFound):
		return http.StatusNotFound, "not_found", true
	case errors.As(err, &re):
		return http.StatusUnprocessableEntity, "refused", true
	case errors.Is(err, raftstore.ErrNoLeader), errors.Is(err, raftstore.ErrClosed):
		return http.StatusServiceUnavailable, "no_leader", true
	case errors.Is(err, errNotJoined):
		return http.StatusServiceUnavailable, "not_joined", true
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout", true
	}
	return 0, "", false
}

// localAPI builds the local API's routes. Every route is under /v1/.
func (a *Agent) localAPI() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				a.log.Debug("local api refused", "method", r.Method, "path", r.URL.Path, LogKeyErr, err)
				writeError(w, err)
			}
		})
	}
	handle("GET /v1/status", a.handleStatus)
	handle("GET /v1/cluster/members", a.handleMembers)
	handle("POST /v1/cluster/invite", a.handleInvite)
	handle("POST /v1/cluster/join", a.handleJoinLocal)
	handle("DELETE /v1/cluster/members/{id}", a.handleRemove)
	handle("GET /v1/peers", a.handlePeers)
	handle("POST /v1/peers", a.handlePeerAdd)
	handle("GET /v1/peers/{id}", a.handlePeer)
	handle("POST /v1/peers/{id}/transition", a.handlePeerTransition)
	handle("POST /v1/peers/{id}/revoke", a.handlePeerRevoke)
	handle("GET /v1/grants", a.handleGrants)
	handle("POST /v1/grants", a.handleGrantIssue)
	handle("POST /v1/grants/{id}/revoke", a.handleGrantRevoke)
	handle("GET /v1/contracts", a.handleContracts)
	handle("GET /v1/contracts/{version}", a.handleContract)
	handle("POST /v1/reload", a.handleReload)
	a.mountExtra(mux, handle)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errStatus(http.StatusNotFound, "not_found", "no such API: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// store returns the replicated store, or errNotJoined while this node waits
// to join a site.
func (a *Agent) storeOrErr() (*raftstore.Store, error) {
	s := a.store.Load()
	if s == nil {
		return nil, errNotJoined
	}
	return s, nil
}

func (a *Agent) state() (*raftstore.State, error) {
	s, err := a.storeOrErr()
	if err != nil {
		return nil, err
	}
	return s.State(), nil
}

// apply runs cmd through raft (forwarded to the leader) with a bound.
func (a *Agent) apply(ctx context.Context, typ string, payload any) (raftstore.Result, error) {
	s, err := a.storeOrErr()
	if err != nil {
		return raftstore.Result{}, err
	}
	cmd, err := raftstore.NewCommand(typ, payload)
	if err != nil {
		return raftstore.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return applyLocal(ctx, s, cmd)
}

type statusResponse struct {
	NodeID   string             `json:"node_id"`
	Site     string             `json:"site"`
	Ready    bool               `json:"ready"`
	Joined   bool               `json:"joined"`
	Raft     raftStatusResponse `json:"raft"`
	Members  []memberResponse   `json:"members"`
	API      string             `json:"api_socket"`
	Warnings []string           `json:"warnings,omitempty"`
	Cluster  string             `json:"cluster_api"`
}

type raftStatusResponse struct {
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderAddr   string `json:"leader_addr"`
	Address      string `json:"address"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastContact  string `json:"last_contact"`
}

type memberResponse struct {
	ID          string   `json:"id"`
	Address     string   `json:"address"`
	Suffrage    string   `json:"suffrage"`
	Leader      bool     `json:"leader"`
	LastContact string   `json:"last_contact,omitempty"`
	VIPs        []string `json:"vips,omitempty"`
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) error {
	resp := statusResponse{NodeID: a.nodeID, Site: a.cfg.Node.SiteName, Ready: a.ready.Load(),
		API: a.cfg.API.Socket, Cluster: a.clusterURL(), Members: []memberResponse{}}
	if s := a.store.Load(); s != nil {
		resp.Joined = true
		st := s.Status()
		resp.Raft = raftStatusResponse{State: st.State, Leader: st.LeaderID, LeaderAddr: st.LeaderAddr, Address: st.Addr,
			Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastContact: fmtAgo(st.LastContact)}
		ms, err := a.members(r.Context())
		if err == nil {
			resp.Members = ms
		}
		resp.Warnings = a.HAWarnings(r.Context())
	} else {
		resp.Raft.State = "unjoined"
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *Agent) members(ctx context.Context) ([]memberResponse, error) {
	s, err := a.storeOrErr()
	if err != nil {
		return nil, err
	}
	ms, err := s.Members(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string][]string{}
	for _, v := range s.State().VIPs() {
		if v.Holder != "" {
			held[v.Holder] = append(held[v.Holder], v.Name)
		}
	}
	out := make([]memberResponse, 0, len(ms))
	for _, m := range ms {
		lc := fmtAgo(m.LastContact)
		if !m.Reachable && !m.Leader {
			lc = "unreachable"
		}
		suffrage := m.Suffrage
		if suffrage == "nonvoter" {
			suffrage = "non-voter"
		}
		out = append(out, memberResponse{ID: m.NodeID, Address: m.Addr, Suffrage: suffrage, Leader: m.Leader,
			LastContact: lc, VIPs: held[m.NodeID]})
	}
	return out, nil
}

func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) error {
	ms, err := a.members(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ms)
	return nil
}

func (a *Agent) handleRemove(w http.ResponseWriter, r *http.Request) error {
	s, err := a.storeOrErr()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := federation.ParseUUID(id); err != nil {
		return errStatus(http.StatusBadRequest, "bad_request", "node id %q: %v", id, err)
	}
	if err := s.Remove(r.Context(), id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
	return nil
}

func (a *Agent) handlePeers(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	want := federation.Status(r.URL.Query().Get("status"))
	out := []federation.Peer{}
	for _, p := range st.Peers() {
		if want == "" || p.Status == want {
			out = append(out, p)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *Agent) handlePeer(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	p, ok := st.Peer(r.PathValue("id"))
	if !ok {
		return errStatus(http.StatusNotFound, "not_found", "peer %s does not exist", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *Agent) handlePeerAdd(w http.ResponseWriter, r *http.Request) error {
	var p federation.Peer
	if err := decodeBody(r, &p); err != nil {
		return err
	}
	if p.ID == "" {
		id, err := federation.NewID(time.Now(), rand.Reader)
		if err != nil {
			return err
		}
		p.ID = id
	}
	if p.Status == "" {
		p.Status = federation.StatusProposed
	}
	if p.PeerKind == "" {
		p.PeerKind = federation.PeerKindPlatform
	}
	if p.InboundSubject == "" {
		p.InboundSubject = federation.SubjectFor(p.ID)
	}
	if p.Metadata == nil {
		p.Metadata = map[string]string{}
	}
	if p.CreatedAt.IsZero() {
		now := time.Now().UTC()
		p.CreatedAt, p.UpdatedAt = now, now // the leader's command time replaces these
	}
	if err := p.Validate(); err != nil {
		return errStatus(http.StatusUnprocessableEntity, "invalid_peer", "%v", err)
	}
	res, err := a.apply(r.Context(), raftstore.CmdPeerAdd, p)
	if err != nil {
		return err
	}
	if err := a.auditLocal(r, audit.ActionPeerTransition, p.ID, "peer added", map[string]string{"to": string(p.Status)}); err != nil {
		return err
	}
	return a.answerPeer(w, http.StatusCreated, p.ID, res)
}

func (a *Agent) answerPeer(w http.ResponseWriter, status int, id string, _ raftstore.Result) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	p, ok := st.Peer(id)
	if !ok {
		return errStatus(http.StatusInternalServerError, "internal", "peer %s applied but not visible", id)
	}
	writeJSON(w, status, p)
	return nil
}

func (a *Agent) handlePeerTransition(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Status federation.Status `json:"status"`
		Reason string            `json:"reason"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	if !body.Status.Valid() {
		return errStatus(http.StatusBadRequest, "bad_status", "unknown status %q: want one of proposed accepted enrolled active degraded suspended revoked", body.Status)
	}
	if body.Status == federation.StatusRevoked {
		return a.revokePeer(w, r, id, body.Reason)
	}
	res, err := a.apply(r.Context(), raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: id, To: body.Status, Reason: body.Reason})
	if err != nil {
		return err
	}
	if err := a.auditLocal(r, audit.ActionPeerTransition, id, body.Reason, map[string]string{"to": string(body.Status)}); err != nil {
		return err
	}
	return a.answerPeer(w, http.StatusOK, id, res)
}

func (a *Agent) handlePeerRevoke(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	return a.revokePeer(w, r, r.PathValue("id"), body.Reason)
}

// revokePeer revokes with the final notification first (commitment 4)
// when the lifecycle runs on this node, else plainly.
func (a *Agent) revokePeer(w http.ResponseWriter, r *http.Request, id, reason string) error {
	return a.revokeWithNotice(w, r, id, reason)
}

// revokePlain applies the replicated revoke (grants and WireGuard peers
// cascade in the same command) and audits it.
func (a *Agent) revokePlain(w http.ResponseWriter, r *http.Request, id, reason string) error {
	res, err := a.apply(r.Context(), raftstore.CmdPeerRevoke, raftstore.PeerRevokePayload{ID: id, Reason: reason})
	if err != nil {
		return err
	}
	if err := a.auditLocal(r, audit.ActionPeerTransition, id, reason, map[string]string{"to": string(federation.StatusRevoked)}); err != nil {
		return err
	}
	return a.answerPeer(w, http.StatusOK, id, res)
}

func (a *Agent) handleGrants(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	gs := st.Grants(r.URL.Query().Get("peer"))
	if gs == nil {
		gs = []federation.Grant{}
	}
	writeJSON(w, http.StatusOK, gs)
	return nil
}

type grantIssueRequest struct {
	FederationPeerID string             `json:"federation_peer_id"`
	RemoteSubject    string             `json:"remote_subject"`
	ResourceKind     string             `json:"resource_kind"`
	ResourceID       *string            `json:"resource_id"`
	PermissionScopes []federation.Scope `json:"permission_scopes"`
	NodeInstanceIDs  []string           `json:"node_instance_ids"`
	SDWANNetworkIDs  []string           `json:"sdwan_network_ids"`
	SourceCIDRs      []string           `json:"source_cidrs"`
	TTLSeconds       int64              `json:"ttl_seconds"`
}

func (a *Agent) handleGrantIssue(w http.ResponseWriter, r *http.Request) error {
	var req grantIssueRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	now := time.Now().UTC()
	id, err := federation.NewID(now, rand.Reader)
	if err != nil {
		return err
	}
	g := federation.NewGrant(id, req.FederationPeerID, req.RemoteSubject, req.ResourceKind, req.PermissionScopes, now)
	g.ResourceID = req.ResourceID
	if req.NodeInstanceIDs != nil {
		g.NodeInstanceIDs = req.NodeInstanceIDs
	}
	if req.SDWANNetworkIDs != nil {
		g.SDWANNetworkIDs = req.SDWANNetworkIDs
	}
	for _, c := range req.SourceCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return errStatus(http.StatusBadRequest, "bad_request", "source_cidrs: %q is not a CIDR", c)
		}
		g.SourceCIDRs = append(g.SourceCIDRs, p)
	}
	if req.TTLSeconds < 0 {
		return errStatus(http.StatusBadRequest, "bad_request", "ttl_seconds must be positive")
	}
	if req.TTLSeconds > 0 {
		g.ExpiresAt = now.Add(time.Duration(req.TTLSeconds) * time.Second)
	}
	if err := g.Validate(); err != nil {
		return errStatus(http.StatusUnprocessableEntity, "invalid_grant", "%v", err)
	}
	if _, err := a.apply(r.Context(), raftstore.CmdGrantIssue, g); err != nil {
		return err
	}
	if err := a.auditLocal(r, audit.ActionGrantIssue, g.FederationPeerID, "", map[string]string{"grant_id": g.ID,
		"remote_subject": g.RemoteSubject, "resource_kind": g.ResourceKind}); err != nil {
		return err
	}
	tok, err := federation.MintToken(a.secrets.grant, g.ID)
	if err != nil {
		return err
	}
	st, _ := a.state()
	if got, ok := st.Grant(g.ID); ok {
		g = got
	}
	writeJSON(w, http.StatusCreated, map[string]any{"grant": g, "token": tok})
	return nil
}

func (a *Agent) handleGrantRevoke(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := a.apply(r.Context(), raftstore.CmdGrantRevoke, raftstore.GrantRevokePayload{ID: id, Reason: body.Reason}); err != nil {
		return err
	}
	st, _ := a.state()
	g, _ := st.Grant(id)
	if err := a.auditLocal(r, audit.ActionGrantRevoke, g.FederationPeerID, body.Reason, map[string]string{"grant_id": id}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

type contractResponse struct {
	Version      int        `json:"version"`
	Digest       string     `json:"digest"`
	EffectiveAt  time.Time  `json:"effective_at"`
	DeprecatedAt *time.Time `json:"deprecated_at"`
	Text         string     `json:"contract_text,omitempty"`
}

func toContractResponse(c federation.ContractVersion, withText bool) contractResponse {
	cr := contractResponse{Version: c.Version, Digest: c.ContractDigest, EffectiveAt: c.EffectiveAt}
	if c.Deprecated() {
		d := c.DeprecatedAt
		cr.DeprecatedAt = &d
	}
	if withText {
		cr.Text = c.ContractText
	}
	return cr
}

func (a *Agent) handleContracts(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	out := []contractResponse{}
	for _, c := range st.Contracts().Versions {
		out = append(out, toContractResponse(c, false))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *Agent) handleContract(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	v, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		return errStatus(http.StatusBadRequest, "bad_request", "version %q is not a number", r.PathValue("version"))
	}
	c, ok := st.Contract(v)
	if !ok {
		return errStatus(http.StatusNotFound, "not_found", "contract version %d is not known", v)
	}
	writeJSON(w, http.StatusOK, toContractResponse(c, true))
	return nil
}

// fmtAgo renders a last-contact time as its age ("" for zero).
func fmtAgo(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return time.Since(t).Round(time.Millisecond).String() + " ago"
}
