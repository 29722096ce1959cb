package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Protocol-level behaviour, driven by a Go client that sends exact bytes,
// against a real vsftpd behind the proxy.

func TestSessionRules(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	conf := g.certs.ClientConfig()

	t.Run("no login before TLS", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		c.Cmd(530, "USER %s", be.User)
		c.Cmd(503, "PASS %s", be.Password) // no USER accepted
		c.Cmd(503, "PBSZ 0")
		c.Cmd(503, "PROT P")
		c.Cmd(530, "PASV")
		c.Cmd(530, "LIST")
		c.Cmd(221, "QUIT")
		denied := g.eventsOf(t, "policy_denied")
		if len(denied) == 0 || denied[0]["rule"] != "require_tls" {
			t.Fatalf("policy_denied events %v", denied)
		}
	})
	t.Run("PBSZ before PROT; PROT C refused; data before PROT P refused", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(conf)
		c.Cmd(331, "USER %s", be.User)
		c.Cmd(230, "PASS %s", be.Password)
		c.Cmd(503, "PROT P")
		c.Cmd(200, "PBSZ 0")
		c.Cmd(534, "PROT C")
		c.Cmd(536, "PROT S")
		c.Cmd(504, "PROT X")
		c.Cmd(521, "EPSV")
		c.Cmd(521, "PASV")
		c.Cmd(521, "LIST")
		c.Cmd(200, "PROT P")
		c.EPSV()
		c.Cmd(221, "QUIT")
	})
	t.Run("AUTH variants", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		c.Cmd(504, "AUTH KERBEROS_V4")
		c.Cmd(502, "ADAT xyz")
		c.AuthTLS(conf)
		c.Cmd(503, "AUTH TLS")
		c.Cmd(534, "CCC")
	})
	t.Run("FEAT before and after login", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		pre := c.Cmd(211, "FEAT")
		for _, f := range []string{"AUTH TLS", "PBSZ", "PROT", "EPSV", "EPRT"} {
			if !strings.Contains(pre, "\n "+f) {
				t.Errorf("FEAT before login lacks %q: %q", f, pre)
			}
		}
		c.AuthTLS(conf)
		c.LoginProtP(be.User, be.Password)
		post := c.Cmd(211, "FEAT")
		// vsftpd's own features pass, merged with the proxy's.
		for _, f := range []string{"SIZE", "MDTM", "REST STREAM", "AUTH TLS", "EPSV", "EPRT", "PBSZ", "PROT"} {
			if !strings.Contains(post, "\n "+f) {
				t.Errorf("FEAT after login lacks %q: %q", f, post)
			}
		}
		for _, f := range []string{"CCC", "ADAT", "AUTH SSL"} {
			if strings.Contains(post, f) {
				t.Errorf("FEAT advertises %s, which the proxy refuses: %q", f, post)
			}
		}
	})
	t.Run("user allow-list", func(t *testing.T) {
		g2 := startGate(t, be.Addr, gateOptions{policy: `allow_users = ["someone-else", "backup-*"]`})
		c := ftptest.Dial(t, g2.explicit)
		c.AuthTLS(g2.certs.ClientConfig())
		c.Cmd(331, "USER %s", be.User) // as a wrong password would be
		ev := g2.eventsOf(t, "policy_denied")
		if len(ev) != 1 || ev[0]["rule"] != "allow_users" {
			t.Fatalf("policy_denied events %v", ev)
		}
		if len(g2.eventsOf(t, "login")) != 0 {
			t.Fatal("a denied user reached the backend")
		}
	})
	t.Run("bad lines", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		c.SendRaw([]byte("NO\x00OP\r\n"))
		c.Expect(500)
		c.SendRaw(append(bytes.Repeat([]byte("A"), 5000), '\r', '\n'))
		c.Expect(500)
		c.Cmd(200, "NOOP") // the session goes on
		c.SendRaw([]byte("USER a\rPASS b\r\n"))
		c.Expect(421) // third bad line: closed
		if _, _, err := c.ReadErr(); err == nil {
			t.Fatal("connection still open after 421")
		}
	})
}

// TestAuthInjection: bytes pipelined after AUTH TLS, before the handshake,
// are never executed (the STARTTLS injection class).
func TestAuthInjection(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{policy: "require_tls = false"})
	c := ftptest.Dial(t, g.explicit)
	c.SendRaw([]byte("AUTH TLS\r\nUSER " + be.User + "\r\n"))
	c.Expect(421)
	if g.logged("backend connected") || len(g.eventsOf(t, "login")) > 0 {
		t.Fatal("the pipelined USER reached the backend")
	}
	if !g.logged("plaintext pipelined after AUTH TLS; closing") {
		t.Fatal("no log line for the injection")
	}
}

// TestFinalReplyAfterData: the 226 of a download reaches the client only
// after every data byte and the TLS close_notify: a client that reads the
// control reply first still finds the whole file, cleanly closed.
func TestFinalReplyAfterData(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096) // fits socket buffers
	writeFile(t, be.Root, "f.bin", content)

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	for i := 0; i < 3; i++ {
		addr := c.EPSV()
		d := c.DialData(addr)
		c.Cmd(150, "RETR f.bin")
		// Handshake, but read nothing yet.
		if err := d.Conn.(*tls.Conn).Handshake(); err != nil {
			t.Fatal(err)
		}
		c.Expect(226)
		got := ftptest.ReadAll(t, d)
		if !bytes.Equal(got, content) {
			t.Fatalf("got %d bytes before 226, want %d", len(got), len(content))
		}
		if !d.CloseNotified() {
			t.Fatal("data connection ended without close_notify")
		}
	}
}

// TestUploadEnds: an upload that ends with close_notify is complete; one
// that ends with a bare TCP FIN fails with 426 (its completeness cannot be
// verified), and is audited so; with upload_close_notify = "warn" it is
// delivered, but logged and audited as unverified.
func TestUploadEnds(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 100000)
	for _, mode := range []string{"require", "warn"} {
		t.Run(mode, func(t *testing.T) {
			be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
			g := startGate(t, be.Addr, gateOptions{listenerExtra: fmt.Sprintf("upload_close_notify = %q", mode)})
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")

			d := c.DialData(c.EPSV())
			c.Cmd(150, "STOR clean.bin")
			if _, err := d.Write(data); err != nil {
				t.Fatal(err)
			}
			d.Close() // close_notify, then FIN
			c.Expect(226)

			d = c.DialData(c.EPSV())
			c.Cmd(150, "STOR bare.bin")
			if _, err := d.Write(data); err != nil {
				t.Fatal(err)
			}
			d.TCP.Close() // no close_notify
			want := map[string]int{"require": 426, "warn": 226}[mode]
			c.Expect(want)
			c.Cmd(221, "QUIT")

			if got, err := os.ReadFile(filepath.Join(be.Root, "clean.bin")); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("clean.bin: %d bytes (%v)", len(got), err)
			}
			evs := g.eventsOf(t, "transfer")
			if len(evs) != 2 || evs[0]["close_notify"] != true || evs[0]["result"] != "complete" || evs[1]["close_notify"] != false {
				t.Fatalf("transfer events %v", evs)
			}
			switch mode {
			case "require":
				if evs[1]["result"] != "incomplete" || evs[1]["check"] != "upload_close_notify" {
					t.Fatalf("bare upload: %v", evs[1])
				}
			case "warn":
				if got, err := os.ReadFile(filepath.Join(be.Root, "bare.bin")); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("bare.bin: %d bytes (%v)", len(got), err)
				}
				if evs[1]["result"] != "complete" || evs[1]["check"] != nil {
					t.Fatalf("bare upload: %v", evs[1])
				}
				if !g.logged("upload ended without TLS close_notify: its completeness cannot be verified") {
					t.Fatal("no warning for the unverified upload")
				}
			}
		})
	}
}

// TestPassivePortTheft: a connection to the passive port from another
// address is refused, logged, and does not take the client's place.
func TestPassivePortTheft(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	writeFile(t, be.Root, "secret.txt", []byte("the secret\n"))
	c := g.login(t, be.User, be.Password)
	addr := c.EPSV()

	thief := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	// The proxy resets the thief's connection at once: the reset may even
	// beat the end of the thief's connect.
	tc, err := thief.Dial("tcp", addr)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case err != nil:
		t.Fatalf("thief dial: %v", err)
	default:
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := tc.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Fatalf("the thief's connection was served (%d bytes, %v)", n, err)
		}
		tc.Close()
	}

	d := c.DialData(addr)
	c.Cmd(150, "RETR secret.txt")
	if got := ftptest.ReadAll(t, d); string(got) != "the secret\n" {
		t.Fatalf("client got %q", got)
	}
	c.Expect(226)
	if !g.logged("data connection from a foreign address refused") {
		t.Fatal("no log line for the refused connection")
	}
}

// TestAbort: ABOR during a download stops it with 426 then 226, and the
// session goes on.
func TestAbort(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	ftptest.RandomFile(t, filepath.Join(be.Root, "big.bin"), 64<<20)
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR big.bin")
	if _, err := io.ReadFull(d, make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	c.Send("ABOR")
	c.Expect(426)
	c.Expect(226)
	c.Cmd(200, "NOOP")
	c.Cmd(257, "PWD")
	evs := g.eventsOf(t, "transfer")
	if len(evs) != 1 || evs[0]["result"] != "aborted" {
		t.Fatalf("transfer events %v", evs)
	}
	c.Cmd(221, "QUIT")
}

// TestBackendUnavailable: a backend that is down, or refuses with its
// greeting, gets the client a 421 that says which (the backend's own words
// for a 421 greeting) and a log line, after the retries.
func TestBackendUnavailable(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	refusing, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer refusing.Close()
	go func() {
		for {
			c, err := refusing.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("421 Too many connections (8) from this IP\r\n"))
			c.Close()
		}
	}()
	for _, tc := range []struct{ name, addr, log, text string }{
		{"down", dead, "backend dial failed", "Service not available: the FTP server refused the connection; try again later."},
		{"refusing", refusing.Addr().String(), "backend refused the connection",
			`Service not available: the FTP server is busy: "Too many connections (8) from this IP"; try again later.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGate(t, tc.addr, gateOptions{})
			c := ftptest.Dial(t, g.explicit)
			c.AuthTLS(g.certs.ClientConfig())
			if msg := c.Cmd(421, "USER someone"); msg != tc.text {
				t.Fatalf("421 text %q, want %q", msg, tc.text)
			}
			if n := g.logs.FilterMessage(tc.log).Len(); n != 3 {
				t.Fatalf("%d %q log lines, want 3 (two retries)", n, tc.log)
			}
		})
	}
}

// TestFrontTLS: the listener's TLS rules, attacked.
func TestFrontTLS(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, kt := range []ftptest.KeyType{ftptest.ECDSA, ftptest.RSA} {
		t.Run(string(kt), func(t *testing.T) {
			g := startGate(t, be.Addr, gateOptions{keyType: kt})
			handshake := func(conf *tls.Config) (tls.ConnectionState, error) {
				raw, err := net.Dial("tcp", g.implicit)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(20 * time.Second))
				tc := tls.Client(raw, conf)
				err = tc.Handshake()
				return tc.ConnectionState(), err
			}
			conf := g.certs.ClientConfig()
			conf.NextProtos = []string{"ftp"}
			st, err := handshake(conf)
			if err != nil || st.NegotiatedProtocol != "ftp" {
				t.Fatalf("ALPN ftp: %v, negotiated %q", err, st.NegotiatedProtocol)
			}
			conf = g.certs.ClientConfig()
			conf.NextProtos = []string{"http/1.1"} // ALPACA: a browser sent here
			if _, err := handshake(conf); err == nil {
				t.Fatal("handshake with ALPN http/1.1 succeeded")
			}
			conf = g.certs.ClientConfig()
			conf.MinVersion, conf.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			if _, err := handshake(conf); err == nil {
				t.Fatal("TLS 1.1 handshake succeeded")
			}
			// The whole path works with this key type.
			c := ftptest.DialImplicit(t, g.implicit, g.certs.ClientConfig())
			c.LoginProtP(be.User, be.Password)
			c.Cmd(221, "QUIT")
		})
	}
}

// TestAuditNeverHoldsPassword greps everything the proxy logged for the
// password used.
func TestAuditNeverHoldsPassword(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	c := g.login(t, be.User, be.Password)
	c.Cmd(221, "QUIT")
	c = ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER %s", be.User)
	c.Cmd(530, "PASS wrong-%s", be.Password)
	c.Cmd(221, "QUIT")
	local := filepath.Join(t.TempDir(), "f")
	ftptest.RandomFile(t, local, 1000)
	ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-T", local, ftpURL("ftp", be.User, be.Password, g.explicit, "f"))
	if len(g.xferlog.Bytes()) == 0 {
		t.Fatal("no xferlog line")
	}
	all := string(g.auditBuf.Bytes()) + string(g.xferlog.Bytes())
	for _, e := range g.logs.All() {
		all += fmt.Sprint(e.Message, e.ContextMap())
	}
	if strings.Contains(all, be.Password) {
		t.Fatal("the password appears in a log")
	}
	var sawPass bool
	for _, ev := range g.eventsOf(t, "command") {
		if ev["verb"] == "PASS" {
			sawPass = true
			if ev["arg"] != "****" {
				t.Fatalf("PASS event %v", ev)
			}
		}
	}
	logins := g.eventsOf(t, "login")
	if !sawPass || len(logins) != 3 || logins[0]["result"] != "success" || logins[1]["result"] != "failure" {
		t.Fatalf("login events %v", logins)
	}
}

// TestAuditSequence: every command and final reply of a session is in the
// audit stream, in order, whether the proxy answered it, relayed it (its
// event is written once the backend has it), refused it by policy or saw
// the backend refuse it.
func TestAuditSequence(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{policy: `deny_commands = ["DELE"]`})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(530, "PWD") // before login: answered by the proxy
	c.LoginProtP(be.User, be.Password)
	c.Cmd(200, "NOOP")
	c.Cmd(257, "PWD")
	c.Cmd(200, "TYPE I")
	c.Cmd(502, "DELE f")       // refused by policy
	c.Cmd(550, "CWD /nowhere") // refused by the backend
	c.Cmd(502, "XYZZY")        // unknown: refused by the proxy
	c.Cmd(211, "FEAT")         // answered by the proxy
	c.Cmd(221, "QUIT")
	for len(g.eventsOf(t, "session_end")) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	want := []string{
		"command AUTH", "reply AUTH 234", "tls", "command PWD", "reply PWD 530",
		"command USER", "reply USER 331", "command PASS", "reply PASS 230", "login",
		"command PBSZ", "reply PBSZ 200", "command PROT", "reply PROT 200",
		"command NOOP", "reply NOOP 200", "command PWD", "reply PWD 257", "command TYPE", "reply TYPE 200",
		"command DELE", "policy_denied", "reply DELE 502", "command CWD", "reply CWD 550",
		"command XYZZY", "policy_denied", "reply XYZZY 502", "command FEAT", "reply FEAT 211", "command QUIT", "reply QUIT 221",
	}
	var got []string
	for _, e := range g.auditEvents(t) {
		switch e["event"] {
		case "command":
			got = append(got, fmt.Sprint("command ", e["verb"]))
		case "reply":
			got = append(got, fmt.Sprintf("reply %v %v", e["verb"], e["code"]))
		case "tls", "login", "policy_denied":
			got = append(got, e["event"].(string))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit sequence\n got %q\nwant %q", got, want)
	}
}

// TestTimeouts: an idle session, and one that never logs in, get 421.
func TestTimeouts(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: `timeouts {
  idle  = "1s"
  login = "2s"
}`})
	c := g.login(t, be.User, be.Password)
	start := time.Now()
	if msg := c.Expect(421); !strings.Contains(msg, "Idle timeout") {
		t.Fatalf("421 text %q", msg)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("idle timeout after %s", d)
	}
	// Before login, the login timeout bounds the whole session even when
	// the client keeps it busy.
	g2 := startGate(t, be.Addr, gateOptions{extra: `timeouts {
  login = "2s"
}`})
	c = ftptest.Dial(t, g2.explicit)
	start = time.Now()
	for {
		c.Send("NOOP")
		code, msg := c.Read()
		if code == 421 {
			if !strings.Contains(msg, "Login timeout") || time.Since(start) < 1500*time.Millisecond {
				t.Fatalf("421 %q after %s", msg, time.Since(start))
			}
			break
		}
		if code != 200 || time.Since(start) > 30*time.Second {
			t.Fatalf("got %d %q", code, msg)
		}
		time.Sleep(100 * time.Millisecond) // a client's pace, not a readiness wait
	}
}

// TestShutdownDrains: Shutdown answers an idle session 421 at once and lets
// a transfer in progress finish, with its data intact.
func TestShutdownDrains(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "f.bin"), 8<<20)

	idle := g.login(t, be.User, be.Password)

	busy := g.login(t, be.User, be.Password)
	busy.Cmd(200, "TYPE I")
	d := busy.DialData(busy.EPSV())
	busy.Cmd(150, "RETR f.bin")
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(d, first); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- g.srv.Shutdown(ctx)
	}()
	if msg := idle.Expect(421); !strings.Contains(msg, "shutting down") {
		t.Fatalf("idle session got %q", msg)
	}
	rest := ftptest.ReadAll(t, d)
	h := sha256.New()
	h.Write(first)
	h.Write(rest)
	if hex.EncodeToString(h.Sum(nil)) != sum {
		t.Fatal("the transfer in flight was damaged by the shutdown")
	}
	busy.Expect(226)
	busy.Expect(421)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", g.explicit, time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

// TestDataConnectionFailures: an exhausted passive range and a client that
// never opens its data connection each get 425 and a log line, and the
// session goes on.
func TestDataConnectionFailures(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("data\n"))
	g := startGate(t, be.Addr, gateOptions{ports: 1, extra: `timeouts {
  passive_accept = "1s"
}`})
	login := func() *ftptest.Conn {
		c := g.login(t, be.User, be.Password)
		return c
	}
	a, b := login(), login()
	epsvAddr := a.EPSV() // takes the only port
	if msg := b.Cmd(425, "EPSV"); !strings.Contains(msg, "No data port available") {
		t.Fatalf("425 text %q", msg)
	}
	if !g.logged("no passive port") {
		t.Fatal("no log line for the exhausted range")
	}

	// a never connects: 150, then 425 once passive_accept has passed. The
	// reply and the log line say which port waited; the log line also
	// where the proxy listened (issue 23: NAT problems are otherwise
	// invisible).
	a.Cmd(150, "RETR f.txt")
	if msg := a.Expect(425); !strings.Contains(msg, "Cannot open data connection: no data connection to port "+strconv.Itoa(port(t, epsvAddr))) {
		t.Fatalf("425 text %q", msg)
	}
	waited := g.logs.FilterMessage("no data connection from the client to the passive port it was given").All()
	if len(waited) != 1 {
		t.Fatalf("%d log lines for the missing data connection, want 1", len(waited))
	}
	f := waited[0].ContextMap()
	if f["verb"] != "EPSV" || f["transfer"] != "RETR" || f["advertised_port"] != uint16(port(t, epsvAddr)) ||
		f["listening"] != "127.0.0.1:"+strconv.Itoa(port(t, epsvAddr)) || f["hint"] == nil {
		t.Fatalf("log line fields %v", f)
	}
	offered := g.logs.FilterMessage("passive data port offered").All()
	if len(offered) == 0 || offered[0].ContextMap()["advertised_port"] != uint16(port(t, epsvAddr)) {
		t.Fatalf("no log line with the port EPSV offered: %v", offered)
	}
	// The port is free again and both sessions go on.
	addr := b.EPSV()
	d := b.DialData(addr)
	b.Cmd(150, "RETR f.txt")
	if got := ftptest.ReadAll(t, d); string(got) != "data\n" {
		t.Fatalf("got %q", got)
	}
	b.Expect(226)
	a.Cmd(200, "NOOP")
}

// TestPassiveAddress: PASV advertises public_address when set, else the
// address the client reached; EPSV ALL then refuses PASV (RFC 2428 §4).
func TestPassiveAddress(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, tc := range []struct{ public, want, logged string }{
		{"", "(127,0,0,1,", "127.0.0.1"},
		{"203.0.113.10", "(203,0,113,10,", "203.0.113.10"},
	} {
		g := startGate(t, be.Addr, gateOptions{public: tc.public})
		c := g.login(t, be.User, be.Password)
		if msg := c.Cmd(227, "PASV"); !strings.Contains(msg, tc.want) {
			t.Fatalf("public_address %q: 227 %q, want %s", tc.public, msg, tc.want)
		}
		// The diagnostic log says what the 227 advertised, and where the
		// proxy listens: they differ behind NAT.
		offered := g.logs.FilterMessage("passive data port offered").All()
		if len(offered) != 1 {
			t.Fatalf("%d log lines for the 227, want 1", len(offered))
		}
		f := offered[0].ContextMap()
		if f["advertised_address"] != tc.logged || f["verb"] != "PASV" ||
			!strings.HasPrefix(fmt.Sprint(f["listening"]), "127.0.0.1:") {
			t.Fatalf("public_address %q: log line fields %v", tc.public, f)
		}
		c.Cmd(200, "EPSV ALL")
		c.Cmd(503, "PASV")
		c.Cmd(503, "PORT 127,0,0,1,200,10")
		c.EPSV()
		c.Cmd(221, "QUIT")
	}
}
