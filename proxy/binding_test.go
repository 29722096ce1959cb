package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestDataSessionBinding attacks the binding of PROT P data connections to
// their control connection's TLS session, under TLS 1.2 and TLS 1.3: a data
// connection with a fresh TLS session, and one resuming another session's
// ticket, are refused with 522; the client's own resumed session passes.
func TestDataSessionBinding(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "secret.txt", []byte("the secret\n"))
	g := startGate(t, be.Addr, gateOptions{})
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		conf := func() *tls.Config {
			c := g.certs.ClientConfig() // each with its own session cache
			c.MinVersion, c.MaxVersion = v.version, v.version
			return c
		}
		login := func(t *testing.T, conf *tls.Config) *ftptest.Conn {
			c := ftptest.Dial(t, g.explicit)
			c.AuthTLS(conf)
			c.Login(be.User, be.Password)
			return c
		}
		t.Run(v.name+"/own session resumed", func(t *testing.T) {
			c := login(t, conf())
			d := c.DialData(c.EPSV())
			c.Cmd(150, "RETR secret.txt")
			if got := ftptest.ReadAll(t, d); string(got) != "the secret\n" {
				t.Fatalf("client got %q", got)
			}
			c.Expect(226)
			if st := d.Conn.(*tls.Conn).ConnectionState(); !st.DidResume || st.Version != v.version {
				t.Fatalf("data TLS: resumed %v, version %x", st.DidResume, st.Version)
			}
		})
		t.Run(v.name+"/fresh session refused", func(t *testing.T) {
			c := login(t, conf())
			fresh := conf()
			fresh.ClientSessionCache = nil
			d := c.DialDataTLS(c.EPSV(), fresh)
			c.Cmd(150, "RETR secret.txt")
			if got, err := readAllErr(d); err == nil || len(got) > 0 {
				t.Fatalf("a fresh data session was served: %q, %v", got, err)
			}
			if msg := c.Expect(522); !strings.Contains(msg, "session reuse required") {
				t.Fatalf("522 text %q", msg)
			}
			c.Cmd(221, "QUIT")
		})
		t.Run(v.name+"/another session's ticket refused", func(t *testing.T) {
			victimConf := conf()
			victim := login(t, victimConf)
			victim.Cmd(257, "PWD") // the victim's ticket is in its cache
			c := login(t, conf())
			stolen := conf()
			stolen.ClientSessionCache = victimConf.ClientSessionCache
			d := c.DialDataTLS(c.EPSV(), stolen)
			c.Cmd(150, "RETR secret.txt")
			if got, err := readAllErr(d); err == nil || len(got) > 0 {
				t.Fatalf("a data connection with another session's ticket was served: %q, %v", got, err)
			}
			if msg := c.Expect(522); !strings.Contains(msg, "another connection") {
				t.Fatalf("522 text %q", msg)
			}
			// The session is still usable, with its own ticket.
			d = c.DialData(c.EPSV())
			c.Cmd(150, "RETR secret.txt")
			if got := ftptest.ReadAll(t, d); string(got) != "the secret\n" {
				t.Fatalf("client got %q", got)
			}
			c.Expect(226)
		})
	}
	denied := g.eventsOf(t, "policy_denied")
	var reuse []string
	for _, e := range denied {
		if e["rule"] == "session_reuse" {
			reuse = append(reuse, e["reason"].(string))
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

// TestSessionReuseOptional: with require_session_reuse = false a client
// that cannot resume is served, and the audit says so.
func TestSessionReuseOptional(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("data\n"))
	g := startGate(t, be.Addr, gateOptions{listenerExtra: "require_session_reuse = false"})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Login(be.User, be.Password)
	fresh := g.certs.ClientConfig()
	fresh.ClientSessionCache = nil
	d := c.DialDataTLS(c.EPSV(), fresh)
	c.Cmd(150, "RETR f.txt")
	if got := ftptest.ReadAll(t, d); string(got) != "data\n" {
		t.Fatalf("client got %q", got)
	}
	c.Expect(226)
	evs := g.eventsOf(t, "transfer")
	if len(evs) != 1 || evs[0]["data_tls_resumed"] != false || evs[0]["result"] != "complete" {
		t.Fatalf("transfer events %v", evs)
	}
}

// TestStockFTPLibRefused: Python's stock FTP_TLS does not resume the TLS
// session on data connections; it is refused with a reply that says what
// to do, and the README's subclass passes (TestPythonFTPLibThroughGate).
func TestStockFTPLibRefused(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("data\n"))
	g := startGate(t, be.Addr, gateOptions{})
	res := ftptest.Python(t, ftptest.PythonSpec{
		Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
		User: be.User, Password: be.Password, Stock: true,
		Steps: []ftptest.PythonStep{
			{Op: "download", Remote: "f.txt", MayFail: true},
			{Op: "upload", Local: writeFile(t, t.TempDir(), "up.txt", []byte("up\n")), Remote: "up.txt", MayFail: true},
		},
	})
	for _, st := range res.Steps {
		if st.Error == "" || !strings.HasPrefix(st.Reply, "522 ") || !strings.Contains(st.Reply, "README") {
			t.Fatalf("stock ftplib %s: error %q, reply %q; want a 522 naming the README", st.Op, st.Error, st.Reply)
		}
	}
	if !strings.HasPrefix(res.Quit, "221") {
		t.Fatalf("QUIT after the refusals: %q", res.Quit)
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

	// curl gives up on the reset data connection before it reads the 522.
	_, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "curl"), append(curl12, "--silent",
		"--show-error", "--cacert", g.certs.CAFile, "-o", filepath.Join(dir, "curl.down"), url)...)
	if err == nil {
		t.Fatalf("curl under TLS 1.2 with session reuse required was served: %s", errOut)
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
