package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/raftstore"
)

// The join flow. A member creates a single-use invitation; only the SHA-256
// of its secret is replicated (KV key join/<hash>), with an expiry. The
// token handed to the operator is
//
//	fgj1.<base64url 32-byte secret>.<hex SHA-256 of the site root certificate>
//
// The new node pins the site root by that fingerprint, sends a CSR for its
// own key (generated on the new node, never sent) with the secret, and gets
// back its node certificate and the grant-token secret; then it starts raft
// and asks, authenticated by its new node certificate, to be added as a
// non-voter (promoted by raftstore once caught up). Renewals later go to the
// CA holder's /v1/sign with mTLS.

const (
	joinTokenPrefix = "fgj1."
	joinTokenTTL    = time.Hour
	joinKVPrefix    = "join/"
	caURLKey        = "site/ca_url"
	maxClusterBody  = 64 << 10
)

var errNotJoined = errors.New("this node has not joined a site yet (fedgate cluster join)")

// joinToken is a parsed invitation.
type joinToken struct {
	secret []byte
	rootFP string // hex SHA-256 of the site root DER
}

func (t joinToken) String() string {
	return joinTokenPrefix + base64.RawURLEncoding.EncodeToString(t.secret) + "." + t.rootFP
}

func (t joinToken) kvKey() string {
	h := sha256.Sum256(t.secret)
	return joinKVPrefix + hex.EncodeToString(h[:])
}

func parseJoinToken(s string) (joinToken, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), joinTokenPrefix)
	if !ok {
		return joinToken{}, fmt.Errorf("join token: want prefix %q", joinTokenPrefix)
	}
	sec, fp, ok := strings.Cut(rest, ".")
	if !ok {
		return joinToken{}, fmt.Errorf("join token: malformed (want fgj1.<secret>.<root fingerprint>)")
	}
	b, err := base64.RawURLEncoding.DecodeString(sec)
	if err != nil || len(b) != 32 {
		return joinToken{}, fmt.Errorf("join token: secret is not 32 bytes of base64url")
	}
	if f, err := hex.DecodeString(fp); err != nil || len(f) != sha256.Size {
		return joinToken{}, fmt.Errorf("join token: root fingerprint is not a hex SHA-256")
	}
	return joinToken{secret: b, rootFP: strings.ToLower(fp)}, nil
}

type joinRecord struct {
	ExpiresAt time.Time `json:"expires_at"`
	CreatedBy string    `json:"created_by"`
}

// handleInvite (local API) creates a join token.
func (a *Agent) handleInvite(w http.ResponseWriter, r *http.Request) error {
	if a.ca == nil {
		return errStatus(http.StatusConflict, "no_ca", "this node holds no site CA; create the invitation on the CA node (%s)", a.caURL())
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	tok := joinToken{secret: secret, rootFP: pki.Fingerprint(a.ca.Root())}
	exp := time.Now().Add(joinTokenTTL).UTC()
	rec, _ := json.Marshal(joinRecord{ExpiresAt: exp, CreatedBy: a.nodeID})
	if _, err := a.apply(r.Context(), raftstore.CmdKVPut, raftstore.KVPutPayload{Key: tok.kvKey(), Value: rec}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]string{"token": tok.String(), "join_url": a.clusterURL(), "expires_at": exp.Format(time.RFC3339)})
	return nil
}

// clusterAPI is the cluster-internal HTTPS API. /v1/join is authenticated
// by a join token; /v1/join/raft and /v1/sign by a node certificate.
func (a *Agent) clusterAPI() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, maxClusterBody)
			if err := h(w, r); err != nil {
				a.log.Warn("cluster api refused", "path", r.URL.Path, "remote", r.RemoteAddr, LogKeyErr, err)
				writeError(w, err)
			}
		})
	}
	handle("GET /v1/trust_bundle", a.handleTrustBundle)
	handle("POST /v1/join", a.handleJoinSign)
	handle("POST /v1/join/raft", a.handleJoinRaft)
	handle("POST /v1/sign", a.handleRenewSign)
	if a.ca != nil {
		// The site CA's public face, as the platform serves it.
		th := pki.TrustHandler(a.ca, a.replicatedRevocations)
		mux.Handle("GET /trust_bundle", th)
		mux.Handle("GET /crl", th)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errStatus(http.StatusNotFound, "not_found", "no such API"))
	})
	return mux
}

func (a *Agent) handleTrustBundle(w http.ResponseWriter, r *http.Request) error {
	id := a.ident.Load()
	if id == nil {
		return errNotJoined
	}
	b := a.bundlePEM()
	writeJSON(w, http.StatusOK, map[string]string{"ca_bundle_pem": string(b), "generated_at": time.Now().UTC().Format(time.RFC3339)})
	return nil
}

type joinSignRequest struct {
	Token  string `json:"token,omitempty"`
	NodeID string `json:"node_id"`
	CSR    string `json:"csr_pem"`
	// Kind is "node" (default) or "federation"; AssignedID names the
	// identity of a federation certificate (the id a peer assigned us).
	Kind       string `json:"kind,omitempty"`
	AssignedID string `json:"assigned_id,omitempty"`
}

type joinSignResponse struct {
	ChainPEM    string `json:"chain_pem"`
	BundlePEM   string `json:"ca_bundle_pem"`
	GrantSecret []byte `json:"grant_secret"`
	CAURL       string `json:"ca_url"`
}

// handleJoinSign checks and consumes a join token, then signs the new
// node's CSR.
func (a *Agent) handleJoinSign(w http.ResponseWriter, r *http.Request) error {
	var req joinSignRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if a.ca == nil {
		return errStatus(http.StatusConflict, "no_ca", "this node holds no site CA; join through %s", a.caURL())
	}
	tok, err := parseJoinToken(req.Token)
	if err != nil {
		return errStatus(http.StatusUnauthorized, "token_invalid", "%v", err)
	}
	if subtle.ConstantTimeCompare([]byte(tok.rootFP), []byte(pki.Fingerprint(a.ca.Root()))) != 1 {
		return errStatus(http.StatusUnauthorized, "token_invalid", "join token belongs to another site")
	}
	st, err := a.state()
	if err != nil {
		return err
	}
	e, ok := st.KVGet(tok.kvKey())
	if !ok {
		return errStatus(http.StatusUnauthorized, "token_invalid", "join token is unknown or already used")
	}
	var rec joinRecord
	if err := json.Unmarshal(e.Value, &rec); err != nil || time.Now().After(rec.ExpiresAt) {
		return errStatus(http.StatusUnauthorized, "token_expired", "join token expired")
	}
	if _, err := pki.CanonicalID(req.NodeID); err != nil {
		return errStatus(http.StatusBadRequest, "bad_request", "node_id: %v", err)
	}
	ms, err := a.storeMust().Members(r.Context())
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.NodeID == req.NodeID {
			return errStatus(http.StatusConflict, "duplicate_node", "node %s is already a member; remove it first or start the new node on an empty data dir", req.NodeID)
		}
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return errStatus(http.StatusBadRequest, "bad_csr", "csr_pem is not a PEM CERTIFICATE REQUEST")
	}
	// Consume the token first: a raced second use finds it gone.
	if _, err := a.apply(r.Context(), raftstore.CmdKVDelete, raftstore.KVDeletePayload{Key: tok.kvKey()}); err != nil {
		if errors.Is(err, raftstore.ErrNotFound) {
			return errStatus(http.StatusUnauthorized, "token_invalid", "join token already used")
		}
		return err
	}
	chain, err := a.ca.Sign(r.Context(), pki.SignRequest{Kind: pki.KindNode, ID: req.NodeID, CSR: blk.Bytes, Lifetime: a.cfg.PKI.NodeCertLifetime})
	if err != nil {
		return errStatus(http.StatusBadRequest, "bad_csr", "%v", err)
	}
	a.log.Info("signed the certificate of a joining node", LogKeyNode, req.NodeID)
	writeJSON(w, http.StatusOK, joinSignResponse{ChainPEM: string(chain), BundlePEM: string(a.bundlePEM()),
		GrantSecret: a.secrets.grant, CAURL: a.caURL()})
	return nil
}

// verifiedNode returns the node id of an mTLS client of the cluster API.
func (a *Agent) verifiedNode(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errStatus(http.StatusUnauthorized, "client_cert_required", "a site node certificate is required")
	}
	id, err := pki.VerifyNode(r.TLS.PeerCertificates, a.roots(), time.Now(), x509.ExtKeyUsageClientAuth, a.revocations())
	if err != nil {
		return "", errStatus(http.StatusUnauthorized, "client_cert_invalid", "%v", err)
	}
	return id, nil
}

func (a *Agent) handleJoinRaft(w http.ResponseWriter, r *http.Request) error {
	id, err := a.verifiedNode(r)
	if err != nil {
		return err
	}
	var req struct {
		RaftAddr string `json:"raft_addr"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	s, err := a.storeOrErr()
	if err != nil {
		return err
	}
	if err := s.Join(r.Context(), id, req.RaftAddr); err != nil {
		return err
	}
	st := s.Status()
	writeJSON(w, http.StatusOK, map[string]string{"node_id": id, "leader": st.LeaderID})
	return nil
}

func (a *Agent) handleRenewSign(w http.ResponseWriter, r *http.Request) error {
	id, err := a.verifiedNode(r)
	if err != nil {
		return err
	}
	if a.ca == nil {
		return errStatus(http.StatusConflict, "no_ca", "this node holds no site CA")
	}
	var req joinSignRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.NodeID != id {
		return errStatus(http.StatusForbidden, "node_mismatch", "node %s may only renew its own certificate", id)
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil {
		return errStatus(http.StatusBadRequest, "bad_csr", "csr_pem is not PEM")
	}
	sr := pki.SignRequest{Kind: pki.KindNode, ID: id, CSR: blk.Bytes, Lifetime: a.cfg.PKI.NodeCertLifetime}
	if req.Kind == "federation" {
		// Only for an identity a peer of this site actually assigned us.
		known := false
		for _, p := range a.storeMust().State().Peers() {
			known = known || p.OutboundSubject == federation.SubjectFor(req.AssignedID)
		}
		if !known {
			return errStatus(http.StatusForbidden, "unknown_identity", "no peer assigned this site the id %q", req.AssignedID)
		}
		sr = pki.SignRequest{Kind: pki.KindFederation, ID: req.AssignedID, CSR: blk.Bytes}
	}
	chain, err := a.ca.Sign(r.Context(), sr)
	if err != nil {
		return errStatus(http.StatusBadRequest, "bad_csr", "%v", err)
	}
	writeJSON(w, http.StatusOK, joinSignResponse{ChainPEM: string(chain), BundlePEM: string(a.bundlePEM())})
	return nil
}

// remoteIssuer is the pki.Issuer of a node without the CA: the first Sign
// uses the join token, later ones (renewals) authenticate with the node
// certificate.
type remoteIssuer struct {
	a      *Agent
	url    string
	roots  *x509.CertPool
	token  string // consumed by the first Sign
	result *joinSignResponse
}

func (ri *remoteIssuer) client() *http.Client {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // node certificates carry no DNS/IP names; verified below
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := pki.VerifyNode(cs.PeerCertificates, ri.roots, time.Now(), x509.ExtKeyUsageServerAuth, nil)
			return err
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if id := ri.a.ident.Load(); id != nil {
				return id.Certificate(), nil
			}
			return &tls.Certificate{}, nil
		},
	}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (ri *remoteIssuer) TrustBundle(context.Context) ([]byte, error) {
	return nil, errors.New("remote issuer: trust roots are pinned at join")
}

func (ri *remoteIssuer) Sign(ctx context.Context, req pki.SignRequest) ([]byte, error) {
	body := joinSignRequest{NodeID: ri.a.nodeID, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR}))}
	if req.Kind == pki.KindFederation {
		body.Kind, body.AssignedID = "federation", req.ID
	}
	path := "/v1/sign"
	if ri.token != "" {
		body.Token, path = ri.token, "/v1/join"
	}
	var res joinSignResponse
	if err := postJSON(ctx, ri.client(), ri.url+path, body, &res); err != nil {
		return nil, err
	}
	ri.token = ""
	ri.result = &res
	return []byte(res.ChainPEM), nil
}

// postJSON posts body to u and decodes a 2xx answer into out; other
// answers become errors carrying the server's message.
func postJSON(ctx context.Context, c *http.Client, u string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(c, req, out)
}

func doJSON(c *http.Client, req *http.Request, out any) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var ae struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
			return fmt.Errorf("%s: %s", req.URL.Host, ae.Error)
		}
		return fmt.Errorf("%s %s: %s", req.Method, req.URL, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// fetchPinnedRoots fetches the site's trust bundle from joinURL and accepts
// it only if it holds the root whose SHA-256 is rootFP and the server's own
// certificate chains to it.
func fetchPinnedRoots(ctx context.Context, joinURL, rootFP string) (*x509.CertPool, []byte, error) {
	var peer []*x509.Certificate
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified against the pinned root below
		VerifyConnection: func(cs tls.ConnectionState) error {
			peer = cs.PeerCertificates
			return nil
		},
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, joinURL+"/v1/trust_bundle", nil)
	if err != nil {
		return nil, nil, err
	}
	var tb struct {
		Bundle string `json:"ca_bundle_pem"`
	}
	if err := doJSON(c, req, &tb); err != nil {
		return nil, nil, fmt.Errorf("fetch trust bundle: %w", err)
	}
	pool, certs, err := pki.PoolFromPEM([]byte(tb.Bundle))
	if err != nil {
		return nil, nil, fmt.Errorf("trust bundle: %w", err)
	}
	pinned := false
	for _, c := range certs {
		if subtle.ConstantTimeCompare([]byte(pki.Fingerprint(c)), []byte(rootFP)) == 1 {
			pinned = true
			pool = x509.NewCertPool()
			pool.AddCert(c)
		}
	}
	if !pinned {
		return nil, nil, fmt.Errorf("the site at %s does not hold the root the join token pins (%s…): refusing to join", joinURL, rootFP[:16])
	}
	if _, err := pki.VerifyNode(peer, pool, time.Now(), x509.ExtKeyUsageServerAuth, nil); err != nil {
		return nil, nil, fmt.Errorf("the server at %s is not a node of the pinned site: %w", joinURL, err)
	}
	return pool, pki.EncodeCertificatesPEM(certsWithFP(certs, rootFP)), nil
}

func certsWithFP(certs []*x509.Certificate, fp string) []*x509.Certificate {
	for _, c := range certs {
		if pki.Fingerprint(c) == fp {
			return []*x509.Certificate{c}
		}
	}
	return nil
}

// handleJoinLocal (local API) joins this empty node to a site.
func (a *Agent) handleJoinLocal(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		JoinURL string `json:"join_url"`
		Token   string `json:"token"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	u, err := url.Parse(req.JoinURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return errStatus(http.StatusBadRequest, "bad_request", "join URL %q: want https://host:port", req.JoinURL)
	}
	tok, err := parseJoinToken(req.Token)
	if err != nil {
		return errStatus(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if !a.joinMu.TryLock() {
		return errStatus(http.StatusConflict, "join_in_progress", "a join is already in progress")
	}
	defer a.joinMu.Unlock()
	if a.store.Load() != nil {
		return errStatus(http.StatusConflict, "already_joined", "this node is already a member of a site (node %s)", a.nodeID)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	if err := a.join(ctx, strings.TrimSuffix(req.JoinURL, "/"), tok); err != nil {
		return errStatus(http.StatusBadGateway, "join_failed", "join: %v", err)
	}
	st := a.store.Load().Status()
	writeJSON(w, http.StatusOK, map[string]string{"node_id": a.nodeID, "leader": st.LeaderID})
	return nil
}
