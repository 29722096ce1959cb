package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Edge authentication against a directory (issue 17): Debian's slapd,
// started by each test on loopback, checks the passwords; the tests count
// the backend's connections as edgeauth_test.go does.

const (
	people   = "ou=people,dc=test"
	groups   = "ou=groups,dc=test"
	services = "ou=services,dc=test"
)

// directory starts a slapd whose people are alice (in cn=ftp), bob (in
// cn=auditors), carol (in cn=finance), dave (in no group), and mole, a
// contractor in a branch below people; and the service account
// cn=ftpsgate,ou=services. It returns the slapd and its CA.
func directory(t *testing.T) (*ftptest.Slapd, *ftptest.Certs) {
	t.Helper()
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	ou := func(dn, name string) string {
		return fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n", dn, name)
	}
	ldif := ou(people, "people") + ou(groups, "groups") + ou(services, "services") +
		ou("ou=contractors,"+people, "contractors") +
		ftptest.LDIFUser("alice", people, "alice-ldap-pw") + ftptest.LDIFUser("bob", people, "bob-ldap-pw") +
		ftptest.LDIFUser("carol", people, "carol-ldap-pw") + ftptest.LDIFUser("dave", people, "dave-ldap-pw") +
		ftptest.LDIFUser("mole", "ou=contractors,"+people, "mole-ldap-pw") +
		"dn: cn=ftpsgate," + services + "\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: ftpsgate\nuserPassword: svc-ldap-pw\n\n" +
		ftptest.LDIFGroup("ftp", groups, "uid=alice,"+people) + ftptest.LDIFGroup("auditors", groups, "uid=bob,"+people) +
		ftptest.LDIFGroup("finance", groups, "uid=carol,"+people)
	return ftptest.StartSlapd(t, certs, ldif), certs
}

// ldapGate starts a gate whose listeners check logins against the ldap
// block body (and authExtra, more of the auth block), mapped to the
// backend's account; a second backend block, "finance", is the same
// server, and route "finance" leads to it.
func ldapGate(t *testing.T, be *ftptest.Server, body, authExtra, extra string) (*gate, *backendTap) {
	t.Helper()
	tap := &backendTap{control: be.Addr}
	pw := filepath.Join(t.TempDir(), "backend.pass")
	if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `auth = "corp"`,
		dialBackend:   tap.dial,
		extra: fmt.Sprintf(`auth "corp" {
  ldap {
%s
  }
  backend_user          = %q
  backend_password_file = %q
  %s
}
backend "finance" {
  address = %q
  tls     = "none"
}
route "finance" {
  users   = ["finance-*"]
  backend = "finance"
}
bans {
  safelist = ["127.0.0.0/8"]
}
%s`, body, be.User, pw, authExtra, be.Addr, extra),
	})
	return g, tap
}

// serviceFile writes the service account's password.
func serviceFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ldap.pass")
	if err := os.WriteFile(p, []byte("svc-ldap-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// searchBody is an ldap block that searches as the service account over
// StartTLS, with the groups of directory.
func searchBody(d *ftptest.Slapd, certs *ftptest.Certs, t *testing.T) string {
	return fmt.Sprintf(`    url                   = %q
    start_tls             = true
    ca_file               = %q
    service_dn            = "cn=ftpsgate,%s"
    service_password_file = %q
    base_dn               = %q
    user_filter           = "(&(objectClass=inetOrgPerson)(uid={user}))"
    group "cn=auditors,%s" {
      read_only = true
    }
    group "cn=finance,%s" {
      route = "finance"
    }
    group "cn=ftp,%s" {}`, d.URL, certs.CAFile, services, serviceFile(t), people, groups, groups, groups)
}

// loginEvents are the audit's login events as user/result/reason/method.
func loginEvents(t *testing.T, g *gate) []string {
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["user"], "/", e["result"], "/", e["reason"], "/", e["method"]))
	}
	return got
}

// metricsOf is the gate's /metrics page.
func metricsOf(t *testing.T, g *gate) string {
	admin := httptest.NewServer(g.srv.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestEdgeLDAPBindTemplate: over LDAPS, with a DN template, alice logs in
// and reaches the backend as the mapped account; a wrong password, an
// unknown name, an empty password (which would be an unauthenticated bind,
// and never reaches the directory) and a name that would name another
// entry through the template ("mole,ou=contractors") get 530 and no
// backend connection.
func TestEdgeLDAPBindTemplate(t *testing.T) {
	d, certs := directory(t)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, tap := ldapGate(t, be, fmt.Sprintf(`    url              = %q
    ca_file          = %q
    bind_dn_template = "uid={user},%s"`, d.LDAPSURL, certs.CAFile, people), "", "")

	refusedAtEdge(t, g, "alice", "wrong")
	refusedAtEdge(t, g, "nobody", "alice-ldap-pw")
	refusedAtEdge(t, g, "mole,ou=contractors", "mole-ldap-pw")
	binds := strings.Count(d.Log(), " BIND ")
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER alice")
	c.Cmd(530, "PASS")
	c.Cmd(221, "QUIT")
	if n := strings.Count(d.Log(), " BIND "); n != binds {
		t.Fatalf("an empty password reached the directory (%d binds, %d before)", n, binds)
	}
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections after refused logins", n)
	}
	c = g.login(t, "alice", "alice-ldap-pw")
	c.Cmd(257, "PWD")
	c.Cmd(221, "QUIT")
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections for one login", n)
	}
	if w := tap.wire(); strings.Contains(w, "alice") || !strings.Contains(w, "USER "+be.User+"\r\n") {
		t.Fatalf("the backend got:\n%s", w)
	}
	want := []string{"alice/failure/invalid_credentials/ldap", "nobody/failure/invalid_credentials/ldap",
		"mole,ou=contractors/failure/invalid_credentials/ldap", "alice/failure/empty_password/ldap", "alice/success//ldap"}
	if got := loginEvents(t, g); !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
	m := metricsOf(t, g)
	for _, w := range []string{`ftpsgate_logins_total{method="ldap",result="failure"} 4`, `ftpsgate_logins_total{method="ldap",result="success"} 1`} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
}

// TestEdgeLDAPSearchGroups: search-then-bind over StartTLS; a group
// decides: alice (cn=ftp) may write, bob (cn=auditors) is read-only (STOR
// gets the policy's 550), carol (cn=finance) goes to route "finance"'s
// backend, dave (in no group) is refused. Names that would be filters of
// their own (a wildcard, a closing parenthesis) or a DN's separator match
// nobody, with alice's password.
func TestEdgeLDAPSearchGroups(t *testing.T) {
	d, certs := directory(t)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, tap := ldapGate(t, be, searchBody(d, certs, t), "", "")

	c := g.login(t, "alice", "alice-ldap-pw")
	c.Cmd(257, "MKD alice-dir")
	c.Cmd(221, "QUIT")
	c = g.login(t, "bob", "bob-ldap-pw")
	if msg := c.Cmd(550, "STOR bob.txt"); msg != "Permission denied: read-only access." {
		t.Fatalf("STOR by a read-only user: %q", msg)
	}
	c.Cmd(550, "MKD bob-dir")
	c.Cmd(221, "QUIT")
	c = g.login(t, "carol", "carol-ldap-pw")
	c.Cmd(257, "PWD")
	c.Cmd(221, "QUIT")
	refusedAtEdge(t, g, "dave", "dave-ldap-pw")
	for _, name := range []string{"*", "ali*", "alice)(objectClass=*", "alice)(|(uid=*", "uid=alice,ou=people"} {
		refusedAtEdge(t, g, name, "alice-ldap-pw")
	}
	// NUL never reaches the directory: the line is refused.
	c = ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.SendRaw([]byte("USER alice\x00*\r\n"))
	if code, msg := c.Read(); code != 500 {
		t.Fatalf("USER with a NUL: %d %s", code, msg)
	}
	c.Cmd(221, "QUIT")
	if n := tap.dials.Load(); n != 3 {
		t.Fatalf("%d backend connections for three logins", n)
	}
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["user"], "/", e["result"], "/", e["reason"], "/", e["backend"], "/", e["route"], "/", e["read_only"]))
	}
	want := []string{"alice/success//legacy//false", "bob/success//legacy//true",
		"carol/success//finance/finance/false", "dave/failure/not_in_group///false"}
	for _, name := range []string{"*", "ali*", "alice)(objectClass=*", "alice)(|(uid=*", "uid=alice,ou=people"} {
		want = append(want, name+"/failure/unknown_user///false")
	}
	if !slices.Equal(got, want) {
		t.Fatalf("login events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEdgeLDAPCertificate: the directory's certificate is verified over
// LDAPS and StartTLS: with another CA's certificate as ca_file, the login
// gets 421 and no backend connection, and the log says why.
func TestEdgeLDAPCertificate(t *testing.T) {
	d, _ := directory(t)
	other := ftptest.NewCerts(t, ftptest.ECDSA)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, tc := range []struct{ name, url, startTLS string }{
		{"ldaps", d.LDAPSURL, "false"},
		{"starttls", d.URL, "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, tap := ldapGate(t, be, fmt.Sprintf(`    url              = %q
    start_tls        = %s
    ca_file          = %q
    bind_dn_template = "uid={user},%s"`, tc.url, tc.startTLS, other.CAFile, people), "", "")
			c := ftptest.Dial(t, g.explicit)
			c.AuthTLS(g.certs.ClientConfig())
			c.Cmd(331, "USER alice")
			if msg := c.Cmd(421, "PASS alice-ldap-pw"); !strings.Contains(msg, "try again later") {
				t.Fatalf("421 text %q", msg)
			}
			if tap.dials.Load() != 0 {
				t.Fatal("a login the directory could not check reached the backend")
			}
			w := g.logs.FilterMessage("the directory did not answer; the login is refused for now").All()
			if len(w) != 1 || !strings.Contains(fmt.Sprint(w[0].ContextMap()["error"]), "certificate") {
				t.Fatalf("warnings %v", w)
			}
		})
	}
}

// TestEdgeLDAPDirectoryDown: a directory that stops mid-test gets the
// next login 421, with no backend connection, counted in
// ftpsgate_ldap_errors_total and never toward a ban; once it is back,
// logins work again (the pool drops its dead connections). A directory
// that accepts but never answers gets 421 within the timeout.
func TestEdgeLDAPDirectoryDown(t *testing.T) {
	d, certs := directory(t)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, tap := ldapGate(t, be, searchBody(d, certs, t), "", "")
	c := g.login(t, "alice", "alice-ldap-pw")
	c.Cmd(221, "QUIT")

	d.Stop()
	c = ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER alice")
	if msg := c.Cmd(421, "PASS alice-ldap-pw"); !strings.Contains(msg, "authentication service did not answer") {
		t.Fatalf("421 text %q", msg)
	}
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections; want the first login's only", n)
	}
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("the directory's outage banned the client: %q", got)
	}
	m := metricsOf(t, g)
	for _, w := range []string{`ftpsgate_ldap_errors_total{auth="corp"} 1`, `ftpsgate_logins_total{method="ldap",result="unavailable"} 1`} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if evs := g.eventsOf(t, "login"); len(evs) != 2 || evs[1]["reason"] != "ldap_unavailable" || evs[1]["code"] != float64(421) {
		t.Fatalf("login events %v", evs)
	}

	d.Restart()
	c = g.login(t, "alice", "alice-ldap-pw")
	c.Cmd(221, "QUIT")

	// A directory that accepts and then says nothing.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	defer held.Wait()
	defer hung.Close()
	held.Add(1)
	go func() {
		defer held.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	g3, tap3 := ldapGate(t, be, fmt.Sprintf(`    url              = "ldaps://%s"
    ca_file          = %q
    timeout          = "1s"
    bind_dn_template = "uid={user},%s"`, hung.Addr(), certs.CAFile, people), "", "")
	c = ftptest.Dial(t, g3.explicit)
	c.AuthTLS(g3.certs.ClientConfig())
	c.Cmd(331, "USER alice")
	start := time.Now()
	c.Cmd(421, "PASS alice-ldap-pw")
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("421 after %v with a timeout of 1s", el)
	}
	if tap3.dials.Load() != 0 {
		t.Fatal("a login the directory did not answer reached the backend")
	}
}

// slowProxy relays TCP to target on a loopback port of its own, holding
// every chunk the target sends for delay after it was sent (a line with
// latency, not a queue): a directory across a slow network, where each
// round trip shows in the reply's timing.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(s, c)
				s.Close()
			}()
			type chunk struct {
				at   time.Time
				data []byte
			}
			chunks := make(chan chunk, 1024)
			wg.Add(1)
			go func() { // the line: each chunk arrives delay after it was sent
				defer wg.Done()
				defer c.Close()
				for ch := range chunks {
					time.Sleep(time.Until(ch.at.Add(delay)))
					if _, err := c.Write(ch.data); err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer close(chunks)
				for {
					buf := make([]byte, 64<<10)
					n, err := s.Read(buf)
					if n > 0 {
						chunks <- chunk{time.Now(), buf[:n]}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestEdgeLDAPTiming: with search-then-bind, an unknown name costs the
// same round trips as a wrong password (a bind against a DN that does
// not exist), so that the reply's timing does not tell which names the
// directory holds. The directory is 30 ms away, so that a round trip
// saved shows.
func TestEdgeLDAPTiming(t *testing.T) {
	d, certs := directory(t)
	slow := slowProxy(t, strings.TrimPrefix(d.LDAPSURL, "ldaps://"), 30*time.Millisecond)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, tap := ldapGate(t, be, fmt.Sprintf(`    url                   = "ldaps://%s"
    ca_file               = %q
    service_dn            = "cn=ftpsgate,%s"
    service_password_file = %q
    base_dn               = %q`, slow, certs.CAFile, services, serviceFile(t), people), "", "")
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	time530 := func(user string) time.Duration {
		c.Cmd(331, "USER %s", user)
		start := time.Now()
		c.Cmd(530, "PASS not-the-password")
		return time.Since(start)
	}
	var wrong, unknown []time.Duration
	for i := 0; i < 7; i++ { // interleaved: load on the machine hits both alike
		wrong = append(wrong, time530("alice"))
		unknown = append(unknown, time530(fmt.Sprintf("nobody%d", i)))
	}
	mw, mu := median(wrong), median(unknown)
	t.Logf("median 530 after a wrong password %v, after an unknown user %v (%v; %v)", mw, mu, wrong, unknown)
	// Three round trips each (service bind, search, bind); one fewer
	// would be 2/3.
	if mu < mw*85/100 || mu > mw*100/85 {
		t.Fatalf("median 530 after a wrong password %v, after an unknown user %v: separable", mw, mu)
	}
	if tap.dials.Load() != 0 {
		t.Fatal("a refused login reached the backend")
	}
}

// TestEdgeLDAPTOTP: a directory and a second factor combine: the
// password without its code goes to the bind, the code is checked after
// it ("ldap+totp"), and a wrong code is refused without a backend
// connection.
func TestEdgeLDAPTOTP(t *testing.T) {
	d, certs := directory(t)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	secrets := filepath.Join(t.TempDir(), "totp")
	if err := os.WriteFile(secrets, []byte("alice:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, tap := ldapGate(t, be, fmt.Sprintf(`    url              = %q
    ca_file          = %q
    bind_dn_template = "uid={user},%s"`, d.LDAPSURL, certs.CAFile, people), fmt.Sprintf("totp_secrets_file = %q", secrets), "")
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(code)
	wrong := fmt.Sprintf("%06d", (n+1)%1000000)
	refusedAtEdge(t, g, "alice", "alice-ldap-pw"+wrong)
	refusedAtEdge(t, g, "alice", "alice-ldap-pw") // its last six characters taken for a code
	if tap.dials.Load() != 0 {
		t.Fatal("a refused login reached the backend")
	}
	c := g.login(t, "alice", "alice-ldap-pw"+code)
	c.Cmd(221, "QUIT")
	want := []string{"alice/failure/totp_invalid/ldap+totp", "alice/failure/invalid_credentials/ldap+totp", "alice/success//ldap+totp"}
	if got := loginEvents(t, g); !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
}

// TestEdgeLDAPServiceAccountRefused: a service account the directory
// refuses is the operator's to fix, not the client's fault: 421 with a
// warning that names it, and no 530 counted toward a ban.
func TestEdgeLDAPServiceAccountRefused(t *testing.T) {
	d, certs := directory(t)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	body := strings.Replace(searchBody(d, certs, t), "cn=ftpsgate,", "cn=nosuchservice,", 1)
	g, tap := ldapGate(t, be, body, "", "")
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER alice")
	c.Cmd(421, "PASS alice-ldap-pw")
	w := g.logs.FilterMessage("the directory did not answer; the login is refused for now").All()
	if len(w) != 1 || !strings.Contains(fmt.Sprint(w[0].ContextMap()["error"]), "service_dn") || tap.dials.Load() != 0 {
		t.Fatalf("warnings %v, %d backend connections", w, tap.dials.Load())
	}
}
