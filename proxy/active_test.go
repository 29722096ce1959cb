package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestActiveModeClients: lftp (EPRT) and Python's ftplib (PORT) in active
// mode; the proxy connects out to them while its backend leg stays passive.
// Every file checked by checksum, every data connection bound to its
// control session. (Debian's curl 7.88.1 cannot do active mode at all:
// curl issue #10622, fixed in 8.0.) The clients are on loopback, which
// active mode reaches only with active_allow_local.
func TestActiveModeClients(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{listenerExtra: allowLocal})
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	sum := ftptest.RandomFile(t, local, 2<<20+9)

	t.Run("lftp", func(t *testing.T) {
		out := filepath.Join(dir, "lftp.down")
		ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf("set ftp:passive-mode false; open -u %s,%s ftp://%s; put %s -o lftp.bin; get lftp.bin -o %s; ls",
			be.User, be.Password, g.explicit, local, out))
		if ftptest.FileSHA256(t, out) != sum {
			t.Fatal("files differ")
		}
	})
	t.Run("ftplib", func(t *testing.T) {
		res := ftptest.Python(t, ftptest.PythonSpec{
			Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
			User: be.User, Password: be.Password, Active: true,
			Steps: []ftptest.PythonStep{
				{Op: "upload", Local: local, Remote: "py.bin"},
				{Op: "download", Remote: "py.bin"},
				{Op: "nlst"},
			},
		})
		if res.Steps[1].SHA256 != sum || !contains(res.Steps[2].Names, "py.bin") {
			t.Fatalf("ftplib active: %+v", res.Steps)
		}
	})
	g.requireResumed(t)
	verbs := map[string]int{}
	for _, e := range g.eventsOf(t, "command") {
		verbs[e["verb"].(string)]++
	}
	if verbs["EPRT"]+verbs["PORT"] < 5 || verbs["PASV"]+verbs["EPSV"] > 0 {
		t.Fatalf("the clients did not use active mode only: %v", verbs)
	}
	for _, e := range g.eventsOf(t, "transfer") {
		if e["result"] != "complete" {
			t.Fatalf("transfer %v", e)
		}
	}
}

// TestActiveModeAttacks: PORT and EPRT may name only the client's own
// address and an unprivileged port (the FTP bounce attack, RFC 2577); bad
// arguments get 501, an unknown EPRT protocol 522; an active data
// connection is bound to its control session like a passive one. (On
// loopback, with active_allow_local: TestActiveModeLocalTargets tests the
// default.)
func TestActiveModeAttacks(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("active data\n"))
	g := startGate(t, be.Addr, gateOptions{listenerExtra: allowLocal})
	c := ftptest.Dial(t, g.explicit)
	c.Cmd(530, "PORT 127,0,0,1,156,64") // before login
	c.AuthTLS(g.certs.ClientConfig())
	c.LoginProtP(be.User, be.Password)
	for _, tc := range []struct {
		line string
		code int
	}{
		{"PORT 127,0,0,2,156,64", 504},           // another host: bounce
		{"PORT 10,0,0,1,0,22", 504},              // another host, privileged port
		{"PORT 127,0,0,1,0,25", 504},             // own host, privileged port
		{"EPRT |1|127.0.0.2|40000|", 504},        // another host
		{"EPRT |2|::1|40000|", 504},              // another family: not the client's address
		{"EPRT |2|::ffff:127.0.0.2|40000|", 501}, // IPv4-mapped: refused outright
		{"EPRT |1|127.0.0.1|1023|", 504},         // privileged port
		{"PORT 127,0,0,1,156", 501},
		{"PORT 127,0,0,1,156,64\x00", 500}, // NUL never reaches a parser
		{"EPRT |3|127.0.0.1|40000|", 522},
		{"EPRT 127.0.0.1:40000", 501},
	} {
		c.SendRaw([]byte(tc.line + "\r\n"))
		if got, msg := c.Read(); got != tc.code {
			t.Errorf("%q: got %d %q, want %d", tc.line, got, msg, tc.code)
		}
	}
	if n := len(g.eventsOf(t, "policy_denied")); n != 6 {
		t.Errorf("want 6 policy_denied events for the refused addresses, got %d", n)
	}
	if !g.logged("active-mode address refused") {
		t.Error("no log line for a refused PORT")
	}

	// A real active transfer, then one whose TLS session is fresh.
	activeGet := func(conf *tls.Config) ([]byte, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		p := ln.Addr().(*net.TCPAddr).Port
		c.Cmd(200, "PORT 127,0,0,1,%d,%d", p>>8, p&0xFF)
		c.Cmd(150, "RETR f.txt")
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		d, err := ln.Accept()
		if err != nil {
			t.Fatalf("the proxy did not connect: %v", err)
		}
		defer d.Close()
		d.SetDeadline(time.Now().Add(30 * time.Second))
		return io.ReadAll(tls.Client(d, conf))
	}
	if got, err := activeGet(c.TLS); err != nil || string(got) != "active data\n" {
		t.Fatalf("active download: %q, %v", got, err)
	}
	c.Expect(226)
	// Refused as in passive mode: no data, a close_notify, then 522.
	fresh := g.certs.ClientConfig()
	if got, err := activeGet(fresh); err != nil || len(got) > 0 {
		t.Fatalf("a fresh TLS session in active mode: %q, %v; want no data and a clean end", got, err)
	}
	if msg := c.Expect(522); !strings.Contains(msg, "session reuse required") {
		t.Fatalf("522 text %q", msg)
	}
	// A client that is not listening: 425, and the session goes on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	c.Cmd(200, "EPRT |1|127.0.0.1|%d|", p)
	c.Cmd(150, "RETR f.txt")
	if msg := c.Expect(425); msg != activeFailure {
		t.Fatalf("425 text %q", msg)
	}
	c.Cmd(257, "PWD")
	// EPSV ALL: only EPSV from now on.
	c.Cmd(200, "EPSV ALL")
	c.Cmd(503, "PORT 127,0,0,1,156,64")
	c.Cmd(503, "EPRT |1|127.0.0.1|40000|")
	c.Cmd(221, "QUIT")
}

// TestBackendActiveMode: with data_mode = "active" the backend connects to
// the proxy (EPRT, or PORT) while clients stay passive; against vsftpd
// plain and FTPS, and pure-ftpd.
func TestBackendActiveMode(t *testing.T) {
	beCerts := ftptest.NewCerts(t, ftptest.ECDSA)
	for _, tc := range []struct {
		name    string
		be      *ftptest.Server
		backend string
	}{
		{"vsftpd", ftptest.Vsftpd(t, ftptest.VsftpdOptions{}), `data_mode = "active"`},
		{"vsftpd FTPS", ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: beCerts}),
			fmt.Sprintf("data_mode = \"active\"\n  tls = \"explicit\"\n  ca_file = %q", beCerts.CAFile)},
		{"pure-ftpd", ftptest.PureFTPd(t), `data_mode = "active"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGate(t, tc.be.Addr, gateOptions{backend: tc.backend})
			dir := t.TempDir()
			local := filepath.Join(dir, "up.bin")
			sum := ftptest.RandomFile(t, local, 1<<20+3)
			url := ftpURL("ftp", tc.be.User, tc.be.Password, g.explicit, "active-backend.bin")
			args := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}
			ftptest.Curl(t, append(args, "-T", local, url)...)
			out := filepath.Join(dir, "down.bin")
			ftptest.Curl(t, append(args, "-o", out, url)...)
			if ftptest.FileSHA256(t, filepath.Join(tc.be.Root, "active-backend.bin")) != sum || ftptest.FileSHA256(t, out) != sum {
				t.Fatal("files differ")
			}
			if log, err := os.ReadFile(tc.be.Log); err == nil && tc.name != "pure-ftpd" &&
				!strings.Contains(string(log), "EPRT") && !strings.Contains(string(log), "PORT") {
				t.Fatalf("the backend never saw EPRT or PORT:\n%s", log)
			}
		})
	}
}

// allowLocal lets active mode reach loopback, where the tests' clients are.
const allowLocal = "active_allow_local = true"

// activeFailure is the one reply text of a failed active-mode data
// connection.
const activeFailure = "Cannot open data connection: could not connect to the address of your PORT or EPRT."

// TestActiveModeLocalTargets: by default PORT and EPRT may not aim the
// proxy at loopback, even when it is the client's own address (a local
// client, or one a trusted PROXY header names so): the proxy would connect
// to services on its own host (issue 24, item 10). Refused with 504, logged
// and audited; the session goes on, and passive mode still works.
func TestActiveModeLocalTargets(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("passive still works\n"))
	// A loopback-only service the client would like the proxy to talk to.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	p := svc.Addr().(*net.TCPAddr).Port
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := svc.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	g := startGate(t, be.Addr, gateOptions{policy: "require_prot_p = false"})
	c := g.login(t, be.User, be.Password)
	for _, line := range []string{
		fmt.Sprintf("PORT 127,0,0,1,%d,%d", p>>8, p&0xFF),
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", p),
	} {
		if msg := c.Cmd(504, "%s", line); !strings.Contains(msg, "use PASV or EPSV") || strings.Contains(msg, "127.0.0.1") {
			t.Fatalf("%s: 504 text %q", line, msg)
		}
		// No transfer may follow on the refused address.
		c.Cmd(425, "RETR f.txt")
	}
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR f.txt")
	if got := ftptest.ReadAll(t, d); string(got) != "passive still works\n" {
		t.Fatalf("got %q", got)
	}
	c.Expect(226)
	c.Cmd(221, "QUIT")
	select {
	case <-reached:
		t.Fatal("the proxy connected to a loopback service for PORT")
	default:
	}
	var reasons []string
	for _, e := range g.eventsOf(t, "policy_denied") {
		if e["rule"] == "active_address" {
			reasons = append(reasons, e["reason"].(string))
		}
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], "loopback") {
		t.Fatalf("active_address denials %q", reasons)
	}
	if !g.logged("active-mode address refused") {
		t.Fatal("no log line")
	}
}

// TestActiveModeFailuresLookAlike: whatever the address of a PORT answers
// (nothing listens, a banner that is not TLS, a hang-up, silence), the
// client gets one 425 text, so that PORT cannot map the services of the
// client's host through the proxy (issue 24, item 10). The cause is in the
// proxy's log.
func TestActiveModeFailuresLookAlike(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("data\n"))
	g := startGate(t, be.Addr, gateOptions{listenerExtra: allowLocal, extra: `timeouts {
  passive_accept = "2s"
  tls_handshake  = "2s"
}`})
	c := g.login(t, be.User, be.Password)
	// serve starts a service on loopback that answers each connection
	// with answer; it returns its port.
	serve := func(answer func(net.Conn)) int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		t.Cleanup(func() { ln.Close(); <-done })
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				answer(c)
				c.Close()
			}
		}()
		return ln.Addr().(*net.TCPAddr).Port
	}
	closed := serve(func(net.Conn) {})
	for _, tc := range []struct {
		name string
		port int
	}{
		{"nothing listens", func() int {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln.Close()
			return ln.Addr().(*net.TCPAddr).Port
		}()},
		{"a banner", serve(func(c net.Conn) { io.WriteString(c, "220 mail.example ESMTP\r\n") })},
		{"a hang-up", closed},
		{"silence", serve(func(c net.Conn) {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			io.Copy(io.Discard, c) // until the proxy gives up
		})},
	} {
		c.Cmd(200, "EPRT |1|127.0.0.1|%d|", tc.port)
		c.Cmd(150, "RETR f.txt")
		if msg := c.Expect(425); msg != activeFailure {
			t.Errorf("%s: 425 text %q, want %q", tc.name, msg, activeFailure)
		}
	}
	c.Cmd(221, "QUIT")
	if n := g.logs.FilterMessage("active-mode data connection failed").Len(); n < 3 {
		t.Fatalf("%d log lines with the causes, want at least 3", n)
	}
}
