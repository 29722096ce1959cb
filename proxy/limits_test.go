package proxy_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// greetingFrom connects to addr from the loopback address src and returns
// the first line the proxy sends.
func greetingFrom(t *testing.T, src, addr string) string {
	t.Helper()
	got, err := ftptest.Greeting(src, addr, 30*time.Second)
	if err != nil {
		t.Fatalf("greeting from %s: %q, %v", addr, got, err)
	}
	return got
}

// TestBans: failed logins from one address within the window ban it: the
// failure that starts the ban ends the session with 421, later connections
// from it get 421 at once, other addresses and the safelist are served,
// and the audit has a ban event. (ProFTPD with its own user file: vsftpd's
// PAM makes each failed login take seconds.)
func TestBans(t *testing.T) {
	be := ftptest.ProFTPD(t, ftptest.ProFTPDOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: `bans {
  failures = 3
  window   = "10m"
  duration = "10m"
  safelist = ["127.0.0.9/32"]
}`, policy: `deny_users = ["root"]`})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Cmd(331, "USER %s", be.User)
	c.Cmd(530, "PASS wrong-1")
	c.Cmd(331, "USER root") // a denied user name counts too, at PASS
	c.Cmd(530, "PASS wrong-root")
	c.Cmd(331, "USER %s", be.User)
	c.Cmd(530, "PASS wrong-2")
	if msg := c.Expect(421); !strings.Contains(msg, "failed logins") {
		t.Fatalf("after the third failure: %q", msg)
	}
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("banned address got %q", got)
	}
	if got := greetingFrom(t, "127.0.0.2", g.explicit); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("another address got %q", got)
	}
	bans := g.eventsOf(t, "ban")
	if len(bans) != 1 || bans[0]["address"] != "127.0.0.1" || bans[0]["failures"].(float64) != 3 {
		t.Fatalf("ban events %v", bans)
	}
	if !strings.Contains(strings.Join(g.deniedRules(t), ","), "banned") {
		t.Fatalf("no policy_denied banned event: %v", g.deniedRules(t))
	}
	// The safelist is never banned.
	for i := 0; i < 5; i++ {
		sc := ftptest.DialFrom(t, "127.0.0.9", g.explicit)
		sc.AuthTLS(g.certs.ClientConfig())
		sc.Cmd(331, "USER %s", be.User)
		sc.Cmd(530, "PASS wrong")
		sc.Cmd(221, "QUIT")
	}
	if len(g.eventsOf(t, "ban")) != 1 {
		t.Fatal("the safelisted address was banned")
	}
}

// TestSessionLimits: max_sessions_per_ip and max_sessions answer 421 at
// connect, and a place freed is taken again.
func TestSessionLimits(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: `limits {
  max_sessions        = 3
  max_sessions_per_ip = 2
}`})
	hold := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", g.explicit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 300)
		if n, _ := c.Read(buf); !strings.HasPrefix(string(buf[:n]), "220 ") {
			t.Fatalf("%s got %q", src, buf[:n])
		}
		return c
	}
	a1 := hold("127.0.0.1")
	hold("127.0.0.1")
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.Contains(got, "421 Too many connections from your address") {
		t.Fatalf("third from one address: %q", got)
	}
	// The refused session counts until its goroutine has ended, which may
	// be just after the client read the 421.
	for deadline := time.Now().Add(30 * time.Second); len(g.srv.Status().Sessions) != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the refused session never ended: %+v", g.srv.Status().Sessions)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded above
	}
	hold("127.0.0.2")
	if got := greetingFrom(t, "127.0.0.3", g.explicit); !strings.Contains(got, "421 Too many users") {
		t.Fatalf("fourth session: %q", got)
	}
	a1.Close()
	deadline := time.Now().Add(30 * time.Second)
	for { // the closed session's place comes back once the proxy has seen the close
		got := greetingFrom(t, "127.0.0.3", g.explicit)
		if strings.HasPrefix(got, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the freed place was not given back: %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rules := strings.Join(g.deniedRules(t), ",")
	if !strings.Contains(rules, "max_sessions_per_ip") || !strings.Contains(rules, "max_sessions") {
		t.Fatalf("policy_denied rules %s", rules)
	}
}

// TestPanicContained: a panic in one session is recovered, logged with its
// stack and answered 421; the process and the other sessions go on.
func TestPanicContained(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	defer g.srv.SetDispatchHook(func(cmd rewrite.Command) {
		if cmd.Verb == "SITE" && cmd.Arg == "PANIC" {
			panic("injected by TestPanicContained")
		}
	})()
	other := g.login(t, be.User, be.Password)

	c := g.login(t, be.User, be.Password)
	if msg := c.Cmd(421, "SITE PANIC"); !strings.Contains(msg, "Internal error") {
		t.Fatalf("421 text %q", msg)
	}
	entries := g.logs.FilterMessage("session panic; closing it").All()
	if len(entries) != 1 || !strings.Contains(entries[0].ContextMap()["stack"].(string), "dispatch") {
		t.Fatalf("panic log %v", entries)
	}
	other.Cmd(257, "PWD") // the other session goes on
	d := other.DialData(other.EPSV())
	other.Cmd(150, "LIST")
	ftptest.ReadAll(t, d)
	other.Expect(226)
	c = ftptest.Dial(t, g.explicit) // and new ones are served
	c.Cmd(221, "QUIT")
}

// TestBadREST: a negative, huge or non-numeric restart offset gets 501
// from the proxy; a good one reaches the backend.
func TestBadREST(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	c := g.login(t, be.User, be.Password)
	for _, arg := range []string{"-1", "abc", "1e9", "99999999999999999999", "9223372036854775808", "+5", ""} {
		c.Cmd(501, "REST %s", arg)
	}
	c.Cmd(350, "REST 9223372036854775807")
	c.Cmd(350, "REST 0")
	c.Cmd(221, "QUIT")
}

// TestHalfOpenFlood: 1000 connections that never start their TLS handshake
// do not keep a real client waiting, and each is closed by the handshake
// timeout; nothing outlives them (goleak in TestMain).
func TestHalfOpenFlood(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: `limits {
  max_sessions        = 0
  max_sessions_per_ip = 0
}
timeouts {
  tls_handshake = "3s"
}`})
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", g.implicit, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	start := time.Now()
	c := ftptest.DialImplicit(t, g.implicit, g.certs.ClientConfig())
	c.LoginProtP(be.User, be.Password)
	c.Cmd(257, "PWD")
	c.Cmd(221, "QUIT")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a real client waited %s behind the flood", d)
	}
	// Every half-open connection is closed by the proxy.
	deadline := time.Now().Add(60 * time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeoutErr(err) {
			t.Fatalf("half-open connection %d still open: %v", i, err)
		}
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestClientGarbage: a 1 MiB line without CRLF, and binary garbage instead
// of commands, end the session (500 for the long line, then the close;
// 421 after the third bad line of garbage); the proxy serves the next
// client.
func TestClientGarbage(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	t.Run("1 MiB without CRLF", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		c.SendRaw(bytes.Repeat([]byte("A"), 1<<20))
		c.Raw.(*net.TCPConn).CloseWrite()
		code, _, err := c.ReadErr()
		if err == nil && code != 500 && code != 421 {
			t.Fatalf("got %d", code)
		}
		for err == nil { // whatever else comes, the proxy closes the session
			_, _, err = c.ReadErr()
		}
	})
	t.Run("binary garbage", func(t *testing.T) {
		c := ftptest.Dial(t, g.explicit)
		junk := make([]byte, 64<<10)
		for i := range junk {
			junk[i] = byte(i*7919 + i>>8)
		}
		c.Raw.SetWriteDeadline(time.Now().Add(30 * time.Second))
		c.Raw.Write(junk) // may fail once the proxy has hung up
		var last int
		for {
			code, _, err := c.ReadErr()
			if err != nil {
				break
			}
			last = code
		}
		if last != 421 {
			t.Fatalf("last reply %d, want 421", last)
		}
	})
	c := g.login(t, be.User, be.Password)
	c.Cmd(221, "QUIT")
}
