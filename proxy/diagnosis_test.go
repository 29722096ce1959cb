package proxy_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestHandshakeDiagnosis: a failed client handshake is explained in the
// words an operator needs (the wrong port, an old client, an untrusted
// certificate), once: in the session's closing line and audit event, and
// the policy_denied event, not crypto/tls's symptom alone.
func TestHandshakeDiagnosis(t *testing.T) {
	be := startScriptedBackend(t, &scriptedBackend{})
	g := startGate(t, be.ln.Addr().String(), gateOptions{extra: "timeouts {\n  tls_handshake = \"1s\"\n}"})
	dial := func(addr string) net.Conn { return dialTCP(t, addr) }
	for _, tc := range []struct {
		name string
		try  func()
		want string
	}{
		{"implicit client on the explicit port", func() {
			c := tls.Client(dial(g.explicit), g.certs.ClientConfig())
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Handshake() // fails: the proxy answers 220 in clear, then closes
		}, "a TLS ClientHello on the plaintext port"},
		{"explicit client on the implicit port", func() {
			c := dial(g.implicit)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 10)) // waits for a 220 that never comes
		}, "the client sent nothing within 1s"},
		{"plaintext on the implicit port", func() {
			c := dial(g.implicit)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("USER alice\r\n"))
			c.Read(make([]byte, 10))
		}, "the client sent plaintext"},
		{"a TLS 1.0 client", func() {
			conf := g.certs.ClientConfig()
			conf.MinVersion, conf.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			c := tls.Client(dial(g.implicit), conf)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Handshake()
		}, "the client offers only TLS 1.1, TLS 1.0"},
		{"a client that does not trust the certificate", func() {
			c := tls.Client(dial(g.implicit), &tls.Config{ServerName: "localhost", NextProtos: []string{"ftp"}})
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Handshake()
		}, "the client does not trust the certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(g.eventsOf(t, "session_end"))
			tc.try()
			ends := g.waitEventsOf(t, "session_end", before+1)
			if len(ends) <= before || !strings.Contains(ends[before]["reason"].(string), tc.want) {
				t.Fatalf("session_end events %v, want a reason with %q", ends[before:], tc.want)
			}
		})
	}
}

// TestBackendMisconfiguration: a backend that refuses every login for a
// reason of its configuration (vsftpd with TLS required, behind a backend
// block with tls = "none") is logged at warn with its own text and a hint,
// and counts toward no ban; the login event says who and from where.
func TestBackendMisconfiguration(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: ftptest.NewCerts(t, ftptest.ECDSA)})
	g := startGate(t, be.Addr, gateOptions{extra: "bans {\n  failures = 2\n}"})
	for i := 0; i < 3; i++ { // a ban would close the session at the second
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(530, "USER %s", be.User)
		c.Cmd(221, "QUIT")
	}
	warns := g.logs.FilterMessage("login refused by the backend's configuration, not a wrong password").All()
	if len(warns) != 3 {
		t.Fatalf("%d warnings", len(warns))
	}
	m := warns[0].ContextMap()
	if !strings.Contains(m["reply"].(string), "Non-anonymous sessions must use encryption") ||
		!strings.Contains(m["hint"].(string), `set the backend block's tls to "explicit"`) {
		t.Fatalf("warning %v", m)
	}
	if n := len(g.eventsOf(t, "ban")); n != 0 {
		t.Fatalf("%d bans for a misconfiguration", n)
	}
	logins := g.eventsOf(t, "login")
	if len(logins) != 3 || !strings.HasPrefix(logins[0]["client"].(string), "127.0.0.1:") || logins[0]["user"] != be.User {
		t.Fatalf("login events %v", logins)
	}
}

// TestFullPaths: transfers are recorded by their full path on the server,
// as vsftpd records them, whatever directory the client moved to and
// however it named the file: the audit and xferlog say which file moved.
func TestFullPaths(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	if err := os.Mkdir(filepath.Join(be.Root, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	writeFile(t, be.Root, "top.txt", []byte("top\n"))
	writeFile(t, filepath.Join(be.Root, "sub"), "inner.txt", []byte("inner\n"))
	g := startGate(t, be.Addr, gateOptions{})
	c := g.login(t, be.User, be.Password)
	retr(t, c, "top.txt")
	c.Cmd(250, "CWD sub")
	retr(t, c, "inner.txt")
	c.Cmd(250, "CDUP")
	retr(t, c, "sub/inner.txt")
	c.Cmd(250, "XCWD /sub")
	retr(t, c, "../top.txt")
	retr(t, c, "/sub/inner.txt")
	c.Cmd(221, "QUIT")
	var got []string
	for _, e := range g.eventsOf(t, "transfer") {
		got = append(got, e["path"].(string))
		if _, ms := e["duration_ms"].(float64); !ms || e["duration"] != nil || e["user"] != be.User || e["client"] != "127.0.0.1" {
			t.Fatalf("transfer event %v: want duration_ms, user and client", e)
		}
	}
	want := []string{"/top.txt", "/sub/inner.txt", "/sub/inner.txt", "/top.txt", "/sub/inner.txt"}
	if !slices.Equal(got, want) {
		t.Fatalf("transfer paths %q, want %q", got, want)
	}
	lines := strings.Split(strings.TrimSpace(string(g.xferlog.Bytes())), "\n")
	if len(lines) != 5 || strings.Fields(lines[1])[8] != "/sub/inner.txt" {
		t.Fatalf("xferlog %q", lines)
	}
}
