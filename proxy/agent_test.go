package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ftpsgate/ftpsgate/agent"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// The addresses of the DMZ test: the edge (the proxy), the agent and the
// FTP server each on its own loopback address.
const (
	edgeHost   = "127.0.0.2"
	agentHost  = "127.0.0.3"
	serverHost = "127.0.0.4"
)

// dialGuard records every connection the edge dials itself, and refuses
// those to the FTP server's host: a via_agent backend must be reached
// through the agent only.
type dialGuard struct {
	mu     sync.Mutex
	dialed []string
}

func (g *dialGuard) dial(ctx context.Context, network, address string) (net.Conn, error) {
	g.mu.Lock()
	g.dialed = append(g.dialed, address)
	g.mu.Unlock()
	if strings.HasPrefix(address, serverHost+":") {
		return nil, fmt.Errorf("dial guard: the edge dialled the FTP server at %s", address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (g *dialGuard) check(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.dialed {
		if strings.HasPrefix(a, serverHost+":") {
			t.Fatalf("the edge dialled the FTP server itself: %v", g.dialed)
		}
	}
}

// agentSetup is a DMZ on loopback: vsftpd on serverHost with its passive
// range, an edge on edgeHost whose backend is reached via_agent "dc1",
// and what an agent on agentHost needs to connect.
type agentSetup struct {
	be    *ftptest.Server
	g     *gate
	guard *dialGuard
	certs *ftptest.Certs // the agent listener's certificate and the agents' CA
	// targets are the agent's allow_targets: the control port and the
	// passive range.
	targets []string
}

func newAgentSetup(t *testing.T) *agentSetup {
	t.Helper()
	return newAgentSetupWith(t, "", "")
}

// newAgentSetupWith is newAgentSetup with listenerExtra, more HCL for the
// edge's listeners, and backendExtra, for its backend block.
func newAgentSetupWith(t *testing.T, listenerExtra, backendExtra string) *agentSetup {
	t.Helper()
	first, last := ftptest.FreePortRange(t, 20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{Host: serverHost,
		Extra: []string{fmt.Sprintf("pasv_min_port=%d", first), fmt.Sprintf("pasv_max_port=%d", last)}})
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	guard := &dialGuard{}
	g := startGate(t, be.Addr, gateOptions{
		listen:        edgeHost + ":0",
		listenerExtra: listenerExtra,
		backend:       "tls = \"none\"\n  via_agent = \"dc1\"\n" + backendExtra,
		dialBackend:   guard.dial,
		extra: fmt.Sprintf(`agent_listener {
  address        = "%s:0"
  cert_file      = %q
  key_file       = %q
  client_ca_file = %q
  allowed_names  = ["dc1"]
}`, edgeHost, certs.CertFile, certs.KeyFile, certs.CAFile),
	})
	return &agentSetup{be: be, g: g, guard: guard, certs: certs,
		targets: []string{be.Addr, fmt.Sprintf("%s:%d-%d", serverHost, first, last)}}
}

// startAgent starts an agent on agentHost named name, with allow_targets
// targets, and waits until the edge counts its connections.
func (s *agentSetup) startAgent(t *testing.T, name string, targets []string) *agent.Agent {
	t.Helper()
	before := s.g.srv.AgentsConnected(name)
	a := s.startAgentNoWait(t, name, targets)
	deadline := time.Now().Add(30 * time.Second)
	for s.g.srv.AgentsConnected(name) < before+a.Sessions() {
		if time.Now().After(deadline) {
			t.Fatalf("the edge counts %d connections of agent %q", s.g.srv.AgentsConnected(name), name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a
}

// startAgentNoWait starts an agent as startAgent does, and returns at once.
func (s *agentSetup) startAgentNoWait(t *testing.T, name string, targets []string) *agent.Agent {
	t.Helper()
	return s.runAgent(t, s.agentConfig(t, name, targets))
}

// runAgent runs an agent of configuration cfg on agentHost until the test
// ends.
func (s *agentSetup) runAgent(t *testing.T, cfg *agent.Config) *agent.Agent {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(agentHost)}}
	a := agent.New(cfg, agent.Options{
		Logger:   zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named("agent"),
		DialEdge: d.DialContext, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	done := make(chan struct{})
	go func() { a.Run(); close(done) }()
	t.Cleanup(func() { a.Close(); <-done })
	return a
}

// agentConfig is the configuration of an agent named name (its
// certificate's), connecting to the edge, with allow_targets targets.
func (s *agentSetup) agentConfig(t *testing.T, name string, targets []string) *agent.Config {
	t.Helper()
	return s.agentConfigFrom(t, s.certs, name, targets)
}

// agentConfigFrom is agentConfig with a certificate that issuer signed.
func (s *agentSetup) agentConfigFrom(t *testing.T, issuer *ftptest.Certs, name string, targets []string) *agent.Config {
	t.Helper()
	certFile, keyFile := issuer.ClientCert(t, name)
	q := make([]string, len(targets))
	for i, tg := range targets {
		q[i] = fmt.Sprintf("%q", tg)
	}
	src := fmt.Sprintf(`edge = %q
server_name = "localhost"
ca_file = %q
cert_file = %q
key_file = %q
sessions = 2
allow_targets = [%s]
`, s.g.srv.AgentAddr().String(), s.certs.CAFile, certFile, keyFile, strings.Join(q, ", "))
	cfg, diags := agent.Parse([]byte(src), "agent.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return cfg
}

// TestAgentFullSession: through the agent, curl (EPSV) and ftplib (PASV)
// list, upload and download 64 MiB, sha256-compared, and a Go client
// aborts a download with ABOR; the edge never connects to the FTP server
// itself.
func TestAgentFullSession(t *testing.T) {
	s := newAgentSetup(t)
	s.startAgent(t, "dc1", s.targets)
	be, g := s.be, s.g
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	sum := ftptest.RandomFile(t, local, 64<<20)

	// curl: EPSV.
	url := ftpURL("ftp", be.User, be.Password, g.explicit, "curl.bin")
	args := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}
	ftptest.Curl(t, append(args, "-T", local, url)...)
	out := filepath.Join(dir, "curl.down")
	ftptest.Curl(t, append(args, "-o", out, url)...)
	if ftptest.FileSHA256(t, out) != sum || ftptest.FileSHA256(t, filepath.Join(be.Root, "curl.bin")) != sum {
		t.Fatal("curl: files differ")
	}
	if ls := ftptest.Curl(t, append(args, ftpURL("ftp", be.User, be.Password, g.explicit, "")+"/")...); !strings.Contains(ls, "curl.bin") {
		t.Fatalf("curl LIST: %q", ls)
	}
	// ftplib: PASV.
	res := ftptest.Python(t, ftptest.PythonSpec{
		Host: edgeHost, Port: port(t, g.explicit), CAFile: g.certs.CAFile, User: be.User, Password: be.Password,
		Steps: []ftptest.PythonStep{
			{Op: "upload", Local: local, Remote: "py.bin"},
			{Op: "download", Remote: "py.bin"},
			{Op: "list"},
		},
	})
	if res.Steps[1].SHA256 != sum || !strings.Contains(strings.Join(res.Steps[2].Lines, "\n"), "py.bin") {
		t.Fatalf("ftplib: %+v", res.Steps)
	}
	if ftptest.FileSHA256(t, filepath.Join(be.Root, "py.bin")) != sum {
		t.Fatal("ftplib: the stored file differs")
	}
	// ABOR in the middle of a download: 426, then 226, and the session
	// goes on.
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR py.bin")
	if _, err := io.ReadFull(d, make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	c.Send("ABOR")
	c.Expect(426)
	c.Expect(226)
	d = c.DialData(c.EPSV())
	c.Cmd(150, "LIST")
	if ls := string(ftptest.ReadAll(t, d)); !strings.Contains(ls, "py.bin") {
		t.Fatalf("LIST after ABOR: %q", ls)
	}
	c.Expect(226)
	c.Cmd(221, "QUIT")
	s.guard.check(t)
	// The audit names the agent that carried each session.
	logins := g.eventsOf(t, "login")
	if len(logins) == 0 {
		t.Fatal("no login event")
	}
	for _, e := range logins {
		if e["agent"] != "dc1" || !strings.HasPrefix(fmt.Sprint(e["agent_address"]), agentHost+":") {
			t.Fatalf("login event %v does not name the agent", e)
		}
	}
	// The status page lists the agent's two connections.
	st := g.srv.Status()
	if len(st.Agents) != 2 || st.Agents[0].Agent != "dc1" || !strings.HasPrefix(st.Agents[0].Address, agentHost+":") {
		t.Fatalf("status agents %+v", st.Agents)
	}
	admin := httptest.NewServer(g.srv.AdminHandler())
	resp, err := http.Get(admin.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	admin.Close()
	if !strings.Contains(string(page), `<tr class="agent" data-agent="dc1">`) {
		t.Fatalf("the status page shows no agent:\n%s", page)
	}
	m := agentMetrics(t, g)
	if !strings.Contains(m, `ftpsgate_agent_connections{agent="dc1"} 2`) || !strings.Contains(m, `ftpsgate_agent_streams_total{agent="dc1",result="opened"}`) {
		t.Fatalf("metrics:\n%s", m)
	}
}

// agentMetrics is the agent lines of the edge's /metrics.
func agentMetrics(t *testing.T, g *gate) string {
	t.Helper()
	admin := httptest.NewServer(g.srv.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "ftpsgate_agent_") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestAgentLossAndReturn: killing the agent in the middle of a download
// gives the client a clear error, not a short file taken for whole, and an
// idle session its 421 at once; with
// no agent connected a login gets "421 Service not available: no agent
// connected"; a new agent restores service without restarting the edge.
func TestAgentLossAndReturn(t *testing.T) {
	s := newAgentSetup(t)
	a := s.startAgent(t, "dc1", s.targets)
	be, g := s.be, s.g
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "big.bin"), 64<<20)

	idle := g.login(t, be.User, be.Password)
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR big.bin")
	if _, err := io.ReadFull(d, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	a.Close() // the agent goes away mid-transfer
	got, _ := io.ReadAll(d)
	if len(got)+1<<20 >= 64<<20 {
		t.Fatalf("the whole file arrived (%d bytes) though the agent went away", len(got)+1<<20)
	}
	code, msg, err := c.ReadErr()
	if err == nil && (code < 400 || code >= 500) {
		t.Fatalf("after the agent went away: %d %s, want a 4xx error", code, msg)
	}
	t.Logf("client told: %d %s (%v)", code, msg, err)
	// An idle session is told at once, not at its next command.
	if code, msg, err := idle.ReadErr(); err != nil || code != 421 || !strings.Contains(msg, "lost the connection to the FTP server") {
		t.Fatalf("the idle session: %d %q (%v), want 421", code, msg, err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for g.srv.AgentsConnected("dc1") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the edge still counts the agent's connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc := ftptest.DialFrom(t, "", g.explicit)
	nc.AuthTLS(g.certs.ClientConfig())
	if msg := nc.Cmd(421, "USER %s", be.User); !strings.Contains(msg, "Service not available: no agent connected") {
		t.Fatalf("with no agent: 421 %q", msg)
	}
	if n := g.logs.FilterMessage("backend dial failed").Len(); n == 0 {
		t.Fatal("no log line for the failed connection")
	}
	if m := agentMetrics(t, g); !strings.Contains(m, `ftpsgate_agent_connections{agent="dc1"} 0`) ||
		!strings.Contains(m, `ftpsgate_agent_streams_total{agent="dc1",result="no_agent"}`) {
		t.Fatalf("metrics:\n%s", m)
	}

	// A new agent: service again, same edge, its connections counted as
	// admitted after the first two.
	s.startAgent(t, "dc1", s.targets)
	if m := agentMetrics(t, g); !strings.Contains(m, `ftpsgate_agent_connections_total{agent="dc1"} 4`) {
		t.Fatalf("metrics after the agent came back:\n%s", m)
	}
	res := ftptest.Python(t, ftptest.PythonSpec{
		Host: edgeHost, Port: port(t, g.explicit), CAFile: g.certs.CAFile, User: be.User, Password: be.Password,
		Steps: []ftptest.PythonStep{{Op: "download", Remote: "big.bin"}},
	})
	if res.Steps[0].SHA256 != sum {
		t.Fatalf("after the agent came back: %+v", res.Steps)
	}
	s.guard.check(t)
}

// TestAgentRefusesTheEdge: an agent whose allow_targets leave out the
// passive range refuses the edge's data connections: the client gets a
// 425, never a connection elsewhere; and an agent of a name the edge does
// not allow, or of an allowed name but a certificate of another CA than
// client_ca_file, is refused at its handshake.
func TestAgentRefusesTheEdge(t *testing.T) {
	s := newAgentSetup(t)
	a := s.startAgent(t, "dc1", s.targets[:1]) // the control port only
	be, g := s.be, s.g
	c := g.login(t, be.User, be.Password)
	c.EPSV()
	c.Cmd(425, "LIST")
	if a.Stats().Refused == 0 {
		t.Fatal("the agent counted no refusal")
	}
	c.Cmd(221, "QUIT")
	s.guard.check(t)

	// An agent whose certificate names another agent is refused at its
	// handshake, and never counted.
	other := s.startAgentNoWait(t, "intruder", s.targets)
	deadline := time.Now().Add(30 * time.Second)
	for g.logs.FilterMessage("agent refused at its TLS handshake").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refused handshake logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g.srv.AgentsConnected("intruder") != 0 || other.Stats().Connected != 0 {
		t.Fatal("an agent whose name is not allowed is connected")
	}
	// dc1, but signed by another CA: the edge pins client_ca_file. (The
	// intruder goes on trying meanwhile: its refusals name the name.)
	unknownCA := func() int {
		n := 0
		for _, e := range g.logs.FilterMessage("agent refused at its TLS handshake").All() {
			if strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "certificate signed by unknown authority") {
				n++
			}
		}
		return n
	}
	forged := s.runAgent(t, s.agentConfigFrom(t, ftptest.NewCerts(t, ftptest.ECDSA), "dc1", s.targets))
	for unknownCA() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refused handshake logged for a dc1 certificate of another CA")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.srv.AgentsConnected("dc1"); n != a.Sessions() || forged.Stats().Connected != 0 {
		t.Fatalf("a dc1 certificate of another CA is connected: the edge counts %d dc1 connections", n)
	}
	if m := agentMetrics(t, g); !strings.Contains(m, `ftpsgate_agent_streams_total{agent="dc1",result="refused"} 1`) ||
		strings.Contains(m, "ftpsgate_agent_handshake_failures_total 0") {
		t.Fatalf("metrics:\n%s", m)
	}
}

// TestAgentRevokedByReload: a reload whose allowed_names no longer list
// an agent's name closes its connections (a stolen certificate is revoked
// so), ending the sessions they carried with a 421, and refuses it when it
// comes back.
func TestAgentRevokedByReload(t *testing.T) {
	s := newAgentSetup(t)
	s.startAgent(t, "dc1", s.targets)
	g := s.g
	c := g.login(t, s.be.User, s.be.Password)
	src := strings.Replace(g.src, `allowed_names  = ["dc1"]`, `allowed_names  = ["dc2"]`, 1)
	src = strings.Replace(src, `via_agent = "dc1"`, `via_agent = "dc2"`, 1)
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if n := g.srv.AgentsConnected("dc1"); n != 0 {
		t.Fatalf("%d connections of the revoked agent remain", n)
	}
	if code, msg, err := c.ReadErr(); err != nil || code != 421 {
		t.Fatalf("the session the revoked agent carried: %d %q (%v), want 421", code, msg, err)
	}
	refused := g.logs.FilterMessage("agent refused at its TLS handshake").Len()
	deadline := time.Now().Add(30 * time.Second)
	for g.logs.FilterMessage("agent refused at its TLS handshake").Len() == refused {
		if time.Now().After(deadline) {
			t.Fatal("the revoked agent did not come back, or was not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.srv.AgentsConnected("dc1"); n != 0 {
		t.Fatalf("the revoked agent is connected again (%d)", n)
	}
}

// TestAgentsShareAndFailOver: two agents of one name both carry sessions
// (the edge opens each stream on the connection with fewest), and when
// one goes away the other carries new sessions alone.
func TestAgentsShareAndFailOver(t *testing.T) {
	s := newAgentSetup(t)
	a1 := s.startAgent(t, "dc1", s.targets)
	a2 := s.startAgent(t, "dc1", s.targets)
	be, g := s.be, s.g
	var open []*ftptest.Conn
	for range 4 {
		open = append(open, g.login(t, be.User, be.Password))
	}
	if n1, n2 := a1.Stats().Streams, a2.Stats().Streams; n1 == 0 || n2 == 0 || n1+n2 != 4 {
		t.Fatalf("streams per agent: %d and %d, want 4 shared by both", n1, n2)
	}
	for _, c := range open {
		c.Cmd(221, "QUIT")
	}
	a1.Close()
	deadline := time.Now().Add(30 * time.Second)
	for g.srv.AgentsConnected("dc1") != a2.Sessions() {
		if time.Now().After(deadline) {
			t.Fatalf("the edge counts %d connections", g.srv.AgentsConnected("dc1"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		c := g.login(t, be.User, be.Password)
		d := c.DialData(c.EPSV())
		c.Cmd(150, "LIST")
		ftptest.ReadAll(t, d)
		c.Expect(226)
		c.Cmd(221, "QUIT")
	}
	s.guard.check(t)
}

// TestAgentTruncatedUpload: an upload cut on the client's side (a FIN
// without TLS close_notify) fails with 426, and the edge's reset of the
// backend leg crosses the agent as a reset: vsftpd records a failed
// upload, never a complete one of the bytes that arrived.
func TestAgentTruncatedUpload(t *testing.T) {
	s := newAgentSetup(t)
	s.startAgent(t, "dc1", s.targets)
	be, g := s.be, s.g
	content := randomBytes(t, 3000000)
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(cutClientData(t, c.EPSV(), 20))
	c.Cmd(150, "STOR cut.bin")
	d.WriteAll(t, content)
	if msg := c.Expect(426); !strings.Contains(msg, "without TLS close_notify") {
		t.Fatalf("426 text %q", msg)
	}
	c.Cmd(221, "QUIT")
	deadline := time.Now().Add(30 * time.Second)
	for serverLogCount(t, be, "FAIL UPLOAD", "cut.bin") == 0 && serverLogCount(t, be, "OK UPLOAD", "cut.bin") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("vsftpd logged no end of the upload")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := serverLogCount(t, be, "OK UPLOAD", "cut.bin"); n != 0 {
		t.Fatal("vsftpd recorded the cut upload as complete")
	}
	s.guard.check(t)
}

// TestAgentListenerReloadRefused: a reload that adds, removes or moves
// the agent listener (bound at start only) is refused as a whole, and the
// running configuration keeps serving its agents.
func TestAgentListenerReloadRefused(t *testing.T) {
	s := newAgentSetup(t)
	s.startAgent(t, "dc1", s.targets)
	g := s.g
	moved := strings.Replace(g.src, fmt.Sprintf(`address        = "%s:0"`, edgeHost), `address        = "127.0.0.5:0"`, 1)
	removed := strings.Replace(g.src, `via_agent = "dc1"`, "", 1)
	removed = removed[:strings.Index(removed, "agent_listener {")]
	for name, src := range map[string]string{"moved": moved, "removed": removed} {
		if src == g.src {
			t.Fatalf("%s: edit changed nothing", name)
		}
		cfg, diags := config.Parse([]byte(src), "test.hcl")
		if diags.HasErrors() {
			t.Fatalf("%s: %s", name, diags.Error())
		}
		if err := g.srv.Reload(cfg); err == nil || !strings.Contains(err.Error(), "agent_listener") {
			t.Fatalf("%s: reload %v, want a refusal naming agent_listener", name, err)
		}
	}
	if n := g.srv.AgentsConnected("dc1"); n != 2 {
		t.Fatalf("%d agent connections after the refused reloads", n)
	}
	c := g.login(t, s.be.User, s.be.Password)
	c.Cmd(221, "QUIT")
}

// TestAgentHandshakeFlood: connections to the agent listener that never
// finish a handshake hold at most maxAgentHandshakes (64) slots; one more
// is closed at once and logged, and once they go, an agent connects.
func TestAgentHandshakeFlood(t *testing.T) {
	s := newAgentSetup(t)
	g := s.g
	addr := g.srv.AgentAddr().String()
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// The 65th (or, while the accept loop catches up, a later one) is
	// closed without a handshake.
	deadline := time.Now().Add(30 * time.Second)
	for g.logs.FilterMessage("too many agent handshakes at once; connection closed").Len() == 0 {
		if time.Now().After(deadline) || len(idle) > 2000 {
			t.Fatalf("no connection refused past the bound after %d", len(idle))
		}
		time.Sleep(5 * time.Millisecond) // pacing while the loop polls the log, not a readiness check
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	s.startAgent(t, "dc1", s.targets)
}

// TestAgentReload: the agent's Reload (its SIGHUP) applies allow_targets
// to the next stream at once, within a session that goes on: its data
// connections are refused (425), then carried, then refused again. A new
// certificate applies to the next session with the edge: once the edge
// allows only the new name, dropping the old one's connections, the agent
// comes back under the new name, and carries sessions.
func TestAgentReload(t *testing.T) {
	s := newAgentSetup(t)
	a := s.startAgent(t, "dc1", s.targets[:1]) // the control port only
	be, g := s.be, s.g
	writeFile(t, be.Root, "small.txt", []byte("through the agent\n"))
	c := g.login(t, be.User, be.Password)
	c.EPSV()
	c.Cmd(425, "LIST")
	if startOnly := a.Reload(s.agentConfig(t, "dc1", s.targets)); len(startOnly) != 0 {
		t.Fatalf("start-only settings changed: %v", startOnly)
	}
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR small.txt")
	if got := string(ftptest.ReadAll(t, d)); got != "through the agent\n" {
		t.Fatalf("after the reload: %q", got)
	}
	c.Expect(226)
	a.Reload(s.agentConfig(t, "dc1", s.targets[:1]))
	c.EPSV()
	c.Cmd(425, "LIST")
	c.Cmd(221, "QUIT")

	// A new certificate, named dc2, for the sessions to come.
	a.Reload(s.agentConfig(t, "dc2", s.targets))
	src := strings.Replace(g.src, `allowed_names  = ["dc1"]`, `allowed_names  = ["dc2"]`, 1)
	src = strings.Replace(src, `via_agent = "dc1"`, `via_agent = "dc2"`, 1)
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for g.srv.AgentsConnected("dc2") < a.Sessions() {
		if time.Now().After(deadline) {
			t.Fatalf("the edge counts %d connections of dc2, %d of dc1", g.srv.AgentsConnected("dc2"), g.srv.AgentsConnected("dc1"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	c = g.login(t, be.User, be.Password)
	d = c.DialData(c.EPSV())
	c.Cmd(150, "RETR small.txt")
	ftptest.ReadAll(t, d)
	c.Expect(226)
	c.Cmd(221, "QUIT")
	s.guard.check(t)
}

// TestAgentHealthCheck: a via_agent backend's health checks are streams
// through the agent: the server is down while no agent is connected, up
// once one is, down again when it goes; the edge never dials the server.
func TestAgentHealthCheck(t *testing.T) {
	s := newAgentSetupWith(t, "", `health_check {
    interval = "100ms"
    timeout  = "5s"
    rise     = 1
    fall     = 1
  }`)
	up := func(v string) string {
		return fmt.Sprintf(`ftpsgate_backend_server_up{backend="legacy",server=%q} %s`, s.be.Addr, v)
	}
	waitMetric(t, s.g, up("0"))
	a := s.startAgent(t, "dc1", s.targets)
	waitMetric(t, s.g, up("1"))
	a.Close()
	waitMetric(t, s.g, up("0"))
	s.guard.check(t)
}
