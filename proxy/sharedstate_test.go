package proxy_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/pquerna/otp/totp"
)

// The log messages of the shared state's episodes (state_redis.go).
const (
	msgStateDown = "shared state unreachable: this instance falls back to its own bans and session counts until Redis answers"
	msgStateUp   = "shared state reachable again: bans and session counts are shared"
)

// TestSharedState: two ftpsgate instances in front of one vsftpd share
// their state through a real redis-server. A ban decided on one holds on
// the other within a second, and closes the banned client's open session
// there; max_sessions_per_user counts the sessions of both. When
// redis-server is killed, both go on serving with their own state (a login
// works; the fallback is logged once and counted); when it comes back on
// the same port, they share again: a new ban propagates.
func TestSharedState(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{Extra: []string{"delay_failed_login=0"}})
	rd := ftptest.StartRedis(t)
	opt := gateOptions{
		policy: "max_sessions_per_user = 2",
		extra: fmt.Sprintf(`bans {
  failures = 3
  window   = "1m"
  duration = "10m"
}
state {
  redis {
    address = %q
    prefix  = "test:%s:"
  }
}`, rd.Addr, t.Name()),
	}
	a, b := startGate(t, be.Addr, opt), startGate(t, be.Addr, opt)
	dialFrom := func(g *gate, src string) *ftptest.Conn {
		c := ftptest.DialFrom(t, src, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		return c
	}

	// max_sessions_per_user = 2 across A and B.
	s1 := a.login(t, be.User, be.Password)
	s2 := b.login(t, be.User, be.Password)
	for _, g := range []*gate{a, b} {
		c := dialFrom(g, "127.0.0.1")
		if msg := c.Cmd(530, "USER %s", be.User); !strings.Contains(msg, "Too many sessions") {
			t.Fatalf("third session: %q", msg)
		}
		c.Cmd(221, "QUIT")
	}
	s1.Cmd(221, "QUIT") // gives its place back, on every instance
	waitFor(t, "a place freed on A to be seen on B", func() bool {
		c := dialFrom(b, "127.0.0.1")
		defer c.Cmd(221, "QUIT")
		code, _ := sendRead(c, "USER "+be.User)
		return code == 331
	})

	// A ban decided on A: B closes the banned client's open session, and
	// refuses its new ones, within a second.
	ban := func(on, other *gate, src string) {
		t.Helper()
		early := dialFrom(other, src) // open on the other instance, not logged in
		c := dialFrom(on, src)
		for i := 0; i < 3; i++ {
			c.Cmd(331, "USER %s", be.User)
			c.Cmd(530, "PASS wrong-%d", i)
		}
		start := time.Now()
		c.Expect(421)
		code, msg, err := early.ReadErr()
		if err != nil || code != 421 {
			t.Fatalf("the banned client's session on the other instance: %d %q %v", code, msg, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the other instance closed the banned client's session after %s", d)
		}
		if got, err := ftptest.Greeting(src, other.explicit, 30*time.Second); err != nil || !strings.HasPrefix(got, "421 ") {
			t.Fatalf("a new session of the banned client on the other instance: %q %v", got, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the other instance refused the banned client after %s", d)
		}
	}
	ban(a, b, "127.0.0.7")
	if got := metricValue(t, a, "ftpsgate_state_backend_up"); got != 1 {
		t.Fatalf("state_backend_up on A: %v", got)
	}

	// Redis goes away: both instances serve with their own state.
	rd.Stop()
	for _, g := range []*gate{a, b} {
		c := g.login(t, be.User, be.Password) // s2 and c: 2, the bound
		waitFor(t, "the fallback to be logged", func() bool { return g.logged(msgStateDown) })
		c.Cmd(221, "QUIT")
		if got := metricValue(t, g, "ftpsgate_state_backend_up"); got != 0 {
			t.Fatalf("state_backend_up while Redis is down: %v", got)
		}
	}
	for _, g := range []*gate{a, b} {
		c := g.login(t, be.User, be.Password) // and one more, still working
		c.Cmd(221, "QUIT")
		if n := g.logs.FilterMessage(msgStateDown).Len(); n != 1 {
			t.Fatalf("the fallback was logged %d times, want once per episode", n)
		}
		if got := metricValue(t, g, "ftpsgate_state_fallbacks_total"); got != 1 {
			t.Fatalf("state_fallbacks_total: %v", got)
		}
	}
	if got, err := ftptest.Greeting("127.0.0.7", b.explicit, 30*time.Second); err != nil || !strings.HasPrefix(got, "421 ") {
		t.Fatalf("a ban learnt from Redis is kept while it is away: %q %v", got, err)
	}

	// Redis comes back on the same port: sharing resumes.
	rd.Restart()
	for _, g := range []*gate{a, b} {
		waitFor(t, "sharing to resume", func() bool { return metricValue(t, g, "ftpsgate_state_backend_up") == 1 })
		if !g.logged(msgStateUp) {
			t.Fatal("the resumption was not logged")
		}
	}
	ban(b, a, "127.0.0.8")
	s2.Cmd(221, "QUIT")
}

// sendRead sends line on c and reads the reply, failing the test only on
// an I/O error.
func sendRead(c *ftptest.Conn, line string) (int, string) {
	c.Send(line)
	return c.Read()
}

// metricValue reads the value of an unlabelled metric from g's /metrics.
func metricValue(t *testing.T, g *gate, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	g.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStateBlockReadAtStart: a reload that adds (or changes) the state
// block keeps the running state and says so: sharing needs a restart.
func TestStateBlockReadAtStart(t *testing.T) {
	sb := startScriptedBackend(t, &scriptedBackend{})
	g := startGate(t, sb.ln.Addr().String(), gateOptions{})
	src := g.src + "state {\n  redis {\n    address = \"127.0.0.1:1\"\n  }\n}\n"
	cfg, diags := config.Parse([]byte(src), "reloaded.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if !g.logged("the state block changed; it is read at start only: restart to apply it") {
		t.Fatal("no warning")
	}
	if got := metricValue(t, g, "ftpsgate_state_backend_up"); got != 1 {
		t.Fatalf("state_backend_up: %v (the in-memory state stays)", got)
	}
	if g.logged(msgStateDown) {
		t.Fatal("the reload connected to the new Redis")
	}
}

// TestSharedTOTP: two instances sharing their state through a real
// redis-server: a TOTP code that logged in on one is refused on the other
// (totp_reused), as it is on the first. Without the shared record, a code
// seen on the wire could be replayed through the other instance within
// its window.
func TestSharedTOTP(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	rd := ftptest.StartRedis(t)
	dir := t.TempDir()
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	secrets := filepath.Join(dir, "totp")
	if err := os.WriteFile(secrets, []byte(be.User+":"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opt := gateOptions{listenerExtra: `auth = "staff"`,
		extra: fmt.Sprintf(`auth "staff" {
  user_file         = %q
  totp_secrets_file = %q
}
bans {
  safelist = ["127.0.0.0/8"]
}
state {
  redis {
    address = %q
    prefix  = "test:%s:"
  }
}`, edgeUsers(t, dir, be.User, be.Password), secrets, rd.Addr, t.Name())}
	a, b := startGate(t, be.Addr, opt), startGate(t, be.Addr, opt)
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := a.login(t, be.User, be.Password+code)
	c.Cmd(221, "QUIT")
	for _, g := range []*gate{b, a} {
		refusedAtEdge(t, g, be.User, be.Password+code)
	}
	var got []string
	for _, g := range []*gate{a, b} {
		got = append(got, loginEvents(t, g)...)
	}
	u := be.User
	want := []string{u + "/success//file+totp", u + "/failure/totp_reused/file+totp", u + "/failure/totp_reused/file+totp"}
	if !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
}
