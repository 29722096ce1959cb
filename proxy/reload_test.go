package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestReload: a reload changes what new sessions get (policy, greeting,
// certificate) while a session opened before it finishes its 1 GiB
// download intact (checked by SHA-256) and still binds new data
// connections to its TLS session (the ticket keys survive the reload).
func TestReload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	size := int64(1 << 30)
	sum := ftptest.RandomFile(t, be.Root+"/big.bin", size)
	writeFile(t, be.Root, "small.txt", []byte("after the reload\n"))
	g := startGate(t, be.Addr, gateOptions{})

	old := ftptest.Dial(t, g.explicit)
	old.AuthTLS(g.certs.ClientConfig())
	old.Login(be.User, be.Password)
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
