package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
)

// maxHandshakeBytes bounds a handshake message.
const maxHandshakeBytes = 256 << 10

// HandshakeReply is the inbound handshake endpoint's answer to an accepted
// handshake: this site's side of the exchange.
type HandshakeReply struct {
	ContractVersion int                     `json:"contract_version"`
	ContractDigest  string                  `json:"contract_digest"`
	PlatformVersion string                  `json:"platform_version"`
	Capabilities    federation.Capabilities `json:"capabilities"`
}

// serveHandshake is the peer handshake endpoint (POST, JSON
// federation.Handshake). Order: rate limit per peer (429 + Retry-After,
// commitment 7), peer known and not suspended/revoked, well-formed, peer_id
// is the certificate's, contract version and digest (commitment 12),
// platform versions N-1 (commitment 10). Every outcome is audited.
func (p *Proxy) serveHandshake(w http.ResponseWriter, r *http.Request, ic *inConn) {
	ctx := r.Context()
	rec := p.inboundRecord(ic, r, nil)
	rec.Action = audit.ActionHandshake
	deny := func(d *denial) { p.deny(ctx, w, dirInbound, ic.peerID, d, &rec) }
	if wait, ok := p.limiters.allow(kindHandshake, ic.peerID, p.cfg.HandshakeRate, p.cfg.HandshakeBurst); !ok {
		deny(&denial{status: http.StatusTooManyRequests, reason: ReasonRateLimited, retryAfter: wait})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		deny(&denial{status: http.StatusMethodNotAllowed, reason: "method_not_allowed"})
		return
	}
	peer, ok := p.cfg.State.Peer(ic.peerID)
	if !ok || peer.Status == federation.StatusSuspended || peer.Status == federation.StatusRevoked || peer.Status == federation.StatusProposed {
		deny(&denial{status: http.StatusForbidden, reason: federation.ReasonPeerNotReachable})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHandshakeBytes+1))
	if err != nil || len(body) > maxHandshakeBytes {
		deny(&denial{status: http.StatusRequestEntityTooLarge, reason: ReasonBodyTooLarge})
		return
	}
	var hs federation.Handshake
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hs); err != nil {
		deny(&denial{status: http.StatusBadRequest, reason: federation.ReasonHandshakeInvalid, detail: err.Error()})
		return
	}
	if hs.PeerID != ic.peerID {
		deny(&denial{status: http.StatusForbidden, reason: federation.ReasonPeerIDMismatch})
		return
	}
	reg := p.cfg.State.Contracts()
	if err := federation.CheckHandshake(federation.Local{
		PlatformVersion: p.cfg.PlatformVersion,
		AgreedVersion:   peer.ContractVersionAgreed,
	}, hs, reg); err != nil {
		var he *federation.HandshakeError
		if errors.As(err, &he) && (he.Reason == federation.ReasonContractDigestMismatch || he.Reason == federation.ReasonContractVersionMismatch) {
			if p.cfg.Findings != nil {
				p.cfg.Findings.Report(ctx, ic.peerID, federation.FindingContractMismatch, he.Err.Error())
			}
		}
		deny(authDenial(err))
		return
	}
	if p.cfg.Handshakes != nil {
		if err := p.cfg.Handshakes.PeerHandshake(ctx, ic.peerID, hs); err != nil {
			p.log.Error("record handshake", "peer", ic.peerID, "err", err)
			deny(&denial{status: http.StatusServiceUnavailable, reason: "handshake_not_recorded"})
			return
		}
	}
	cv, _ := reg.Lookup(hs.ContractVersion)
	rec.Decision = audit.DecisionAllow
	rec.Status = http.StatusOK
	rec.Metadata["contract_version"] = itoa(hs.ContractVersion)
	rec.Metadata["platform_version"] = hs.PlatformVersion
	if _, err := p.cfg.Auditor.Append(ctx, rec); err != nil {
		p.m.auditErrors.Inc()
		writeDenial(w, &denial{status: http.StatusServiceUnavailable, reason: ReasonAuditUnavailable})
		return
	}
	reply, _ := json.Marshal(HandshakeReply{
		ContractVersion: cv.Version,
		ContractDigest:  cv.ContractDigest,
		PlatformVersion: p.cfg.PlatformVersion,
		Capabilities:    p.cfg.Capabilities,
	})
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(reply, '\n'))
}
