package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/raftstore"
)

// Notice kinds.
const (
	// NoticeRevoked is the final notification of a revoking peer
	// (commitment 4): the platform.peer.revoked event.
	NoticeRevoked = federation.EventPlatformPeerRevoked
	// NoticeCompromised is a compromise notification (commitment 9).
	NoticeCompromised = "platform.peer.compromised"
)

// ErrNotice marks a notice that cannot be parsed or verified.
var ErrNotice = errors.New("invalid notice")

// Notice is a signed message from a peer: its final revocation event or a
// compromise notification. The signature (by the sender's federation
// certificate key, the one its mTLS connection presents) covers every other
// field; the nonce and timestamp make replays detectable.
type Notice struct {
	Kind      string    `json:"kind"`
	PeerID    string    `json:"peer_id"` // the sender's id at the receiver
	Reason    string    `json:"reason"`
	Nonce     string    `json:"nonce"` // 32 lower-case hex characters
	Timestamp time.Time `json:"timestamp"`
	Signature string    `json:"signature"` // standard base64
}

const maxNoticeBytes = 16 << 10

// signedBytes is the canonical text a notice's signature covers.
func (n Notice) signedBytes() []byte {
	return []byte("fedgate-notice-v1\n" + n.Kind + "\n" + n.PeerID + "\n" + n.Nonce + "\n" +
		n.Timestamp.UTC().Format(time.RFC3339Nano) + "\n" + n.Reason)
}

// ParseNotice decodes and checks the shape of a notice from the wire
// (strict JSON, bounded); it does not verify the signature.
func ParseNotice(b []byte) (Notice, error) {
	if len(b) > maxNoticeBytes {
		return Notice{}, fmt.Errorf("%w: %d bytes, at most %d", ErrNotice, len(b), maxNoticeBytes)
	}
	var n Notice
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n); err != nil {
		return Notice{}, fmt.Errorf("%w: %v", ErrNotice, err)
	}
	if dec.More() {
		return Notice{}, fmt.Errorf("%w: trailing data", ErrNotice)
	}
	if err := n.Validate(); err != nil {
		return Notice{}, err
	}
	return n, nil
}

// Validate checks the shape of n.
func (n Notice) Validate() error {
	var errs []error
	if n.Kind != NoticeRevoked && n.Kind != NoticeCompromised {
		errs = append(errs, fmt.Errorf("kind %q is not %s or %s", n.Kind, NoticeRevoked, NoticeCompromised))
	}
	if err := federation.ParseID(n.PeerID); err != nil {
		errs = append(errs, fmt.Errorf("peer_id: %w", err))
	}
	if len(n.Reason) > 1024 || !utf8.ValidString(n.Reason) || strings.ContainsFunc(n.Reason, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs = append(errs, errors.New("reason: longer than 1024 bytes, not UTF-8 or with control characters"))
	}
	if len(n.Nonce) != 32 || !isLowerHex(n.Nonce) {
		errs = append(errs, errors.New("nonce: not 32 lower-case hex characters"))
	}
	if n.Timestamp.IsZero() {
		errs = append(errs, errors.New("timestamp: missing"))
	}
	if sig, err := base64.StdEncoding.Strict().DecodeString(n.Signature); err != nil || len(sig) == 0 || len(sig) > 1024 {
		errs = append(errs, errors.New("signature: not base64 of 1..1024 bytes"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrNotice, err)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// SignNotice fills nonce and timestamp (when empty) and signs n with key.
func SignNotice(n Notice, key crypto.Signer, now time.Time) (Notice, error) {
	if n.Nonce == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return Notice{}, err
		}
		n.Nonce = hex.EncodeToString(b)
	}
	if n.Timestamp.IsZero() {
		n.Timestamp = now.UTC()
	}
	msg := n.signedBytes()
	var sig []byte
	var err error
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		sig, err = key.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		h := sha256.Sum256(msg)
		sig, err = key.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		return Notice{}, fmt.Errorf("sign notice: %w", err)
	}
	n.Signature = base64.StdEncoding.EncodeToString(sig)
	return n, nil
}

// VerifyNotice checks n's signature against cert's public key.
func VerifyNotice(n Notice, cert *x509.Certificate) error {
	sig, err := base64.StdEncoding.Strict().DecodeString(n.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature: %v", ErrNotice, err)
	}
	var algo x509.SignatureAlgorithm
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	case ed25519.PublicKey:
		algo = x509.PureEd25519
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrNotice, cert.PublicKey)
	}
	if err := cert.CheckSignature(algo, n.signedBytes(), sig); err != nil {
		return fmt.Errorf("%w: bad signature: %v", ErrNotice, err)
	}
	return nil
}

// signedNotice builds and signs a notice of kind to peer p with our
// federation certificate key for p.
func (lc *lifecycle) signedNotice(p federation.Peer, kind, reason string) (Notice, error) {
	id, err := assignedID(p)
	if err != nil {
		return Notice{}, err
	}
	c, err := lc.a.fed.ClientCertificate(p.ID)
	if err != nil {
		return Notice{}, err
	}
	key, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return Notice{}, fmt.Errorf("federation key for %s cannot sign", p.ID)
	}
	return SignNotice(Notice{Kind: kind, PeerID: id, Reason: reason}, key, lc.now())
}

// deliver tries f up to NoticeAttempts times (each bounded by
// NoticeTimeout) and returns the last error.
func (lc *lifecycle) deliver(ctx context.Context, f func(context.Context) error) error {
	var err error
	for i := 0; i < lc.cfg.NoticeAttempts; i++ {
		actx, cancel := context.WithTimeout(ctx, lc.cfg.NoticeTimeout)
		err = f(actx)
		cancel()
		var pr *peerRefusal
		if err == nil || (errors.As(err, &pr) && pr.Status < 500 && pr.Status != http.StatusTooManyRequests) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(200*(i+1)) * time.Millisecond):
		}
	}
	return err
}

func (lc *lifecycle) sendNotice(ctx context.Context, p federation.Peer, kind, reason string) error {
	n, err := lc.signedNotice(p, kind, reason)
	if err != nil {
		return err
	}
	return lc.deliver(ctx, func(c context.Context) error {
		return lc.postPeer(c, p, pathNotice, n, nil, lc.cfg.NoticeTimeout)
	})
}

// nonceKey is where a seen notice nonce is kept (replicated: any node of
// the site refuses a replay).
func nonceKey(peerID, nonce string) string { return "lifecycle/nonce/" + peerID + "/" + nonce }

// handleNotice is the control listener's notice endpoint.
func (lc *lifecycle) handleNotice(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := lc.callerIdentity(r)
	rec := inboundRecord(r, actionNotice, id.PeerID)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, err.Error())
		return
	}
	if !lc.hbLimits.allow("notice/" + id.PeerID) {
		lc.refuse(w, r, rec, http.StatusTooManyRequests, "rate_limited", "too many notices")
		return
	}
	var raw json.RawMessage
	if err := readJSON(r, &raw); err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "notice_invalid", err.Error())
		return
	}
	n, err := ParseNotice(raw)
	if err != nil {
		lc.refuse(w, r, rec, http.StatusBadRequest, "notice_invalid", err.Error())
		return
	}
	rec.Metadata["kind"], rec.Metadata["nonce"] = n.Kind, n.Nonce
	rec.Reason = n.Reason
	if n.PeerID != id.PeerID {
		rec.Metadata["claimed_peer_id"] = n.PeerID
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerIDMismatch, "notice peer_id is not the certificate's")
		return
	}
	if err := VerifyNotice(n, r.TLS.PeerCertificates[0]); err != nil {
		lc.refuse(w, r, rec, http.StatusUnauthorized, "bad_signature", err.Error())
		return
	}
	if skew := lc.now().Sub(n.Timestamp); skew > lc.cfg.NoticeMaxSkew || -skew > lc.cfg.NoticeMaxSkew {
		lc.refuse(w, r, rec, http.StatusBadRequest, "notice_stale", fmt.Sprintf("timestamp %s is %s from our clock", n.Timestamp, skew))
		return
	}
	key := nonceKey(id.PeerID, n.Nonce)
	if _, seen := lc.state().KVGet(key); seen {
		rec.Decision, rec.Status, rec.Reason = audit.DecisionDeny, http.StatusOK, "replayed notice ignored"
		lc.auditRec(ctx, rec)
		writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
		return
	}
	if _, err := lc.a.apply(ctx, raftstore.CmdKVPut, raftstore.KVPutPayload{Key: key, Value: []byte(n.Timestamp.Format(time.RFC3339Nano))}); err != nil {
		lc.refuse(w, r, rec, http.StatusServiceUnavailable, "notice_not_recorded", err.Error())
		return
	}
	p, ok := lc.state().Peer(id.PeerID)
	if !ok {
		lc.refuse(w, r, rec, http.StatusForbidden, federation.ReasonPeerNotReachable, "unknown peer")
		return
	}
	switch n.Kind {
	case NoticeRevoked:
		rec.Metadata["final_notification"] = "event"
		lc.events.post(federation.EventPlatformPeerRevoked, federation.SeverityHigh, p.ID, map[string]any{"reason": n.Reason, "direction": "received"})
		lc.revokedByPeer(ctx, w, r, rec, p, n.Reason)
	case NoticeCompromised:
		lc.compromisedPeer(ctx, w, r, rec, p, n)
	}
}

// revokedByPeerPrefix starts the revocation reason of a peer that revoked
// us (so the watcher does not notify it back).
const revokedByPeerPrefix = "revoked by peer: "

// revokedByPeer marks p revoked on our side after its final notification.
func (lc *lifecycle) revokedByPeer(ctx context.Context, w http.ResponseWriter, r *http.Request, rec audit.Record, p federation.Peer, reason string) {
	status := "applied"
	if p.Status == federation.StatusRevoked {
		status = "already_revoked"
	} else {
		lc.mu.Lock()
		lc.revokeLocked[p.ID] = true
		lc.mu.Unlock()
		if _, err := lc.a.apply(ctx, raftstore.CmdPeerRevoke, raftstore.PeerRevokePayload{ID: p.ID, Reason: truncateStr(revokedByPeerPrefix+reason, 1000)}); err != nil && !isAlreadyIn(err) {
			lc.refuse(w, r, rec, http.StatusServiceUnavailable, "revocation_not_recorded", err.Error())
			return
		}
		lc.revokeOurCert(ctx, p.ID, "peer revoked us")
	}
	rec.Decision, rec.Status = audit.DecisionAllow, http.StatusOK
	rec.Metadata["to"] = string(federation.StatusRevoked)
	rec.Metadata["result"] = status
	lc.auditRec(ctx, rec)
	writeJSON(w, http.StatusOK, map[string]string{"status": status})
}

// compromisedPeer suspends p, pending operator review (commitment 9).
func (lc *lifecycle) compromisedPeer(ctx context.Context, w http.ResponseWriter, r *http.Request, rec audit.Record, p federation.Peer, n Notice) {
	result := "suspended"
	switch {
	case p.Status == federation.StatusSuspended || p.Status == federation.StatusRevoked:
		result = "already_" + string(p.Status)
	case federation.CanTransition(p.Status, federation.StatusSuspended) != nil:
		result = "not_suspendable_from_" + string(p.Status)
	default:
		np := p.Clone()
		if np.Metadata == nil {
			np.Metadata = map[string]string{}
		}
		np.Metadata[metaCompromiseNotice] = truncateStr(n.Timestamp.Format(time.RFC3339)+" "+n.Reason, 1000)
		if _, err := lc.a.apply(ctx, raftstore.CmdPeerUpdate, np); err != nil {
			lc.log.Warn("compromise notice not recorded on the peer", LogKeyPeer, p.ID, LogKeyErr, err)
		}
		if _, err := lc.a.apply(ctx, raftstore.CmdPeerTransition, raftstore.PeerTransitionPayload{ID: p.ID, To: federation.StatusSuspended,
			Reason: truncateStr("compromise notice, pending operator review: "+n.Reason, 1000)}); err != nil {
			lc.refuse(w, r, rec, http.StatusServiceUnavailable, "suspension_not_recorded", err.Error())
			return
		}
	}
	lc.events.post("federation.peer.compromise_notice", federation.SeverityCritical, p.ID, map[string]any{"reason": n.Reason, "result": result})
	rec.Decision, rec.Status = audit.DecisionAllow, http.StatusOK
	rec.Metadata["result"] = result
	lc.auditRec(ctx, rec)
	writeJSON(w, http.StatusOK, map[string]string{"status": result})
}

// revokeOurCert revokes (site-wide) our federation certificate for peer id.
func (lc *lifecycle) revokeOurCert(ctx context.Context, id, reason string) string {
	if lc.a.fed == nil {
		return ""
	}
	fc, ok := lc.a.fed.get(id)
	if !ok {
		return ""
	}
	c := fc.Certificate()
	if c == nil || c.Leaf == nil {
		return ""
	}
	serial := c.Leaf.SerialNumber.Text(16)
	if _, err := lc.a.apply(ctx, raftstore.CmdCertRevoke, raftstore.CertRevokePayload{SerialHex: serial, Reason: reason}); err != nil && !isAlreadyIn(err) {
		lc.log.Warn("federation certificate not revoked", LogKeyPeer, id, LogKeyErr, err)
		return ""
	}
	return serial
}

// revokeResult is what a revocation with notice reports.
type revokeResult struct {
	Peer              federation.Peer `json:"peer"`
	NoticeDelivered   bool            `json:"notice_delivered"`
	NoticeError       string          `json:"notice_error,omitempty"`
	RevokedCertSerial string          `json:"revoked_cert_serial,omitempty"`
}

// revoke carries out commitment 4 and 11 for peer id: final notification
// (platform.peer.revoked notice and a revoked heartbeat, each retried and
// bounded), then the replicated revoke (grants and WireGuard peers
// cascade), then our federation certificate for the peer is revoked. A
// notification failure is recorded on the peer and in audit; the teardown
// proceeds.
func (lc *lifecycle) revoke(ctx context.Context, id, reason string) (revokeResult, error) {
	p, ok := lc.state().Peer(id)
	if !ok {
		return revokeResult{}, errStatus(http.StatusNotFound, "not_found", "peer %s does not exist", id)
	}
	if p.Status == federation.StatusRevoked {
		return revokeResult{}, errStatus(http.StatusConflict, "already_revoked", "peer %s is already revoked", id)
	}
	lc.mu.Lock()
	lc.revokeLocked[id] = true
	lc.mu.Unlock()
	var nerr error
	if p.Status == federation.StatusProposed || p.Metadata[metaControlURL] == "" {
		nerr = errors.New("peer has no control endpoint (never accepted): nothing to notify")
	} else {
		// The whole notification is bounded so the operator's call returns
		// (the CLI waits 30 s); teardown proceeds after it.
		nctx, cancel := context.WithTimeout(ctx, min(20*time.Second, time.Duration(lc.cfg.NoticeAttempts)*lc.cfg.NoticeTimeout))
		e1 := lc.sendNotice(nctx, p, NoticeRevoked, reason)
		e2 := lc.deliver(nctx, func(c context.Context) error { return lc.sendHeartbeat(c, p, federation.StatusRevoked) })
		cancel()
		nerr = errors.Join(e1, e2)
	}
	res := revokeResult{NoticeDelivered: nerr == nil}
	mark := "delivered " + lc.now().Format(time.RFC3339)
	if nerr != nil {
		res.NoticeError = truncateStr(nerr.Error(), 900)
		mark = "failed " + lc.now().Format(time.RFC3339) + ": " + res.NoticeError
	}
	np := p.Clone()
	if np.Metadata == nil {
		np.Metadata = map[string]string{}
	}
	np.Metadata[metaRevocationNotice] = mark
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerUpdate, np); err != nil {
		lc.log.Warn("revocation notice outcome not recorded on the peer", LogKeyPeer, id, LogKeyErr, err)
	}
	lc.events.post(federation.EventPlatformPeerRevoked, federation.SeverityHigh, id, map[string]any{"reason": reason,
		"direction": "sent", "notice_delivered": res.NoticeDelivered, "notice_error": res.NoticeError})
	if _, err := lc.a.apply(ctx, raftstore.CmdPeerRevoke, raftstore.PeerRevokePayload{ID: id, Reason: reason}); err != nil {
		return res, err
	}
	res.RevokedCertSerial = lc.revokeOurCert(ctx, id, "peer revoked: "+reason)
	res.Peer, _ = lc.state().Peer(id)
	return res, nil
}

// handleRevokeNotify is POST /v1/peers/{id}/revoke-notify (local API).
func (a *Agent) handleRevokeNotify(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	return a.revokeWithNotice(w, r, r.PathValue("id"), body.Reason)
}

// revokeWithNotice is the revocation the local API should run for `fedgate
// peers revoke`: with the lifecycle on, notify first; without it, the plain
// replicated revoke. It answers like revokePeer plus the notice outcome.
func (a *Agent) revokeWithNotice(w http.ResponseWriter, r *http.Request, id, reason string) error {
	if reason == "" {
		return errStatus(http.StatusBadRequest, "reason_required", "a revocation needs a reason")
	}
	lc, err := a.lifecycle()
	if err != nil {
		return a.revokePlain(w, r, id, reason)
	}
	res, err := lc.revoke(r.Context(), id, reason)
	if err != nil {
		return err
	}
	meta := map[string]string{"to": string(federation.StatusRevoked), "notice_delivered": fmt.Sprint(res.NoticeDelivered),
		"revoked_cert_serial": res.RevokedCertSerial}
	if res.NoticeError != "" {
		meta["notice_error"] = res.NoticeError
	}
	if err := a.auditLocal(r, audit.ActionPeerTransition, id, reason, meta); err != nil {
		return err
	}
	// The peer record, as revokePeer answers, plus the notice outcome.
	b, _ := json.Marshal(res.Peer)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	out["notice_delivered"] = res.NoticeDelivered
	out["notice_error"] = res.NoticeError
	out["revoked_cert_serial"] = res.RevokedCertSerial
	writeJSON(w, http.StatusOK, out)
	return nil
}

// compromiseResult is one partner's outcome of a compromise notification.
type compromiseResult struct {
	PeerID    string `json:"federation_peer_id"`
	Delivered bool   `json:"delivered"`
	Answer    string `json:"answer,omitempty"`
	Error     string `json:"error,omitempty"`
}

// handleCompromise is POST /v1/compromise (local API): notify every
// partner that we are compromised (commitment 9).
func (a *Agent) handleCompromise(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if strings.TrimSpace(body.Reason) == "" {
		return errStatus(http.StatusBadRequest, "reason_required", "a compromise notice needs a reason")
	}
	lc, err := a.lifecycle()
	if err != nil {
		return err
	}
	out := []compromiseResult{}
	for _, p := range lc.state().Peers() {
		if p.Status == federation.StatusProposed || p.Status == federation.StatusRevoked || p.Metadata[metaControlURL] == "" {
			continue
		}
		cr := compromiseResult{PeerID: p.ID}
		err := lc.sendNotice(r.Context(), p, NoticeCompromised, body.Reason)
		if err != nil {
			cr.Error = err.Error()
		} else {
			cr.Delivered = true
		}
		meta := map[string]string{"kind": NoticeCompromised, "delivered": fmt.Sprint(cr.Delivered)}
		if cr.Error != "" {
			meta["error"] = truncateStr(cr.Error, 900)
		}
		if err := a.auditLocal(r, actionNotice, p.ID, body.Reason, meta); err != nil {
			return err
		}
		out = append(out, cr)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
