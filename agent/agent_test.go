package agent_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ftpsgate/ftpsgate/agent"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// fakeEdge is the edge's end of the protocol, without the proxy: a TLS
// listener that requires the agent's certificate, and the yamux sessions
// of the agents that connected. It can ask for anything: it plays a
// compromised edge too.
type fakeEdge struct {
	ln       net.Listener
	sessions chan *yamux.Session
}

func startFakeEdge(t *testing.T, certs *ftptest.Certs) *fakeEdge {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.CertFile, certs.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: certs.Pool, MinVersion: tls.VersionTLS13, NextProtos: []string{agent.ALPN}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEdge{ln: ln, sessions: make(chan *yamux.Session, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if err := c.(*tls.Conn).Handshake(); err != nil {
				c.Close()
				continue
			}
			s, err := yamux.Client(c, agent.YamuxConfig())
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { s.Close() })
			e.sessions <- s
		}
	}()
	return e
}

// next is the next agent session to connect.
func (e *fakeEdge) next(t *testing.T) *yamux.Session {
	t.Helper()
	select {
	case s := <-e.sessions:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no agent connected to the edge")
		return nil
	}
}

// agentConfig writes an agent.hcl for edge and parses it.
func agentConfig(t *testing.T, certs *ftptest.Certs, edge string, targets ...string) *agent.Config {
	t.Helper()
	certFile, keyFile := certs.ClientCert(t, "dc1")
	q := make([]string, len(targets))
	for i, s := range targets {
		q[i] = fmt.Sprintf("%q", s)
	}
	src := fmt.Sprintf(`edge = %q
server_name = "localhost"
ca_file = %q
cert_file = %q
key_file = %q
sessions = 1
allow_targets = [%s]
`, edge, certs.CAFile, certFile, keyFile, strings.Join(q, ", "))
	cfg, diags := agent.Parse([]byte(src), "agent.hcl")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	return cfg
}

// startAgent runs an agent until the test ends.
func startAgent(t *testing.T, cfg *agent.Config, log *zap.Logger) *agent.Agent {
	t.Helper()
	a := agent.New(cfg, agent.Options{Logger: log, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	done := make(chan struct{})
	go func() { a.Run(); close(done) }()
	t.Cleanup(func() { a.Close(); <-done })
	return a
}

// listen is a TCP listener on loopback, closed when the test ends.
func listen(t *testing.T, addr string) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func open(t *testing.T, s *yamux.Session, target netip.AddrPort) (*agent.Conn, error) {
	t.Helper()
	st, err := s.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	return agent.Open(st, target, 10*time.Second)
}

// TestAgentCarriesAStream: the edge asks for a permitted target; the
// agent connects, and bytes, a half-close and the far end's reply cross
// both ways.
func TestAgentCarriesAStream(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	target := listen(t, "127.0.0.1:0")
	tap := netip.MustParseAddrPort(target.Addr().String())
	startAgent(t, agentConfig(t, certs, edge.ln.Addr().String(), tap.String()), nil)
	s := edge.next(t)

	got := make(chan string, 1)
	go func() {
		c, err := target.AcceptTCP()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // up to the FIN the edge's CloseWrite makes
		c.Write([]byte("pong:" + string(b)))
		got <- string(b)
	}()
	c, err := open(t, s, tap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != tap.String() {
		t.Fatalf("RemoteAddr %s, want the target %s", c.RemoteAddr(), tap)
	}
	big := strings.Repeat("x", 200_000) // several frames
	if _, err := io.WriteString(c, big); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "pong:"+big || <-got != big {
		t.Fatalf("reply of %d bytes", len(reply))
	}
}

// TestAgentRefusesTargetsOutsideAllowTargets is the compromised-edge
// test: an edge that asks for another port of the FTP server's host,
// another host, or a name, is refused with a reason, the refusal is
// logged, and no connection reaches the target.
func TestAgentRefusesTargetsOutsideAllowTargets(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	allowed := listen(t, "127.0.0.1:0")
	forbidden := listen(t, "127.0.0.1:0")
	core, logs := observer.New(zap.InfoLevel)
	a := startAgent(t, agentConfig(t, certs, edge.ln.Addr().String(), allowed.Addr().String()), zap.New(core))
	s := edge.next(t)
	fp := netip.MustParseAddrPort(forbidden.Addr().String())
	for _, target := range []netip.AddrPort{
		fp, // another port of the same host
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), netip.MustParseAddrPort(allowed.Addr().String()).Port()), // another host
	} {
		_, err := open(t, s, target)
		if !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), "not in allow_targets") {
			t.Fatalf("%s: %v, want a refusal", target, err)
		}
	}
	// A request line that is not OPEN IP:port (a name would be resolved
	// by DNS) is refused too.
	for _, req := range []string{"OPEN localhost:21\n", "CONNECT 127.0.0.1:21\n", "OPEN 127.0.0.1:0\n", strings.Repeat("A", 600) + "\n"} {
		st, err := s.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(st, req)
		line, _ := bufio.NewReader(st).ReadString('\n')
		if !strings.HasPrefix(line, "ERR ") {
			t.Fatalf("request %.20q: answer %q", req, line)
		}
		st.Close()
	}
	if n := logs.FilterMessage("the edge asked for a target outside allow_targets; refused").Len(); n != 2 {
		t.Fatalf("%d refusals logged, want 2", n)
	}
	if st := a.Stats(); st.Refused != 6 {
		t.Fatalf("stats %+v, want 6 refused", st)
	}
	forbidden.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if c, err := forbidden.Accept(); err == nil {
		c.Close()
		t.Fatal("the agent connected to a target outside allow_targets")
	}
}

// TestAgentCarriesAReset: the edge's Reset reaches the target as a TCP
// reset (an aborted upload must not look complete), and the target's
// reset reaches the edge as ECONNRESET.
func TestAgentCarriesAReset(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	target := listen(t, "127.0.0.1:0")
	tap := netip.MustParseAddrPort(target.Addr().String())
	startAgent(t, agentConfig(t, certs, edge.ln.Addr().String(), tap.String()), nil)
	s := edge.next(t)

	// The edge resets.
	c, err := open(t, s, tap)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := target.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "partial upload")
	c.Reset()
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(tc)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the target read %q and %v, want a reset", b, err)
	}
	tc.Close()

	// The target resets.
	c, err = open(t, s, tap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc, err = target.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte("partial download"))
	tc.SetLinger(0)
	tc.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, err = io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the edge read %q and %v, want a reset", b, err)
	}
}

// TestAgentReconnects: when the edge drops the agent's connection, the
// agent connects again by itself.
func TestAgentReconnects(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	a := startAgent(t, agentConfig(t, certs, edge.ln.Addr().String(), "127.0.0.1:2121"), nil)
	edge.next(t).Close()
	edge.next(t)
	deadline := time.Now().Add(30 * time.Second)
	for a.Stats().Reconnects < 1 || a.Stats().Connected != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", a.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentRejectsAnUnknownEdge: an edge whose certificate ca_file did not
// sign is never served (the agent pins the edge's CA).
func TestAgentRejectsAnUnknownEdge(t *testing.T) {
	edgeCerts := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, edgeCerts)
	other := ftptest.NewCerts(t, ftptest.ECDSA) // the agent trusts this CA only
	cfg := agentConfig(t, other, edge.ln.Addr().String(), "127.0.0.1:2121")
	core, logs := observer.New(zap.InfoLevel)
	startAgent(t, cfg, zap.New(core))
	deadline := time.Now().Add(30 * time.Second)
	for logs.FilterMessage("cannot connect to the edge").Len() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no failed connection logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-edge.sessions:
		t.Fatal("a session with an edge the agent does not trust")
	default:
	}
}

// TestParseConfig: each mistake in agent.hcl is an error at its line.
func TestParseConfig(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	certFile, keyFile := certs.ClientCert(t, "dc1")
	base := fmt.Sprintf(`edge = "edge.example:7443"
ca_file = %q
cert_file = %q
key_file = %q
allow_targets = ["10.0.0.5:21", "10.0.0.5:40000-40100"]
`, certs.CAFile, certFile, keyFile)
	cfg, diags := agent.Parse([]byte(base), "agent.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if cfg.Sessions != agent.DefaultSessions || cfg.TLS.ServerName != "edge.example" ||
		!cfg.Permitted(netip.MustParseAddrPort("10.0.0.5:40050")) || cfg.Permitted(netip.MustParseAddrPort("10.0.0.5:22")) ||
		cfg.Permitted(netip.MustParseAddrPort("10.0.0.6:21")) {
		t.Fatalf("config %+v", cfg)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"edge without port", `"edge.example:7443"`, `"edge.example"`, 1, "Invalid edge"},
		{"missing CA", certs.CAFile, "/nonexistent/ca.pem", 2, "Cannot read ca_file"},
		{"CA not PEM", certs.CAFile, empty, 2, "Invalid ca_file"},
		{"bad key pair", keyFile, certs.KeyFile, 3, "Cannot load certificate"},
		{"name target", `"10.0.0.5:21"`, `"ftp.internal:21"`, 5, "Invalid allow_targets"},
		{"wildcard target", `"10.0.0.5:21"`, `"0.0.0.0:21"`, 5, "Invalid allow_targets"},
		{"falling range", `"10.0.0.5:40000-40100"`, `"10.0.0.5:40100-40000"`, 5, "Invalid allow_targets"},
		{"no targets", `["10.0.0.5:21", "10.0.0.5:40000-40100"]`, `[]`, 5, "Invalid allow_targets"},
		{"sessions", "allow_targets", "sessions = 0\nallow_targets", 5, "Invalid sessions"},
		{"duration", "allow_targets", "dial_timeout = \"soon\"\nallow_targets", 5, "Invalid duration"},
		{"health address", "allow_targets", "health_address = \"9101\"\nallow_targets", 5, "Invalid health_address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, tc.old, tc.new, 1)
			cfg, diags := agent.Parse([]byte(src), "agent.hcl")
			if cfg != nil || !diags.HasErrors() {
				t.Fatal("accepted")
			}
			for _, d := range diags {
				if d.Summary == tc.summary {
					if d.Subject == nil || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want line %d", d.Summary, d.Subject, tc.line)
					}
					return
				}
			}
			t.Fatalf("no %q in %s", tc.summary, diags.Error())
		})
	}
}

// TestParseTarget: the forms allow_targets takes, and what it refuses.
func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" : refused
	}{
		{"10.0.0.5:21", "10.0.0.5:21"},
		{"10.0.0.5:40000-40100", "10.0.0.5:40000-40100"},
		{"[::1]:21", "[::1]:21"},
		{"[::1]:50000-50010", "[::1]:50000-50010"},
		{"10.0.0.5", ""},
		{"ftp:21", ""},
		{"10.0.0.5:0", ""},
		{"10.0.0.5:2-1", ""},
		{"10.0.0.5:70000", ""},
		{"10.0.0.5:1-", ""},
	} {
		tg, err := agent.ParseTarget(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q accepted as %s", tc.in, tg)
		case tc.want != "" && (err != nil || tg.String() != tc.want):
			t.Errorf("%q: %s, %v; want %s", tc.in, tg, err, tc.want)
		}
	}
}

// TestAgentCloseEndsTargets: when the agent stops (or loses the edge),
// the connections it opened are reset at once, even a half-closed one
// whose target is silent: nothing is left open on the internal network,
// and Run returns.
func TestAgentCloseEndsTargets(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	target := listen(t, "127.0.0.1:0")
	tap := netip.MustParseAddrPort(target.Addr().String())
	a := agent.New(agentConfig(t, certs, edge.ln.Addr().String(), tap.String()), agent.Options{})
	done := make(chan struct{})
	go func() { a.Run(); close(done) }()
	t.Cleanup(func() { a.Close(); <-done })
	s := edge.next(t)
	c, err := open(t, s, tap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc, err := target.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	// The edge's direction ends (as after an upload); the target's stays
	// open and silent.
	c.CloseWrite()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the target read %v, want the edge's FIN", err)
	}
	a.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while a target connection was open")
	}
	// The agent's end is gone: the target's writes fail.
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	var err2 error
	for err2 == nil {
		_, err2 = tc.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err2, syscall.ECONNRESET) && !errors.Is(err2, syscall.EPIPE) {
		t.Fatalf("the target's write: %v, want a reset", err2)
	}
}

// TestAgentHealth: /healthz is 503 until the agent is connected to the
// edge, then 200; /metrics counts its sessions and refusals.
func TestAgentHealth(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	cfg := agentConfig(t, certs, edge.ln.Addr().String(), "127.0.0.1:2121")
	a := agent.New(cfg, agent.Options{})
	hs := httptest.NewServer(a.Handler())
	defer hs.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz before connecting: %d", code)
	}
	done := make(chan struct{})
	go func() { a.Run(); close(done) }()
	t.Cleanup(func() { a.Close(); <-done })
	s := edge.next(t)
	if _, err := open(t, s, netip.MustParseAddrPort("127.0.0.1:22")); !errors.Is(err, agent.ErrRefused) {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for a.Stats().Connected == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz connected: %d", code)
	}
	_, m := get("/metrics")
	if !strings.Contains(m, "ftpsgate_agent_sessions_connected 1") || !strings.Contains(m, "ftpsgate_agent_streams_refused_total 1") {
		t.Fatalf("metrics:\n%s", m)
	}
}

// TestConnCloseEndsRead: Close ends a Read waiting on the stream at once,
// as closing a TCP connection does, even when the far end stays silent
// (a yamux Close alone only half-closes).
func TestConnCloseEndsRead(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	edge := startFakeEdge(t, certs)
	target := listen(t, "127.0.0.1:0")
	tap := netip.MustParseAddrPort(target.Addr().String())
	startAgent(t, agentConfig(t, certs, edge.ln.Addr().String(), tap.String()), nil)
	c, err := open(t, edge.next(t), tap)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := target.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close() // silent, open
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Read block (it fails either way if it did not)
	c.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("Read returned data")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waiting after Close")
	}
}

// TestReloadStartOnly: Reload names the settings read at start only that
// the new configuration changes (sessions, health_address); the agent
// keeps its number of sessions until a restart.
func TestReloadStartOnly(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	base := agentConfig(t, certs, "127.0.0.1:7443", "127.0.0.1:2121")
	a := agent.New(base, agent.Options{})
	defer a.Close()
	for _, tc := range []struct {
		name   string
		change func(c *agent.Config)
		want   string
	}{
		{"nothing", func(c *agent.Config) {}, ""},
		{"allow_targets", func(c *agent.Config) { c.AllowTargets = nil }, ""},
		{"edge", func(c *agent.Config) { c.Edge = "127.0.0.1:7444" }, ""},
		{"sessions", func(c *agent.Config) { c.Sessions = 4 }, "sessions"},
		{"health_address", func(c *agent.Config) { c.HealthAddress = "127.0.0.1:9000" }, "health_address"},
		{"both", func(c *agent.Config) { c.Sessions, c.HealthAddress = 3, "127.0.0.1:9000" }, "sessions health_address"},
	} {
		c := *base
		tc.change(&c)
		if got := strings.Join(a.Reload(&c), " "); got != tc.want {
			t.Errorf("%s: start-only %q, want %q", tc.name, got, tc.want)
		}
		a.Reload(base)
		if a.Sessions() != base.Sessions {
			t.Errorf("%s: the agent keeps %d sessions, want %d", tc.name, a.Sessions(), base.Sessions)
		}
	}
	// Compared with the start, not with the last reload: a change not
	// applied is named again at the next reload.
	c := *base
	c.HealthAddress = "127.0.0.1:9000"
	a.Reload(&c)
	if got := a.Reload(&c); len(got) != 1 || got[0] != "health_address" {
		t.Errorf("the second reload of a health_address change: %v", got)
	}
}
