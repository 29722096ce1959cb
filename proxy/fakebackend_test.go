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
	// userRole makes the backend hostile at USER: "garbage", "huge" (one
	// line of 1 MiB), "endless" (a multi-line reply that never ends),
	// "silent" (no reply at all), "close" (hangs up).
	userRole string
	wg       sync.WaitGroup

	mu   sync.Mutex
	host string // the argument of the last HOST received
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
			say("230 in")
		case "EPSV":
			if b.pasvOnly {
				say("500 Unknown command.")
				continue
			}
			data, _ = net.Listen("tcp", "127.0.0.1:0")
			say(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", data.Addr().(*net.TCPAddr).Port))
		case "PASV":
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
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Login("anyone", "secret")
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
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Login(be.User, be.Password)
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
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Login("anyone", "secret")
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
			if msg := c.Cmd(421, "USER alice"); !strings.Contains(msg, "lost the connection to the FTP server") {
				t.Fatalf("421 text %q", msg)
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
