package proxy_test

import (
	"os"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestHOST: RFC 7151's HOST is accepted before USER (before or after AUTH
// TLS), checked, logged with the session and recorded in the login audit
// event; after USER it gets 503. It reaches the backend only with
// send_host, before the backend's AUTH TLS; a backend refusing it ends the
// session with 421.
func TestHOST(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	c := ftptest.Dial(t, g.explicit)
	c.Cmd(501, "HOST ftp.example.com:21")
	c.Cmd(501, "HOST [not-an-address]")
	c.Cmd(220, "HOST Files.Example.COM")
	if feat := c.Cmd(211, "FEAT"); !strings.Contains(feat, "\n HOST") {
		t.Fatalf("FEAT lacks HOST: %q", feat)
	}
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(220, "HOST ftp.example.com") // after AUTH: allowed, the last one counts
	c.LoginProtP(be.User, be.Password)
	c.Cmd(503, "HOST other.example.com")
	c.Cmd(221, "QUIT")
	logins := g.eventsOf(t, "login")
	if len(logins) != 1 || logins[0]["host"] != "ftp.example.com" {
		t.Fatalf("login events %v", logins)
	}

	t.Run("send_host", func(t *testing.T) {
		sb := startScriptedBackend(t, &scriptedBackend{})
		g := startGate(t, sb.ln.Addr().String(), gateOptions{backend: "tls = \"none\"\n  send_host = true"})
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(220, "HOST ftp.example.com")
		c.Cmd(331, "USER alice")
		if got := sb.lastHost(); got != "ftp.example.com" {
			t.Fatalf("backend got HOST %q", got)
		}
		c.Cmd(221, "QUIT")
	})
	t.Run("send_host to ProFTPD", func(t *testing.T) {
		pro := ftptest.ProFTPD(t, ftptest.ProFTPDOptions{})
		g := startGate(t, pro.Addr, gateOptions{backend: "tls = \"none\"\n  send_host = true"})
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(220, "HOST 127.0.0.1") // ProFTPD's default server answers to its address
		c.LoginProtP(pro.User, pro.Password)
		c.Cmd(221, "QUIT")
		log, err := os.ReadFile(pro.Log)
		if err != nil || !strings.Contains(string(log), "HOST 127.0.0.1 220") {
			t.Fatalf("ProFTPD's command log lacks the HOST (%v):\n%s", err, log)
		}
	})
	t.Run("send_host refused", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{backend: "tls = \"none\"\n  send_host = true"})
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(220, "HOST ftp.example.com")
		c.Cmd(421, "USER %s", be.User) // vsftpd does not know HOST
		if !g.logged("backend refused HOST") {
			t.Fatal("no log line")
		}
	})
}
