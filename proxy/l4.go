package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
)

// PROXY protocol v2 TLV types carrying the verified identity on L4 routes
// (the application-specific range 0xE0–0xEF), beside the standard
// PP2_TYPE_SSL TLV with the client certificate's CN.
const (
	TLVPeerID        proxyproto.PP2Type = 0xE0 // federation_peer_id
	TLVRemoteSubject proxyproto.PP2Type = 0xE1 // remote_subject
	TLVCertSPKI      proxyproto.PP2Type = 0xE2 // hex SHA-256 of the client SPKI
)

// PP2 SSL sub-TLVs and client flags (PROXY protocol spec 2.2.5).
const (
	pp2ClientSSL      = 0x01
	pp2ClientCertConn = 0x02
	pp2ClientCertSess = 0x04
	pp2SubtypeVersion = 0x21
	pp2SubtypeCN      = 0x22
)

// Identity is what a PROXY v2 header from fedgate says about the caller.
type Identity struct {
	PeerID        string
	RemoteSubject string
	CertSPKI      string
	CommonName    string
	TLSVersion    string
}

// ParseIdentity extracts the identity TLVs of a PROXY v2 header. Backends of
// L4 routes (and tests) use it.
func ParseIdentity(h *proxyproto.Header) (Identity, error) {
	tlvs, err := h.TLVs()
	if err != nil {
		return Identity{}, fmt.Errorf("proxy header tlvs: %w", err)
	}
	var id Identity
	for _, t := range tlvs {
		switch t.Type {
		case TLVPeerID:
			id.PeerID = string(t.Value)
		case TLVRemoteSubject:
			id.RemoteSubject = string(t.Value)
		case TLVCertSPKI:
			id.CertSPKI = string(t.Value)
		case proxyproto.PP2_TYPE_SSL:
			if len(t.Value) < 5 {
				return Identity{}, errors.New("proxy header: short SSL TLV")
			}
			sub := t.Value[5:]
			for len(sub) >= 3 {
				typ, n := sub[0], int(binary.BigEndian.Uint16(sub[1:3]))
				if len(sub) < 3+n {
					return Identity{}, errors.New("proxy header: truncated SSL sub-TLV")
				}
				switch typ {
				case pp2SubtypeCN:
					id.CommonName = string(sub[3 : 3+n])
				case pp2SubtypeVersion:
					id.TLSVersion = string(sub[3 : 3+n])
				}
				sub = sub[3+n:]
			}
			if len(sub) != 0 {
				return Identity{}, errors.New("proxy header: trailing bytes in SSL TLV")
			}
		}
	}
	if id.PeerID == "" {
		return Identity{}, errors.New("proxy header: no peer id TLV")
	}
	return id, nil
}

func sslTLV(version, cn string, resumed bool) []byte {
	b := make([]byte, 5, 5+3+len(version)+3+len(cn))
	b[0] = pp2ClientSSL | pp2ClientCertConn
	if resumed {
		b[0] |= pp2ClientCertSess
	}
	// verify = 0: the certificate was verified.
	sub := func(t byte, v string) {
		b = append(b, t, byte(len(v)>>8), byte(len(v)))
		b = append(b, v...)
	}
	sub(pp2SubtypeVersion, version)
	sub(pp2SubtypeCN, cn)
	return b
}

// serveInboundL4 authorizes, audits and splices one L4 stream to its
// backend behind a PROXY v2 header.
func (p *Proxy) serveInboundL4(ic *inConn, tc *tls.Conn, rt *route) {
	defer p.conns.remove(tc)
	defer tc.Close()
	ctx := context.Background()
	rec := audit.Record{
		Action:           audit.ActionProxyConnection,
		FederationPeerID: ic.peerID,
		RemoteSubject:    ic.certSubject,
		TLSVersion:       ic.tlsVersion,
		Resumed:          ic.resumed,
		CertSerial:       ic.serial,
		CertSPKISHA256:   ic.spki,
		Metadata:         map[string]string{"direction": dirInbound, "route": rt.Name, "remote_addr": ic.remoteStr},
	}
	denyL4 := func(d *denial) {
		rec.Decision, rec.Status, rec.Reason = audit.DecisionDeny, d.status, d.reason
		p.m.deny(dirInbound, ic.peerID, d.reason)
		if _, err := p.cfg.Auditor.Append(ctx, rec); err != nil {
			p.m.auditErrors.Inc()
		}
	}
	peer, ok := p.cfg.State.Peer(ic.peerID)
	if !ok {
		denyL4(&denial{status: 403, reason: federation.ReasonPeerNotReachable})
		return
	}
	dec, err := federation.Authorize(peer, federation.CallRequest{
		ResourceKind: rt.ResourceKind,
		SourceIP:     ic.remote,
		CertSubject:  ic.certSubject,
	}, federation.AuthState{Contracts: p.cfg.State.Contracts()}, p.cfg.Now())
	if err != nil {
		d := authDenial(err)
		if d.reason == federation.ReasonCapabilityNotDeclared {
			p.reportDrift(ctx, ic.peerID, rt.ResourceKind)
		}
		denyL4(d)
		return
	}
	rec.RemoteSubject = dec.RemoteSubject
	rec.Decision = audit.DecisionAllow
	seq, err := p.cfg.Auditor.Append(ctx, rec)
	if err != nil {
		p.m.auditErrors.Inc()
		p.m.deny(dirInbound, ic.peerID, ReasonAuditUnavailable)
		return
	}
	var nd net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	be, err := nd.DialContext(dctx, "tcp", rt.Backend)
	cancel()
	if err != nil {
		r2 := rec
		r2.Status, r2.Reason = 502, ReasonBackendError+": "+err.Error()
		r2.Metadata = map[string]string{"direction": dirInbound, "request_seq": fmt.Sprint(seq)}
		p.cfg.Auditor.Append(ctx, r2)
		p.m.deny(dirInbound, ic.peerID, ReasonBackendError)
		return
	}
	defer be.Close()
	hdr := proxyproto.HeaderProxyFromAddrs(2, tc.RemoteAddr(), tc.LocalAddr())
	if err := hdr.SetTLVs([]proxyproto.TLV{
		{Type: proxyproto.PP2_TYPE_SSL, Value: sslTLV(ic.tlsVersion, ic.certSubject, ic.resumed)},
		{Type: TLVPeerID, Value: []byte(ic.peerID)},
		{Type: TLVRemoteSubject, Value: []byte(dec.RemoteSubject)},
		{Type: TLVCertSPKI, Value: []byte(ic.spki)},
	}); err != nil {
		p.log.Error("proxy header", "err", err)
		return
	}
	if _, err := hdr.WriteTo(be); err != nil {
		return
	}
	ic.pm.requests.Inc()
	splice(tc, be)
}

// splice copies both ways until both directions end; a half-close on one
// side is passed on to the other.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		bp := bufPool.Get().(*[]byte)
		io.CopyBuffer(dst, src, *bp)
		bufPool.Put(bp)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// l4Tracker tracks outbound L4 connections per peer for revocation.
type l4Tracker struct {
	mu    sync.Mutex
	conns map[string]map[net.Conn]struct{}
}

func newL4Tracker() *l4Tracker { return &l4Tracker{conns: map[string]map[net.Conn]struct{}{}} }

func (t *l4Tracker) add(peer string, c net.Conn) {
	t.mu.Lock()
	if t.conns[peer] == nil {
		t.conns[peer] = map[net.Conn]struct{}{}
	}
	t.conns[peer][c] = struct{}{}
	t.mu.Unlock()
}

func (t *l4Tracker) remove(peer string, c net.Conn) {
	t.mu.Lock()
	delete(t.conns[peer], c)
	t.mu.Unlock()
}

func (t *l4Tracker) closePeer(peer string) {
	t.mu.Lock()
	cs := t.conns[peer]
	delete(t.conns, peer)
	t.mu.Unlock()
	for c := range cs {
		c.Close()
	}
}

func (p *Proxy) startOutboundL4(ln net.Listener, o OutboundL4) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if p.closed.Load() || errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			p.l4wg.Add(1)
			go func() {
				defer p.l4wg.Done()
				p.serveOutboundL4(c, o)
			}()
		}
	}()
}

func (p *Proxy) serveOutboundL4(c net.Conn, o OutboundL4) {
	defer c.Close()
	ctx := context.Background()
	rec := audit.Record{
		Action:           audit.ActionProxyConnection,
		FederationPeerID: o.PeerID,
		Metadata:         map[string]string{"direction": dirOutbound, "route": o.Route, "local_addr": c.RemoteAddr().String()},
	}
	peer, ok := p.cfg.State.Peer(o.PeerID)
	rec.RemoteSubject = peer.OutboundSubject // this site acts, as the peer records it
	var d *denial
	switch {
	case !ok:
		d = &denial{status: 404, reason: ReasonPeerUnknown}
	case !peer.Reachable():
		d = &denial{status: 403, reason: federation.ReasonPeerNotReachable}
	case !p.cfg.State.Contracts().Known(peer.ContractVersionAgreed):
		d = &denial{status: 403, reason: federation.ReasonContractMismatch}
	}
	if d != nil {
		rec.Decision, rec.Status, rec.Reason = audit.DecisionDeny, d.status, d.reason
		p.m.deny(dirOutbound, o.PeerID, d.reason)
		if _, err := p.cfg.Auditor.Append(ctx, rec); err != nil {
			p.m.auditErrors.Inc()
		}
		return
	}
	rec.Decision = audit.DecisionAllow
	if _, err := p.cfg.Auditor.Append(ctx, rec); err != nil {
		p.m.auditErrors.Inc()
		return
	}
	alpn := ALPNPrefix + o.Route
	tc, err := p.dialer.dial(ctx, o.PeerID, alpn)
	if err != nil {
		p.log.Info("outbound l4 dial failed", "peer", o.PeerID, "route", o.Route, "err", err)
		return
	}
	defer tc.Close()
	if tc.ConnectionState().NegotiatedProtocol != alpn {
		p.log.Info("peer does not serve l4 route", "peer", o.PeerID, "route", o.Route)
		return
	}
	p.outL4.add(o.PeerID, tc)
	defer p.outL4.remove(o.PeerID, tc)
	p.m.peer(dirOutbound, o.PeerID).requests.Inc()
	splice(c, tc)
}
