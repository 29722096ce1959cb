package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// dialWithHeader connects from src to addr and sends a PROXY header of
// version v naming client (a claim in a header, never an address dialled).
func dialWithHeader(t *testing.T, src, addr string, v byte, client string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if client != "" {
		claimed, err := net.ResolveTCPAddr("tcp", client)
		if err != nil {
			t.Fatal(err)
		}
		h := proxyproto.HeaderProxyFromAddrs(v, claimed, c.RemoteAddr())
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestProxyProtocolIn: behind a load balancer at 127.0.0.1 that sends
// PROXY headers (v1 and v2), the client address in the header drives the
// audit, the address rules and the data-connection check; a balancer that
// sends no header, and a stranger (127.0.0.2) without allow_direct, are
// refused with a log line.
func TestProxyProtocolIn(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `proxy_protocol {
    trusted_cidrs  = ["127.0.0.1/32"]
    header_timeout = "2s"
  }
  deny_cidrs = ["198.51.100.66/32"]`})
	for _, tc := range []struct {
		v      byte
		client string
	}{{1, "198.51.100.7:40001"}, {2, "[2001:db8::7]:40002"}} {
		raw := dialWithHeader(t, "127.0.0.1", g.explicit, tc.v, tc.client)
		c := ftptest.Wrap(t, raw)
		c.AuthTLS(g.certs.ClientConfig())
		c.LoginProtP(be.User, be.Password)
		writeFile(t, be.Root, "f.txt", []byte("through the balancer\n"))
		d := c.DialData(c.EPSV()) // from 127.0.0.1: the balancer forwarding the passive port
		c.Cmd(150, "RETR f.txt")
		if got := string(ftptest.ReadAll(t, d)); got != "through the balancer\n" {
			t.Fatalf("v%d: got %q", tc.v, got)
		}
		c.Expect(226)
		c.Cmd(221, "QUIT")
	}
	starts := g.eventsOf(t, "session_start")
	if len(starts) != 2 || starts[0]["client"] != "198.51.100.7:40001" || starts[1]["client"] != "[2001:db8::7]:40002" ||
		!strings.HasPrefix(starts[0]["tcp_peer"].(string), "127.0.0.1:") {
		t.Fatalf("session_start events %v", starts)
	}
	// The address rules see the header's address.
	raw := dialWithHeader(t, "127.0.0.1", g.explicit, 2, "198.51.100.66:5000")
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 200)
	if n, _ := raw.Read(buf); !strings.HasPrefix(string(buf[:n]), "421 ") {
		t.Fatalf("denied client behind the balancer got %q", buf[:n])
	}
	// A balancer that sends no header, and a stranger, are closed.
	for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
		raw := dialWithHeader(t, src, g.explicit, 0, "")
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		if n, err := raw.Read(buf); err == nil {
			t.Fatalf("connection from %s without a header was served: %q", src, buf[:n])
		}
	}
	if n := g.logs.FilterMessage("connection refused: PROXY protocol").Len(); n != 2 {
		t.Fatalf("%d refusal log lines, want 2", n)
	}

	// allow_direct: a stranger is served with its own address, and a
	// header it sends is not believed.
	g2 := startGate(t, be.Addr, gateOptions{listenerExtra: `proxy_protocol {
    trusted_cidrs = ["127.0.0.1/32"]
    allow_direct  = true
  }`})
	c := ftptest.DialFrom(t, "127.0.0.2", g2.explicit)
	c.AuthTLS(g2.certs.ClientConfig())
	c.LoginProtP(be.User, be.Password)
	c.Cmd(221, "QUIT")
	spoof := dialWithHeader(t, "127.0.0.2", g2.explicit, 1, "198.51.100.9:1")
	spoof.SetDeadline(time.Now().Add(30 * time.Second))
	spoof.Read(buf) // the greeting; the header is then read as a (bad) command
	starts = g2.eventsOf(t, "session_start")
	for _, e := range starts {
		if !strings.HasPrefix(e["client"].(string), "127.0.0.2:") || e["tcp_peer"] != nil {
			t.Fatalf("direct session_start %v", e)
		}
	}
}

// proxyAwareFront is a stand-in for an FTP server that reads the PROXY
// protocol (built on the same library, as Debian ships no ProFTPD
// mod_proxy_protocol): it requires a header, records it, and relays the
// connection to a real vsftpd on the same host.
type proxyAwareFront struct {
	ln      net.Listener
	mu      sync.Mutex
	headers []*proxyproto.Header
	wg      sync.WaitGroup
}

func startProxyAwareFront(t *testing.T, target string) *proxyAwareFront {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &proxyAwareFront{ln: &proxyproto.Listener{Listener: raw, ReadHeaderTimeout: 10 * time.Second,
		ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Read(nil); err != nil { // the header, or no service
					return
				}
				c.SetReadDeadline(time.Time{})
				f.mu.Lock()
				f.headers = append(f.headers, c.(*proxyproto.Conn).ProxyHeader())
				f.mu.Unlock()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, up)
				c.Close()
				<-done
			}()
		}
	}()
	t.Cleanup(func() { f.ln.Close(); f.wg.Wait() })
	return f
}

func (f *proxyAwareFront) received() []*proxyproto.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*proxyproto.Header(nil), f.headers...)
}

// TestProxyProtocolOut: with backend proxy_protocol = "v1" or "v2" the
// backend's control connection starts with a header naming the client:
// its TCP address, or the address a trusted balancer's header gave.
func TestProxyProtocolOut(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("proxied twice\n"))
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			front := startProxyAwareFront(t, be.Addr)
			g := startGate(t, front.ln.Addr().String(), gateOptions{backend: fmt.Sprintf("proxy_protocol = %q", v),
				listenerExtra: `proxy_protocol {
    trusted_cidrs = ["127.0.0.1/32"]
    allow_direct  = true
  }`})
			// Directly from 127.0.0.2, then through a balancer at
			// 127.0.0.1 for a client at 198.51.100.7.
			direct := ftptest.DialFrom(t, "127.0.0.2", g.explicit)
			viaLB := ftptest.Wrap(t, dialWithHeader(t, "127.0.0.1", g.explicit, 2, "198.51.100.7:40001"))
			for _, c := range []*ftptest.Conn{direct, viaLB} {
				c.AuthTLS(g.certs.ClientConfig())
				c.LoginProtP(be.User, be.Password)
				d := c.DialData(c.EPSV())
				c.Cmd(150, "RETR f.txt")
				if got := string(ftptest.ReadAll(t, d)); got != "proxied twice\n" {
					t.Fatalf("got %q", got)
				}
				c.Expect(226)
				c.Cmd(221, "QUIT")
			}
			hs := front.received()
			want := byte(1)
			if v == "v2" {
				want = 2
			}
			if len(hs) != 2 || hs[0].Version != want || hs[1].Version != want {
				t.Fatalf("headers %+v", hs)
			}
			src0, _, _ := hs[0].TCPAddrs()
			src1, _, _ := hs[1].TCPAddrs()
			if src0.IP.String() != "127.0.0.2" || src1.String() != "198.51.100.7:40001" {
				t.Fatalf("header sources %v, %v", src0, src1)
			}
		})
	}
}

// TestProxyProtocolTLVs: with proxy_protocol_tlvs the v2 header also says
// what the client's TLS was (as HAProxy's send-proxy-v2-ssl does): read
// back by the library's own TLV parser on the receiving side.
func TestProxyProtocolTLVs(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	front := startProxyAwareFront(t, be.Addr)
	g := startGate(t, front.ln.Addr().String(), gateOptions{backend: "proxy_protocol = \"v2\"\n  proxy_protocol_tlvs = true"})
	c := ftptest.Dial(t, g.explicit)
	conf := g.certs.ClientConfig()
	conf.MinVersion, conf.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	conf.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	c.AuthTLS(conf)
	c.LoginProtP(be.User, be.Password)
	c.Cmd(221, "QUIT")
	hs := front.received()
	if len(hs) != 1 || hs[0].Version != 2 {
		t.Fatalf("headers %+v", hs)
	}
	tlvs, err := hs[0].TLVs()
	if err != nil {
		t.Fatal(err)
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok || !ssl.ClientSSL() || ssl.Verified() {
		t.Fatalf("PP2_TYPE_SSL %+v (found %v): want client SSL, no verified certificate", ssl, ok)
	}
	version, _ := ssl.SSLVersion()
	cipher, _ := ssl.SSLCipher()
	if version != "TLSv1.2" || cipher != "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" {
		t.Fatalf("SSL version %q, cipher %q", version, cipher)
	}
	var authority, unique string
	for _, tlv := range tlvs {
		switch tlv.Type {
		case proxyproto.PP2_TYPE_AUTHORITY:
			authority = string(tlv.Value)
		case proxyproto.PP2_TYPE_UNIQUE_ID:
			unique = string(tlv.Value)
		}
	}
	if authority != "localhost" {
		t.Fatalf("PP2_TYPE_AUTHORITY %q, want the SNI localhost", authority)
	}
	if starts := g.eventsOf(t, "session_start"); len(starts) != 1 || starts[0]["session"] != unique {
		t.Fatalf("PP2_TYPE_UNIQUE_ID %q does not name the audited session %v", unique, starts)
	}
}
