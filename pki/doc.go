// Package pki is the site's certificate authority and the node's certificate
// handling: an embedded smallstep authority (the site root and intermediate,
// created on first start), node identities (a private key generated on the
// node, a certificate obtained by CSR through an Issuer, renewed in the
// background and served from an atomic pointer), mutual-TLS configurations
// for node-to-node traffic, the per-peer verifier for federation traffic,
// revocation, a CRL and trust-bundle handler, an external step-ca issuer,
// and certmagic storage on the replicated key/value store.
//
// Identity forms:
//
//   - a node of this site: CN = node instance UUID, URI SAN
//     powernode://instance/<uuid>, nothing else;
//   - a federation peer: CN = fed:<peer-id> and/or URI SAN
//     powernode://peer/<peer-id> (both must agree when both are present).
//
// The CA sets names itself: a CSR asking for anything else is refused
// (ErrCSRExtraSANs, ErrCSRSubject). Private keys never leave the directory of
// the node that generated them and are written and read only with mode 0600
// (ReadSecretFile refuses looser modes, naming path and mode).
//
// Wiring in the agent:
//
//	first node:   ca := OpenCA(Config{Dir, SiteName, ...})
//	              id := OpenNodeIdentity(ctx, IdentityConfig{Dir, NodeID, Issuer: ca})
//	joining node: roots := PinnedRoots(bundleFromJoin, fingerprintFromToken)
//	              id := OpenNodeIdentity(ctx, IdentityConfig{Dir, NodeID, Issuer: joinAPIIssuer, Roots: roots})
//	external CA:  iss := NewExternalIssuer(ExternalConfig{URL, RootFingerprint, Provisioner, PasswordFile})
//	then:         go id.Run(ctx)  // renewal
//	              raft/forwarding: id.ServerTLSConfig(), id.ClientTLSConfigFor(nodeID); NodeIDFromConn
//	federation:   pv := NewPeerVerifier(PeerVerifierConfig{Peers: fsmView})
//	              inbound pv.ServerTLSConfig(cert.Get); outbound pv.ClientTLSConfig(peerID, fc.Get)
//	              fc := OpenFederationCert(ctx, FederationCertConfig{..., AssignedID, Issuer, Roots}); go fc.Run(ctx)
//	revocation:   revs := &Revocations{}; revs.OnRevoke(proxyCloser); watcher calls revs.Update(list)
//	certmagic:    NewStorage(StorageConfig{KV: raftKV, Secret: LoadSiteSecret(path), Owner: nodeID})
package pki
