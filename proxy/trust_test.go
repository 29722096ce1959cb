package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Attacks on the policy through the real servers that make them work: one
// server's alias or extension is another's bypass. Each test first shows
// the command does what the attacker wants when the policy allows it, so
// that the refusal it then checks is the policy's.

// retr downloads name through c (EPSV, TYPE as set).
func retr(t *testing.T, c *ftptest.Conn, name string) []byte {
	t.Helper()
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR %s", name)
	got := ftptest.ReadAll(t, d)
	c.Expect(226)
	return got
}

// TestReadOnlyCannotWrite: pure-ftpd's bare CHMOD and vsftpd's two-argument
// MDTM (mdtm_write, on by default) change files; a read-only user gets 550
// for both, and the files stay as they were.
func TestReadOnlyCannotWrite(t *testing.T) {
	t.Run("pure-ftpd CHMOD", func(t *testing.T) {
		be := ftptest.PureFTPd(t)
		writeFile(t, be.Root, "f.txt", []byte("f\n"))
		writeFile(t, be.Root, "g.txt", []byte("g\n"))
		ftptest.Chown(t, filepath.Join(be.Root, "f.txt"))
		ftptest.Chown(t, filepath.Join(be.Root, "g.txt"))
		// Allowed, the command works: the attack is real.
		open := startGate(t, be.Addr, gateOptions{})
		c := open.login(t, be.User, be.Password)
		c.Cmd(200, "CHMOD 600 g.txt")
		if fi, _ := os.Stat(filepath.Join(be.Root, "g.txt")); fi.Mode().Perm() != 0o600 {
			t.Fatalf("pure-ftpd's CHMOD did not work (mode %v): the test proves nothing", fi.Mode())
		}
		ro := startGate(t, be.Addr, gateOptions{policy: fmt.Sprintf(`read_only_users = [%q]`, be.User)})
		c = ro.login(t, be.User, be.Password)
		c.Cmd(550, "CHMOD 777 f.txt")
		c.Cmd(550, "chmod 777 f.txt")
		c.Cmd(550, "SITE CHMOD 777 f.txt")
		c.Cmd(550, "SITE  chmod 777 f.txt")
		c.Cmd(221, "QUIT")
		if fi, _ := os.Stat(filepath.Join(be.Root, "f.txt")); fi.Mode().Perm() != 0o644 {
			t.Fatalf("f.txt mode %v: a read-only user changed it", fi.Mode())
		}
		if got := ro.deniedRules(t); len(got) != 4 || got[0] != "read_only_users" {
			t.Fatalf("policy_denied %v", got)
		}
	})
	t.Run("vsftpd MDTM with a time", func(t *testing.T) {
		be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
		for _, n := range []string{"f.txt", "g.txt"} {
			writeFile(t, be.Root, n, []byte("x\n"))
			ftptest.Chown(t, filepath.Join(be.Root, n))
		}
		open := startGate(t, be.Addr, gateOptions{})
		c := open.login(t, be.User, be.Password)
		c.Cmd(213, "MDTM 20000101000000 g.txt")
		if fi, _ := os.Stat(filepath.Join(be.Root, "g.txt")); fi.ModTime().Year() != 2000 {
			t.Fatalf("vsftpd's MDTM did not set the time (%v): the test proves nothing", fi.ModTime())
		}
		before, _ := os.Stat(filepath.Join(be.Root, "f.txt"))
		ro := startGate(t, be.Addr, gateOptions{policy: fmt.Sprintf(`read_only_users = [%q]`, be.User)})
		c = ro.login(t, be.User, be.Password)
		c.Cmd(550, "MDTM 20000101000000 f.txt")
		c.Cmd(550, "MDTM 20000101000000.123 f.txt")
		c.Cmd(550, "MDTM  20000101000000 f.txt")
		c.Cmd(213, "MDTM f.txt") // reading the time is fine
		c.Cmd(221, "QUIT")
		if after, _ := os.Stat(filepath.Join(be.Root, "f.txt")); !after.ModTime().Equal(before.ModTime()) {
			t.Fatalf("f.txt time %v, was %v: a read-only user set it", after.ModTime(), before.ModTime())
		}
	})
	t.Run("unknown and extension verbs", func(t *testing.T) {
		// Read-only is an allow-list: anything not classed read, list,
		// session or data is refused, SITE subcommands included.
		be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
		writeFile(t, be.Root, "f.txt", []byte("x\n"))
		ro := startGate(t, be.Addr, gateOptions{policy: fmt.Sprintf("read_only_users = [%q]\n  unknown_commands = \"relay\"", be.User)})
		c := ro.login(t, be.User, be.Password)
		for _, line := range []string{"XMKD d", "XRMD d", "MFMT 20000101000000 f.txt", "SITE UTIME f.txt 20000101000000",
			"SITE SYMLINK f.txt l", "SITE CPFR f.txt", "SITE NEWTHING f.txt", "SITE", "RMDA d", "ALLO 10", "XYZZY f.txt"} {
			c.Cmd(550, "%s", line)
		}
		c.Cmd(214, "SITE HELP")
		c.Cmd(257, "XPWD")
		c.Cmd(221, "QUIT")
	})
}

// TestDenyCommandsAliases: a rule on MKD, RMD or SITE also refuses XMKD,
// XRMD (vsftpd runs both) and pure-ftpd's bare CHMOD.
func TestDenyCommandsAliases(t *testing.T) {
	t.Run("vsftpd X verbs", func(t *testing.T) {
		be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
		if err := os.Mkdir(filepath.Join(be.Root, "keep"), 0o777); err != nil {
			t.Fatal(err)
		}
		open := startGate(t, be.Addr, gateOptions{})
		c := open.login(t, be.User, be.Password)
		c.Cmd(257, "XMKD proof") // the alias works on vsftpd
		c.Cmd(250, "XRMD proof")
		g := startGate(t, be.Addr, gateOptions{policy: `deny_commands = ["MKD", "RMD", "SITE", "MDTM"]`})
		c = g.login(t, be.User, be.Password)
		if feat := c.Cmd(211, "FEAT"); strings.Contains(feat, "MDTM") || !strings.Contains(feat, "SIZE") {
			t.Fatalf("FEAT should drop the denied MDTM and keep SIZE: %q", feat)
		}
		c.Cmd(502, "XMKD d1")
		c.Cmd(502, "xmkd d1")
		c.Cmd(502, "MKD d1")
		c.Cmd(502, "XRMD keep")
		c.Cmd(257, "XPWD")
		c.Cmd(221, "QUIT")
		if _, err := os.Stat(filepath.Join(be.Root, "d1")); err == nil {
			t.Fatal("d1 was created")
		}
		if _, err := os.Stat(filepath.Join(be.Root, "keep")); err != nil {
			t.Fatal("keep was removed")
		}
		log, _ := os.ReadFile(be.Log)
		if strings.Contains(string(log), "XMKD d1") || strings.Contains(string(log), "XRMD keep") {
			t.Fatal("vsftpd saw a denied command")
		}
	})
	t.Run("pure-ftpd bare CHMOD", func(t *testing.T) {
		be := ftptest.PureFTPd(t)
		writeFile(t, be.Root, "f.txt", []byte("f\n"))
		ftptest.Chown(t, filepath.Join(be.Root, "f.txt"))
		for _, rules := range []string{`["SITE"]`, `["SITE CHMOD"]`, `["CHMOD"]`} {
			g := startGate(t, be.Addr, gateOptions{policy: "deny_commands = " + rules})
			c := g.login(t, be.User, be.Password)
			c.Cmd(502, "CHMOD 600 f.txt")
			c.Cmd(502, "SITE CHMOD 600 f.txt")
			c.Cmd(221, "QUIT")
			if fi, _ := os.Stat(filepath.Join(be.Root, "f.txt")); fi.Mode().Perm() != 0o644 {
				t.Fatalf("deny_commands = %s: f.txt mode %v", rules, fi.Mode())
			}
		}
	})
}

// TestUnknownVerbs: a verb the table does not know gets 502 and never
// reaches the backend (LPSV would hand out the backend's own address);
// unknown_commands = "relay" relays it.
func TestUnknownVerbs(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	c := g.login(t, be.User, be.Password)
	c.Cmd(502, "LPSV")
	c.Cmd(502, "XYZZY")
	c.Cmd(221, "QUIT")
	log, _ := os.ReadFile(be.Log)
	if strings.Contains(string(log), "LPSV") || strings.Contains(string(log), "XYZZY") {
		t.Fatal("vsftpd saw an unknown verb")
	}
	if got := g.deniedRules(t); strings.Join(got, ",") != "unknown_commands,unknown_commands" {
		t.Fatalf("policy_denied %v", got)
	}
	relay := startGate(t, be.Addr, gateOptions{policy: `unknown_commands = "relay"`})
	c = relay.login(t, be.User, be.Password)
	c.Cmd(500, "XYZZY") // vsftpd's own answer
	c.Cmd(221, "QUIT")
}

// TestUserNameSpellings: a name differing from a rule's only by case gets
// the rule (user_names = "case_insensitive", the default), and leading or
// trailing white space is refused (501) before any rule or backend: a
// backend that folds case or trims would otherwise log in a user the
// policy never judged. The scripted backend logs any name in, as a
// case-insensitive directory would.
func TestUserNameSpellings(t *testing.T) {
	sb := startScriptedBackend(t, &scriptedBackend{})
	g := startGate(t, sb.ln.Addr().String(), gateOptions{policy: `deny_users = ["ftpuser"]
  read_only_users = ["alice"]`, extra: "bans {\n  failures = 0\n}"})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(501, "USER  ftpuser")
	c.Cmd(501, "USER ftpuser ")
	c.SendRaw([]byte("USER ftp\x85user\r\n"))
	c.Expect(501)
	c.Cmd(331, "USER FTPUSER")
	c.Cmd(530, "PASS secret")
	if users := sb.usersSeen(); len(users) != 0 {
		t.Fatalf("the backend saw %q", users)
	}
	c.Cmd(331, "USER Alice")
	c.Cmd(230, "PASS secret")
	c.Cmd(550, "DELE f.txt") // read-only, whatever the case
	c.Cmd(550, "STOR f.txt")
	c.Cmd(221, "QUIT")
	exact := startGate(t, sb.ln.Addr().String(), gateOptions{policy: `deny_users = ["ftpuser"]
  user_names = "exact"`})
	c = ftptest.Dial(t, exact.explicit)
	c.AuthTLS(exact.certs.ClientConfig())
	c.Cmd(331, "USER FTPUSER")
	c.Cmd(230, "PASS secret")
	if users := sb.usersSeen(); !slices.Contains(users, "FTPUSER") {
		t.Fatalf("user_names = exact: the backend saw %q", users)
	}
}

// TestNoUserEnumeration: a name the policy refuses is answered exactly as a
// wrong password: 331 at USER, 530 at PASS, the same texts, after as long
// (medians compared; vsftpd waits 1 s before a failed login's 530), and
// the backend never sees the name. The audit keeps the real reason.
func TestNoUserEnumeration(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{policy: `deny_users = ["root"]`, extra: "bans {\n  failures = 0\n}"})
	type answer struct {
		userText, passText string
		userTime, passTime time.Duration
	}
	try := func(user string) answer {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		var a answer
		t0 := time.Now()
		a.userText = c.Cmd(331, "USER %s", user)
		a.userTime = time.Since(t0)
		t0 = time.Now()
		a.passText = c.Cmd(530, "PASS wrong-password")
		a.passTime = time.Since(t0)
		c.Cmd(221, "QUIT")
		return a
	}
	var refused, wrong []answer
	for i := 0; i < 5; i++ { // interleaved, so both meet the same load
		wrong = append(wrong, try(be.User))
		refused = append(refused, try("root"))
	}
	median := func(as []answer, f func(answer) time.Duration) time.Duration {
		var ds []time.Duration
		for _, a := range as {
			ds = append(ds, f(a))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	for i := range refused {
		if refused[i].userText != wrong[i].userText || refused[i].passText != wrong[i].passText {
			t.Fatalf("texts differ: refused name %q/%q, wrong password %q/%q",
				refused[i].userText, refused[i].passText, wrong[i].userText, wrong[i].passText)
		}
	}
	// USER alone is cheap: more rounds, so that its medians hold under
	// load (five, taken with the PASS rounds, were too few: one slow
	// backend greeting among the delays the proxy draws from moved them).
	userOnly := func(user string) answer {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		t0 := time.Now()
		c.Cmd(331, "USER %s", user)
		a := answer{userTime: time.Since(t0)}
		c.Cmd(221, "QUIT")
		return a
	}
	var refusedUser, knownUser []answer
	for i := 0; i < 25; i++ {
		knownUser = append(knownUser, userOnly(be.User))
		refusedUser = append(refusedUser, userOnly("root"))
	}
	userTime := func(a answer) time.Duration { return a.userTime }
	passTime := func(a answer) time.Duration { return a.passTime }
	rp, wp := median(refused, passTime), median(wrong, passTime)
	ru, wu := median(refusedUser, userTime), median(knownUser, userTime)
	t.Logf("median PASS: refused %v, wrong password %v; median USER: refused %v, known %v", rp, wp, ru, wu)
	if d := rp - wp; d < -wp/4 || d > wp/4 {
		t.Errorf("PASS answered in %v for a refused name, %v for a wrong password", rp, wp)
	}
	if d := ru - wu; d < -wu/2-2*time.Millisecond || d > wu/2+2*time.Millisecond {
		t.Errorf("USER answered in %v for a refused name, %v for a known one", ru, wu)
	}
	log, _ := os.ReadFile(be.Log)
	if strings.Contains(string(log), "root") {
		t.Fatal("vsftpd saw the refused name")
	}
	var reasons []string
	for _, e := range g.eventsOf(t, "login") {
		reasons = append(reasons, fmt.Sprint(e["reason"]))
	}
	if strings.Count(strings.Join(reasons, ","), "deny_users") != 5 {
		t.Fatalf("login events' reasons %v", reasons)
	}
}

// TestPlaintextHostForgotten: a HOST sent before AUTH TLS (which anyone on
// the path could have injected) is forgotten at the handshake, so it cannot
// choose the backend the password goes to; the client may send HOST again
// under TLS, and a HOST that the TLS SNI confirms is kept.
func TestPlaintextHostForgotten(t *testing.T) {
	tenantA := startScriptedBackend(t, &scriptedBackend{})
	tenantB := startScriptedBackend(t, &scriptedBackend{})
	extra := fmt.Sprintf(`backend "tenant-b" {
  address = %q
  tls = "none"
}
route "b" {
  hosts = ["tenant-b.example"]
  backend = "tenant-b"
}`, tenantB.ln.Addr().String())
	g := startGate(t, tenantA.ln.Addr().String(), gateOptions{extra: extra})

	c := ftptest.Dial(t, g.explicit)
	c.Cmd(220, "HOST tenant-b.example") // injected in clear
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER alice")
	c.Cmd(230, "PASS secret")
	if len(tenantB.usersSeen()) != 0 || !slices.Contains(tenantA.usersSeen(), "alice") {
		t.Fatalf("a plaintext HOST routed the login: tenant-a saw %q, tenant-b %q", tenantA.usersSeen(), tenantB.usersSeen())
	}
	drops := g.eventsOf(t, "host_dropped")
	if len(drops) != 1 || drops[0]["host"] != "tenant-b.example" {
		t.Fatalf("host_dropped events %v", drops)
	}
	if logins := g.waitEventsOf(t, "login", 1); len(logins) != 1 || logins[0]["host"] != "" || logins[0]["backend"] != "legacy" {
		t.Fatalf("login events %v", logins)
	}

	c = ftptest.Dial(t, g.explicit) // HOST again under TLS: honoured
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(220, "HOST tenant-b.example")
	c.Cmd(331, "USER bob")
	c.Cmd(230, "PASS secret")
	if !slices.Contains(tenantB.usersSeen(), "bob") {
		t.Fatalf("HOST under TLS not honoured: tenant-b saw %q", tenantB.usersSeen())
	}

	c = ftptest.Dial(t, g.explicit) // HOST in clear, confirmed by the SNI: kept
	c.Cmd(220, "HOST Tenant-B.example")
	conf := g.certs.ClientConfig()
	conf.ServerName = "tenant-b.example"
	conf.InsecureSkipVerify = true // the test certificate does not name it
	c.AuthTLS(conf)
	c.Cmd(331, "USER carol")
	c.Cmd(230, "PASS secret")
	if !slices.Contains(tenantB.usersSeen(), "carol") {
		t.Fatalf("HOST confirmed by SNI not kept: tenant-b saw %q", tenantB.usersSeen())
	}
	if n := len(g.eventsOf(t, "host_dropped")); n != 1 {
		t.Fatalf("%d host_dropped events", n)
	}
}

// TestBanReachesOpenSessions: a ban closes the sessions from the banned
// address that have not logged in, and a session opened before the ban
// cannot go on guessing; a session logged in before it is left alone.
func TestBanReachesOpenSessions(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{Extra: []string{"delay_failed_login=0"}})
	g := startGate(t, be.Addr, gateOptions{extra: "bans {\n  failures = 3\n  window = \"1m\"\n  duration = \"1m\"\n}"})
	conf := g.certs.ClientConfig()
	busy := g.login(t, be.User, be.Password) // logged in before the ban
	early := ftptest.Dial(t, g.explicit)     // open, not logged in
	early.AuthTLS(conf)
	guesser := ftptest.Dial(t, g.explicit) // another, to guess on after the ban
	guesser.AuthTLS(conf)
	guesser.Cmd(331, "USER %s", be.User)

	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(conf)
	for i := 0; i < 2; i++ {
		c.Cmd(331, "USER %s", be.User)
		c.Cmd(530, "PASS wrong-%d", i)
	}
	c.Cmd(331, "USER %s", be.User)
	c.Cmd(530, "PASS wrong-2") // the third: banned
	c.Expect(421)

	early.Expect(421) // told at once, without sending anything
	guesser.Send("PASS " + be.Password)
	if code, msg, err := guesser.ReadErr(); err == nil && code != 421 {
		t.Fatalf("a session opened before the ban went on: %d %s", code, msg)
	}
	busy.Cmd(257, "PWD")
	if code := greetingCode(t, g.explicit); code != 421 {
		t.Fatalf("a new connection got %d", code)
	}
}

// greetingCode connects to addr and returns the code of the first reply.
func greetingCode(t *testing.T, addr string) int {
	t.Helper()
	got, err := ftptest.Greeting("", addr, 30*time.Second)
	code, cerr := strconv.Atoi(got[:min(3, len(got))])
	if err != nil || cerr != nil {
		t.Fatalf("greeting from %s: %q, %v", addr, got, err)
	}
	return code
}

// firstCode reads the first reply on c and returns its code.
func firstCode(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	code, _, err := textproto.NewReader(bufio.NewReader(c)).ReadResponse(0)
	if _, ok := err.(*textproto.Error); err != nil && !ok {
		t.Fatalf("reading the first reply: %v", err)
	}
	return code
}

// TestBansByIPv6Prefix: a client is its IPv6 /64 (ipv6_prefix), for bans
// and per-address limits, so failures from many addresses of one /64 ban
// all of it. The clients' addresses come in PROXY headers from a trusted
// balancer on loopback.
func TestBansByIPv6Prefix(t *testing.T) {
	sb := startScriptedBackend(t, &scriptedBackend{passReply: "530 Login incorrect."})
	g := startGate(t, sb.ln.Addr().String(), gateOptions{
		listenerExtra: "proxy_protocol {\n    trusted_cidrs = [\"127.0.0.0/8\"]\n  }",
		extra:         "bans {\n  failures = 5\n}\nlimits {\n  max_sessions_per_ip = 3\n}",
	})
	for i := 0; i < 5; i++ {
		raw := dialWithHeader(t, "127.0.0.1", g.explicit, 2, fmt.Sprintf("[2001:db8:1:2::%x]:40000", 0x100+i*0x111))
		c := ftptest.Wrap(t, raw)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(331, "USER alice")
		c.Cmd(530, "PASS wrong")
		if i == 4 {
			c.Expect(421)
		}
		raw.Close()
	}
	banned := dialWithHeader(t, "127.0.0.1", g.explicit, 2, "[2001:db8:1:2:ffff::1]:40000")
	if code := firstCode(t, banned); code != 421 {
		t.Fatalf("another address of the banned /64 got %d", code)
	}
	bans := g.eventsOf(t, "ban")
	if len(bans) != 1 || bans[0]["address"] != "2001:db8:1:2::/64" {
		t.Fatalf("ban events %v", bans)
	}
	// Per-address limits count the /64 too: three sessions from three
	// addresses of 2001:db8:9:9::/64 are its bound.
	var open []*ftptest.Conn
	for i := 1; i <= 3; i++ {
		open = append(open, ftptest.Wrap(t, dialWithHeader(t, "127.0.0.1", g.explicit, 2, fmt.Sprintf("[2001:db8:9:9::%d]:40000", i))))
	}
	if code := firstCode(t, dialWithHeader(t, "127.0.0.1", g.explicit, 2, "[2001:db8:9:9::4]:40000")); code != 421 {
		t.Fatalf("a fourth session from the /64 got %d", code)
	}
	if code := firstCode(t, dialWithHeader(t, "127.0.0.1", g.explicit, 2, "[2001:db8:9:a::1]:40000")); code != 220 {
		t.Fatalf("a session from the next /64 got %d", code)
	}
	for _, c := range open {
		c.Cmd(221, "QUIT")
	}
}

// TestRESTHeldUntilItsTransfer: the proxy holds REST and gives it to the
// backend right before the RETR or STOR it belongs to; a transfer command
// refused (by the proxy or by the backend) takes it away, so the next
// transfer starts at 0. On vsftpd, pure-ftpd and ProFTPD alike.
func TestRESTHeldUntilItsTransfer(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 300000) // 3,000,000 bytes
	for _, start := range []func(t *testing.T) *ftptest.Server{
		func(t *testing.T) *ftptest.Server { return ftptest.Vsftpd(t, ftptest.VsftpdOptions{}) },
		func(t *testing.T) *ftptest.Server { return ftptest.PureFTPd(t) },
		func(t *testing.T) *ftptest.Server { return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{}) },
	} {
		be := start(t)
		t.Run(be.Name, func(t *testing.T) {
			writeFile(t, be.Root, "f.bin", content)
			g := startGate(t, be.Addr, gateOptions{})
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")

			c.Cmd(350, "REST 1000000")
			c.Cmd(425, "RETR f.bin") // no PASV: refused by the proxy
			if got := retr(t, c, "f.bin"); !bytes.Equal(got, content) {
				t.Fatalf("after a refused RETR: %d bytes, want the whole %d", len(got), len(content))
			}

			c.Cmd(350, "REST 1000")
			c.EPSV()
			c.Cmd(550, "RETR missing.bin") // refused by the backend
			if got := retr(t, c, "f.bin"); !bytes.Equal(got, content) {
				t.Fatalf("after a RETR the backend refused: %d bytes, want %d", len(got), len(content))
			}

			c.Cmd(350, "REST 2999990") // and a real resume still works
			if got := retr(t, c, "f.bin"); !bytes.Equal(got, content[2999990:]) {
				t.Fatalf("resumed: %q", got)
			}
			c.Cmd(221, "QUIT")
		})
		t.Run(be.Name+" read-only", func(t *testing.T) {
			g := startGate(t, be.Addr, gateOptions{policy: fmt.Sprintf(`read_only_users = [%q]`, be.User)})
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")
			c.Cmd(350, "REST 500")
			c.EPSV()
			c.Cmd(550, "STOR f.bin") // a refused resume of an upload
			if got := retr(t, c, "f.bin"); !bytes.Equal(got, content) {
				t.Fatalf("after a refused STOR: %d bytes, want %d", len(got), len(content))
			}
			c.Cmd(221, "QUIT")
		})
	}
}

// TestCheckConfigVerbs: deny_commands naming an essential verb is refused
// at start; naming an unknown verb is a warning.
func TestCheckConfigVerbs(t *testing.T) {
	be := startScriptedBackend(t, &scriptedBackend{})
	for _, tc := range []struct{ policy, want string }{
		{`deny_commands = ["QUIT"]`, "QUIT cannot be denied"},
		{`deny_commands = ["USER"]`, "USER cannot be denied"},
	} {
		err := startGateErr(t, be.ln.Addr().String(), gateOptions{policy: tc.policy})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: start error %v", tc.policy, err)
		}
	}
	g := startGate(t, be.ln.Addr().String(), gateOptions{policy: `deny_commands = ["XYZZY"]`})
	if !g.logged("configuration warning") {
		t.Fatal("no warning for an unknown verb in deny_commands")
	}
}

// dialTCP connects to addr on loopback; the connection closes when the test
// ends.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitEventsOf waits until the audit stream holds n events named event (a
// reply's events may be written just after the client has the reply) and
// returns them.
func (g *gate) waitEventsOf(t *testing.T, event string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := g.eventsOf(t, event)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}
