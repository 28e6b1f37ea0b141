package agent

import (
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"net/http"
	"time"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/raftstore"
)

// certView is one certificate as `fedgate certs list` shows it.
type certView struct {
	pki.Status
	Kind     string  `json:"kind"` // node, federation, ca
	PeerID   string  `json:"federation_peer_id,omitempty"`
	DaysLeft float64 `json:"days_left"`
}

func viewOf(kind, peer string, s pki.Status) certView {
	return certView{Status: s, Kind: kind, PeerID: peer, DaysLeft: time.Until(s.NotAfter).Hours() / 24}
}

func caStatus(name string, c *x509.Certificate) pki.Status {
	return pki.Status{Name: name, Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16), Issuer: c.Issuer.String(),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, State: "ok"}
}

func (a *Agent) handleCerts(w http.ResponseWriter, r *http.Request) error {
	out := []certView{}
	if id := a.ident.Load(); id != nil {
		out = append(out, viewOf("node", "", id.Status()))
	}
	if fc := a.fed; fc != nil {
		fc.mu.Lock()
		for peer, c := range fc.certs {
			out = append(out, viewOf("federation", peer, c.Status()))
		}
		fc.mu.Unlock()
	}
	if a.ca != nil {
		out = append(out, viewOf("ca", "", caStatus("root", a.ca.Root())), viewOf("ca", "", caStatus("intermediate", a.ca.Intermediate())))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleCertRevoke revokes a certificate by serial or SPKI hash on every
// node of the site (replicated before it returns).
func (a *Agent) handleCertRevoke(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Target string `json:"target"`
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	rv, err := pki.ParseRevocationTarget(req.Target)
	if err != nil {
		return errStatus(http.StatusBadRequest, "bad_target", "%v", err)
	}
	p := raftstore.CertRevokePayload{Reason: req.Reason}
	if rv.Serial != nil {
		p.SerialHex = rv.Serial.Text(16)
	} else {
		p.SPKISHA256 = hex.EncodeToString(rv.SPKI[:])
	}
	if _, err := a.apply(r.Context(), raftstore.CmdCertRevoke, p); err != nil {
		return err
	}
	if err := a.auditLocal(r, audit.ActionCertRevoke, "", req.Reason, map[string]string{"serial": p.SerialHex, "spki_sha256": p.SPKISHA256}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// replicatedRevocations converts the state's revocations for the CRL.
func (a *Agent) replicatedRevocations() []pki.Revocation {
	s := a.store.Load()
	if s == nil {
		return nil
	}
	var out []pki.Revocation
	for _, r := range s.State().Revocations() {
		pr := pki.Revocation{RevokedAt: r.At, Reason: r.Reason}
		if r.SerialHex != "" {
			pr.Serial, _ = new(big.Int).SetString(r.SerialHex, 16)
		}
		if b, err := hex.DecodeString(r.SPKISHA256); err == nil && len(b) == 32 {
			copy(pr.SPKI[:], b)
		}
		out = append(out, pr)
	}
	return out
}

type trustView struct {
	PeerID          string       `json:"federation_peer_id"`
	Status          string       `json:"status"`
	InboundSubject  string       `json:"inbound_subject"`
	OutboundSubject string       `json:"outbound_subject"`
	Anchors         []anchorView `json:"anchors"`
	OurCertificate  *certView    `json:"our_certificate,omitempty"`
	TrustedCAPEM    string       `json:"trusted_ca_pem"`
}

type anchorView struct {
	Subject  string    `json:"subject"`
	SHA256   string    `json:"sha256"`
	NotAfter time.Time `json:"not_after"`
	IsCA     bool      `json:"is_ca"`
}

func (a *Agent) handleTrust(w http.ResponseWriter, r *http.Request) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	p, ok := st.Peer(r.PathValue("peer"))
	if !ok {
		return errStatus(http.StatusNotFound, "not_found", "peer %s does not exist", r.PathValue("peer"))
	}
	tv := trustView{PeerID: p.ID, Status: string(p.Status), InboundSubject: p.InboundSubject, OutboundSubject: p.OutboundSubject,
		TrustedCAPEM: p.TrustedCAPEM, Anchors: []anchorView{}}
	if p.TrustedCAPEM != "" {
		if _, certs, err := pki.PoolFromPEM([]byte(p.TrustedCAPEM)); err == nil {
			for _, c := range certs {
				tv.Anchors = append(tv.Anchors, anchorView{Subject: c.Subject.String(), SHA256: pki.Fingerprint(c), NotAfter: c.NotAfter, IsCA: c.IsCA})
			}
		}
	}
	if a.fed != nil {
		if c, ok := a.fed.get(p.ID); ok {
			v := viewOf("federation", p.ID, c.Status())
			tv.OurCertificate = &v
		}
	}
	writeJSON(w, http.StatusOK, tv)
	return nil
}
