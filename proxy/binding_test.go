package proxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestDataSessionBinding attacks the binding of PROT P data connections to
// their control connection's TLS session, under TLS 1.2 and TLS 1.3: a data
// connection with a fresh TLS session, and one resuming the ticket of a
// session of the same user from another address, are refused with 522,
// cleanly: nothing but a close_notify on the data connection, so that the
// client reads the 522 as the transfer's reply, and the session goes on.
// The client's own resumed session passes.
func TestDataSessionBinding(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "secret.txt", []byte("the secret\n"))
	g := startGate(t, be.Addr, gateOptions{})
	for _, v := range tlsVersions {
		conf := func() *tls.Config {
			c := g.certs.ClientConfig() // each with its own session cache
			c.MinVersion, c.MaxVersion = v.version, v.version
			return c
		}
		login := func(t *testing.T, src string, conf *tls.Config) *ftptest.Conn {
			c := ftptest.DialFrom(t, src, g.explicit)
			c.AuthTLS(conf)
			c.LoginProtP(be.User, be.Password)
			return c
		}
		fetch := func(t *testing.T, c *ftptest.Conn) {
			t.Helper()
			d := c.DialData(c.EPSV())
			c.Cmd(150, "RETR secret.txt")
			if got := ftptest.ReadAll(t, d); string(got) != "the secret\n" {
				t.Fatalf("client got %q", got)
			}
			c.Expect(226)
			if st := d.Conn.(*tls.Conn).ConnectionState(); !st.DidResume || st.Version != v.version {
				t.Fatalf("data TLS: resumed %v, version %x", st.DidResume, st.Version)
			}
		}
		t.Run(v.name+"/own session resumed", func(t *testing.T) {
			fetch(t, login(t, "127.0.0.1", conf()))
		})
		t.Run(v.name+"/fresh session refused", func(t *testing.T) {
			c := login(t, "127.0.0.1", conf())
			fresh := conf()
			fresh.ClientSessionCache = nil
			d := c.DialDataTLS(c.EPSV(), fresh)
			c.Cmd(150, "RETR secret.txt")
			refusedCleanly(t, d)
			if msg := c.Expect(522); !strings.Contains(msg, "session reuse required") {
				t.Fatalf("522 text %q", msg)
			}
			fetch(t, c) // the session goes on
			c.Cmd(221, "QUIT")
		})
		t.Run(v.name+"/ticket of another address refused", func(t *testing.T) {
			// The same user from another address: its session is open
			// and logged in, and its ticket still does not resume here.
			otherConf := conf()
			other := login(t, "127.0.0.2", otherConf)
			other.Cmd(257, "PWD") // its ticket is in its cache
			c := login(t, "127.0.0.1", conf())
			stolen := conf()
			stolen.ClientSessionCache = otherConf.ClientSessionCache
			d := c.DialDataTLS(c.EPSV(), stolen)
			c.Cmd(150, "RETR secret.txt")
			refusedCleanly(t, d)
			if msg := c.Expect(522); !strings.Contains(msg, "another address") {
				t.Fatalf("522 text %q", msg)
			}
			fetch(t, c) // the session is still usable, with its own ticket
		})
	}
	denied := g.eventsOf(t, "policy_denied")
	var reuse []string
	for _, e := range denied {
		if e["rule"] == "session_reuse" {
			reuse = append(reuse, e["reason"].(string))
			if e["verb"] != "EPSV" { // the command that set the data connection up
				t.Errorf("session_reuse denial audited under verb %q, want EPSV", e["verb"])
			}
		}
	}
	if len(reuse) != 4 {
		t.Fatalf("want 4 session_reuse denials in the audit, got %q", reuse)
	}
	if !g.logged("data connection refused") {
		t.Fatal("no log line for a refused data connection")
	}
	for _, e := range g.eventsOf(t, "transfer") {
		if e["result"] == "complete" && e["data_tls_resumed"] != true {
			t.Fatalf("a complete transfer not resumed: %v", e)
		}
	}
}

var tlsVersions = []struct {
	name    string
	version uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// refusedCleanly checks that a refused data connection carried no byte and
// ended with the proxy's close_notify, not a reset: the client then reads
// the transfer's 522.
func refusedCleanly(t *testing.T, d *ftptest.DataConn) {
	t.Helper()
	got, err := readAllErr(d)
	if err != nil || len(got) > 0 || !d.CloseNotified() {
		t.Fatalf("refused data connection: read %q, %v (close_notify %v); want nothing, then close_notify",
			got, err, d.CloseNotified())
	}
}

// TestSiblingSessionTickets: a client whose connections share one TLS
// session cache (as rclone and every Go client on tls.ClientSessionCache
// do) resumes on a data connection the ticket a sibling control session
// received. That passes when the sibling is the same user from the same
// address, whether its ticket was issued before its login (the sibling
// must then be open and logged in, or log in within siblingLoginWait) or
// after (the ticket names its owner; the sibling may have closed since).
// A ticket of another user (the same name on another backend included),
// another address, or a session that never logs in is refused with 522. The audit names the sibling whose ticket
// was resumed.
func TestSiblingSessionTickets(t *testing.T) {
	be := startScriptedBackend(t, &scriptedBackend{content: []byte("the file\n"), retrReply: "226 done"})
	other := startScriptedBackend(t, &scriptedBackend{content: []byte("the file\n"), retrReply: "226 done"})
	g := startGate(t, be.ln.Addr().String(), gateOptions{extra: fmt.Sprintf(`
backend "other" {
  address = %q
}
route "other" {
  hosts   = ["other.example"]
  backend = "other"
}
`, other.ln.Addr().String())})
	lastEvent := func(t *testing.T, event string) map[string]any {
		t.Helper()
		evs := g.eventsOf(t, event)
		if len(evs) == 0 {
			t.Fatalf("no %s event", event)
		}
		return evs[len(evs)-1]
	}
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			shared := g.certs.ClientConfig() // one cache for every connection
			shared.MinVersion, shared.MaxVersion = v.version, v.version
			// open connects and stores the control connection's ticket
			// (a TLS 1.3 client stores it when it reads a reply); it
			// returns the session's id.
			open := func(src string) (*ftptest.Conn, string) {
				c := ftptest.DialFrom(t, src, g.explicit)
				id := lastEvent(t, "session_start")["session"].(string) // audited before the greeting
				c.AuthTLS(shared)
				c.Cmd(211, "FEAT")
				return c, id
			}
			login := func(src, user string) (*ftptest.Conn, string) {
				c, id := open(src)
				c.LoginProtP(user, "pw")
				return c, id
			}
			fetched := func(c *ftptest.Conn, id, from string) {
				t.Helper()
				d := c.DialData(c.EPSV())
				c.Cmd(150, "RETR f")
				if got := ftptest.ReadAll(t, d); string(got) != "the file\n" {
					t.Fatalf("client got %q", got)
				}
				d.Close() // else its session lingers on it (lingerTimeout) when it quits
				c.Expect(226)
				e := lastEvent(t, "transfer")
				if e["session"] != id || e["data_tls_resumed"] != true || e["data_tls_resumed_from"] != from {
					t.Fatalf("transfer event %v: want session %s, resumed from %s", e, id, from)
				}
			}
			refused := func(c *ftptest.Conn, why string) {
				t.Helper()
				d := c.DialData(c.EPSV())
				c.Cmd(150, "RETR f")
				refusedCleanly(t, d)
				d.Close()
				if msg := c.Expect(522); !strings.Contains(msg, why) {
					t.Fatalf("522 text %q, want %q", msg, why)
				}
			}

			a, aID := login("127.0.0.1", "alice")
			b, bID := login("127.0.0.1", "alice") // the cache holds b's ticket
			fetched(a, aID, bID)                  // issued before b's login
			fetched(b, bID, aID)                  // issued to a's data connection, naming alice
			b.Cmd(221, "QUIT")
			ended := func() bool {
				for _, e := range g.eventsOf(t, "session_end") {
					if e["session"] == bID {
						return true
					}
				}
				return false
			}
			for deadline := time.Now().Add(30 * time.Second); !ended(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("b's session did not end")
				}
			}
			fetched(a, aID, bID) // b's, issued after its login: b has closed since

			c, _ := login("127.0.0.1", "bob")
			refused(a, "another user's") // c's ticket, issued before its login
			refused(c, "another user's") // a's, issued after its login
			d, _ := login("127.0.0.2", "alice")
			refused(a, "another address") // d's, before its login
			refused(d, "another address") // a's, after

			if v.version == tls.VersionTLS13 {
				// The same user name on another backend (routed by HOST)
				// is another account.
				o, _ := open("127.0.0.1")
				o.Cmd(220, "HOST other.example")
				o.LoginProtP("alice", "pw")
				refused(a, "another user's")

				// A sibling still logging in: the handshake waits for it.
				e, eID := open("127.0.0.1")
				e.Cmd(331, "USER alice")
				waits := g.logs.FilterMessage(siblingWait).Len()
				dd := a.DialData(a.EPSV())
				a.Cmd(150, "RETR f")
				hs := make(chan error, 1)
				go func() { hs <- dd.Conn.(*tls.Conn).Handshake() }()
				for deadline := time.Now().Add(30 * time.Second); g.logs.FilterMessage(siblingWait).Len() == waits; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the data handshake did not wait for the sibling's login")
					}
				}
				e.Cmd(230, "PASS pw")
				if err := <-hs; err != nil {
					t.Fatalf("data handshake: %v", err)
				}
				if got := ftptest.ReadAll(t, dd); string(got) != "the file\n" {
					t.Fatalf("client got %q", got)
				}
				a.Expect(226)
				if e := lastEvent(t, "transfer"); e["data_tls_resumed_from"] != eID {
					t.Fatalf("transfer event %v: want resumed from %s", e, eID)
				}

				// A sibling that never logs in: refused after the wait.
				open("127.0.0.1")
				start := time.Now()
				refused(a, "not logged in")
				if d := time.Since(start); d < 4*time.Second {
					t.Fatalf("refused after %s, before the sibling's login could come", d)
				}
			}
			a.Cmd(221, "QUIT")
		})
	}
	n := 0
	for _, e := range g.eventsOf(t, "policy_denied") {
		if e["rule"] == "session_reuse" {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("%d session_reuse denials in the audit, want 10", n)
	}
	if !g.logged("data connection resumed the TLS session of a sibling session (same client address and user)") {
		t.Fatal("no log line for a sibling's ticket resumed")
	}
}

const siblingWait = "data connection waits for the login of the session whose TLS ticket it resumes"

// TestSharedSessionCacheParallel: four control sessions of one user, open
// together, all their connections sharing one TLS session cache (as with
// rclone's --transfers 4), run transfers in parallel: every transfer
// succeeds. Since all log in before any transfers, the cache then holds
// the last one's ticket, so each other session's first transfer resumes a
// sibling's ticket.
func TestSharedSessionCacheParallel(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	shared := g.certs.ClientConfig()
	const sessions, rounds = 4, 3
	var conns []*ftptest.Conn
	for range sessions {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(shared)
		c.LoginProtP(be.User, be.Password)
		conns = append(conns, c)
	}
	t.Run("transfers", func(t *testing.T) {
		for i, c := range conns {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				c.For(t)
				for r := range rounds {
					name := fmt.Sprintf("s%d-%d.bin", i, r)
					data := make([]byte, 200000+i*1000+r)
					rand.Read(data)
					up := c.DialData(c.EPSV())
					c.Cmd(150, "STOR %s", name)
					up.WriteAll(t, data)
					c.Expect(226)
					down := c.DialData(c.EPSV())
					c.Cmd(150, "RETR %s", name)
					if got := ftptest.ReadAll(t, down); !bytes.Equal(got, data) {
						t.Fatalf("%s: %d bytes back, differing", name, len(got))
					}
					c.Expect(226)
				}
				c.Cmd(221, "QUIT")
			})
		}
	})
	evs := g.eventsOf(t, "transfer")
	cross := 0
	for _, e := range evs {
		if e["result"] != "complete" || e["data_tls_resumed"] != true {
			t.Fatalf("transfer %v", e)
		}
		if e["data_tls_resumed_from"] != nil {
			cross++
		}
	}
	if len(evs) != sessions*rounds*2 || cross < sessions-1 {
		t.Fatalf("%d transfers, %d resumed a sibling's ticket", len(evs), cross)
	}
}

// TestSessionReuseOptional: with require_session_reuse = false a client
// that cannot resume is served, and the audit says so; a data connection
// from another address is still refused (as with vsftpd's
// require_ssl_reuse=NO, the binding to the client's address stays).
func TestSessionReuseOptional(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("data\n"))
	g := startGate(t, be.Addr, gateOptions{listenerExtra: "require_session_reuse = false"})
	c := g.login(t, be.User, be.Password)
	fresh := g.certs.ClientConfig()
	fresh.ClientSessionCache = nil
	addr := c.EPSV()
	// A stranger from another address, a TLS client, comes first: reset
	// before any handshake (on loopback the reset may even beat the end
	// of its connect).
	sd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 30 * time.Second}
	if raw, err := sd.Dial("tcp", addr); err == nil {
		t.Cleanup(func() { raw.Close() })
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		if got, err := io.ReadAll(tls.Client(raw, g.certs.ClientConfig())); err == nil || len(got) > 0 {
			t.Fatalf("a data connection from another address was served: %q, %v", got, err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !g.logged("data connection from a foreign address refused"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stranger's data connection was not refused")
		}
	}
	d := c.DialDataTLS(addr, fresh)
	c.Cmd(150, "RETR f.txt")
	if got := ftptest.ReadAll(t, d); string(got) != "data\n" {
		t.Fatalf("client got %q", got)
	}
	c.Expect(226)
	evs := g.eventsOf(t, "transfer")
	if len(evs) != 1 || evs[0]["data_tls_resumed"] != false || evs[0]["result"] != "complete" {
		t.Fatalf("transfer events %v", evs)
	}
	peer := 0
	for _, e := range g.eventsOf(t, "policy_denied") {
		if e["rule"] == "data_peer" {
			peer++
		}
	}
	if peer != 1 {
		t.Fatalf("%d data_peer denials in the audit, want 1", peer)
	}
}

// readAllErr reads a data connection to its end and returns what came and
// the error, if any.
func readAllErr(d *ftptest.DataConn) ([]byte, error) {
	d.SetDeadline(time.Now().Add(30 * time.Second))
	return io.ReadAll(d)
}

// TestClientsUnderTLS12: lftp (GnuTLS) binds its data connections under
// TLS 1.2 by session ticket, as under TLS 1.3 (the other client tests).
// curl with OpenSSL offers no ticket under TLS 1.2 and resumes by session
// ID, which Go's TLS server cannot do: it is refused with a 522 that says
// so, and served when require_session_reuse is off.
func TestClientsUnderTLS12(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	sum := ftptest.RandomFile(t, local, 1<<20+5)
	curl12 := []string{"--ssl-reqd", "--tls-max", "1.2"}

	g := startGate(t, be.Addr, gateOptions{})
	url := ftpURL("ftp", be.User, be.Password, g.explicit, "tls12.bin")
	lftp := func(script string) {
		ftptest.Lftp(t, g.certs.CAFile, `set ssl:priority "NORMAL:-VERS-TLS1.3"; `+
			fmt.Sprintf("open -u %s,%s ftp://%s; %s", be.User, be.Password, g.explicit, script))
	}
	lftp("put " + local + " -o tls12.bin")
	lout := filepath.Join(dir, "lftp.down")
	lftp("get tls12.bin -o " + lout)
	if got := ftptest.FileSHA256(t, lout); got != sum {
		t.Fatal("lftp's download differs")
	}
	for _, e := range g.eventsOf(t, "tls") {
		if e["tls_version"] != "TLS 1.2" {
			t.Fatalf("control TLS %v, want TLS 1.2", e)
		}
	}
	g.requireResumed(t)

	// curl finishes its data handshake before it sends RETR, which then
	// gets the 522 (curl prints the code only).
	_, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "curl"), append(curl12, "--silent",
		"--show-error", "--cacert", g.certs.CAFile, "-o", filepath.Join(dir, "curl.down"), url)...)
	if err == nil || !strings.Contains(errOut, "curl: (19) RETR response: 522") {
		t.Fatalf("curl under TLS 1.2 with session reuse required: %v, %s", err, errOut)
	}
	if !g.logged("data connection refused") || !strings.Contains(string(g.auditBuf.Bytes()), "resumption by session ID is not supported") {
		t.Fatal("the refusal of curl's TLS 1.2 data connection is not logged with its reason")
	}

	lax := startGate(t, be.Addr, gateOptions{listenerExtra: "require_session_reuse = false"})
	url = ftpURL("ftp", be.User, be.Password, lax.explicit, "tls12.bin")
	cout := filepath.Join(dir, "curl.down")
	ftptest.Curl(t, append(curl12, "--cacert", lax.certs.CAFile, "-o", cout, url)...)
	if got := ftptest.FileSHA256(t, cout); got != sum {
		t.Fatal("curl's download differs")
	}
	if evs := lax.eventsOf(t, "transfer"); len(evs) != 1 || evs[0]["data_tls_resumed"] != false {
		t.Fatalf("transfer events %v", evs)
	}
}

// TestControlResumption: a client that reconnects resumes, on its new
// control connection, a ticket from its earlier one, from the same
// address only (issue 22); the resumed session logs in like any other,
// and its data connections, bound to it, resume as before: the binding
// holds under TLS 1.3 and 1.2 alike.
func TestControlResumption(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("the file\n"))
	g := startGate(t, be.Addr, gateOptions{})
	for _, v := range tlsVersions {
		t.Run(v.name, func(t *testing.T) {
			conf := g.certs.ClientConfig() // one session cache for every connection, as rclone keeps
			conf.MinVersion, conf.MaxVersion = v.version, v.version
			session := func(src string, wantResumed bool) {
				t.Helper()
				c := ftptest.DialFrom(t, src, g.explicit)
				c.AuthTLS(conf)
				if got := c.Ctrl.(*tls.Conn).ConnectionState().DidResume; got != wantResumed {
					t.Fatalf("control connection from %s: resumed %v, want %v", src, got, wantResumed)
				}
				c.Cmd(530, "PWD") // resumed or not, nothing is granted before a login
				c.LoginProtP(be.User, be.Password)
				for range 2 {
					d := c.DialData(c.EPSV())
					c.Cmd(150, "RETR f.txt")
					if got := ftptest.ReadAll(t, d); string(got) != "the file\n" {
						t.Fatalf("client got %q", got)
					}
					c.Expect(226)
					if !d.Conn.(*tls.Conn).ConnectionState().DidResume {
						t.Fatal("data connection did not resume")
					}
				}
				c.Cmd(221, "QUIT")
			}
			session("127.0.0.1", false) // the first: a full handshake
			session("127.0.0.1", true)
			session("127.0.0.1", true)
			// The cache's ticket names 127.0.0.1: from another address
			// the handshake is a full one, and the session works.
			session("127.0.0.2", false)
			session("127.0.0.2", true)
		})
	}
	var resumed, full int
	for _, e := range g.eventsOf(t, "tls") {
		if e["resumed"] == true {
			resumed++
		} else {
			full++
		}
	}
	if resumed != 3*len(tlsVersions) || full != 2*len(tlsVersions) {
		t.Fatalf("audit: %d resumed and %d full control handshakes, want %d and %d", resumed, full, 3*len(tlsVersions), 2*len(tlsVersions))
	}
	if g.logged("data connection refused") {
		t.Fatal("a data connection of a resumed session was refused")
	}
}
