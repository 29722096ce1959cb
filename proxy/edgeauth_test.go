package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// Edge authentication (issue 17): with an auth block, the proxy checks the
// login against its user file and connects to the backend only once it has
// accepted it. The tests count the backend's control connections through
// the proxy's dialer, and record every byte the proxy sends to the backend
// on them.

// backendTap is the proxy's dialer toward a backend: it counts the control
// connections to control (the backend's address) and records what the
// proxy writes on them.
type backendTap struct {
	control string
	dials   atomic.Int64
	mu      sync.Mutex
	sent    strings.Builder
}

func (b *backendTap) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil || address != b.control {
		return c, err
	}
	b.dials.Add(1)
	return &tappedConn{Conn: c, tap: b}, nil
}

// wire is everything the proxy sent on the backend's control connections.
func (b *backendTap) wire() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent.String()
}

type tappedConn struct {
	net.Conn
	tap *backendTap
}

func (c *tappedConn) Write(p []byte) (int, error) {
	c.tap.mu.Lock()
	c.tap.sent.Write(p)
	c.tap.mu.Unlock()
	return c.Conn.Write(p)
}

// edgeUsers writes a user file: alice (bcrypt), bob (argon2id), mallory
// (whom the policy denies) and any more entries given as user, password.
func edgeUsers(t *testing.T, dir string, more ...string) string {
	t.Helper()
	entries := append([]string{"alice", "alice-edge-pw", "bob", "bob-edge-pw", "mallory", "mallory-pw"}, more...)
	var data []byte
	for i := 0; i < len(entries); i += 2 {
		h := bcryptHash(t, entries[i+1])
		if entries[i] == "bob" {
			h, _ = userfile.Hash(entries[i+1], userfile.Argon2id)
		}
		var err error
		if data, err = userfile.Set(data, entries[i], h); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "users")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// bcryptHash is a bcrypt hash of pw at the lowest cost a user file takes
// (bcrypt is ten times slower under the race detector).
func bcryptHash(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), userfile.MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// edgeGate starts a gate whose listeners check logins against users,
// mapped to the backend's account when mapped is set.
func edgeGate(t *testing.T, be *ftptest.Server, users string, mapped bool, extra string) (*gate, *backendTap) {
	t.Helper()
	tap := &backendTap{control: be.Addr}
	mapping := ""
	if mapped {
		pw := filepath.Join(t.TempDir(), "backend.pass")
		if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mapping = fmt.Sprintf("backend_user = %q\n  backend_password_file = %q", be.User, pw)
	}
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `auth = "staff"`,
		policy:        `deny_users = ["mallory"]`,
		extra: fmt.Sprintf(`auth "staff" {
  user_file = %q
  %s
}
bans {
  safelist = ["127.0.0.0/8"]
}
%s`, users, mapping, extra),
		dialBackend: tap.dial,
	})
	return g, tap
}

// refusedAtEdge logs in as user with pass and expects 530 at PASS.
func refusedAtEdge(t *testing.T, g *gate, user, pass string) {
	t.Helper()
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER %s", user)
	if msg := c.Cmd(530, "PASS %s", pass); msg != "Login incorrect." {
		t.Fatalf("PASS for %s: %q", user, msg)
	}
	c.Cmd(221, "QUIT")
}

// TestEdgeAuthMapped: a wrong password, an unknown user and a name the
// policy denies get 530 and never open a backend connection; a login the
// edge accepts (curl with a bcrypt entry, ftplib with an argon2id one)
// reaches the backend as the mapped account, whose password comes from its
// file, and the client's own password never reaches the backend.
func TestEdgeAuthMapped(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "hello.txt", []byte("hello through the edge\n"))
	g, tap := edgeGate(t, be, edgeUsers(t, t.TempDir()), true, "")

	refusedAtEdge(t, g, "alice", "wrong")
	refusedAtEdge(t, g, "nobody", "alice-edge-pw")
	refusedAtEdge(t, g, "mallory", "mallory-pw") // denied by policy, with the right password
	refusedAtEdge(t, g, be.User, be.Password)    // the backend's own account is not in the file
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections after refused logins; want none", n)
	}
	reasons := map[string]string{}
	for _, e := range g.eventsOf(t, "login") {
		reasons[e["user"].(string)] = fmt.Sprint(e["reason"], "/", e["method"])
	}
	if want := map[string]string{"alice": "wrong_password/file", "nobody": "unknown_user/file", "mallory": "deny_users/file",
		be.User: "unknown_user/file"}; !mapsEqual(reasons, want) {
		t.Fatalf("login reasons %v, want %v", reasons, want)
	}

	out := ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-s", ftpURL("ftp", "alice", "alice-edge-pw", g.explicit, "hello.txt"))
	if out != "hello through the edge\n" {
		t.Fatalf("curl got %q", out)
	}
	local := filepath.Join(t.TempDir(), "up.bin")
	sum := ftptest.RandomFile(t, local, 100<<10)
	res := ftptest.Python(t, ftptest.PythonSpec{
		Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile, User: "bob", Password: "bob-edge-pw",
		Steps: []ftptest.PythonStep{{Op: "upload", Local: local, Remote: "bob.bin"}, {Op: "download", Remote: "bob.bin"}},
	})
	if res.Steps[1].SHA256 != sum {
		t.Fatalf("ftplib round trip: %+v", res.Steps)
	}
	if n := tap.dials.Load(); n != 2 {
		t.Fatalf("%d backend control connections for two logins", n)
	}

	wire := tap.wire()
	for _, secret := range []string{"alice-edge-pw", "bob-edge-pw", "USER alice", "USER bob"} {
		if strings.Contains(wire, secret) {
			t.Errorf("the backend was sent %q:\n%s", secret, wire)
		}
	}
	if strings.Count(wire, "USER "+be.User+"\r\n") != 2 || strings.Count(wire, "PASS "+be.Password+"\r\n") != 2 {
		t.Errorf("the backend did not get the mapped account twice:\n%s", wire)
	}
	// The backend's own log: the mapped account logged in, twice.
	log, err := os.ReadFile(be.Log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `OK LOGIN: Client "127.0.0.1", anon password`); n != 0 {
		t.Fatalf("anonymous logins in vsftpd's log")
	}
	if n := strings.Count(string(log), `] OK LOGIN`); n != 2 || !strings.Contains(string(log), "["+be.User+"] OK LOGIN") ||
		strings.Contains(string(log), "alice-edge-pw") || strings.Contains(string(log), "[alice]") {
		t.Fatalf("vsftpd's log:\n%s", log)
	}

	var ok []string
	for _, e := range g.eventsOf(t, "login") {
		if e["result"] == "success" {
			ok = append(ok, fmt.Sprint(e["user"], ">", e["backend_user"], "/", e["method"]))
		}
	}
	if want := []string{"alice>" + be.User + "/file", "bob>" + be.User + "/file"}; !slices.Equal(ok, want) {
		t.Fatalf("successful logins %v, want %v", ok, want)
	}
	if a := g.auditBuf.String(); strings.Contains(a, "edge-pw") || strings.Contains(a, be.Password) {
		t.Fatalf("a password in the audit stream:\n%s", a)
	}
	admin := httptest.NewServer(g.srv.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ftpsgate_logins_total{method="file",result="failure"} 4`,
		`ftpsgate_logins_total{method="file",result="success"} 2`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestEdgeAuthPassThrough: without a mapping, the client's own name and
// password go to the backend, but only after the edge accepted them; a
// password the backend would take but the user file does not is refused
// without a backend connection.
func TestEdgeAuthPassThrough(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	dir := t.TempDir()
	g, tap := edgeGate(t, be, edgeUsers(t, dir, be.User, "edge-only-pw"), false, "")
	refusedAtEdge(t, g, be.User, be.Password) // right for vsftpd, wrong for the file
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections after a refused login", n)
	}
	// The file says yes, the backend no: 530, logged as the backend's
	// refusal, and not counted as a guess.
	refusedAtEdge(t, g, be.User, "edge-only-pw")
	if n := tap.dials.Load(); n != 1 || !strings.Contains(tap.wire(), "USER "+be.User+"\r\nPASS edge-only-pw\r\n") {
		t.Fatalf("%d backend connections; sent:\n%s", n, tap.wire())
	}
	if !g.logged("the backend refused a login the edge accepted") {
		t.Fatal("no warning for the backend's refusal")
	}
	evs := g.eventsOf(t, "login")
	if len(evs) != 2 || evs[1]["reason"] != "backend_refused" || evs[1]["backend_user"] != be.User {
		t.Fatalf("login events %v", evs)
	}
}

// TestEdgeAuthBans: wrong passwords at the edge count toward a ban; the
// ban's 421 comes without any backend connection.
func TestEdgeAuthBans(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	tap := &backendTap{control: be.Addr}
	users := edgeUsers(t, t.TempDir())
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `auth = "staff"`, dialBackend: tap.dial,
		extra: fmt.Sprintf("auth \"staff\" {\n  user_file = %q\n}\nbans {\n  failures = 3\n}\n", users)})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	for i, u := range []string{"alice", "nobody", "alice"} {
		c.Cmd(331, "USER %s", u)
		c.Cmd(530, "PASS wrong-%d", i)
	}
	if msg := c.Expect(421); !strings.Contains(msg, "failed logins") {
		t.Fatalf("after the third failure: %q", msg)
	}
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("banned address got %q", got)
	}
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections", n)
	}
}

// TestEdgeAuthTiming: a wrong password and an unknown user take as long
// to refuse, so that the reply's timing does not tell which names exist
// (the unknown name is checked against a dummy hash as costly as the
// file's entries).
func TestEdgeAuthTiming(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	// One session tries them all: the login timeout must outlast 14
	// bcrypt checks on a loaded machine under the race detector.
	g, tap := edgeGate(t, be, edgeUsers(t, t.TempDir()), true, "timeouts {\n  login = \"10m\"\n}")
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
	t.Logf("median 530 after a wrong password %v, after an unknown user %v", mw, mu)
	if mu < mw*6/10 || mu > mw*10/6 {
		t.Fatalf("median 530 after a wrong password %v, after an unknown user %v: separable", mw, mu)
	}
	if tap.dials.Load() != 0 {
		t.Fatal("a refused login reached the backend")
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestEdgeAuthUserFileReload: a user added to the file logs in without a
// SIGHUP; a broken file is logged and the users it had are kept; a
// reload (what SIGHUP does) that names another file takes its users.
func TestEdgeAuthUserFileReload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	dir := t.TempDir()
	users := edgeUsers(t, dir)
	g, _ := edgeGate(t, be, users, true, "")
	login := func(user, pass string) (int, string) {
		c := ftptest.Dial(t, g.explicit)
		defer c.Cmd(221, "QUIT")
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(331, "USER %s", user)
		c.Send("PASS " + pass)
		return c.Read()
	}
	refusedAtEdge(t, g, "carol", "carol-pw")

	// Added by ftpsgate passwd's route: Set, then an atomic rename.
	data, _ := os.ReadFile(users)
	data, _ = userfile.Set(data, "carol", bcryptHash(t, "carol-pw"))
	replace(t, users, data)
	waitFor(t, "the user file reloaded", func() bool { return g.logged("user file reloaded") })
	if code, msg := login("carol", "carol-pw"); code != 230 {
		t.Fatalf("carol after the reload: %q", msg)
	}

	// A broken file: logged with its line, the users kept.
	replace(t, users, append(data, []byte("dave:$apr1$weak$hash\n")...))
	waitFor(t, "the broken file's warning", func() bool {
		return g.logged("user file changed but does not load; keeping the users it had")
	})
	w := g.logs.FilterMessage("user file changed but does not load; keeping the users it had").All()[0]
	if e := fmt.Sprint(w.ContextMap()["error"]); !strings.Contains(e, users+":5:") {
		t.Fatalf("warning names no line: %q", e)
	}
	if code, msg := login("carol", "carol-pw"); code != 230 {
		t.Fatalf("carol after a broken file: %q", msg)
	}

	// A reload naming another file takes its users at once.
	other := filepath.Join(t.TempDir(), "other")
	od, _ := userfile.Set(nil, "erin", bcryptHash(t, "erin-pw"))
	if err := os.WriteFile(other, od, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Parse([]byte(strings.Replace(g.src, users, other, 1)), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code, msg := login("erin", "erin-pw"); code != 230 {
		t.Fatalf("erin after the reload: %q", msg)
	}
	if code, _ := login("carol", "carol-pw"); code != 530 {
		t.Fatal("carol still logs in after a reload to another file")
	}
}

// replace writes data to path by an atomic rename, as ftpsgate passwd
// does, with a modification time that differs from the old file's.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	old, _ := os.Stat(path)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if old != nil {
		mt := old.ModTime().Add(time.Second)
		os.Chtimes(tmp, mt, mt)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 20 ms for up to 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEdgeAuthRoute: a route names its own auth block and backend
// account; sessions it does not take are checked by the backend, as
// without an auth block.
func TestEdgeAuthRoute(t *testing.T) {
	be := ftptest.ProFTPD(t, ftptest.ProFTPDOptions{})
	tap := &backendTap{control: be.Addr}
	pw := filepath.Join(t.TempDir(), "backend.pass")
	if err := os.WriteFile(pw, []byte(be.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, be.Addr, gateOptions{dialBackend: tap.dial, extra: fmt.Sprintf(`auth "partners" {
  user_file = %q
}
route "partners" {
  users                 = ["alice", "p-*"]
  backend               = "legacy"
  auth                  = "partners"
  backend_user          = %q
  backend_password_file = %q
}`, edgeUsers(t, t.TempDir()), be.User, pw)})
	refusedAtEdge(t, g, "p-unknown", "x")
	refusedAtEdge(t, g, "alice", be.Password)
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections for the route's refused logins", n)
	}
	c := g.login(t, "alice", "alice-edge-pw") // the route's account
	c.Cmd(257, "PWD")
	c.Cmd(221, "QUIT")
	c = g.login(t, be.User, be.Password) // no route: the backend checks
	c.Cmd(221, "QUIT")
	if n := tap.dials.Load(); n != 2 {
		t.Fatalf("%d backend connections for two logins", n)
	}
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["user"], "/", e["result"], "/", e["method"], "/", e["route"], "/", e["backend_user"]))
	}
	want := []string{"p-unknown/failure/file/partners/", "alice/failure/file/partners/",
		"alice/success/file/partners/" + be.User, be.User + "/success/backend//"}
	if !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
}

// TestEdgeAuthTOTP: with a TOTP secrets file, the current code appended
// to the password logs in, and the backend gets the password without it;
// the same code again is refused, as are a code outside the skew, a
// password without a code and a user without a secret; none of these
// reaches the backend.
func TestEdgeAuthTOTP(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	dir := t.TempDir()
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	secrets := filepath.Join(dir, "totp")
	if err := os.WriteFile(secrets, []byte("alice:"+secret+"\n"+be.User+":"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap := &backendTap{control: be.Addr}
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `auth = "staff"`, dialBackend: tap.dial,
		extra: fmt.Sprintf("auth \"staff\" {\n  user_file = %q\n  totp_secrets_file = %q\n}\nbans {\n  safelist = [\"127.0.0.0/8\"]\n}\n",
			edgeUsers(t, dir, be.User, be.Password), secrets)})
	code := func(at time.Time) string {
		c, err := totp.GenerateCode(secret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := code(time.Now())
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER %s", be.User)
	c.Cmd(230, "PASS %s%s", be.Password, now) // passed through, without the code
	c.Cmd(221, "QUIT")
	if w := tap.wire(); !strings.Contains(w, "PASS "+be.Password+"\r\n") || strings.Contains(w, now) {
		t.Fatalf("the backend got:\n%s", w)
	}
	refusedAtEdge(t, g, be.User, be.Password+now)                                  // reused
	refusedAtEdge(t, g, be.User, be.Password+code(time.Now().Add(-2*time.Minute))) // outside the skew
	refusedAtEdge(t, g, be.User, be.Password)                                      // no code
	refusedAtEdge(t, g, "bob", "bob-edge-pw"+code(time.Now()))                     // no secret
	refusedAtEdge(t, g, "alice", "wrong"+code(time.Now()))                         // the code right, the password wrong
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections; want 1", n)
	}
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["result"], "/", e["reason"], "/", e["method"]))
	}
	// Without a code, the password's last six characters are taken for
	// one: what is left is a wrong password.
	want := []string{"success//file+totp", "failure/totp_reused/file+totp", "failure/totp_invalid/file+totp",
		"failure/wrong_password/file+totp", "failure/totp_missing/file+totp", "failure/wrong_password/file+totp"}
	if !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
	if strings.Contains(g.auditBuf.String(), now) {
		t.Fatal("a TOTP code in the audit stream")
	}
}

// TestEdgeAuthBackendBusy: a backend that answers 421 to a login the
// edge accepted gives the client 421 (try again), not 530, and no ban
// counts it.
func TestEdgeAuthBackendBusy(t *testing.T) {
	sb := startScriptedBackend(t, &scriptedBackend{passReply: "421 Too many users, sorry."})
	users := edgeUsers(t, t.TempDir())
	g := startGate(t, sb.ln.Addr().String(), gateOptions{listenerExtra: `auth = "staff"`,
		extra: fmt.Sprintf("auth \"staff\" {\n  user_file = %q\n}\nbans {\n  failures = 1\n}\n", users)})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER alice")
	if msg := c.Cmd(421, "PASS alice-edge-pw"); !strings.Contains(msg, "try again later") {
		t.Fatalf("421 text %q", msg)
	}
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("the backend's 421 banned the client: %q", got)
	}
	if evs := g.eventsOf(t, "login"); len(evs) != 1 || evs[0]["reason"] != "backend_refused" || evs[0]["code"] != float64(421) {
		t.Fatalf("login events %v", evs)
	}
}
