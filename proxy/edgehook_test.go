package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/pquerna/otp/totp"
)

// The HTTP hook of an auth block (issue 17): real httptest servers answer
// the proxy's requests; the backend is a real vsftpd.

// hookServer is an auth hook: answer decides each request, and every
// request is recorded with its Authorization header.
type hookServer struct {
	*httptest.Server
	answer func(w http.ResponseWriter, req map[string]any)
	mu     sync.Mutex
	reqs   []map[string]any
	auths  []string
}

func newHookServer(t *testing.T, answer func(w http.ResponseWriter, req map[string]any)) *hookServer {
	h := &hookServer{answer: answer}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil || r.Method != http.MethodPost {
			t.Errorf("hook got %s %q: %v", r.Method, body, err)
		}
		h.mu.Lock()
		h.reqs = append(h.reqs, req)
		h.auths = append(h.auths, r.Header.Get("Authorization"))
		h.mu.Unlock()
		h.answer(w, req)
	}))
	t.Cleanup(h.Close)
	return h
}

// requests returns the requests the hook got, and their Authorization
// headers.
func (h *hookServer) requests() ([]map[string]any, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.reqs...), append([]string(nil), h.auths...)
}

// hookGate starts a gate whose listeners check logins with the hook at
// url; the hook may map logins to the backend's account.
func hookGate(t *testing.T, be *ftptest.Server, url, hookExtra, extra string) (*gate, *backendTap) {
	t.Helper()
	return hookGateAuth(t, be, url, hookExtra, "", extra)
}

// hookGateAuth is hookGate with authExtra, more of the auth block.
func hookGateAuth(t *testing.T, be *ftptest.Server, url, hookExtra, authExtra, extra string) (*gate, *backendTap) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "backend.pass")
	secret := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("s3cret-of-the-hook\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap := &backendTap{control: be.Addr}
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `auth = "partners"`,
		policy:        `deny_users = ["mallory"]`,
		extra: fmt.Sprintf(`auth "partners" {
  hook {
    url                    = %q
    timeout                = "1s"
    secret_file            = %q
    backend_password_files = { %q = %q }
    %s
  }
  %s
}
bans {
  safelist = ["127.0.0.0/8"]
}
%s`, url, secret, be.User, pw, hookExtra, authExtra, extra),
		dialBackend: tap.dial,
	})
	return g, tap
}

// TestEdgeHook: the hook allows with a mapping to the backend's account,
// allows read-only, denies; an answer naming a backend or an account the
// configuration does not hold refuses the login. No refused login opens
// a backend connection; a name the policy refuses is refused after the
// hook's round trip, as any other. The client's password reaches the hook
// (over loopback) and never the backend, whose own log shows the mapped
// account.
func TestEdgeHook(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "hello.txt", []byte("hello through the hook\n"))
	hook := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		switch fmt.Sprint(req["user"], "/", req["password"]) {
		case "alice/alice-pw":
			fmt.Fprintf(w, `{"allow": true, "backend_user": %q}`, be.User)
		case "bob/bob-pw":
			fmt.Fprintf(w, `{"allow": true, "backend": "legacy", "backend_user": %q, "read_only": true}`, be.User)
		case "carol/carol-pw":
			fmt.Fprint(w, `{"allow": true, "backend": "nope"}`)
		case "dave/dave-pw":
			fmt.Fprint(w, `{"allow": true, "backend_user": "root"}`)
		default:
			fmt.Fprint(w, `{"allow": false}`)
		}
	})
	g, tap := hookGate(t, be, hook.URL, "", "")

	refusedAtEdge(t, g, "alice", "wrong")
	refusedAtEdge(t, g, "carol", "carol-pw")
	refusedAtEdge(t, g, "dave", "dave-pw")
	refusedAtEdge(t, g, "mallory", "mallory-pw") // the policy's refusal: the hook is asked all the same, for the timing
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections after refused logins; want none", n)
	}
	reasons := map[string]string{}
	for _, e := range g.eventsOf(t, "login") {
		reasons[e["user"].(string)] = fmt.Sprint(e["reason"], "/", e["method"], "/", e["code"])
	}
	if want := map[string]string{"alice": "hook_denied/hook/530", "carol": "hook_unknown_backend/hook/530",
		"dave": "hook_unknown_backend_user/hook/530", "mallory": "deny_users/hook/530"}; !mapsEqual(reasons, want) {
		t.Fatalf("login reasons %v, want %v", reasons, want)
	}
	for _, msg := range []string{"auth hook allowed a login to a backend no backend block defines; refused",
		"auth hook named a backend_user that backend_password_files does not hold; refused"} {
		if !g.logged(msg) {
			t.Errorf("no log line %q", msg)
		}
	}

	out := ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, ftpURL("ftp", "alice", "alice-pw", g.explicit, "hello.txt"))
	if out != "hello through the hook\n" {
		t.Fatalf("curl got %q", out)
	}
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.LoginProtP("bob", "bob-pw")
	if msg := c.Cmd(550, "DELE hello.txt"); !strings.Contains(msg, "read-only") {
		t.Fatalf("DELE of a read-only session: %q", msg)
	}
	c.Cmd(221, "QUIT")

	reqs, auths := hook.requests()
	if len(reqs) != 6 || reqs[3]["user"] != "mallory" {
		t.Fatalf("%d hook requests, want 6: %v", len(reqs), reqs)
	}
	r := reqs[0]
	tlsFacts, _ := r["tls"].(map[string]any)
	if r["user"] != "alice" || r["password"] != "wrong" || r["listener"] != "ftps" || r["auth"] != "partners" ||
		!strings.HasPrefix(fmt.Sprint(r["client_address"]), "127.0.0.1:") || tlsFacts["version"] != "TLS 1.3" ||
		tlsFacts["cipher"] == "" || r["client_certificate"] != nil {
		t.Fatalf("hook request %v", r)
	}
	for _, a := range auths {
		if a != "Bearer s3cret-of-the-hook" {
			t.Fatalf("Authorization %q", a)
		}
	}

	wire := tap.wire()
	for _, secret := range []string{"alice-pw", "bob-pw", "USER alice", "USER bob"} {
		if strings.Contains(wire, secret) {
			t.Errorf("the backend was sent %q:\n%s", secret, wire)
		}
	}
	log, err := os.ReadFile(be.Log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "["+be.User+"] OK LOGIN"); n != 2 || strings.Contains(string(log), "alice-pw") ||
		strings.Contains(string(log), "[alice]") {
		t.Fatalf("vsftpd's log (%d logins of %s):\n%s", n, be.User, log)
	}
	var ok []string
	for _, e := range g.eventsOf(t, "login") {
		if e["result"] == "success" {
			ok = append(ok, fmt.Sprint(e["user"], ">", e["backend_user"], "/", e["method"], "/", e["read_only"]))
		}
	}
	if want := fmt.Sprint([]string{"alice>" + be.User + "/hook/false", "bob>" + be.User + "/hook/true"}); fmt.Sprint(ok) != want {
		t.Fatalf("successful logins %v, want %v", ok, want)
	}
	metrics := scrape(t, g)
	for _, want := range []string{`ftpsgate_logins_total{method="hook",result="failure"} 4`,
		`ftpsgate_logins_total{method="hook",result="success"} 2`,
		`ftpsgate_auth_hook_requests_total{auth="partners",result="allow"} 4`,
		`ftpsgate_auth_hook_requests_total{auth="partners",result="deny"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// scrape returns the gate's /metrics.
func scrape(t *testing.T, g *gate) string {
	t.Helper()
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

// TestEdgeHookFailsClosed: a hook that hangs past its timeout, answers
// garbage, a body over the limit (valid JSON allowing the login, then
// padding), a status other than 200, a redirect (whose target must never
// get the password), an unknown field, data after the object or no
// "allow": each refuses the login with 421, logged and counted, and no
// backend connection opens.
func TestEdgeHookFailsClosed(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	elsewhere := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		fmt.Fprintf(w, `{"allow": true, "backend_user": %q}`, be.User)
	})
	release := make(chan struct{})
	allow := fmt.Sprintf(`{"allow": true, "backend_user": %q}`, be.User)
	hook := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		switch req["user"] {
		case "hang":
			select {
			case <-release:
			case <-time.After(time.Minute):
			}
		case "garbage":
			fmt.Fprint(w, "<html>allow</html>")
		case "huge":
			fmt.Fprint(w, allow+strings.Repeat(" ", 1<<20))
		case "status":
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, allow)
		case "redirect":
			w.Header().Set("Location", elsewhere.URL)
			w.WriteHeader(http.StatusTemporaryRedirect)
		case "unknown":
			fmt.Fprintf(w, `{"allow": true, "backend_user": %q, "admin": true}`, be.User)
		case "trailing":
			fmt.Fprint(w, allow+`{"allow": false}`)
		case "noallow":
			fmt.Fprintf(w, `{"backend_user": %q}`, be.User)
		}
	})
	defer close(release) // before the server's Close waits for the handler
	g, tap := hookGate(t, be, hook.URL, "", "")

	users := []string{"hang", "garbage", "huge", "status", "redirect", "unknown", "trailing", "noallow"}
	for _, u := range users {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(331, "USER %s", u)
		start := time.Now()
		if msg := c.Cmd(421, "PASS pw-of-%s", u); !strings.Contains(msg, "authentication service did not answer") {
			t.Fatalf("%s: PASS answered %q", u, msg)
		}
		if took := time.Since(start); u == "hang" && (took < time.Second || took > 30*time.Second) {
			t.Fatalf("the hanging hook was given %s; its timeout is 1s", took)
		}
		if _, _, err := c.ReadErr(); err == nil {
			t.Fatalf("%s: the session stayed open after 421", u)
		}
	}
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections; want none", n)
	}
	if reqs, _ := elsewhere.requests(); len(reqs) != 0 {
		t.Fatalf("the redirect's target got %v", reqs)
	}
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["user"], ":", e["reason"], ":", e["code"]))
	}
	var want []string
	for _, u := range users {
		want = append(want, u+":hook_unavailable:421")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("login events %v, want %v", got, want)
	}
	if n := g.logs.FilterMessage("auth hook gave no answer; login refused with 421").Len(); n != len(users) {
		t.Fatalf("%d log lines for %d hooks that gave no answer", n, len(users))
	}
	metrics := scrape(t, g)
	for _, want := range []string{fmt.Sprintf(`ftpsgate_logins_total{method="hook",result="unavailable"} %d`, len(users)),
		fmt.Sprintf(`ftpsgate_auth_hook_requests_total{auth="partners",result="unavailable"} %d`, len(users))} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestEdgeHookBans: the hook's refusals count toward a ban; its failures
// to answer (421) do not: a hook that is down bans no one.
func TestEdgeHookBans(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	hook := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		if req["user"] == "garbage" {
			fmt.Fprint(w, "not json")
			return
		}
		fmt.Fprint(w, `{"allow": false}`)
	})
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `auth = "partners"`,
		extra: fmt.Sprintf("auth \"partners\" {\n  hook {\n    url = %q\n  }\n}\nbans {\n  failures = 2\n}\n", hook.URL)})
	for i := 0; i < 3; i++ {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(331, "USER garbage")
		c.Cmd(421, "PASS pw")
	}
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	for i := 0; i < 2; i++ {
		c.Cmd(331, "USER alice")
		c.Cmd(530, "PASS wrong-%d", i)
	}
	if msg := c.Expect(421); !strings.Contains(msg, "failed logins") {
		t.Fatalf("after the second refusal: %q", msg)
	}
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("banned address got %q", got)
	}
}

// TestEdgeHookRoute: an answer naming a route sends the login through it,
// as an ldap group's route does: the route's backend and backend account
// (vsftpd's log shows the account, never the client's name), the audit's
// route, and the route's scan block (here a scanner that is down with
// on_error = "reject", so an upload gets 451 and is never stored, where
// the listener has no scan block at all). A route no block defines is
// refused (530, hook_unknown_route); an answer naming both a route and a
// backend is not an answer (421). Neither opens a backend connection.
func TestEdgeHookRoute(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	hook := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		switch fmt.Sprint(req["user"], "/", req["password"]) {
		case "erin/erin-pw":
			fmt.Fprint(w, `{"allow": true, "route": "drop"}`)
		case "frank/frank-pw":
			fmt.Fprint(w, `{"allow": true, "route": "nope"}`)
		case "gina/gina-pw":
			fmt.Fprint(w, `{"allow": true, "route": "drop", "backend": "legacy"}`)
		default:
			fmt.Fprint(w, `{"allow": false}`)
		}
	})
	down := downScanner(t) // the route's scanner
	pw := filepath.Join(t.TempDir(), "drop.pass")
	if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, tap := hookGate(t, be, hook.URL, "", fmt.Sprintf(`backend "drop" {
  address = %q
  tls     = "none"
}
route "drop" {
  users                 = ["nobody-by-name-*"]
  backend               = "drop"
  backend_user          = %q
  backend_password_file = %q
  scan                  = "av"
}
scan "av" {
  engine   = "clamd"
  address  = %q
  on_error = "reject"
}`, be.Addr, be.User, pw, down))

	refusedAtEdge(t, g, "frank", "frank-pw")
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER gina")
	if msg := c.Cmd(421, "PASS gina-pw"); !strings.Contains(msg, "authentication service did not answer") {
		t.Fatalf("an answer with a route and a backend: %q", msg)
	}
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections after refused logins; want none", n)
	}

	c = g.login(t, "erin", "erin-pw")
	c.Cmd(257, "PWD")
	uploadRefusedUnscanned(t, c, be.Root) // the route's scan block, not the listener's (none)
	c.Cmd(221, "QUIT")

	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["user"], "/", e["result"], "/", e["reason"], "/", e["code"], "/", e["backend"], "/",
			e["route"], "/", e["backend_user"]))
	}
	want := []string{"frank/failure/hook_unknown_route/530///", "gina/failure/hook_unavailable/421///",
		"erin/success//230/drop/drop/" + be.User}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
	if !g.logged("auth hook allowed a login through a route no route block defines; refused") {
		t.Error("no log line for the unknown route")
	}
	log, err := os.ReadFile(be.Log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "["+be.User+"] OK LOGIN"); n != 1 || strings.Contains(string(log), "[erin]") {
		t.Fatalf("vsftpd's log (%d logins of %s):\n%s", n, be.User, log)
	}
}

// TestEdgeHookTOTP: a hook and a second factor: the hook is sent the
// password without its code, and the code is checked after the hook's
// allow ("hook+totp"). A login the hook denies does not use up its code
// (the right password with the same code then logs in); the same code
// again is refused; neither refusal opens a backend connection.
func TestEdgeHookTOTP(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	hook := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		if req["user"] == "erin" && req["password"] == "erin-pw" {
			fmt.Fprintf(w, `{"allow": true, "backend_user": %q}`, be.User)
			return
		}
		fmt.Fprint(w, `{"allow": false}`)
	})
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	secrets := filepath.Join(t.TempDir(), "totp")
	if err := os.WriteFile(secrets, []byte("erin:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, tap := hookGateAuth(t, be, hook.URL, "", fmt.Sprintf("totp_secrets_file = %q", secrets), "")
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	refusedAtEdge(t, g, "erin", "wrong-pw"+code)
	c := g.login(t, "erin", "erin-pw"+code)
	c.Cmd(221, "QUIT")
	refusedAtEdge(t, g, "erin", "erin-pw"+code)
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections; want 1", n)
	}
	reqs, _ := hook.requests()
	var pws []string
	for _, r := range reqs {
		pws = append(pws, fmt.Sprint(r["password"]))
	}
	if want := []string{"wrong-pw", "erin-pw", "erin-pw"}; !slices.Equal(pws, want) {
		t.Fatalf("the hook was sent the passwords %v, want %v (never a code)", pws, want)
	}
	want := []string{"erin/failure/hook_denied/hook+totp", "erin/success//hook+totp", "erin/failure/totp_reused/hook+totp"}
	if got := loginEvents(t, g); !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
	if strings.Contains(tap.wire(), code) {
		t.Fatal("the TOTP code reached the backend")
	}
}
