package proxy

// StateChanged re-evaluates live connections against the current state.
// The agent calls it from its raftstore watch after any change to peers or
// revocations. Inbound connections of a peer that is gone or no longer
// reachable, or whose client certificate is revoked, are torn down
// (Powernode-Migration-Id requests keep running for MigrationGrace);
// outbound calls and L4 streams to such peers are cut the same way, and idle
// pooled connections to them are dropped. Trust and certificate changes
// otherwise affect only new handshakes.
func (p *Proxy) StateChanged() {
	verdict := map[string]string{} // peer → reason ("" = fine)
	check := func(id string) string {
		if r, ok := verdict[id]; ok {
			return r
		}
		peer, ok := p.cfg.State.Peer(id)
		r := ""
		switch {
		case !ok:
			r = "peer_unknown"
		case !peer.Reachable():
			r = "peer_" + string(peer.Status)
		}
		verdict[id] = r
		return r
	}
	for _, ic := range p.conns.snapshot() {
		reason := check(ic.peerID)
		if reason == "" && len(ic.chain) > 0 && p.cfg.Verifier.Revoked(ic.chain[0]) {
			reason = "cert_revoked"
		}
		if reason != "" {
			ic.terminate(reason, p.cfg.MigrationGrace, p.log)
		}
	}
	cut := false
	for _, id := range p.outReqs.peers() {
		if check(id) != "" {
			p.outReqs.cut(id, p.cfg.MigrationGrace)
			cut = true
		}
	}
	p.outL4.mu.Lock()
	var l4peers []string
	for id := range p.outL4.conns {
		l4peers = append(l4peers, id)
	}
	p.outL4.mu.Unlock()
	for _, id := range l4peers {
		if check(id) != "" {
			p.outL4.closePeer(id)
		}
	}
	for id, r := range verdict {
		if r != "" {
			cut = true
			if u, ok := p.peerUps.Load(id); ok {
				u.(*upstream).closeIdle()
			}
		}
	}
	p.peerUps.Range(func(k, v any) bool {
		if check(k.(string)) != "" {
			v.(*upstream).closeIdle()
		}
		return true
	})
	if cut {
		// Pooled idle connections carry no request; dropping them all is
		// cheap and guarantees none to a revoked peer is reused.
		p.peerTransport.CloseIdleConnections()
	}
}
