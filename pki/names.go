package pki

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/uuid"
)

// Identity name forms.
const (
	// NodeURIPrefix prefixes the URI SAN of a node certificate.
	NodeURIPrefix = "powernode://instance/"
	// PeerURIPrefix prefixes the URI SAN of a federation certificate.
	PeerURIPrefix = "powernode://peer/"
	// PeerCNPrefix prefixes the common name of a federation certificate.
	PeerCNPrefix = "fed:"
)

// CanonicalID checks that id is a UUID in canonical lowercase hyphenated
// form and returns it.
func CanonicalID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return "", fmt.Errorf("%w: %q is not a canonical uuid", ErrBadID, id)
	}
	return id, nil
}

// NodeURI returns the URI SAN of node id.
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: "powernode", Host: "instance", Path: "/" + id}
}

// PeerURI returns the URI SAN of federation peer id.
func PeerURI(id string) *url.URL { return &url.URL{Scheme: "powernode", Host: "peer", Path: "/" + id} }

// idFromURIs returns the ids of all URI SANs that start with prefix.
func idFromURIs(uris []*url.URL, prefix string) []string {
	var ids []string
	for _, u := range uris {
		if s := u.String(); strings.HasPrefix(s, prefix) {
			ids = append(ids, strings.TrimPrefix(s, prefix))
		}
	}
	return ids
}

// NodeIDFromCert returns the node instance id a node certificate names. The
// CN must be a canonical UUID, the certificate must carry exactly one URI SAN
// powernode://instance/<uuid> and no other SAN, and the two must agree. It
// checks names only: the chain must have been verified already.
func NodeIDFromCert(c *x509.Certificate) (string, error) {
	if c == nil {
		return "", ErrNoPeerCertificate
	}
	ids := idFromURIs(c.URIs, NodeURIPrefix)
	if len(ids) == 0 {
		return "", fmt.Errorf("%w: no %s URI SAN", ErrNoIdentity, NodeURIPrefix)
	}
	if len(ids) > 1 || len(c.URIs) != 1 || len(c.DNSNames) > 0 || len(c.IPAddresses) > 0 || len(c.EmailAddresses) > 0 {
		return "", fmt.Errorf("%w: node certificate must carry exactly one URI SAN", ErrIdentityMismatch)
	}
	id, err := CanonicalID(ids[0])
	if err != nil {
		return "", err
	}
	if c.Subject.CommonName != id {
		return "", fmt.Errorf("%w: CN %q, URI SAN %q", ErrIdentityMismatch, c.Subject.CommonName, id)
	}
	return id, nil
}

// PeerIDFromCert returns the federation peer id a certificate claims, from CN
// fed:<id> and/or URI SAN powernode://peer/<id>. When both are present they
// must agree; at least one must be present; at most one URI SAN of that form.
// It checks names only: it says whom the certificate claims to be, not
// whether the claim is true.
func PeerIDFromCert(c *x509.Certificate) (string, error) {
	if c == nil {
		return "", ErrNoPeerCertificate
	}
	var cnID string
	if cn := c.Subject.CommonName; strings.HasPrefix(cn, PeerCNPrefix) {
		cnID = strings.TrimPrefix(cn, PeerCNPrefix)
		if _, err := CanonicalID(cnID); err != nil {
			return "", fmt.Errorf("common name: %w", err)
		}
	}
	uriIDs := idFromURIs(c.URIs, PeerURIPrefix)
	if len(uriIDs) > 1 {
		return "", fmt.Errorf("%w: %d peer URI SANs", ErrIdentityMismatch, len(uriIDs))
	}
	var uriID string
	if len(uriIDs) == 1 {
		uriID = uriIDs[0]
		if _, err := CanonicalID(uriID); err != nil {
			return "", fmt.Errorf("uri san: %w", err)
		}
	}
	switch {
	case cnID == "" && uriID == "":
		return "", fmt.Errorf("%w: neither CN %s<id> nor URI SAN %s<id>", ErrNoIdentity, PeerCNPrefix, PeerURIPrefix)
	case cnID != "" && uriID != "" && cnID != uriID:
		return "", fmt.Errorf("%w: CN names %q, URI SAN names %q", ErrIdentityMismatch, cnID, uriID)
	case cnID != "":
		return cnID, nil
	default:
		return uriID, nil
	}
}
