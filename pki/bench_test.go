package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/powernode/fedgate/pki"
	"github.com/powernode/fedgate/pki/pkitest"
)

// BenchmarkPeerVerify measures the per-peer verifier (id extraction, bundle
// lookup, chain verification against the peer's bundle, status,
// revocation) beside a bare x509 chain verification of the same chain in
// the same run, and reports the ratio.
func BenchmarkPeerVerify(b *testing.B) {
	ca := pkitest.NewCA(b)
	id := pkitest.NewID(b)
	peers := &pkitest.Peers{}
	peers.Put(id, ca.BundlePEM(), "active")
	for range 1000 {
		peers.Revoke(pki.Revocation{SPKI: [32]byte{byte(len(id))}})
	}
	v, _ := pki.NewPeerVerifier(pki.PeerVerifierConfig{Peers: peers})
	f, err := pki.OpenFederationCert(b.Context(), pki.FederationCertConfig{Dir: b.TempDir(), PeerID: pkitest.NewID(b), AssignedID: id, Issuer: ca, Roots: ca.Roots()})
	if err != nil {
		b.Fatal(err)
	}
	var chain []*x509.Certificate
	for _, d := range f.Certificate().Certificate {
		c, _ := x509.ParseCertificate(d)
		chain = append(chain, c)
	}
	roots := ca.Roots()
	// Interleaved in one loop so that machine noise hits both alike.
	var base, ours time.Duration
	for b.Loop() {
		t0 := time.Now()
		inter := x509.NewCertPool()
		inter.AddCert(chain[1])
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := v.Verify(chain, x509.ExtKeyUsageClientAuth); err != nil {
			b.Fatal(err)
		}
		base, ours = base+t1.Sub(t0), ours+time.Since(t1)
	}
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "x509-ns/verify")
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "peer-ns/verify")
	b.ReportMetric(float64(ours)/float64(base), "peer/x509-ratio")
}

// BenchmarkNodeHandshake measures full and resumed node mTLS handshakes
// over loopback with our configurations beside crypto/tls's own mTLS
// verification (RequireAndVerifyClientCert + ClientCAs, same certificates)
// in the same run.
func BenchmarkNodeHandshake(b *testing.B) {
	ca := pkitest.NewCA(b)
	open := func() *pki.NodeIdentity {
		n, err := pki.OpenNodeIdentity(b.Context(), pki.IdentityConfig{Dir: b.TempDir(), NodeID: pkitest.NewID(b), Issuer: ca})
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	srv, cli := open(), open()
	stdSrv := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*srv.Certificate()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Roots()}
	stdCli := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cli.Certificate()}, InsecureSkipVerify: true}
	type variant struct {
		name string
		cfg  *tls.Config
		addr string
		took time.Duration
	}
	serve := func(cfg *tls.Config) string {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					tc := c.(*tls.Conn)
					if tc.Handshake() == nil {
						tc.Write([]byte{1})
					}
				}()
			}
		}()
		return ln.Addr().String()
	}
	client := func(c *tls.Config, resume bool) *tls.Config {
		c = c.Clone()
		c.ServerName = "node"
		if resume {
			c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		}
		return c
	}
	stdAddr, ourAddr := serve(stdSrv), serve(srv.ServerTLSConfig())
	vs := []*variant{
		{name: "stdlib-full", cfg: client(stdCli, false), addr: stdAddr},
		{name: "fedgate-full", cfg: client(cli.ClientTLSConfig(), false), addr: ourAddr},
		{name: "stdlib-resumed", cfg: client(stdCli, true), addr: stdAddr},
		{name: "fedgate-resumed", cfg: client(cli.ClientTLSConfig(), true), addr: ourAddr},
	}
	resumed := map[string]int{}
	// One handshake of each variant per iteration, interleaved.
	for b.Loop() {
		for _, v := range vs {
			t0 := time.Now()
			c, err := tls.Dial("tcp", v.addr, v.cfg)
			if err != nil {
				b.Fatal(v.name, err)
			}
			if _, err := c.Read(make([]byte, 1)); err != nil {
				b.Fatal(v.name, err)
			}
			v.took += time.Since(t0)
			if c.ConnectionState().DidResume {
				resumed[v.name]++
			}
			c.Close()
		}
	}
	if resumed["stdlib-resumed"] < b.N-1 || resumed["fedgate-resumed"] < b.N-1 || resumed["fedgate-full"] != 0 {
		b.Fatalf("resumptions %v of %d", resumed, b.N)
	}
	for _, v := range vs {
		b.ReportMetric(float64(b.N)/v.took.Seconds(), v.name+"-hs/s")
	}
	b.ReportMetric(float64(vs[1].took)/float64(vs[0].took), "full-time-ratio")
	b.ReportMetric(float64(vs[3].took)/float64(vs[2].took), "resumed-time-ratio")
}
