package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestMetrics: after a login, a download, a refused command and a bogus
// verb, /metrics shows each, with bounded labels; /healthz answers, and
// /readyz turns 503 once the server shuts down.
func TestMetrics(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "m.txt", []byte("metrics\n"))
	g := startGate(t, be.Addr, gateOptions{policy: `deny_commands = ["DELE"]`})
	admin := httptest.NewServer(g.srv.AdminHandler()) // on 127.0.0.1
	defer admin.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR m.txt")
	ftptest.ReadAll(t, d)
	d.Close()
	c.Expect(226)
	c.Cmd(502, "DELE m.txt")
	c.Send("XYZZY") // a verb no label should carry
	c.Read()
	c.Cmd(221, "QUIT")

	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`ftpsgate_sessions_total{listener="ftps"} 1`,
		`ftpsgate_logins_total{method="backend",result="success"} 1`,
		`ftpsgate_commands_total{verb="RETR"} 1`,
		`ftpsgate_commands_total{verb="OTHER"} 1`,
		`ftpsgate_policy_denials_total{rule="deny_commands"} 1`,
		`ftpsgate_transfers_total{direction="download",result="complete"} 1`,
		`ftpsgate_transfer_bytes_total{direction="download"} 8`,
		`ftpsgate_transfer_duration_seconds_count{direction="download"} 1`,
		`ftpsgate_tls_handshakes_total{version="TLS 1.3"} 1`,
		`ftpsgate_backend_connect_seconds_count{backend="legacy"} 1`,
		`ftpsgate_passive_ports_in_use 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "XYZZY") {
		t.Error("an unknown verb became a label value")
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	g.srv.Close()
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz after Close: %d", code)
	}
}

// TestAdminPprof: Go's profiles are served only when admin { pprof = true },
// which requires credentials (TestDiagnostics in proxy/config), and only to
// a request that carries them.
func TestAdminPprof(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, tt := range []struct {
		extra, authz string
		want         int
	}{
		{`admin {}`, "", http.StatusNotFound},
		{adminConfig(t, "127.0.0.1:9100"), "", http.StatusUnauthorized},
		{adminConfig(t, "127.0.0.1:9100"), "Bearer " + adminToken, http.StatusOK},
	} {
		g := startGate(t, be.Addr, gateOptions{extra: tt.extra})
		admin := httptest.NewServer(g.srv.AdminHandler())
		req, _ := http.NewRequest("GET", admin.URL+"/debug/pprof/heap", nil)
		if tt.authz != "" {
			req.Header.Set("Authorization", tt.authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		admin.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s, %q: /debug/pprof/heap answered %d, want %d", tt.extra, tt.authz, resp.StatusCode, tt.want)
		}
	}
}

// TestTrafficMetrics: the metrics issue 19 asks for, read from /metrics:
// throttled bytes (a download under a 1 MiB/s transfer limit), quota
// refusals (the same download cut at a 1 MiB quota, and the next one
// refused) and the state backend's health (up in memory; down, with its
// fallback counted, when the state block names a Redis that is not
// there).
func TestTrafficMetrics(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "m.bin", randomBytes(t, 3*mib/2))
	ps, _ := quotaPeriod(t)
	g := startGate(t, be.Addr, gateOptions{extra: fmt.Sprintf("rates {\n  transfer_down = \"1MiB\"\n  quota_down = \"1MiB\"\n  quota_period = %q\n}", ps)})
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR m.bin")
	io.Copy(io.Discard, d)
	c.Expect(552) // cut at the quota
	d = c.DialData(c.EPSV())
	c.Cmd(552, "RETR m.bin") // refused
	d.Close()
	c.Cmd(221, "QUIT")
	if v := metricValue(t, g, `ftpsgate_throttled_bytes_total{direction="download",level="transfer"}`); v <= 0 || v > mib {
		t.Errorf("throttled bytes: %v", v)
	}
	if m := metric(t, g, `ftpsgate_quota_refusals_total{direction="download"}`); m != `ftpsgate_quota_refusals_total{direction="download"} 2` {
		t.Errorf("quota refusals: %q", m)
	}
	if v := metricValue(t, g, "ftpsgate_state_backend_up"); v != 1 {
		t.Errorf("state_backend_up in memory: %v", v)
	}

	away := startGate(t, be.Addr, gateOptions{extra: fmt.Sprintf("state {\n  redis {\n    address = \"127.0.0.1:%d\"\n  }\n}", ftptest.FreePort(t))})
	waitFor(t, "the fallback to be counted", func() bool { return metricValue(t, away, "ftpsgate_state_fallbacks_total") == 1 })
	if v := metricValue(t, away, "ftpsgate_state_backend_up"); v != 0 {
		t.Errorf("state_backend_up with Redis away: %v", v)
	}
}
