package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/policy"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/jose"
)

// File names inside Config.Dir.
const (
	RootCertFile         = "root.crt"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.crt"
	IntermediateKeyFile  = "intermediate.key"
	ProvisionerKeyFile   = "provisioner.jwk"
)

// provisionerName is the name of the embedded authority's JWK provisioner.
const provisionerName = "fedgate-site"

// stepAudience is the audience smallstep accepts for in-process sign tokens.
const stepAudience = "step-certificate-authority"

// Config configures the embedded site CA.
type Config struct {
	// Dir holds the CA's certificates and keys. Created with mode 0700.
	Dir string
	// SiteName goes into the CA subjects ("<SiteName> Root CA").
	SiteName string
	// Logger receives CA events; defaults to a discarding logger.
	Logger *slog.Logger
	// NodeLifetime is the default lifetime of node certificates (24h).
	NodeLifetime time.Duration
	// FederationLifetime is the default lifetime of federation certificates (90 days).
	FederationLifetime time.Duration
	// MinLifetime and MaxLifetime bound any requested lifetime (1s, 90 days).
	MinLifetime, MaxLifetime time.Duration
	// Backdate is subtracted from NotBefore to absorb clock skew (1m).
	// A negative value means no backdate.
	Backdate time.Duration
	// RootLifetime and IntermediateLifetime apply when the CA is created (10y, 5y).
	RootLifetime, IntermediateLifetime time.Duration
	// ACMEDomains, when set, enables the authority's ACME provisioner
	// ("acme", http-01 and tls-alpn-01) for these DNS domains only
	// ("bootstrap.site.example", "*.site.example"). Its certificates can
	// carry no other name, so they can never pass as node or peer identities.
	ACMEDomains []string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NodeLifetime == 0 {
		c.NodeLifetime = 24 * time.Hour
	}
	if c.FederationLifetime == 0 {
		c.FederationLifetime = 90 * 24 * time.Hour
	}
	if c.MinLifetime == 0 {
		c.MinLifetime = time.Second
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = 90 * 24 * time.Hour
	}
	if c.Backdate == 0 {
		c.Backdate = time.Minute
	} else if c.Backdate < 0 {
		c.Backdate = 0
	}
	if c.RootLifetime == 0 {
		c.RootLifetime = 10 * 365 * 24 * time.Hour
	}
	if c.IntermediateLifetime == 0 {
		c.IntermediateLifetime = 5 * 365 * 24 * time.Hour
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty", ErrConfig)
	case c.SiteName == "":
		return fmt.Errorf("%w: SiteName is empty", ErrConfig)
	case c.MinLifetime < time.Second:
		return fmt.Errorf("%w: MinLifetime %v is below 1s", ErrConfig, c.MinLifetime)
	case c.MaxLifetime < c.MinLifetime:
		return fmt.Errorf("%w: MaxLifetime %v below MinLifetime %v", ErrConfig, c.MaxLifetime, c.MinLifetime)
	case c.NodeLifetime < c.MinLifetime || c.NodeLifetime > c.MaxLifetime:
		return fmt.Errorf("%w: NodeLifetime %v outside [%v, %v]", ErrConfig, c.NodeLifetime, c.MinLifetime, c.MaxLifetime)
	case c.FederationLifetime < c.MinLifetime || c.FederationLifetime > c.MaxLifetime:
		return fmt.Errorf("%w: FederationLifetime %v outside [%v, %v]", ErrConfig, c.FederationLifetime, c.MinLifetime, c.MaxLifetime)
	case slices.ContainsFunc(c.ACMEDomains, func(d string) bool { return d == "" || strings.ContainsAny(d, ":/ ") }):
		return fmt.Errorf("%w: ACMEDomains %q must be DNS names", ErrConfig, c.ACMEDomains)
	case c.IntermediateLifetime > c.RootLifetime:
		return fmt.Errorf("%w: IntermediateLifetime exceeds RootLifetime", ErrConfig)
	}
	return nil
}

// CA is the embedded site certificate authority: a smallstep
// authority.Authority running in-process with the site's intermediate as
// signer and one JWK provisioner whose key never leaves Dir. Every
// certificate goes through the authority's token authorization, templates and
// validators. CA implements Issuer.
type CA struct {
	cfg          Config
	log          *slog.Logger
	auth         *authority.Authority
	root         *x509.Certificate
	intermediate *x509.Certificate
	interKey     crypto.Signer
	provKey      *jose.JSONWebKey
	roots        *x509.CertPool
	bundlePEM    []byte

	mu        sync.Mutex // serializes CRL numbers
	crlNumber int64
}

// OpenCA opens the site CA in cfg.Dir, creating root, intermediate and
// provisioner key on first start. Key files must have mode 0600.
func OpenCA(cfg Config) (*CA, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("open ca: %w", err)
	}
	ca := &CA{cfg: cfg, log: cfg.Logger}
	created, err := ca.loadOrCreate()
	if err != nil {
		return nil, err
	}
	if err := ca.startAuthority(); err != nil {
		return nil, err
	}
	ca.roots = x509.NewCertPool()
	ca.roots.AddCert(ca.root)
	ca.bundlePEM = EncodeCertificatesPEM([]*x509.Certificate{ca.root})
	ca.log.Info("site ca ready", "dir", cfg.Dir, "created", created,
		"root_fingerprint", Fingerprint(ca.root), "intermediate_not_after", ca.intermediate.NotAfter)
	return ca, nil
}

func (ca *CA) path(name string) string { return filepath.Join(ca.cfg.Dir, name) }

// loadOrCreate loads the CA material, or creates all of it when none exists.
// A partial set (some files present, others missing) is refused.
func (ca *CA) loadOrCreate() (bool, error) {
	files := []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, ProvisionerKeyFile}
	var present []string
	for _, f := range files {
		if _, err := os.Stat(ca.path(f)); err == nil {
			present = append(present, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("open ca: %w", err)
		}
	}
	switch len(present) {
	case 0:
		return true, ca.create()
	case len(files):
		return false, ca.load()
	default:
		return false, fmt.Errorf("open ca: %s holds only %v of %v; refusing to overwrite a partial CA", ca.cfg.Dir, present, files)
	}
}

func (ca *CA) create() error {
	now := time.Now()
	rootKey, err := generateKey()
	if err != nil {
		return err
	}
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: ca.cfg.SiteName + " Root CA", Organization: []string{ca.cfg.SiteName}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ca.cfg.RootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	root, err := createCert(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	interKey, err := generateKey()
	if err != nil {
		return err
	}
	interTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: ca.cfg.SiteName + " Intermediate CA", Organization: []string{ca.cfg.SiteName}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ca.cfg.IntermediateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	inter, err := createCert(interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("create intermediate: %w", err)
	}
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		return fmt.Errorf("create provisioner key: %w", err)
	}
	jwkJSON, err := json.Marshal(jwk)
	if err != nil {
		return fmt.Errorf("create provisioner key: %w", err)
	}
	rootKeyPEM, err := encodeKeyPEM(rootKey)
	if err != nil {
		return err
	}
	interKeyPEM, err := encodeKeyPEM(interKey)
	if err != nil {
		return err
	}
	// Keys first, certificates last: a crash in between leaves a partial
	// set that loadOrCreate refuses rather than a CA without keys.
	for _, w := range []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{RootKeyFile, rootKeyPEM, keyFileMode},
		{IntermediateKeyFile, interKeyPEM, keyFileMode},
		{ProvisionerKeyFile, jwkJSON, keyFileMode},
		{RootCertFile, EncodeCertificatesPEM([]*x509.Certificate{root}), certFileMode},
		{IntermediateCertFile, EncodeCertificatesPEM([]*x509.Certificate{inter}), certFileMode},
	} {
		if err := writeFileAtomic(ca.path(w.name), w.data, w.mode); err != nil {
			return fmt.Errorf("create ca: %w", err)
		}
	}
	ca.root, ca.intermediate, ca.interKey, ca.provKey = root, inter, interKey, jwk
	return nil
}

func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return s, nil
}

func (ca *CA) load() error {
	readCert := func(name string) (*x509.Certificate, error) {
		b, err := os.ReadFile(ca.path(name))
		if err != nil {
			return nil, fmt.Errorf("open ca: %w", err)
		}
		cs, err := ParseCertificatesPEM(b)
		if err != nil {
			return nil, fmt.Errorf("open ca: %s: %w", ca.path(name), err)
		}
		if len(cs) != 1 {
			return nil, fmt.Errorf("open ca: %s holds %d certificates, want 1", ca.path(name), len(cs))
		}
		return cs[0], nil
	}
	readKey := func(name string) (crypto.Signer, error) {
		b, err := ReadSecretFile(ca.path(name))
		if err != nil {
			return nil, fmt.Errorf("open ca: %w", err)
		}
		k, err := ParseKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("open ca: %s: %w", ca.path(name), err)
		}
		return k, nil
	}
	root, err := readCert(RootCertFile)
	if err != nil {
		return err
	}
	inter, err := readCert(IntermediateCertFile)
	if err != nil {
		return err
	}
	rootKey, err := readKey(RootKeyFile)
	if err != nil {
		return err
	}
	interKey, err := readKey(IntermediateKeyFile)
	if err != nil {
		return err
	}
	if !keyMatches(root, rootKey) {
		return fmt.Errorf("open ca: %s: %w", ca.path(RootKeyFile), ErrKeyMismatch)
	}
	if !keyMatches(inter, interKey) {
		return fmt.Errorf("open ca: %s: %w", ca.path(IntermediateKeyFile), ErrKeyMismatch)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("open ca: intermediate not signed by root: %w", err)
	}
	jb, err := ReadSecretFile(ca.path(ProvisionerKeyFile))
	if err != nil {
		return fmt.Errorf("open ca: %w", err)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(jb, &jwk); err != nil || jwk.IsPublic() {
		return fmt.Errorf("open ca: %s: not a private JWK", ca.path(ProvisionerKeyFile))
	}
	ca.root, ca.intermediate, ca.interKey, ca.provKey = root, inter, interKey, &jwk
	return nil
}

// startAuthority builds the smallstep configuration and starts the
// authority in-process (no HTTP listener).
func (ca *CA) startAuthority() error {
	pub := ca.provKey.Public()
	prov := &provisioner.JWK{
		Type: "JWK",
		Name: provisionerName,
		Key:  &pub,
	}
	dur := func(d time.Duration) *provisioner.Duration { return &provisioner.Duration{Duration: d} }
	f := false
	cfg := &config.Config{
		Root:             []string{ca.path(RootCertFile)},
		IntermediateCert: ca.path(IntermediateCertFile),
		IntermediateKey:  ca.path(IntermediateKeyFile),
		Address:          "127.0.0.1:0",
		DNSNames:         []string{"localhost"},
		AuthorityConfig: &config.AuthConfig{
			Provisioners: provisioner.List{prov},
			Claims: &provisioner.Claims{
				MinTLSDur:     dur(ca.cfg.MinLifetime),
				MaxTLSDur:     dur(ca.cfg.MaxLifetime),
				DefaultTLSDur: dur(ca.cfg.NodeLifetime),
				EnableSSHCA:   &f,
			},
			Backdate: dur(ca.cfg.Backdate),
		},
	}
	if len(ca.cfg.ACMEDomains) > 0 {
		cfg.AuthorityConfig.Provisioners = append(cfg.AuthorityConfig.Provisioners, &provisioner.ACME{
			Type:       "ACME",
			Name:       ACMEProvisionerName,
			Challenges: []provisioner.ACMEChallenge{provisioner.HTTP_01, provisioner.TLS_ALPN_01},
			Options: &provisioner.Options{X509: &provisioner.X509Options{
				AllowedNames: &policy.X509NameOptions{DNSDomains: ca.cfg.ACMEDomains, CommonNames: ca.cfg.ACMEDomains},
			}},
		})
	}
	auth, err := authority.New(cfg,
		authority.WithX509RootCerts(ca.root),
		authority.WithX509Signer(ca.intermediate, ca.interKey),
		authority.WithQuietInit(),
	)
	if err != nil {
		return fmt.Errorf("start authority: %w", err)
	}
	ca.auth = auth
	return nil
}

// Dir returns the directory holding the CA's files.
func (ca *CA) Dir() string { return ca.cfg.Dir }

// Roots returns a pool holding the site root.
func (ca *CA) Roots() *x509.CertPool { return ca.roots.Clone() }

// Root returns the site root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediate returns the site intermediate certificate.
func (ca *CA) Intermediate() *x509.Certificate { return ca.intermediate }

// BundlePEM returns the site trust bundle (the root) in PEM.
func (ca *CA) BundlePEM() []byte { return slices.Clone(ca.bundlePEM) }

// TrustBundle implements Issuer.
func (ca *CA) TrustBundle(context.Context) ([]byte, error) { return ca.BundlePEM(), nil }

// Sign implements Issuer: it parses the DER CSR and signs it as a node or
// federation certificate, returning the chain (leaf, intermediate) in PEM.
func (ca *CA) Sign(ctx context.Context, req SignRequest) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	var chain []*x509.Certificate
	switch req.Kind {
	case KindNode:
		chain, err = ca.sign(ctx, csr, req.ID, req.Lifetime, ca.cfg.NodeLifetime, nodeNames)
	case KindFederation:
		chain, err = ca.sign(ctx, csr, req.ID, req.Lifetime, ca.cfg.FederationLifetime, peerNames)
	default:
		return nil, fmt.Errorf("%w: unknown certificate kind %d", ErrConfig, req.Kind)
	}
	if err != nil {
		return nil, err
	}
	return EncodeCertificatesPEM(chain), nil
}

// SignNode signs csr as the certificate of node nodeID: CN nodeID, URI SAN
// powernode://instance/<nodeID>, client and server auth. A lifetime of 0
// means the configured NodeLifetime. The CSR may leave CN and SANs empty or
// repeat exactly these; anything else is refused (ErrCSRSubject,
// ErrCSRExtraSANs). It returns leaf and intermediate.
func (ca *CA) SignNode(csr *x509.CertificateRequest, nodeID string, lifetime time.Duration) ([]*x509.Certificate, error) {
	return ca.sign(context.Background(), csr, nodeID, lifetime, ca.cfg.NodeLifetime, nodeNames)
}

// SignFederation signs csr as our outbound federation certificate towards a
// peer in the symmetric trust model: CN fed:<assignedID>, URI SAN
// powernode://peer/<assignedID>, where assignedID is the id the peer
// assigned to us. Same CSR rules as SignNode.
func (ca *CA) SignFederation(csr *x509.CertificateRequest, assignedID string, lifetime time.Duration) ([]*x509.Certificate, error) {
	return ca.sign(context.Background(), csr, assignedID, lifetime, ca.cfg.FederationLifetime, peerNames)
}

// names returns the CN and URI SAN for an id.
type namesFunc func(id string) (cn, uri string)

func nodeNames(id string) (string, string) { return id, NodeURI(id).String() }
func peerNames(id string) (string, string) { return PeerCNPrefix + id, PeerURI(id).String() }

// CheckCSR checks that csr is well signed and asks for no names other than
// cn and uri (it may leave them out).
func CheckCSR(csr *x509.CertificateRequest, cn, uri string) error {
	if csr == nil {
		return fmt.Errorf("%w: nil", ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 {
		return fmt.Errorf("%w: dns %v, ip %v, email %v", ErrCSRExtraSANs, csr.DNSNames, csr.IPAddresses, csr.EmailAddresses)
	}
	for _, u := range csr.URIs {
		if u.String() != uri {
			return fmt.Errorf("%w: uri %q", ErrCSRExtraSANs, u.String())
		}
	}
	if len(csr.URIs) > 1 {
		return fmt.Errorf("%w: %d URI SANs", ErrCSRExtraSANs, len(csr.URIs))
	}
	if got := csr.Subject.CommonName; got != "" && got != cn {
		return fmt.Errorf("%w: CN %q, want %q", ErrCSRSubject, got, cn)
	}
	return nil
}

func (ca *CA) sign(ctx context.Context, csr *x509.CertificateRequest, id string, lifetime, def time.Duration, names namesFunc) ([]*x509.Certificate, error) {
	if _, err := CanonicalID(id); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if lifetime == 0 {
		lifetime = def
	}
	if lifetime < ca.cfg.MinLifetime || lifetime > ca.cfg.MaxLifetime {
		return nil, fmt.Errorf("sign: lifetime %v outside [%v, %v]: %w", lifetime, ca.cfg.MinLifetime, ca.cfg.MaxLifetime, ErrConfig)
	}
	cn, uri := names(id)
	if err := CheckCSR(csr, cn, uri); err != nil {
		return nil, fmt.Errorf("sign %s: %w", cn, err)
	}
	tok, err := ca.token(cn, uri)
	if err != nil {
		return nil, err
	}
	ctx = provisioner.NewContextWithMethod(ctx, provisioner.SignMethod)
	opts, err := ca.auth.Authorize(ctx, tok)
	if err != nil {
		return nil, fmt.Errorf("sign %s: authorize: %w", cn, err)
	}
	var so provisioner.SignOptions
	so.NotAfter.SetDuration(lifetime)
	chain, err := ca.auth.SignWithContext(ctx, csr, so, opts...)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", cn, err)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != cn || len(leaf.URIs) != 1 || leaf.URIs[0].String() != uri {
		return nil, fmt.Errorf("sign %s: authority returned subject %q uris %v", cn, leaf.Subject.CommonName, leaf.URIs)
	}
	ca.log.Info("certificate issued", "cn", cn, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return chain, nil
}

// token mints a one-time JWK token for subject cn with the single SAN uri,
// signed with the provisioner key.
func (ca *CA) token(cn, uri string) (string, error) { return ca.tokenSANs(cn, []string{uri}) }

// tokenSANs mints a one-time JWK token for subject cn with the given SANs.
func (ca *CA) tokenSANs(cn string, sans []string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ca.provKey.Key},
		new(jose.SignerOptions).WithType("JWT").WithHeader("kid", ca.provKey.KeyID))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	now := time.Now()
	claims := jose.Claims{
		ID:        hex.EncodeToString(id),
		Issuer:    provisionerName,
		Subject:   cn,
		Audience:  jose.Audience{stepAudience},
		NotBefore: jose.NewNumericDate(now.Add(-time.Second)),
		IssuedAt:  jose.NewNumericDate(now),
		Expiry:    jose.NewNumericDate(now.Add(time.Minute)),
	}
	extra := struct {
		SANs []string `json:"sans"`
	}{SANs: sans}
	tok, err := jose.Signed(signer).Claims(claims).Claims(extra).CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// Fingerprint returns the hex SHA-256 of a certificate's DER, the form
// step uses for root fingerprints.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}
