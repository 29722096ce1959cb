package proxy_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/pquerna/otp/totp"
)

// Client certificates (issue 17): listeners that ask for a certificate
// verified against a client CA of the test's own, and auth blocks that
// take the user from it. Real clients: curl, lftp and Python's ftplib
// present the certificate; Go clients play the attacks.

// certGate starts a gate whose listeners ask for client certificates
// (client_auth mode) of clientCA, checked by the auth block body auth.
func certGate(t *testing.T, be *ftptest.Server, clientCA *ftptest.Certs, mode, auth string) (*gate, *backendTap) {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "backend.pass")
	if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap := &backendTap{control: be.Addr}
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: fmt.Sprintf("auth = \"certs\"\n  client_auth = %q\n  client_ca_file = %q", mode, clientCA.CAFile),
		extra: fmt.Sprintf(`auth "certs" {
  %s
  backend_user          = %q
  backend_password_file = %q
}
bans {
  safelist = ["127.0.0.0/8"]
}`, auth, be.User, pw),
		dialBackend: tap.dial,
	})
	return g, tap
}

// certConfig is g's client TLS configuration presenting the certificate
// in certFile and keyFile.
func certConfig(t *testing.T, g *gate, certFile, keyFile string) *tls.Config {
	t.Helper()
	conf := g.certs.ClientConfig()
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf
}

// handshakeRefused runs AUTH TLS with conf and expects the proxy to fail
// the handshake: under TLS 1.3 the client's side of it completes, and the
// proxy's alert arrives at the client's first read. It returns the error
// the client sees.
func handshakeRefused(t *testing.T, g *gate, conf *tls.Config) error {
	t.Helper()
	c := ftptest.Dial(t, g.explicit)
	c.Cmd(234, "AUTH TLS")
	tc := tls.Client(c.Raw, conf)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	err := tc.Handshake()
	if err == nil {
		if _, err = tc.Write([]byte("USER alice\r\n")); err == nil {
			_, err = tc.Read(make([]byte, 512))
		}
	}
	if err == nil {
		t.Fatal("the proxy took the handshake")
	}
	return err
}

// loggedWith reports whether some log entry has a field containing text.
func (g *gate) loggedWith(text string) bool {
	for _, e := range g.logs.All() {
		for _, v := range e.ContextMap() {
			if strings.Contains(fmt.Sprint(v), text) {
				return true
			}
		}
	}
	return false
}

// TestEdgeCert: on a listener that requires a client certificate, an
// auth block with cert mode "cert" logs in the user the certificate
// names, with no password check, as the mapped backend account: curl
// (explicit and implicit FTPS), lftp and ftplib, each presenting its
// certificate, transfer files. A certificate naming another user than
// USER gets 530 (cert_user_mismatch); one of another CA, or none, fails
// the handshake, which the log explains. No refused login opens a backend
// connection; the client's password never reaches the backend.
func TestEdgeCert(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "hello.txt", []byte("hello, certificate\n"))
	clientCA := ftptest.NewCerts(t, ftptest.ECDSA)
	otherCA := ftptest.NewCerts(t, ftptest.ECDSA)
	g, tap := certGate(t, be, clientCA, "require", `cert {
    mode = "cert"
  }`)
	aliceCert, aliceKey := clientCA.ClientCert(t, "alice")
	strangerCert, strangerKey := otherCA.ClientCert(t, "alice")

	// A certificate of alice, USER bob: refused at PASS.
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(certConfig(t, g, aliceCert, aliceKey))
	c.Cmd(331, "USER bob")
	if msg := c.Cmd(530, "PASS bobs-password"); msg != "Login incorrect." {
		t.Fatalf("PASS: %q", msg)
	}
	c.Cmd(221, "QUIT")
	// alice's name, but a certificate of another CA; then no certificate.
	err := handshakeRefused(t, g, certConfig(t, g, strangerCert, strangerKey))
	t.Logf("a certificate of another CA: the client sees %v", err)
	err = handshakeRefused(t, g, certConfig(t, g, "", ""))
	t.Logf("no certificate: the client sees %v", err)
	if !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("without a certificate the client saw %v", err)
	}
	// curl, without its certificate: the handshake's alert ends it.
	_, curlErr, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "curl"), "--silent", "--show-error",
		"--ssl-reqd", "--cacert", g.certs.CAFile, ftpURL("ftp", "alice", "pw", g.explicit, "hello.txt"))
	if err == nil {
		t.Fatal("curl without a certificate logged in")
	}
	t.Logf("curl without a certificate: %s", strings.TrimSpace(curlErr))
	for _, why := range []string{"does not verify against the listener's client_ca_file", "the client sent no certificate"} {
		if !g.loggedWith(why) {
			t.Errorf("no log line says %q", why)
		}
	}
	if n := tap.dials.Load(); n != 0 {
		t.Fatalf("%d backend connections after refused logins", n)
	}

	out := ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "--cert", aliceCert, "--key", aliceKey,
		ftpURL("ftp", "alice", "curl-pw", g.explicit, "hello.txt"))
	if out != "hello, certificate\n" {
		t.Fatalf("curl (explicit) got %q", out)
	}
	out = ftptest.Curl(t, "--cacert", g.certs.CAFile, "--cert", aliceCert, "--key", aliceKey,
		ftpURL("ftps", "alice", "curl-pw", g.implicit, "hello.txt"))
	if out != "hello, certificate\n" {
		t.Fatalf("curl (implicit) got %q", out)
	}
	out = ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf("set ssl:cert-file %s; set ssl:key-file %s; open -u alice,lftp-pw ftp://%s; cat hello.txt",
		aliceCert, aliceKey, g.explicit))
	if out != "hello, certificate\n" {
		t.Fatalf("lftp got %q", out)
	}
	local := filepath.Join(t.TempDir(), "up.bin")
	sum := ftptest.RandomFile(t, local, 64<<10)
	res := ftptest.Python(t, ftptest.PythonSpec{Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
		CertFile: aliceCert, KeyFile: aliceKey, User: "alice", Password: "ftplib-pw",
		Steps: []ftptest.PythonStep{{Op: "upload", Local: local, Remote: "alice.bin"}, {Op: "download", Remote: "alice.bin"}}})
	if res.Steps[1].SHA256 != sum {
		t.Fatalf("ftplib round trip: %+v", res.Steps)
	}

	wire := tap.wire()
	for _, secret := range []string{"curl-pw", "lftp-pw", "ftplib-pw", "bobs-password", "USER alice"} {
		if strings.Contains(wire, secret) {
			t.Errorf("the backend was sent %q", secret)
		}
	}
	log, err := os.ReadFile(be.Log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "["+be.User+"] OK LOGIN"); n < 4 || strings.Contains(string(log), "[alice]") {
		t.Fatalf("vsftpd's log (%d logins of %s):\n%s", n, be.User, log)
	}
	var refused, ok []string
	for _, e := range g.eventsOf(t, "login") {
		line := fmt.Sprint(e["user"], "/", e["method"], "/", e["cert_subject"], "/", e["backend_user"])
		if e["result"] == "success" {
			ok = append(ok, line)
		} else {
			refused = append(refused, fmt.Sprint(line, "/", e["reason"]))
		}
	}
	if want := "[bob/cert/CN=alice//cert_user_mismatch]"; fmt.Sprint(refused) != want {
		t.Fatalf("refused logins %v, want %v", refused, want)
	}
	for _, l := range ok {
		if l != "alice/cert/CN=alice/"+be.User {
			t.Fatalf("successful logins %v", ok)
		}
	}
	if len(ok) < 4 {
		t.Fatalf("successful logins %v", ok)
	}
}

// TestEdgeCertAndPassword: with mode "cert_and_password" on a listener
// where the certificate is optional, the login needs both: a wrong
// password with the right certificate, and the right password without a
// certificate, are refused; a certificate of another CA fails the
// handshake.
func TestEdgeCertAndPassword(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	clientCA := ftptest.NewCerts(t, ftptest.ECDSA)
	users := edgeUsers(t, t.TempDir())
	g, tap := certGate(t, be, clientCA, "optional", fmt.Sprintf(`user_file = %q
  cert {
    mode = "cert_and_password"
  }`, users))
	aliceCert, aliceKey := clientCA.ClientCert(t, "alice")

	for _, tc := range []struct {
		cert bool
		pass string
		code int
	}{{true, "wrong", 530}, {false, "alice-edge-pw", 530}, {true, "alice-edge-pw", 230}} {
		c := ftptest.Dial(t, g.explicit)
		if tc.cert {
			c.AuthTLS(certConfig(t, g, aliceCert, aliceKey))
		} else {
			c.AuthTLS(certConfig(t, g, "", ""))
		}
		c.Cmd(331, "USER alice")
		c.Cmd(tc.code, "PASS %s", tc.pass)
		c.Cmd(221, "QUIT")
	}
	// A certificate is optional, but one given must verify.
	otherCA := ftptest.NewCerts(t, ftptest.ECDSA)
	strangerCert, strangerKey := otherCA.ClientCert(t, "alice")
	handshakeRefused(t, g, certConfig(t, g, strangerCert, strangerKey))
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections for one accepted login", n)
	}
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["result"], "/", e["reason"], "/", e["method"], "/", e["cert_subject"]))
	}
	if want := "[failure/wrong_password/cert+file/CN=alice failure/cert_missing/cert+file/ success//cert+file/CN=alice]"; fmt.Sprint(got) != want {
		t.Fatalf("logins %v, want %v", got, want)
	}
	if strings.Contains(tap.wire(), "alice-edge-pw") {
		t.Fatal("the client's password reached the backend")
	}
}

// TestEdgeCertHook: mode "cert" with a hook: the hook authorises a
// certificate's user, is told the certificate's subject, and is never
// sent the password (none was asked for). A login the hook allows without
// a backend account is refused (the client's unchecked password must not
// log in at the backend) and opens no backend connection.
func TestEdgeCertHook(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	clientCA := ftptest.NewCerts(t, ftptest.ECDSA)
	hook := newHookServer(t, func(w http.ResponseWriter, req map[string]any) {
		switch req["user"] {
		case "alice":
			fmt.Fprintf(w, `{"allow": true, "backend_user": %q}`, be.User)
		default:
			fmt.Fprint(w, `{"allow": true}`)
		}
	})
	pw := filepath.Join(t.TempDir(), "backend.pass")
	if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap := &backendTap{control: be.Addr}
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: fmt.Sprintf("auth = \"certs\"\n  client_auth = \"require\"\n  client_ca_file = %q", clientCA.CAFile),
		extra: fmt.Sprintf(`auth "certs" {
  hook {
    url                    = %q
    backend_password_files = { %q = %q }
  }
  cert {
    mode = "cert"
  }
}
bans {
  safelist = ["127.0.0.0/8"]
}`, hook.URL, be.User, pw),
		dialBackend: tap.dial,
	})
	for _, tc := range []struct {
		user string
		code int
	}{{"carol", 530}, {"alice", 230}} {
		cert, key := clientCA.ClientCert(t, tc.user)
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(certConfig(t, g, cert, key))
		c.Cmd(331, "USER %s", tc.user)
		c.Cmd(tc.code, "PASS %s-secret", tc.user)
		c.Cmd(221, "QUIT")
	}
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections; want one, alice's", n)
	}
	reqs, _ := hook.requests()
	for _, r := range reqs {
		cert, _ := r["client_certificate"].(map[string]any)
		if _, has := r["password"]; has || cert["subject"] != "CN="+fmt.Sprint(r["user"]) || cert["sha256"] == "" {
			t.Fatalf("hook request %v", r)
		}
	}
	var got []string
	for _, e := range g.eventsOf(t, "login") {
		got = append(got, fmt.Sprint(e["user"], "/", e["result"], "/", e["reason"], "/", e["method"]))
	}
	if want := "[carol/failure/no_backend_account/cert+hook alice/success//cert+hook]"; fmt.Sprint(got) != want {
		t.Fatalf("logins %v, want %v", got, want)
	}
	if strings.Contains(tap.wire(), "-secret") {
		t.Fatal("a client's password reached the backend")
	}
}

// TestEdgeCertTOTP: mode "cert" with a second factor: the certificate
// names the user and PASS carries the TOTP code alone ("cert+totp"). The
// code logs in once; the same code again, a wrong code and no code are
// refused without a backend connection, and no code reaches the backend
// or the audit.
func TestEdgeCertTOTP(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	clientCA := ftptest.NewCerts(t, ftptest.ECDSA)
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	secrets := filepath.Join(t.TempDir(), "totp")
	if err := os.WriteFile(secrets, []byte("alice:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, tap := certGate(t, be, clientCA, "require", fmt.Sprintf(`cert {
    mode = "cert"
  }
  totp_secrets_file = %q`, secrets))
	cert, key := clientCA.ClientCert(t, "alice")
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(code)
	wrong := fmt.Sprintf("%06d", (n+1)%1000000)
	for _, tc := range []struct {
		pass string
		code int
	}{{wrong, 530}, {"", 530}, {code, 230}, {code, 530}} {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(certConfig(t, g, cert, key))
		c.Cmd(331, "USER alice")
		c.Cmd(tc.code, "PASS %s", tc.pass)
		c.Cmd(221, "QUIT")
	}
	if n := tap.dials.Load(); n != 1 {
		t.Fatalf("%d backend connections; want 1, the accepted login's", n)
	}
	want := []string{"alice/failure/totp_invalid/cert+totp", "alice/failure/totp_invalid/cert+totp",
		"alice/success//cert+totp", "alice/failure/totp_reused/cert+totp"}
	if got := loginEvents(t, g); !slices.Equal(got, want) {
		t.Fatalf("login events\n%v\nwant\n%v", got, want)
	}
	if strings.Contains(tap.wire(), code) || strings.Contains(g.auditBuf.String(), code) {
		t.Fatal("the TOTP code reached the backend or the audit stream")
	}
}
