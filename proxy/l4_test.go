package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/powernode/fedgate/audit"
	"github.com/powernode/fedgate/proxy"
)

// echoBackend reads the PROXY v2 header, answers with the identity it
// carries, then echoes.
func echoBackend(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				h, err := proxyproto.Read(br)
				if err != nil {
					fmt.Fprintf(c, "bad header: %v\n", err)
					return
				}
				id, err := proxy.ParseIdentity(h)
				if err != nil {
					fmt.Fprintf(c, "bad identity: %v\n", err)
					return
				}
				src, _, _ := h.TCPAddrs()
				fmt.Fprintf(c, "peer=%s subject=%s cn=%s tls=%s spki=%d src=%v\n", id.PeerID, id.RemoteSubject, id.CommonName, id.TLSVersion, len(id.CertSPKI), src.IP)
				io.Copy(c, br)
			}()
		}
	}()
	return ln
}

func TestL4(t *testing.T) {
	var echo net.Listener
	pr := newPairWith(t, func(pr *pair, c *proxy.Config) {
		c.OutboundL4 = []proxy.OutboundL4{
			{Listen: "127.0.0.1:0", PeerID: pr.idB, Route: "echo"},
			{Listen: "127.0.0.1:0", PeerID: pr.idB, Route: "secret"},
		}
	}, func(_ *pair, c *proxy.Config) {
		echo = echoBackend(t)
		c.Routes = append(c.Routes,
			proxy.Route{Name: "echo", Kind: proxy.RouteTCP, Backend: echo.Addr().String(), ResourceKind: "echo"},
			proxy.Route{Name: "secret", Kind: proxy.RouteTCP, Backend: echo.Addr().String(), ResourceKind: "secret"},
		)
	})
	c, err := net.Dial("tcp", pr.a.p.OutboundL4Addr("echo", pr.idB).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello over l4\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("peer=%s subject=fed:%s cn=fed:%s tls=TLS 1.3 spki=64 src=127.0.0.1\n", pr.idA, pr.idA, pr.idA)
	if line != want {
		t.Errorf("identity line\n got %q\nwant %q", line, want)
	}
	if echoed, _ := br.ReadString('\n'); echoed != "hello over l4\n" {
		t.Errorf("echo %q", echoed)
	}
	c.Close()
	// Both sites record the same remote_subject: A's certificate subject.
	pr.b.audit.waitRecord(t, "l4 allow on B", func(r audit.Record) bool {
		return r.Action == audit.ActionProxyConnection && r.Decision == audit.DecisionAllow && r.Metadata["route"] == "echo" &&
			r.FederationPeerID == pr.idA && r.RemoteSubject == "fed:"+pr.idA
	})
	pr.a.audit.waitRecord(t, "l4 allow on A", func(r audit.Record) bool {
		return r.Action == audit.ActionProxyConnection && r.Decision == audit.DecisionAllow && r.FederationPeerID == pr.idB &&
			r.RemoteSubject == "fed:"+pr.idA
	})

	// A route of a kind A never declared: refused, audited, closed.
	c2, err := net.Dial("tcp", pr.a.p.OutboundL4Addr("secret", pr.idB).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c2, "let me in\n")
	if b, _ := io.ReadAll(c2); len(b) != 0 {
		t.Errorf("refused L4 stream got %q", b)
	}
	pr.b.audit.waitRecord(t, "l4 deny on B", func(r audit.Record) bool {
		return r.Action == audit.ActionProxyConnection && r.Decision == audit.DecisionDeny && strings.HasPrefix(r.Reason, "capability_not_declared")
	})
}

func TestParseIdentityRejectsMalformed(t *testing.T) {
	for name, raw := range map[string][]byte{
		"not proxy":    []byte("GET / HTTP/1.1\r\n\r\n"),
		"v2 truncated": append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x20"), make([]byte, 4)...),
	} {
		h, err := proxyproto.Read(bufio.NewReader(strings.NewReader(string(raw))))
		if err == nil {
			if _, err = proxy.ParseIdentity(h); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	}
}
