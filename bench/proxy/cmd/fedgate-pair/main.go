// Command fedgate-pair starts a fedgate outbound and a fedgate inbound proxy
// in one process, federated with each other, in front of an existing HTTP
// backend: the two-hop path of BENCH.md
//
//	client --HTTP--> outbound (A) --mTLS 1.3--> inbound (B) --HTTP--> backend
//
// Both sites get their certificates from their own real embedded pki site
// CA and write durable audit logs (group commit, fail-closed). It prints the
// peer host to send as Host and the certificate files of A (for one-hop
// load generators), then serves until SIGINT/SIGTERM, draining on exit.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/federation"
	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/proxy"
	"github.com/powernode/fedgate/proxy/proxytest"
)

func main() {
	dir := flag.String("dir", "", "work directory (CAs, audit logs, certificate files); required")
	backend := flag.String("backend", "http://127.0.0.1:18080", "backend URL behind the inbound proxy")
	outAddr := flag.String("outbound", "127.0.0.1:18091", "outbound (site A) listen address")
	inAddr := flag.String("inbound", "127.0.0.1:18453", "inbound (site B) listen address")
	auditOn := flag.Bool("audit", true, "durable audit on both sites")
	grant := flag.Bool("grant", false, "require a grant on the route (prints the token)")
	h2 := flag.Bool("h2", false, "HTTP/2 between the outbound and the inbound proxy")
	tag := flag.String("tag", "", "suffix for this process's audit directory (several a processes on one dir)")
	strict := flag.Bool("strict", false, "audit strictly before forwarding for every method (Config.AuditStrictAll)")
	overlap := flag.Bool("overlap", false, "outbound audit append overlapped with the call to the peer (Config.OutboundAuditOverlap)")
	role := flag.String("role", "both", "which side(s) this process runs: both, a (outbound) or b (inbound); start b first")
	verbose := flag.Bool("verbose", false, "log at debug level")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address")
	prealloc := flag.Int64("prealloc", 0, "audit Config.PreallocBytes (0: the default)")
	flag.Parse()
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "fedgate-pair: -dir is required")
		os.Exit(2)
	}
	h2peers, auditOverlap, auditTag, auditStrict, auditPrealloc = *h2, *overlap, *tag, *strict, *prealloc
	if err := run(*dir, *role, *backend, *outAddr, *inAddr, *auditOn, *grant, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "fedgate-pair:", err)
		os.Exit(1)
	}
}

var (
	h2peers, auditOverlap, auditStrict bool
	auditTag                           string
	auditPrealloc                      int64
)

type noAudit struct{}

func (noAudit) Append(context.Context, audit.Record) (uint64, error) { return 0, nil }

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func run(dir, role, backend, outAddr, inAddr string, auditOn, grant, verbose bool) error {
	runA, runB := role == "both" || role == "a", role == "both" || role == "b"
	if !runA && !runB {
		return fmt.Errorf("-role %q: want both, a or b", role)
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	caA, err := pki.OpenCA(pki.Config{Dir: filepath.Join(dir, "ca-a"), SiteName: "bench-a"})
	if err != nil {
		return err
	}
	caB, err := pki.OpenCA(pki.Config{Dir: filepath.Join(dir, "ca-b"), SiteName: "bench-b"})
	if err != nil {
		return err
	}
	// The ids (and so the certificates) are shared by the a and b processes
	// through the work directory.
	idA, idB := newID(), newID()
	if b, err := os.ReadFile(filepath.Join(dir, "ids")); err == nil {
		fmt.Sscan(string(b), &idA, &idB)
	} else if err := os.WriteFile(filepath.Join(dir, "ids"), []byte(idA+" "+idB+"\n"), 0o600); err != nil {
		return err
	}
	certA, err := proxytest.IssueFederationErr(caA, idA, 0)
	if err != nil {
		return err
	}
	certB, err := proxytest.IssueFederationErr(caB, idB, 0)
	if err != nil {
		return err
	}
	// Certificate files of A, for one-hop load generators.
	var chain []byte
	for _, der := range certA.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(certA.PrivateKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "a.pem"), chain, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "a.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}

	peer := func(id string, bundle []byte) federation.Peer {
		p := federation.NewPeer(id, federation.PeerKindPlatform, time.Now())
		p.Status = federation.StatusActive
		p.ContractVersionAgreed = 1
		p.TrustedCAPEM = string(bundle)
		p.PlatformVersion = "1.4.0"
		p.Capabilities = federation.Capabilities{ResourceKinds: []string{"bench"}}
		return p
	}
	stA, stB := proxytest.NewState(), proxytest.NewState()
	stB.SetPeer(peer(idA, caA.BundlePEM()))
	pb := peer(idB, caB.BundlePEM())
	pb.Endpoints = []federation.Endpoint{{URL: "https://" + inAddr, Scope: federation.ScopeLAN, Priority: 10}}
	stA.SetPeer(pb)

	secret := make([]byte, 32)
	copy(secret, "fedgate-pair bench grant secret!")
	key, err := federation.NewTokenKey(secret)
	if err != nil {
		return err
	}
	var token string
	if grant {
		gid := newID()
		stB.SetGrant(federation.NewGrant(gid, idA, "bench:wrk", "bench", []federation.Scope{federation.ScopeRead, federation.ScopeWrite}, time.Now()))
		if token, err = federation.MintToken(secret, gid); err != nil {
			return err
		}
	}

	auditor := func(site string, on bool) (proxy.Auditor, func(), error) {
		if !auditOn || !on {
			return noAudit{}, func() {}, nil
		}
		l, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit-"+site+auditTag), NodeID: "bench-" + site, Logger: log, PreallocBytes: auditPrealloc})
		if err != nil {
			return nil, nil, err
		}
		return l, func() { l.Close() }, nil
	}
	audA, closeA, err := auditor("a", runA)
	if err != nil {
		return err
	}
	defer closeA()
	audB, closeB, err := auditor("b", runB)
	if err != nil {
		return err
	}
	defer closeB()

	certsA, certsB := &proxytest.Certs{}, &proxytest.Certs{}
	certsA.SetClient(idB, certA)
	certsB.SetServer(certB)
	base := proxy.Config{Logger: log, PlatformVersion: "1.4.0", GrantKey: func() *federation.TokenKey { return key }, AuditStrictAll: auditStrict,
		Capabilities: federation.Capabilities{ResourceKinds: []string{"bench"}}}

	cfgB := base
	cfgB.Registerer = prometheus.NewRegistry()
	cfgB.State, cfgB.Auditor, cfgB.Certs = stB, audB, certsB
	cfgB.Verifier = &proxytest.Verifier{State: stB}
	cfgB.InboundAddr = inAddr
	cfgB.Routes = []proxy.Route{{Name: "bench", PathPrefix: "/", Backend: backend, ResourceKind: "bench", RequireGrant: grant}}
	pB, err := proxy.New(cfgB)
	if err != nil {
		return err
	}
	cfgA := base
	cfgA.Registerer = prometheus.NewRegistry()
	cfgA.State, cfgA.Auditor, cfgA.Certs = stA, audA, certsA
	cfgA.Verifier = &proxytest.Verifier{State: stA}
	cfgA.OutboundAddr = outAddr
	cfgA.HTTP2ToPeers = h2peers
	cfgA.OutboundAuditOverlap = auditOverlap
	pA, err := proxy.New(cfgA)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if runB {
		if err := pB.Start(ctx); err != nil {
			return err
		}
		fmt.Printf("inbound=%s\n", pB.InboundAddr())
	}
	if runA {
		if err := pA.Start(ctx); err != nil {
			return err
		}
		fmt.Printf("outbound=%s\n", pA.OutboundAddr())
	}
	fmt.Printf("host=%s\ncert=%s\nkey=%s\naudit=%v\n", proxy.PeerHost(idB),
		filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key"), auditOn)
	if token != "" {
		fmt.Printf("token=%s\n", token)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if runA {
		pA.Shutdown(sctx)
	}
	if runB {
		pB.Shutdown(sctx)
	}
	return nil
}
