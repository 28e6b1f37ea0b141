// Package pki is the site's certificate authority and the node's certificate
// handling: an embedded smallstep authority (the site root and intermediate,
// created on first start), node identities (a private key generated on the
// node, a certificate obtained by CSR through an Issuer, renewed in the
// background and served from an atomic pointer), mutual-TLS configurations
// for node-to-node traffic, and the per-peer verifier for federation traffic.
//
// Identity forms:
//
//   - a node of this site: CN = node instance UUID, URI SAN
//     powernode://instance/<uuid>;
//   - a federation peer: CN = fed:<peer-id> and/or URI SAN
//     powernode://peer/<peer-id> (both must agree when both are present).
//
// Private keys never leave the directory of the node that generated them and
// are written and read only with mode 0600.
package pki
