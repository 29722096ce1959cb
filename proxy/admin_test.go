package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// adminToken and adminHash ("correct horse", bcrypt cost 4) are the admin
// credentials of these tests.
const (
	adminToken = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	adminHash  = "$2y$04$Ep//Z7B6gUCtonDSyWHwa.9mp2dZh4hNJTkTTixt/lfRkkIi8nQxq"
)

// adminConfig is an admin block on address with both credentials and
// pprof; the token file is written to a new directory.
func adminConfig(t *testing.T, address string) string {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`admin {
  address           = %q
  pprof             = true
  bearer_token_file = %q
  basic_auth {
    user          = "prometheus"
    password_hash = %q
  }
}`, address, tok, adminHash)
}

// serveAdmin serves srv's admin server on a new loopback port until the
// test ends, and returns its address.
func serveAdmin(t *testing.T, srv *proxy.Server) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.AdminServer()
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close(); <-done })
	return ln.Addr().String(), hs
}

// adminGet sends GET path to addr with Host host (the address if empty)
// and an Authorization header if authz is not empty.
func adminGet(t *testing.T, addr, host, path, authz string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	client.CloseIdleConnections()
	return resp.StatusCode, resp.Header, string(b)
}

// TestAdminAuth: with credentials configured, the status page, its JSON,
// the metrics and the profiles answer 401 to a request without them or
// with wrong ones, and 200 with the bearer token or the basic credentials;
// /healthz and /readyz stay open for probes. On a loopback admin address
// a request naming another host (DNS rebinding: a web page whose domain
// resolves to 127.0.0.1) is refused, whatever credentials it carries.
func TestAdminAuth(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: adminConfig(t, "127.0.0.1:9100")})
	addr, _ := serveAdmin(t, g.srv)
	c := g.login(t, be.User, be.Password)
	defer c.Cmd(221, "QUIT")

	bearer := "Bearer " + adminToken
	basic := func(user, pass string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header.Get("Authorization")
	}
	tests := []struct {
		name, host, path, authz string
		want                    int
	}{
		{"no credentials", "", "/status.json", "", 401},
		{"no credentials, page", "", "/status", "", 401},
		{"no credentials, metrics", "", "/metrics", "", 401},
		{"no credentials, profile", "", "/debug/pprof/heap", "", 401},
		{"wrong token", "", "/status.json", "Bearer " + strings.Repeat("0", len(adminToken)), 401},
		{"token prefix", "", "/status.json", bearer[:len(bearer)-1], 401},
		{"token as basic password", "", "/status.json", basic("prometheus", adminToken), 401},
		{"wrong password", "", "/status.json", basic("prometheus", "correct horse "), 401},
		{"wrong user", "", "/status.json", basic("Prometheus", "correct horse"), 401},
		{"other scheme", "", "/status.json", "Digest username=\"prometheus\"", 401},
		{"token", "", "/status.json", bearer, 200},
		{"token, lower-case scheme", "", "/metrics", "bearer " + adminToken, 200},
		{"basic", "", "/status.json", basic("prometheus", "correct horse"), 200},
		{"basic again, remembered", "", "/status", basic("prometheus", "correct horse"), 200},
		{"token, profile", "", "/debug/pprof/heap", bearer, 200},
		{"probe, healthz", "", "/healthz", "", 200},
		{"probe, readyz", "", "/readyz", "", 200},
		{"rebinding", "attacker.example:9100", "/status.json", bearer, 403},
		{"rebinding, no port", "attacker.example", "/metrics", bearer, 403},
		{"rebinding, probe", "attacker.example", "/healthz", "", 403},
		{"rebinding, private address", "10.0.0.1:9100", "/metrics", bearer, 403},
		{"localhost, another port (a tunnel)", "localhost:8080", "/status.json", bearer, 200},
		{"127/8", "127.9.9.9", "/metrics", bearer, 200},
		{"IPv6 loopback", "[::1]:9100", "/metrics", bearer, 200},
	}
	for _, tc := range tests {
		code, hdr, body := adminGet(t, addr, tc.host, tc.path, tc.authz)
		if code != tc.want {
			t.Errorf("%s: GET %s (Host %q): %d, want %d", tc.name, tc.path, tc.host, code, tc.want)
			continue
		}
		switch code {
		case 401:
			if strings.Contains(body, be.User) || strings.Contains(body, "ftpsgate_") {
				t.Errorf("%s: the refusal leaks: %q", tc.name, body)
			}
			if ch := hdr.Values("WWW-Authenticate"); len(ch) != 2 {
				t.Errorf("%s: challenges %q, want Basic and Bearer", tc.name, ch)
			}
		case 200:
			if tc.path == "/status.json" {
				var st proxy.Status
				if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Sessions) != 1 || st.Sessions[0].User != be.User {
					t.Errorf("%s: /status.json %v: %s", tc.name, err, body)
				}
			}
		}
	}
	if g.logs.FilterMessage("admin request refused: wrong bearer token").Len() == 0 ||
		g.logs.FilterMessage("admin request refused: Host is not a loopback name").Len() == 0 {
		t.Error("refusals were not logged")
	}
}

// TestAdminOpenAddress: an admin listener on every address has no names to
// check the Host against, so credentials alone guard it; without them it
// serves anyone (validate warns: TestWarnings in proxy/config).
func TestAdminOpenAddress(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: adminConfig(t, "0.0.0.0:9100")})
	addr, _ := serveAdmin(t, g.srv)
	if code, _, _ := adminGet(t, addr, "ftpsgate.monitoring.svc:9100", "/metrics", ""); code != 401 {
		t.Errorf("no credentials: %d", code)
	}
	if code, _, _ := adminGet(t, addr, "ftpsgate.monitoring.svc:9100", "/metrics", "Bearer "+adminToken); code != 200 {
		t.Errorf("token: %d", code)
	}
}

// TestAdminTimeouts: a client that sends half a request header, or that
// keeps its connection idle after a request, is cut off by the admin
// server's deadlines (5 s and 30 s) rather than holding a connection and a
// goroutine for ever.
func TestAdminTimeouts(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: `admin {}`})
	addr, hs := serveAdmin(t, g.srv)
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.WriteTimeout < 35*time.Second {
		// WriteTimeout must let pprof's default 30 s CPU profile finish.
		t.Errorf("admin deadlines: header %s, read %s, write %s, idle %s",
			hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout, hs.IdleTimeout)
	}
	// closedWithin reports how long the server took to close c, failing
	// past limit.
	closedWithin := func(name string, c net.Conn, r *bufio.Reader, limit time.Duration, done chan<- string) {
		start := time.Now()
		c.SetReadDeadline(start.Add(limit))
		_, err := io.Copy(io.Discard, r)
		took := time.Since(start)
		switch {
		case err != nil:
			done <- fmt.Sprintf("%s: still open after %s (%v)", name, took.Round(time.Second), err)
		default:
			done <- ""
		}
		c.Close()
	}
	done := make(chan string, 2)
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(slow, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n") // and never the blank line
	go closedWithin("half a header", slow, bufio.NewReader(slow), 30*time.Second, done)

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	r := bufio.NewReader(idle)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("keep-alive request: %d, close %v", resp.StatusCode, resp.Close)
	}
	go closedWithin("idle keep-alive connection", idle, r, 90*time.Second, done)
	for range 2 {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}

// TestPrometheusScrapes: a real Prometheus (Debian's) scrapes the admin
// listener with the bearer token from a file and with basic credentials:
// both targets are up. A third job without credentials is down with 401.
func TestPrometheusScrapes(t *testing.T) {
	bin := ftptest.Tool(t, "prometheus")
	g := startGate(t, "127.0.0.1:1", gateOptions{extra: adminConfig(t, "127.0.0.1:9100")})
	addr, _ := serveAdmin(t, g.srv)
	dir := t.TempDir()
	tokenFile, passFile := filepath.Join(dir, "token"), filepath.Join(dir, "password")
	os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600)
	os.WriteFile(passFile, []byte("correct horse"), 0o600)
	conf := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: token
    authorization: {credentials_file: %q}
    static_configs: [{targets: [%q]}]
  - job_name: basic
    basic_auth: {username: prometheus, password_file: %q}
    static_configs: [{targets: [%q]}]
  - job_name: none
    static_configs: [{targets: [%q]}]
`, tokenFile, addr, passFile, addr, addr)), 0o600)
	web := fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	var out ftptest.SyncBuffer
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}()

	type target struct {
		Labels     map[string]string `json:"labels"`
		Health     string            `json:"health"`
		LastError  string            `json:"lastError"`
		LastScrape time.Time         `json:"lastScrape"`
	}
	var targets []target
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, out.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets never all scraped: %+v\n%s", targets, out.Bytes())
		}
		time.Sleep(200 * time.Millisecond) // polling Prometheus's API, bounded by deadline
		resp, err := http.Get("http://" + web + "/api/v1/targets?state=active")
		if err != nil {
			continue // not listening yet
		}
		var body struct {
			Data struct {
				ActiveTargets []target `json:"activeTargets"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			continue
		}
		targets = body.Data.ActiveTargets
		scraped := 0
		for _, tg := range targets {
			if tg.Health != "unknown" && !tg.LastScrape.IsZero() {
				scraped++
			}
		}
		if len(targets) == 3 && scraped == 3 {
			break
		}
	}
	for _, tg := range targets {
		job := tg.Labels["job"]
		switch {
		case job == "none" && (tg.Health != "down" || !strings.Contains(tg.LastError, "401")):
			t.Errorf("job %s: %s, %q; want down with 401", job, tg.Health, tg.LastError)
		case job != "none" && tg.Health != "up":
			t.Errorf("job %s: %s, %q; want up", job, tg.Health, tg.LastError)
		}
	}
}
