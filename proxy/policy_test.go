package proxy_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// deniedRules lists the rules of the policy_denied audit events.
func (g *gate) deniedRules(t testing.TB) []string {
	var out []string
	for _, e := range g.eventsOf(t, "policy_denied") {
		out = append(out, e["rule"].(string))
	}
	return out
}

// TestUserRules: deny_users is decided at the proxy before the backend
// sees the name (mod_proxy users are surprised that its deny-list is
// silently ignored: this one never is); read-only users can read but not
// change anything, through curl, lftp and raw commands.
func TestUserRules(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "report.txt", []byte("quarterly\n"))
	os.Mkdir(filepath.Join(be.Root, "dir"), 0o777)

	t.Run("deny_users", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{policy: fmt.Sprintf(`deny_users = ["root", %q]`, be.User)})
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		// Answered as a wrong password is: a stranger cannot tell.
		c.Cmd(331, "USER %s", be.User)
		if msg := c.Cmd(530, "PASS %s", be.Password); msg != "Login incorrect." {
			t.Fatalf("530 text %q", msg)
		}
		c.Cmd(331, "USER root")
		if got := g.deniedRules(t); strings.Join(got, ",") != "deny_users,deny_users" {
			t.Fatalf("policy_denied rules %v", got)
		}
		for _, e := range g.eventsOf(t, "login") {
			if e["backend"] != "" || e["reason"] != "deny_users" || e["result"] != "failure" {
				t.Fatalf("a denied user reached the backend: %v", e)
			}
		}
		log, _ := os.ReadFile(be.Log)
		if strings.Contains(string(log), "USER "+be.User) || strings.Contains(string(log), "USER root") {
			t.Fatal("vsftpd saw a denied user")
		}
	})
	t.Run("read_only_users", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{policy: fmt.Sprintf(`read_only_users = [%q]`, be.User)})
		dir := t.TempDir()
		out := filepath.Join(dir, "report.txt")
		ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-o", out,
			ftpURL("ftp", be.User, be.Password, g.explicit, "report.txt"))
		if b, _ := os.ReadFile(out); string(b) != "quarterly\n" {
			t.Fatalf("download %q", b)
		}
		_, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "curl"), "--silent", "--show-error",
			"--ssl-reqd", "--cacert", g.certs.CAFile, "-T", out, ftpURL("ftp", be.User, be.Password, g.explicit, "new.txt"))
		if err == nil {
			t.Fatal("a read-only user uploaded")
		}
		t.Logf("curl upload refused: %s", strings.TrimSpace(errOut))
		_, _, err = ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "lftp"), "-c",
			fmt.Sprintf("set ssl:ca-file %s; set ftp:ssl-force true; set cmd:fail-exit true; open -u %s,%s ftp://%s; rm report.txt",
				g.certs.CAFile, be.User, be.Password, g.explicit))
		if err == nil {
			t.Fatal("lftp removed a file as a read-only user")
		}
		c := g.login(t, be.User, be.Password)
		for _, line := range []string{"DELE report.txt", "MKD x", "XMKD x", "RMD dir", "RNFR report.txt", "SITE CHMOD 777 report.txt",
			"STOR x", "APPE report.txt", "STOU"} {
			c.Cmd(550, "%s", line)
		}
		c.Cmd(213, "SIZE report.txt") // reading is fine
		c.Cmd(221, "QUIT")
		if _, err := os.Stat(filepath.Join(be.Root, "new.txt")); err == nil {
			t.Fatal("the upload reached the backend")
		}
		if b, _ := os.ReadFile(filepath.Join(be.Root, "report.txt")); string(b) != "quarterly\n" {
			t.Fatal("report.txt changed")
		}
		n := 0
		for _, r := range g.deniedRules(t) {
			if r == "read_only_users" {
				n++
			}
		}
		if n < 11 {
			t.Fatalf("%d read_only_users denials in the audit: %v", n, g.deniedRules(t))
		}
	})
}

// TestCommandRules: deny_commands and allow_commands, end to end.
func TestCommandRules(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("f\n"))
	t.Run("deny_commands", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{policy: `deny_commands = ["DELE", "site"]`})
		c := g.login(t, be.User, be.Password)
		c.Cmd(502, "DELE f.txt")
		c.Cmd(502, "SITE CHMOD 600 f.txt")
		c.Cmd(502, "site chmod 600 f.txt") // verbs are case-insensitive
		c.Cmd(213, "SIZE f.txt")
		c.Cmd(221, "QUIT")
		if _, err := os.Stat(filepath.Join(be.Root, "f.txt")); err != nil {
			t.Fatal("f.txt was deleted")
		}
	})
	t.Run("allow_commands", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{policy: `allow_commands = ["EPSV", "PASV", "TYPE", "PWD", "CWD", "SIZE", "RETR", "REST", "MDTM"]`})
		out := filepath.Join(t.TempDir(), "f.txt")
		ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-o", out, ftpURL("ftp", be.User, be.Password, g.explicit, "f.txt"))
		c := g.login(t, be.User, be.Password)
		c.Cmd(502, "MKD newdir")
		c.Cmd(502, "LIST")
		c.Cmd(257, "PWD")
		c.Cmd(221, "QUIT")
		if rules := strings.Join(g.deniedRules(t), ","); rules != "allow_commands,allow_commands" {
			t.Fatalf("policy_denied %s", rules)
		}
	})
}

// TestAddressRules: a listener's deny_cidrs and allow_cidrs refuse clients
// by address before TLS: 421 on the explicit listener, a bare close on the
// implicit one (whose clients expect a TLS handshake).
func TestAddressRules(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `allow_cidrs = ["127.0.0.0/24"]
  deny_cidrs = ["127.0.0.2/32"]`})
	dialFrom := func(src, addr string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c
	}
	for _, tc := range []struct{ src, rule string }{{"127.0.0.2", "deny_cidrs"}, {"127.0.1.5", "allow_cidrs"}} {
		c := dialFrom(tc.src, g.explicit)
		buf := make([]byte, 200)
		n, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "421 ") {
			t.Fatalf("client at %s got %q", tc.src, buf[:n])
		}
		ic := dialFrom(tc.src, g.implicit)
		tc2 := tls.Client(ic, g.certs.ClientConfig())
		if err := tc2.Handshake(); err == nil {
			t.Fatalf("implicit listener served %s", tc.src)
		}
	}
	// The allowed address is served as usual.
	c := g.login(t, be.User, be.Password)
	c.Cmd(221, "QUIT")
	if got := strings.Join(g.deniedRules(t), ","); got != "deny_cidrs,deny_cidrs,allow_cidrs,allow_cidrs" {
		t.Fatalf("policy_denied rules %s", got)
	}
}

// TestRoutes: route blocks send sessions to backends by user, HOST and TLS
// SNI, first match first; others go to the listener's backend.
func TestRoutes(t *testing.T) {
	main := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	vault := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	partner := ftptest.ProFTPD(t, ftptest.ProFTPDOptions{})
	writeFile(t, main.Root, "where.txt", []byte("main\n"))
	writeFile(t, vault.Root, "where.txt", []byte("vault\n"))
	writeFile(t, partner.Root, "where.txt", []byte("partner\n"))
	g := startGate(t, main.Addr, gateOptions{extra: fmt.Sprintf(`
backend "vault" {
  address = %q
}
backend "partner" {
  address = %q
}
route "partner-by-host" {
  hosts   = ["ftp.partner.example", "*.partner.example"]
  backend = "partner"
}
route "vault-by-sni" {
  sni     = ["localhost"]
  users   = [%q]
  backend = "vault"
}
`, vault.Addr, partner.Addr, main.User)})
	where := func(c *ftptest.Conn) string {
		d := c.DialData(c.EPSV())
		c.Cmd(150, "RETR where.txt")
		got := strings.TrimSpace(string(ftptest.ReadAll(t, d)))
		c.Expect(226)
		c.Cmd(221, "QUIT")
		return got
	}
	// No SNI (the client names an IP), no HOST: the listener's backend.
	noSNI := g.certs.ClientConfig()
	noSNI.ServerName = "127.0.0.1"
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(noSNI)
	c.LoginProtP(main.User, main.Password)
	if got := where(c); got != "main" {
		t.Fatalf("default route: %s", got)
	}
	// SNI "localhost" and the user: the vault.
	c = g.login(t, main.User, main.Password)
	if got := where(c); got != "vault" {
		t.Fatalf("SNI route: %s", got)
	}
	// HOST wins, being the first route, whatever the SNI.
	c = ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(220, "HOST eu.Partner.example")
	c.LoginProtP(partner.User, partner.Password)
	if got := where(c); got != "partner" {
		t.Fatalf("HOST route: %s", got)
	}
	var routes []string
	for _, e := range g.eventsOf(t, "login") {
		routes = append(routes, fmt.Sprint(e["backend"], "/", e["route"]))
	}
	if strings.Join(routes, " ") != "legacy/ vault/vault-by-sni partner/partner-by-host" {
		t.Fatalf("login events: %v", routes)
	}
}

// TestMaxSessionsPerUser: a user at the bound is refused at USER, before
// the backend sees a password; two logins racing past USER are settled at
// the backend's 230; a closed session gives its place back.
func TestMaxSessionsPerUser(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{policy: "max_sessions_per_user = 1"})
	dial := func() *ftptest.Conn {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		return c
	}
	a, b := dial(), dial()
	a.Cmd(331, "USER %s", be.User)
	b.Cmd(331, "USER %s", be.User) // both pass USER: nobody is logged in yet
	a.Cmd(230, "PASS %s", be.Password)
	if msg := b.Cmd(530, "PASS %s", be.Password); !strings.Contains(msg, "Too many sessions") {
		t.Fatalf("second login: %q", msg)
	}
	c := dial()
	c.Cmd(530, "USER %s", be.User) // refused before the backend
	a.Cmd(221, "QUIT")
	deadline := time.Now().Add(30 * time.Second)
	for len(g.eventsOf(t, "session_end")) == 0 { // a's end, which gives its place back
		if time.Now().After(deadline) {
			t.Fatal("the first session did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Cmd(331, "USER %s", be.User)
	b.Cmd(230, "PASS %s", be.Password)
	b.Cmd(221, "QUIT")
	if got := strings.Join(g.deniedRules(t), ","); got != "max_sessions_per_user,max_sessions_per_user" {
		t.Fatalf("policy_denied rules %s", got)
	}
}

// TestXferlog: file transfers through the proxy appear in the xferlog
// stream, one line each, field by field as xferlog(5) has them; listings
// do not.
func TestXferlog(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	ftptest.RandomFile(t, local, 123457)
	args := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}
	ftptest.Curl(t, append(args, "-T", local, ftpURL("ftp", be.User, be.Password, g.explicit, "x.bin"))...)
	ftptest.Curl(t, append(args, "-o", filepath.Join(dir, "down"), ftpURL("ftp", be.User, be.Password, g.explicit, "x.bin"))...)
	ftptest.Curl(t, append(args, ftpURL("ftp", be.User, be.Password, g.explicit, "/"))...) // LIST: not in xferlog
	c := g.login(t, be.User, be.Password)
	writeFile(t, be.Root, "t.txt", []byte("a\nb\n"))
	d := c.DialData(c.EPSV()) // TYPE A: vsftpd's default and RFC 959's
	c.Cmd(150, "RETR t.txt")
	ftptest.ReadAll(t, d)
	c.Expect(226)
	c.Cmd(221, "QUIT")

	lines := strings.Split(strings.TrimSpace(string(g.xferlog.Bytes())), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 xferlog lines, got %q", lines)
	}
	for i, want := range []struct{ size, name, typ, dir string }{
		{"123457", "/x.bin", "b", "i"}, {"123457", "/x.bin", "b", "o"}, {"", "/t.txt", "a", "o"},
	} {
		f := strings.Fields(lines[i])
		if len(f) != 18 {
			t.Fatalf("line %q has %d fields", lines[i], len(f))
		}
		if _, err := time.ParseInLocation("Mon Jan 2 15:04:05 2006", strings.Join(f[0:5], " "), time.Local); err != nil {
			t.Fatalf("time field of %q: %v", lines[i], err)
		}
		if f[5] < "1" || f[6] != "127.0.0.1" || (want.size != "" && f[7] != want.size) || f[8] != want.name ||
			f[9] != want.typ || f[10] != "_" || f[11] != want.dir || f[12] != "r" || f[13] != be.User ||
			f[14] != "ftp" || f[15] != "0" || f[16] != "*" || f[17] != "c" {
			t.Fatalf("xferlog line %d: %q", i, lines[i])
		}
	}
}
