package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// scriptedBackend is an FTP server that misbehaves on purpose. It logs
// anyone in; on RETR it says retr150 (if set; else "150 here it comes"),
// sends content (or half of it, when half is set; its first send bytes,
// when send is set), closes the data connection and replies retrReply.
// It accepts any REST. With pasvOnly it
// refuses EPSV and its 227 names a foreign host, 127.0.0.9 (loopback, where
// nothing listens: a proxy that followed it would fail, and a test never
// targets a non-loopback address).
type scriptedBackend struct {
	ln        net.Listener
	content   []byte
	retrReply string
	retr150   string
	half      bool
	send      int
	pasvOnly  bool
	// authReply, if set, is written as is in answer to AUTH.
	authReply string
	// passReply, if set, answers PASS instead of "230 in".
	passReply string
	// passivePort, if set, is the port its 229 and 227 replies name
	// (on 127.0.0.1), where it listens for nothing; LIST is then answered
	// 150 and 226 at once, as if the listing had gone there.
	passivePort int
	// userRole makes the backend hostile at USER: "garbage", "huge" (one
	// line of 1 MiB), "endless" (a multi-line reply that never ends),
	// "silent" (no reply at all), "close" (hangs up).
	userRole string
	// mute: accept connections and never greet.
	mute bool
	wg   sync.WaitGroup

	mu    sync.Mutex
	host  string   // the argument of the last HOST received
	users []string // the arguments of every USER received
}

// usersSeen returns the names the backend received in USER commands.
func (b *scriptedBackend) usersSeen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.users...)
}

func (b *scriptedBackend) lastHost() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.host
}

func startScriptedBackend(t *testing.T, b *scriptedBackend) *scriptedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.ln = ln
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

func (b *scriptedBackend) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if b.mute {
		io.Copy(io.Discard, c) // until the proxy hangs up
		return
	}
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	say("220 scripted")
	var data net.Listener
	defer func() {
		if data != nil {
			data.Close()
		}
	}()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(verb) {
		case "AUTH":
			if b.authReply == "" {
				say("500 no TLS here")
				continue
			}
			io.WriteString(c, b.authReply)
		case "HOST":
			b.mu.Lock()
			_, b.host, _ = strings.Cut(strings.TrimSpace(line), " ")
			b.mu.Unlock()
			say("220 virtual host selected")
		case "USER":
			b.mu.Lock()
			_, u, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			b.users = append(b.users, u)
			b.mu.Unlock()
			switch b.userRole {
			case "garbage":
				io.WriteString(c, "hello there, this is not FTP\r\n")
			case "huge":
				io.WriteString(c, "331 "+strings.Repeat("x", 1<<20)+"\r\n")
			case "endless":
				io.WriteString(c, "331-password please\r\n")
				line := []byte(" and more\r\n")
				for {
					if _, err := c.Write(line); err != nil {
						return // the proxy hung up
					}
				}
			case "silent":
				io.Copy(io.Discard, r) // until the proxy hangs up
				return
			case "close":
				return
			default:
				say("331 password please")
			}
		case "PASS":
			if b.passReply != "" {
				say(b.passReply)
				continue
			}
			say("230 in")
		case "EPSV":
			if b.pasvOnly {
				say("500 Unknown command.")
				continue
			}
			if b.passivePort != 0 {
				say(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", b.passivePort))
				continue
			}
			data, _ = net.Listen("tcp", "127.0.0.1:0")
			say(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", data.Addr().(*net.TCPAddr).Port))
		case "PASV":
			if b.passivePort != 0 {
				say(fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d).", b.passivePort>>8, b.passivePort&0xFF))
				continue
			}
			data, _ = net.Listen("tcp", "127.0.0.1:0")
			p := data.Addr().(*net.TCPAddr).Port
			say(fmt.Sprintf("227 Entering Passive Mode (127,0,0,9,%d,%d).", p>>8, p&0xFF))
		case "RETR":
			if data == nil {
				say("425 Use PASV or EPSV first.")
				continue
			}
			if b.retr150 != "" {
				say(b.retr150)
			} else {
				say("150 here it comes")
			}
			d, err := data.Accept()
			if err != nil {
				return
			}
			switch {
			case b.half:
				d.Write(b.content[:len(b.content)/2])
			case b.send > 0:
				d.Write(b.content[:b.send])
			default:
				d.Write(b.content)
			}
			d.Close()
			say(b.retrReply)
		case "LIST":
			if b.passivePort == 0 {
				say("200 ok")
				continue
			}
			say("150 Here comes the directory listing.")
			say("226 Directory send OK.")
		case "REST":
			say("350 Restart position accepted.")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("200 ok")
		}
	}
}

// TestBackendFailsMidDownload: the backend's error reaches the client, and
// the client's data leg ends without close_notify, so no TLS client can
// mistake the half file for a whole one.
func TestBackendFailsMidDownload(t *testing.T) {
	content := bytes.Repeat([]byte("z"), 200000)
	be := startScriptedBackend(t, &scriptedBackend{content: content, half: true, retrReply: "451 Local error: disk read failed"})
	g := startGate(t, be.ln.Addr().String(), gateOptions{})
	c := g.login(t, "anyone", "secret")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR f")
	d.SetDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(d)
	if err == nil && d.CloseNotified() {
		t.Fatalf("a failed download ended cleanly with close_notify after %d bytes", len(got))
	}
	if len(got) > len(content)/2 {
		t.Fatalf("got %d bytes, the backend sent %d", len(got), len(content)/2)
	}
	if msg := c.Expect(451); !strings.Contains(msg, "disk read failed") {
		t.Fatalf("451 text %q", msg)
	}
	c.Cmd(221, "QUIT")
	evs := g.eventsOf(t, "transfer")
	if len(evs) != 1 || evs[0]["result"] != "incomplete" || evs[0]["code"].(float64) != 451 ||
		evs[0]["bytes"].(float64) != float64(len(content)/2) {
		t.Fatalf("transfer events %v", evs)
	}
	if n := g.srv.PassivePortsInUse("ftps"); n != 0 {
		t.Fatalf("%d passive ports still held", n)
	}
}

// TestClientVanishesMidTransfer: a client that drops both connections in
// the middle of a download leaves nothing behind: the session ends, the
// backend connection closes (goleak in TestMain checks the goroutines).
func TestClientVanishesMidTransfer(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	ftptest.RandomFile(t, be.Root+"/big.bin", 64<<20)
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR big.bin")
	if _, err := io.ReadFull(d, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	c.Raw.Close()
	d.TCP.Close()
	deadline := time.Now().Add(30 * time.Second)
	for len(g.eventsOf(t, "session_end")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("session did not end after the client vanished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	evs := g.eventsOf(t, "transfer")
	if len(evs) != 1 || evs[0]["result"] != "incomplete" || evs[0]["bytes"].(float64) < 1<<20 {
		t.Fatalf("transfer events %v", evs)
	}
	if n := g.srv.PassivePortsInUse("ftps"); n != 0 {
		t.Fatalf("%d passive ports still held", n)
	}
	// The proxy serves the next client as before.
	c = ftptest.Dial(t, g.explicit)
	c.Cmd(221, "QUIT")
}

// TestBackendPASVForeignAddress: a backend that refuses EPSV is asked for
// PASV, and the address its 227 names (127.0.0.9) is ignored: the proxy
// connects to the backend's control host only, and logs the mismatch.
func TestBackendPASVForeignAddress(t *testing.T) {
	content := []byte("all of it\n")
	be := startScriptedBackend(t, &scriptedBackend{content: content, pasvOnly: true, retrReply: "226 done"})
	g := startGate(t, be.ln.Addr().String(), gateOptions{})
	c := g.login(t, "anyone", "secret")
	for i := 0; i < 2; i++ { // the second transfer goes straight to PASV
		d := c.DialData(c.EPSV())
		c.Cmd(150, "RETR f")
		if got := ftptest.ReadAll(t, d); !bytes.Equal(got, content) {
			t.Fatalf("got %q", got)
		}
		c.Expect(226)
	}
	if g.logs.FilterMessage("backend refused EPSV; using PASV").Len() != 1 {
		t.Fatal("EPSV was not given up after the first refusal")
	}
	named := g.logs.FilterMessage("backend PASV names another address; using the control connection's host").All()
	if len(named) != 2 || named[0].ContextMap()["named"] != "127.0.0.9" {
		t.Fatalf("log entries %v", named)
	}
}

// TestHostileBackend: a backend that answers with garbage, a huge line, a
// reply that never ends, silence or a hang-up cannot exhaust the proxy or
// confuse the client: the session gets 421, the diagnostic log says why,
// and the proxy serves the next session.
func TestHostileBackend(t *testing.T) {
	for _, role := range []string{"garbage", "huge", "endless", "silent", "close"} {
		t.Run(role, func(t *testing.T) {
			be := startScriptedBackend(t, &scriptedBackend{userRole: role})
			g := startGate(t, be.ln.Addr().String(), gateOptions{extra: `timeouts {
  backend_reply = "2s"
}`})
			c := ftptest.Dial(t, g.explicit)
			c.AuthTLS(g.certs.ClientConfig())
			start := time.Now()
			want := "lost the connection to the FTP server"
			if role == "silent" {
				want = "the FTP server did not answer within 2s"
			}
			if msg := c.Cmd(421, "USER alice"); !strings.Contains(msg, want) {
				t.Fatalf("421 text %q, want %q", msg, want)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("took %s", d)
			}
			if _, _, err := c.ReadErr(); err == nil {
				t.Fatal("the session went on after 421")
			}
			if !g.logged("session ended by error") && !g.logged("closing session") {
				t.Fatal("no log line")
			}
			c = ftptest.Dial(t, g.explicit)
			c.Cmd(221, "QUIT")
		})
	}
}

// TestBackendNeverGreets: a backend that accepts and never sends 220 gets
// the client a 421 saying so within timeouts.backend_greeting (10 s), not
// backend_reply (60 s), with an audit event; in a pool, the next server
// serves the session within the same USER.
func TestBackendNeverGreets(t *testing.T) {
	mute := startScriptedBackend(t, &scriptedBackend{mute: true})
	g := startGate(t, mute.ln.Addr().String(), gateOptions{})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	start := time.Now()
	if msg := c.Cmd(421, "USER alice"); !strings.Contains(msg, "the FTP server did not answer") {
		t.Fatalf("421 text %q", msg)
	}
	if d := time.Since(start); d > 12*time.Second {
		t.Fatalf("the 421 took %s", d)
	}
	evs := g.eventsOf(t, "backend_unavailable")
	if len(evs) != 1 || evs[0]["backend"] != "legacy" || evs[0]["what"] != "the FTP server did not answer within 10s" {
		t.Fatalf("backend_unavailable events %v", evs)
	}

	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	pool := startGate(t, "", gateOptions{servers: []string{mute.ln.Addr().String(), be.Addr}})
	for i := 0; i < 2; i++ { // round robin: one of the two starts with the mute server
		start = time.Now()
		c = pool.login(t, be.User, be.Password)
		if d := time.Since(start); d > 12*time.Second {
			t.Fatalf("the login took %s", d)
		}
		c.Cmd(257, "PWD")
	}
	if !pool.logged("trying the backend's next server") {
		t.Fatal("no log line for the failover")
	}
}

// TestBackendPrivilegedPassivePort: a backend whose 229 or 227 names a
// port below 1024 would make the proxy connect to another service on its
// host (here an SSH-like banner on a privileged port of 127.0.0.1) and
// relay its banner as a listing. The proxy refuses: 425 to the client, a
// log line, a policy_denied audit event; the session goes on (issue 14,
// item 7).
func TestBackendPrivilegedPassivePort(t *testing.T) {
	svc := listenPrivileged(t)
	reached := make(chan struct{}, 4)
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			reached <- struct{}{}
			io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 secret-host\r\n")
			c.Close()
		}
	}()
	p := svc.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name     string
		pasvOnly bool
		verb     string
	}{{"EPSV", false, "EPSV"}, {"PASV", true, "PASV"}} {
		t.Run(tc.name, func(t *testing.T) {
			be := startScriptedBackend(t, &scriptedBackend{passivePort: p, pasvOnly: tc.pasvOnly})
			g := startGate(t, be.ln.Addr().String(), gateOptions{})
			c := g.login(t, "anyone", "secret")
			d := c.DialData(c.EPSV())
			c.Send("LIST")
			code, msg := c.Read()
			if code == 150 {
				got, _ := readAllErr(d)
				t.Fatalf("the proxy relayed the service on port %d: %q, then %q", p, got, c.Expect(226))
			}
			if code != 425 {
				t.Fatalf("LIST: %d %q, want 425", code, msg)
			}
			c.Cmd(200, "NOOP") // the session goes on
			c.Cmd(221, "QUIT")
			select {
			case <-reached:
				t.Fatal("the proxy connected to the privileged port")
			default:
			}
			if !g.logged("backend passive port refused") {
				t.Fatal("no log line")
			}
			var reasons []string
			for _, e := range g.eventsOf(t, "policy_denied") {
				if e["rule"] == "backend_passive_port" {
					reasons = append(reasons, e["reason"].(string))
				}
			}
			if want := fmt.Sprintf("%s reply names privileged port %d", tc.verb, p); len(reasons) != 1 || !strings.Contains(reasons[0], want) {
				t.Fatalf("backend_passive_port denials %q, want one with %q", reasons, want)
			}
		})
	}
}

// listenPrivileged listens on a free port below 1024 of 127.0.0.1 (the
// tests run as root).
func listenPrivileged(t *testing.T) net.Listener {
	t.Helper()
	ftptest.RequireRoot(t)
	for p := 1023; p >= 600; p-- {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			t.Cleanup(func() { ln.Close() })
			return ln
		}
	}
	t.Fatal("no free port below 1024 on 127.0.0.1")
	return nil
}
