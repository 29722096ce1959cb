package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestReload: a reload changes what new sessions get (policy, greeting,
// certificate) while a session opened before it finishes its 64 MiB
// download intact (checked by SHA-256) and still binds new data
// connections to its TLS session (the ticket keys survive the reload).
func TestReload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	// Enough to be in flight across the reload: the client reads 1 MiB,
	// then stops; the socket buffers on the path hold a few MiB at most.
	// (1 GiB ran into the client's timeout under -race on a loaded machine.)
	size := int64(64 << 20)
	sum := ftptest.RandomFile(t, be.Root+"/big.bin", size)
	writeFile(t, be.Root, "small.txt", []byte("after the reload\n"))
	g := startGate(t, be.Addr, gateOptions{})

	old := g.login(t, be.User, be.Password)
	old.Cmd(200, "TYPE I")
	d := old.DialData(old.EPSV())
	old.Cmd(150, "RETR big.bin")
	h := sha256.New()
	if _, err := io.CopyN(h, d, 1<<20); err != nil {
		t.Fatal(err)
	}

	newCerts := ftptest.NewCerts(t, ftptest.RSA)
	src := strings.ReplaceAll(g.src, g.certs.CertFile, newCerts.CertFile)
	src = strings.ReplaceAll(src, g.certs.KeyFile, newCerts.KeyFile)
	src = strings.Replace(src, "policy {", "policy {\n  deny_users = [\""+be.User+"\"]", 1)
	src = strings.Replace(src, `backend       = "legacy"`, `backend       = "legacy"`+"\n  greeting = \"reloaded\"", 1)
	cfg, diags := config.Parse([]byte(src), "reloaded.hcl")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), src)
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}

	// The old session: its download completes, intact.
	if _, err := io.Copy(h, d); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		t.Fatal("the download in flight was damaged by the reload")
	}
	old.Expect(226)
	// A new data connection still resumes the session's TLS session.
	d = old.DialData(old.EPSV())
	old.Cmd(150, "RETR small.txt")
	if got := string(ftptest.ReadAll(t, d)); got != "after the reload\n" {
		t.Fatalf("after the reload: %q", got)
	}
	old.Expect(226)
	old.Cmd(221, "QUIT")

	// New sessions: new greeting, new certificate, new policy.
	if got := greetingFrom(t, "127.0.0.1", g.explicit); !strings.HasPrefix(got, "220 reloaded") {
		t.Fatalf("greeting after the reload: %q", got)
	}
	c := ftptest.Dial(t, g.explicit)
	c.Cmd(234, "AUTH TLS")
	tc := tls.Client(c.Raw, g.certs.ClientConfig()) // the old CA
	c.Raw.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("the old certificate is still served")
	}
	c = ftptest.Dial(t, g.explicit)
	c.AuthTLS(newCerts.ClientConfig())
	c.Cmd(331, "USER %s", be.User)
	c.Cmd(530, "PASS %s", be.Password) // refused by the new policy, whatever the password
	for _, e := range g.eventsOf(t, "transfer") {
		if e["result"] != "complete" || e["data_tls_resumed"] != true {
			t.Fatalf("transfer %v", e)
		}
	}
}

// TestCertificateFilesWatched: when the certificate files change (a
// renewal), new handshakes get the new pair without a SIGHUP; files that do
// not load are logged and the current certificate is kept.
func TestCertificateFilesWatched(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	handshake := func(conf *tls.Config) error {
		c := ftptest.Dial(t, g.explicit)
		c.Cmd(234, "AUTH TLS")
		tc := tls.Client(c.Raw, conf)
		c.Raw.SetDeadline(time.Now().Add(30 * time.Second))
		return tc.Handshake()
	}
	copyFile := func(dst, src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
		}
	}
	// A broken file: logged, the current certificate stays.
	if err := os.WriteFile(g.certs.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("the refusal", func() bool {
		return g.logged("certificate files changed but do not load; keeping the current certificate")
	})
	if err := handshake(g.certs.ClientConfig()); err != nil {
		t.Fatalf("the current certificate was dropped: %v", err)
	}
	// A renewal: the new pair is served.
	renewed := ftptest.NewCerts(t, ftptest.RSA)
	copyFile(g.certs.KeyFile, renewed.KeyFile)
	copyFile(g.certs.CertFile, renewed.CertFile)
	waitFor("the new certificate", func() bool { return handshake(renewed.ClientConfig()) == nil })
	if !g.logged("certificate reloaded") {
		t.Fatal("no log line for the reload")
	}
}

// TestReloadAllOrNothing: a reload whose listener cannot be bound changes
// nothing (the old port serves a whole session, the old configuration
// stays), and says so in the metrics; so does one that moves a listener
// and adds another on a taken port; a later good reload takes effect.
func TestReloadAllOrNothing(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("still served\n"))
	g := startGate(t, be.Addr, gateOptions{})
	taken, err := net.Listen("tcp", "127.0.0.1:0") // another program's port
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	oldAddr := g.explicit

	reload := func(src string) error {
		t.Helper()
		cfg, diags := config.Parse([]byte(src), "reloaded.hcl")
		if diags.HasErrors() {
			t.Fatalf("%s\n%s", diags.Error(), src)
		}
		return g.srv.Reload(cfg)
	}
	served := func() {
		t.Helper()
		c := g.login(t, be.User, be.Password)
		if got := string(retr(t, c, "f.txt")); got != "still served\n" {
			t.Fatalf("download %q", got)
		}
		c.Cmd(221, "QUIT")
		if got := greetingFrom(t, "127.0.0.1", oldAddr); got != "220 ftpsgate ready\r\n" {
			t.Fatalf("greeting %q: the old configuration did not stay", got)
		}
	}
	// Move the explicit listener onto the taken port: refused.
	moved := strings.Replace(g.src, `address       = "127.0.0.1:0"`, fmt.Sprintf("address = %q", taken.Addr()), 1)
	moved = strings.Replace(moved, `backend       = "legacy"`, `backend       = "legacy"`+"\n  greeting = \"reloaded\"", 1)
	err = reload(moved)
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("reload onto a taken port: %v", err)
	}
	served()
	if got := metric(t, g, "ftpsgate_config_last_reload_successful"); got != "ftpsgate_config_last_reload_successful 0" {
		t.Fatalf("metric %q", got)
	}
	// Move it to a free port and add a listener on the taken one: refused,
	// and the free port was not kept open either.
	both := strings.Replace(g.src, `address       = "127.0.0.1:0"`, fmt.Sprintf("address = %q", free), 1) +
		fmt.Sprintf("listener \"extra\" {\n  address = %q\n  cert_file = %q\n  key_file = %q\n  passive_ports = \"1030-1031\"\n  backend = \"legacy\"\n}\n",
			taken.Addr(), g.certs.CertFile, g.certs.KeyFile)
	if err := reload(both); err == nil {
		t.Fatal("a reload with a taken port was accepted")
	}
	served()
	if c, err := net.DialTimeout("tcp", free, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s is listening after a refused reload", free)
	}
	// A good reload: the listener moves.
	if err := reload(strings.Replace(g.src, `address       = "127.0.0.1:0"`, fmt.Sprintf("address = %q", free), 1)); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, g, "ftpsgate_config_last_reload_successful"); got != "ftpsgate_config_last_reload_successful 1" {
		t.Fatalf("metric %q", got)
	}
	if got := greetingFrom(t, "127.0.0.1", free); got != "220 ftpsgate ready\r\n" {
		t.Fatalf("greeting on the new address %q", got)
	}
	if c, err := net.DialTimeout("tcp", oldAddr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still listening after the listener moved", oldAddr)
	}
	// Turning the PROXY protocol on keeps the socket: no rebind to fail.
	withPP := strings.Replace(g.src, `address       = "127.0.0.1:0"`, fmt.Sprintf("address = %q\n  proxy_protocol {\n    trusted_cidrs = [\"127.0.0.1/32\"]\n  }", free), 1)
	if err := reload(withPP); err != nil {
		t.Fatal(err)
	}
	raw := dialWithHeader(t, "127.0.0.1", free, 2, "198.51.100.7:4000")
	ftptest.Wrap(t, raw).Cmd(221, "QUIT")
	starts := g.eventsOf(t, "session_start")
	if last := starts[len(starts)-1]; last["client"] != "198.51.100.7:4000" {
		t.Fatalf("session_start after turning PROXY on: %v", last)
	}
}
