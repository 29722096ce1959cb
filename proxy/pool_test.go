package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// poolServers starts two real vsftpd servers, each holding a who.txt that
// names it ("A", "B").
func poolServers(t *testing.T) (a, b *ftptest.Server) {
	a = ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	b = ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, a.Root, "who.txt", []byte("A"))
	writeFile(t, b.Root, "who.txt", []byte("B"))
	return a, b
}

// who logs a session in through g and reads who.txt: the server that
// serves it. The session stays open.
func who(t *testing.T, g *gate, be *ftptest.Server) (string, *ftptest.Conn) {
	t.Helper()
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR who.txt")
	got := string(ftptest.ReadAll(t, d))
	c.Expect(226)
	return got, c
}

// metric reads one line of /metrics that starts with name.
func metric(t *testing.T, g *gate, name string) string {
	t.Helper()
	admin := httptest.NewServer(g.srv.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) {
			return line
		}
	}
	return ""
}

// waitMetric polls /metrics until a line reads want (name, labels, value).
func waitMetric(t *testing.T, g *gate, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, g, want[:strings.LastIndex(want, " ")]) != want {
		if time.Now().After(deadline) {
			t.Fatalf("metrics never said %q", want)
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded above
	}
}

// TestBackendPool: a backend of several real servers. Round-robin spreads
// sessions and steps over a server that refuses connections (the session
// is served by the next one, and the dead one shows down in the metrics);
// least_conn fills the emptier server; sticky_user keeps a user on one.
func TestBackendPool(t *testing.T) {
	a, b := poolServers(t)
	dead := fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t)) // nothing listens there

	t.Run("round_robin", func(t *testing.T) {
		g := startGate(t, "", gateOptions{servers: []string{a.Addr, dead, b.Addr}})
		got := map[string]int{}
		for range 6 {
			w, c := who(t, g, a)
			c.Cmd(221, "QUIT")
			got[w]++
		}
		if got["A"] < 2 || got["B"] < 2 || got["A"]+got["B"] != 6 {
			t.Fatalf("sessions by server %v", got)
		}
		if !g.logged("trying the backend's next server") {
			t.Fatal("the failover to the next server was not logged")
		}
		want := fmt.Sprintf(`ftpsgate_backend_server_up{backend="legacy",server=%q} 0`, dead)
		if m := metric(t, g, want[:strings.LastIndex(want, " ")]); m != want {
			t.Fatalf("metrics say %q, want %q", m, want)
		}
	})
	t.Run("least_conn", func(t *testing.T) {
		g := startGate(t, "", gateOptions{servers: []string{a.Addr, b.Addr}, backend: `balance = "least_conn"`})
		first, held := who(t, g, a)
		second, c := who(t, g, a)
		if second == first {
			t.Fatalf("both sessions on %s while the other server had none", first)
		}
		c.Cmd(221, "QUIT")
		waitMetric(t, g, `ftpsgate_sessions_active{listener="ftps"} 1`) // only the held one
		third, c := who(t, g, a)
		if third == first {
			t.Fatalf("third session on %s, which holds one, while the other holds none", first)
		}
		c.Cmd(221, "QUIT")
		held.Cmd(221, "QUIT")
	})
	t.Run("sticky_user", func(t *testing.T) {
		g := startGate(t, "", gateOptions{servers: []string{a.Addr, b.Addr}, backend: `balance = "sticky_user"`})
		home, c := who(t, g, a)
		c.Cmd(221, "QUIT")
		for range 4 {
			w, c := who(t, g, a)
			c.Cmd(221, "QUIT")
			if w != home {
				t.Fatalf("the user moved from %s to %s", home, w)
			}
		}
	})
}

// greeter is a server that answers every connection "220" and closes it
// after a line: enough for a health check, not for a login. It can be
// stopped and started again on the same address.
type greeter struct {
	addr string
	mu   sync.Mutex
	ln   net.Listener
	wg   sync.WaitGroup
}

func (g *greeter) start(t *testing.T) {
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.ln, g.addr = ln, ln.Addr().String()
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "220 greeter\r\n")
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
}

func (g *greeter) stop() {
	g.mu.Lock()
	g.ln.Close()
	g.mu.Unlock()
	g.wg.Wait()
}

// TestBackendHealthCheck: a server that stops greeting is marked down by
// the health check (in the metrics, and sessions no longer start there),
// and up again when it greets again.
func TestBackendHealthCheck(t *testing.T) {
	a := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, a.Root, "who.txt", []byte("A"))
	gr := &greeter{addr: "127.0.0.1:0"}
	gr.start(t)
	g := startGate(t, "", gateOptions{servers: []string{a.Addr, gr.addr}, backend: `health_check {
    interval = "100ms"
    timeout  = "5s"
    rise     = 1
    fall     = 1
  }`})
	up := func(v string) string {
		return fmt.Sprintf(`ftpsgate_backend_server_up{backend="legacy",server=%q} %s`, gr.addr, v)
	}
	waitMetric(t, g, up("1"))
	gr.stop()
	waitMetric(t, g, up("0"))
	if !g.logged("backend server down") {
		t.Fatal("the server going down was not logged")
	}
	for range 4 {
		w, c := who(t, g, a)
		c.Cmd(221, "QUIT")
		if w != "A" {
			t.Fatalf("a session started on the server marked down")
		}
	}
	gr.start(t)
	defer gr.stop()
	waitMetric(t, g, up("1"))
	if !g.logged("backend server up") {
		t.Fatal("the server coming back was not logged")
	}
}

// TestBackendHealthCheckProxyProtocol: toward a backend that requires a
// PROXY header, the health check sends one (LOCAL: it speaks for no
// client) and finds the server up; a check without it would get no
// greeting.
func TestBackendHealthCheckProxyProtocol(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	front := startProxyAwareFront(t, be.Addr)
	g := startGate(t, front.ln.Addr().String(), gateOptions{backend: `proxy_protocol = "v2"
  health_check {
    interval = "100ms"
    rise     = 1
    fall     = 1
  }`})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polling, bounded
		local := 0
		for _, h := range front.received() {
			if h.Command == proxyproto.LOCAL {
				local++
			}
		}
		if local >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d LOCAL headers from the health check", local)
		}
	}
	waitMetric(t, g, fmt.Sprintf(`ftpsgate_backend_server_up{backend="legacy",server=%q} 1`, front.ln.Addr().String()))
	if g.logged("backend server down") {
		t.Fatal("the server was marked down")
	}
}
