package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// The acme block against a real ACME CA: Pebble, Let's Encrypt's test CA,
// built from its Go module (pebbleVersion) on first use into the user's
// cache directory, so that a clean clone needs only the Go module proxy.
// Pebble runs on loopback with a test configuration of its own; the names
// it validates resolve to 127.0.0.1 through a small DNS responder of the
// test's (Pebble's -dnsserver).

// pebbleVersion is the Pebble built and run by the tests.
const pebbleVersion = "v2.10.3"

var (
	pebbleOnce sync.Once
	pebblePath string
	pebbleErr  error
)

// pebbleBinary returns the path of Pebble's cmd/pebble at pebbleVersion,
// building it with "go install" into $XDG_CACHE_HOME (or ~/.cache, or
// the temporary directory) on first use.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	pebbleOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil { // neither $XDG_CACHE_HOME nor $HOME
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "ftpsgate-test", "pebble-"+pebbleVersion)
		pebblePath = filepath.Join(dir, "pebble")
		if _, err := os.Stat(pebblePath); err == nil {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			pebbleErr = err
			return
		}
		tmp, err := os.MkdirTemp(dir, "build")
		if err != nil {
			pebbleErr = err
			return
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("go", "install", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pebbleErr = fmt.Errorf("building Pebble %s (go install; needs the Go module proxy): %v\n%s", pebbleVersion, err, out)
			return
		}
		// Atomic: a concurrent test binary finds the whole file or none.
		pebbleErr = os.Rename(filepath.Join(tmp, "pebble"), pebblePath)
	})
	if pebbleErr != nil {
		t.Fatal(pebbleErr)
	}
	return pebblePath
}

// startDNS runs a DNS responder on loopback, UDP and TCP on one port (Pebble
// asks over TCP), that answers every A query with 127.0.0.1 and every
// other query with no record, until the test ends; it returns its
// address.
func startDNS(t *testing.T) string {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	for try := 0; pc == nil; try++ {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err != nil {
			ln.Close()
			if try == 20 {
				t.Fatalf("no port free for both TCP and UDP: %v", err)
			}
		}
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A:   net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("DNS responder: %v", err)
		}
		t.Cleanup(func() { srv.Shutdown(); <-done })
	}
	return ln.Addr().String()
}

// pebble is a running Pebble.
type pebble struct {
	directory string         // the ACME directory URL
	mgmt      string         // host:port of its management interface
	caFile    string         // the root of its HTTPS certificate, for ca_roots
	https     *x509.CertPool // the same, for the test's own requests
	out       *ftptest.SyncBuffer
	stop      func(*testing.T) // kills it; safe to call again
}

// startPebble runs Pebble on loopback, validating HTTP-01 on httpPort and
// TLS-ALPN-01 on tlsPort of 127.0.0.1, until the test ends. validity, if
// given, is the certificates' lifetime (Pebble's default: 90 days).
func startPebble(t *testing.T, httpPort, tlsPort int, validity ...time.Duration) *pebble {
	t.Helper()
	return startPebbleDNS(t, httpPort, tlsPort, startDNS(t), validity...)
}

// startPebbleDNS is startPebble with dnsAddr as Pebble's resolver (a
// real DNS server's, for DNS-01).
func startPebbleDNS(t *testing.T, httpPort, tlsPort int, dnsAddr string, validity ...time.Duration) *pebble {
	t.Helper()
	bin := pebbleBinary(t)
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	p := &pebble{caFile: certs.CAFile, https: certs.Pool, out: &ftptest.SyncBuffer{},
		mgmt: fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))}
	listen := fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	p.directory = "https://" + listen + "/dir"
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": p.mgmt,
		"certificate": certs.CertFile, "privateKey": certs.KeyFile,
		"httpPort": httpPort, "tlsPort": tlsPort, "ocspResponderURL": "",
		"externalAccountBindingRequired": false,
	}}
	if len(validity) > 0 {
		conf["pebble"].(map[string]any)["profiles"] = map[string]any{
			"default": map[string]any{"description": "short-lived", "validityPeriod": int(validity[0].Seconds())}}
	}
	b, _ := json.Marshal(conf)
	path := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path, "-dnsserver", dnsAddr)
	// No sleeps before validation, no nonces refused at random, and no
	// authorization reused between orders: every order is validated.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.stop = func(*testing.T) { cmd.Process.Kill(); <-exited }
	t.Cleanup(func() { p.stop(t) })
	c := p.client()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.Get(p.directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("Pebble exited:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pebble's directory did not answer: %v\n%s", err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, bounded by deadline
	}
}

func (p *pebble) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.https}, DisableKeepAlives: true}}
}

// issuingRoot is the root Pebble signs certificates under, from its
// management interface (it makes a new one each run).
func (p *pebble) issuingRoot(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client().Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("Pebble's root: %d %q", resp.StatusCode, b)
	}
	return pool
}

// acmeGate is ftpsgate run as a process with an acme block.
type acmeGate struct {
	*gateProcess
	implicit  string // the implicit listener
	storage   string
	auditFile string
}

// startACMEGate runs ftpsgate with an explicit and an implicit listener
// taking their certificates from acme "ca" (directory, ca_roots, the
// domain ftp.test, and challenge: an http01 or tls_alpn01 block body),
// in front of backend; storage, if given, is the acme storage (else a
// new directory).
func startACMEGate(t *testing.T, backend, directory, caRoots, challenge string, storage ...string) *acmeGate {
	t.Helper()
	bin := gateBinary(t)
	dir := t.TempDir()
	greeting := "ftpsgate acme test " + filepath.Base(dir)
	g := &acmeGate{gateProcess: &gateProcess{cfg: filepath.Join(dir, "gate.hcl"), stderr: &ftptest.SyncBuffer{}},
		storage: filepath.Join(dir, "acme"), auditFile: filepath.Join(dir, "audit.log")}
	if len(storage) > 0 {
		g.storage = storage[0]
	}
	g.addr = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	g.implicit = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	g.admin = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
	f1, l1 := ftptest.FreePortRange(t, 5)
	f2, l2 := ftptest.FreePortRange(t, 5)
	for f2 <= l1 && f1 <= l2 {
		f2, l2 = ftptest.FreePortRange(t, 5)
	}
	g.src = fmt.Sprintf(`listener "ftps" {
  address = %q
  acme = "ca"
  passive_ports = "%d-%d"
  backend = "b"
  greeting = %q
}
listener "ftps-implicit" {
  address = %q
  tls = "implicit"
  acme = "ca"
  passive_ports = "%d-%d"
  backend = "b"
}
acme "ca" {
  domains = ["ftp.test"]
  email = "ops@ftp.test"
  directory = %q
  ca_roots = %q
  storage = %q
  %s
}
backend "b" { address = %q }
admin { address = %q }
audit { file = %q }
`, g.addr, f1, l1, greeting, g.implicit, f2, l2, directory, caRoots, g.storage, challenge, backend, g.admin, g.auditFile)
	if err := os.WriteFile(g.cfg, []byte(g.src), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "run", "-config", g.cfg)
	g.cmd.Stderr = g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.done = make(chan int, 1)
	go func(cmd *exec.Cmd, done chan int) {
		cmd.Wait()
		g.exitStatus = cmd.ProcessState.String()
		done <- cmd.ProcessState.ExitCode()
	}(g.cmd, g.done)
	proc := g.cmd.Process
	t.Cleanup(func() { proc.Kill() })
	if !waitOwnGreeting(g.addr, greeting, g.done) {
		g.fatal(t, "ftpsgate did not greet")
	}
	return g
}

// waitLog waits until the log has a line with message msg and returns
// it.
func (g *acmeGate) waitLog(t *testing.T, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := logLines(t, g.stderr.String(), msg); len(l) > 0 {
			return l[0]
		}
		g.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q:\n%s", msg, g.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by deadline
	}
}

// loginVerified logs in through the explicit listener, verifying the
// certificate under ftp.test against roots, and returns the chain the
// client verified.
func loginVerified(t *testing.T, addr string, roots *x509.CertPool, be *ftptest.Server) [][]*x509.Certificate {
	t.Helper()
	c := ftptest.Dial(t, addr)
	conf := &tls.Config{RootCAs: roots, ServerName: "ftp.test", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	c.AuthTLS(conf)
	c.LoginProtP(be.User, be.Password)
	// A PROT P listing: the data connection's handshake serves the
	// same certificate, and resumes the control connection's session.
	addr = c.EPSV()
	c.Send("LIST")
	d := c.DialData(addr)
	c.Expect(150)
	ftptest.ReadAll(t, d)
	d.Close()
	c.Expect(226)
	if !d.Conn.(*tls.Conn).ConnectionState().DidResume {
		t.Fatal("the data connection did not resume the control connection's TLS session")
	}
	c.Cmd(221, "QUIT")
	return c.Ctrl.(*tls.Conn).ConnectionState().VerifiedChains
}

// TestACMEHTTP01: the certificate for ftp.test is obtained from Pebble
// through the HTTP-01 listener at start; an FTPS login through the proxy
// verifies it against Pebble's issuing root, with SNI and (on the implicit
// listener) without; the expiry gauge and the success are in /metrics;
// the HTTP-01 listener answers 404, and never a redirect, to anything but
// a challenge. Restarted on the same storage with Pebble stopped, the
// proxy serves the stored certificate at once and asks the CA nothing.
func TestACMEHTTP01(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	httpPort := ftptest.FreePort(t)
	p := startPebble(t, httpPort, ftptest.FreePort(t))
	g := startACMEGate(t, be.Addr, p.directory, p.caFile, fmt.Sprintf(`http01 { address = "127.0.0.1:%d" }`, httpPort))
	l := g.waitLog(t, "certificate obtained", 2*time.Minute)
	if l["domain"] != "ftp.test" || l["operation"] != "obtain" || l["acme"] != "ca" {
		t.Fatalf("log line %v", l)
	}
	roots := p.issuingRoot(t)
	chains := loginVerified(t, g.addr, roots, be)
	if len(chains) == 0 || chains[0][0].DNSNames[0] != "ftp.test" {
		t.Fatalf("verified chains %v", chains)
	}
	// No SNI (a client connecting by address): the first domain's
	// certificate, verified here under its name.
	ftptest.DialImplicit(t, g.implicit, &tls.Config{InsecureSkipVerify: true, // verified below, without SNI
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "ftp.test"})
			return err
		}})

	_, body := g.get(t, "/metrics")
	for _, want := range []string{`ftpsgate_acme_certificate_expiry_timestamp_seconds{acme="ca",domain="ftp.test"} `,
		`ftpsgate_acme_certificate_requests_total{acme="ca",domain="ftp.test",operation="obtain",result="success"} 1`} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, body)
		}
	}
	g.httpNotFound(t, httpPort)
	g.stop(t)

	// Restarted on the same storage with the CA gone: the certificate
	// is served from storage, and no request goes to the CA.
	p.stop(t)
	g2 := startACMEGate(t, be.Addr, p.directory, p.caFile, fmt.Sprintf(`http01 { address = "127.0.0.1:%d" }`, httpPort), g.storage)
	loginVerified(t, g2.addr, roots, be)
	if l := logLines(t, g2.stderr.String(), "requesting a certificate from the CA"); len(l) != 0 {
		t.Fatalf("the certificate in storage was requested again:\n%s", g2.stderr.String())
	}
	g2.stop(t)
}

// httpNotFound checks that the HTTP-01 listener on port answers 404, and
// never a redirect, to what is not a challenge.
func (g *acmeGate) httpNotFound(t *testing.T, port int) {
	t.Helper()
	noRedirect := &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/", "/index.html", "/.well-known/acme-challenge/", "/.well-known/acme-challenge/not-a-token",
		"/.well-known/acme-challenge/../../etc/passwd", "/metrics"} {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		req.Host = "ftp.test"
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Location") != "" {
			t.Fatalf("GET %s: %d, Location %q; want 404 and no Location", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestACMETLSALPN01: the certificate is obtained through the TLS-ALPN-01
// listener, and served; that listener refuses a handshake that is not a
// challenge, and an FTP port refuses one that is.
func TestACMETLSALPN01(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	tlsPort := ftptest.FreePort(t)
	p := startPebble(t, ftptest.FreePort(t), tlsPort)
	g := startACMEGate(t, be.Addr, p.directory, p.caFile, fmt.Sprintf(`tls_alpn01 { address = "127.0.0.1:%d" }`, tlsPort))
	g.waitLog(t, "certificate obtained", 2*time.Minute)
	if l := logLines(t, g.stderr.String(), "TLS-ALPN-01 challenge answered"); len(l) == 0 || l[0]["domain"] != "ftp.test" {
		t.Fatalf("no TLS-ALPN-01 answer logged:\n%s", g.stderr.String())
	}
	chains := loginVerified(t, g.addr, p.issuingRoot(t), be)
	if len(chains) == 0 {
		t.Fatal("no verified chain")
	}
	for _, c := range []struct {
		addr  string
		proto []string
	}{
		{fmt.Sprintf("127.0.0.1:%d", tlsPort), []string{"h2", "http/1.1"}}, // not a challenge
		{fmt.Sprintf("127.0.0.1:%d", tlsPort), nil},
		{g.implicit, []string{"acme-tls/1"}}, // a challenge on an FTP port
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", c.addr,
			&tls.Config{InsecureSkipVerify: true, ServerName: "ftp.test", NextProtos: c.proto})
		if err == nil {
			conn.Close()
			t.Fatalf("%s with ALPN %v: handshake succeeded", c.addr, c.proto)
		}
	}
	g.stop(t)
}

// TestACMEUnreachable: the CA cannot be reached. The failure is logged
// with the CA's error, the process stays up, AUTH TLS is answered 431
// (the session goes on, and USER is still refused without TLS), the
// implicit listener closes its connections, and the failure is counted.
func TestACMEUnreachable(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	closed := fmt.Sprintf("https://127.0.0.1:%d/dir", ftptest.FreePort(t))
	g := startACMEGate(t, be.Addr, closed, certs.CAFile, fmt.Sprintf(`http01 { address = "127.0.0.1:%d" }`, ftptest.FreePort(t)))
	l := g.waitLog(t, "certificate not obtained: the CA refused or could not be reached; retrying with backoff, "+
		"listeners serve the current certificate if there is one", 2*time.Minute)
	if l["level"] != "error" || l["domain"] != "ftp.test" || l["directory"] != closed ||
		!strings.Contains(fmt.Sprint(l["error"]), "connection refused") {
		t.Fatalf("log line %v", l)
	}
	c := ftptest.Dial(t, g.addr)
	c.Cmd(431, "AUTH TLS")
	c.Cmd(530, "USER %s", be.User) // require_tls: still no login in clear
	c.Cmd(221, "QUIT")
	g.waitLog(t, "AUTH TLS refused: the listener's acme block has no certificate yet", 30*time.Second)

	raw, err := net.DialTimeout("tcp", g.implicit, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	if n, err := raw.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("implicit listener without a certificate: read %d, %v; want the connection closed", n, err)
	}
	raw.Close()
	g.waitLog(t, "connection closed: the implicit listener's acme block has no certificate yet", 30*time.Second)

	_, body := g.get(t, "/metrics")
	if !strings.Contains(body, `ftpsgate_acme_certificate_requests_total{acme="ca",domain="ftp.test",operation="obtain",result="failure"}`) ||
		strings.Contains(body, "ftpsgate_acme_certificate_expiry_timestamp_seconds{") {
		t.Fatalf("/metrics:\n%s", body)
	}
	g.alive(t)
	g.stop(t)
	b, err := os.ReadFile(g.auditFile)
	if err != nil {
		t.Fatal(err)
	}
	ev := certificateEvents(t, string(b))
	if len(ev) == 0 || ev[0]["result"] != "failure" || ev[0]["operation"] != "obtain" || ev[0]["domain"] != "ftp.test" ||
		!strings.Contains(fmt.Sprint(ev[0]["error"]), "connection refused") {
		t.Fatalf("audit certificate events %v", ev)
	}
}

// TestACMEReload: acme blocks are read at start only. A SIGHUP with a
// changed acme block applies the rest with a warning; one whose listener
// names an acme block the proxy did not start with is refused, and the
// running configuration stays.
func TestACMEReload(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	closed := fmt.Sprintf("https://127.0.0.1:%d/dir", ftptest.FreePort(t))
	g := startACMEGate(t, "127.0.0.1:1", closed, certs.CAFile, fmt.Sprintf(`http01 { address = "127.0.0.1:%d" }`, ftptest.FreePort(t)))
	hup := func(src string) {
		t.Helper()
		if err := os.WriteFile(g.cfg, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	changed := strings.Replace(g.src, `email = "ops@ftp.test"`, `email = "admin@ftp.test"`, 1)
	hup(changed)
	l := g.waitLog(t, "acme blocks are read at start only: restart ftpsgate to apply this change; the running one goes on", time.Minute)
	if l["acme"] != "ca" || l["level"] != "warn" {
		t.Fatalf("log line %v", l)
	}
	g.waitLog(t, "configuration reloaded: new sessions use it, open sessions keep theirs", time.Minute)

	added := strings.Replace(changed, `  acme = "ca"
  passive_ports`, `  acme = "other"
  passive_ports`, 1) + fmt.Sprintf(`acme "other" {
  domains = ["other.test"]
  directory = %q
  http01 { address = "127.0.0.1:%d" }
}
`, closed, ftptest.FreePort(t))
	hup(added)
	l = g.waitLog(t, "configuration reload refused: running on the previous configuration", time.Minute)
	if !strings.Contains(fmt.Sprint(l["error"]), `names acme "other", which was not in the configuration ftpsgate started with`) {
		t.Fatalf("log line %v", l)
	}
	g.alive(t)
	g.stop(t)
}

// TestValidateAsUserACME: validate -as-user names an acme storage the
// service user could not create, and passes once it can.
func TestValidateAsUserACME(t *testing.T) {
	ftptest.RequireRoot(t)
	state := t.TempDir() // root's: 0755 is not writable by nobody
	for d := state; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's are 0700
	}
	path := filepath.Join(t.TempDir(), "gate.hcl")
	src := fmt.Sprintf(`listener "ftps" {
  address = "127.0.0.1:2121"
  acme = "public"
  passive_ports = "50000-50009"
  backend = "b"
}
acme "public" {
  domains = ["ftp.example.com"]
  storage = %q
  http01 { address = "127.0.0.1:8080" }
}
backend "b" { address = "127.0.0.1:21" }
`, filepath.Join(state, "acme", "certs"))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "user nobody cannot create the acme storage in "+state) {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut); code != 0 {
		t.Fatalf("storage's parent writable: exit %d:\n%s", code, errOut.String())
	}
}

// TestACMERenewal: a short-lived certificate is renewed in the background
// (the renewal check runs every second here, instead of every 10
// minutes); new handshakes get the new certificate without a restart or
// a reload, a session opened before goes on with its own, a download in
// flight across the renewal completes whole, and the renewal is logged
// and counted.
func TestACMERenewal(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	httpPort := ftptest.FreePort(t)
	// certmagic renews at a time it picks in the window the CA suggests
	// (ARI, RFC 9773; Pebble: about the second half of the life), or
	// else in the last third of the life.
	p := startPebble(t, httpPort, ftptest.FreePort(t), 45*time.Second)
	f, l := ftptest.FreePortRange(t, 5)
	src := fmt.Sprintf(`listener "ftps" {
  address = "127.0.0.1:0"
  acme = "ca"
  passive_ports = "%d-%d"
  backend = "b"
}
acme "ca" {
  domains = ["ftp.test"]
  directory = %q
  ca_roots = %q
  storage = %q
  http01 { address = "127.0.0.1:%d" }
}
backend "b" { address = %q }
`, f, l, p.directory, p.caFile, filepath.Join(t.TempDir(), "acme"), httpPort, be.Addr)
	srv, logs, auditBuf := startACMEServer(t, src)
	addr := srv.Addr("ftps").String()
	waitServing(t, logs, "ftp.test", addr)
	roots := p.issuingRoot(t)
	first := loginVerified(t, addr, roots, be)[0][0]
	// A download in flight across the renewal: the client reads its
	// first MiB, then nothing until the renewal is logged (the rest
	// waits in the socket buffers and at the backend), then the rest.
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "big.bin"), 64<<20)
	open := ftptest.Dial(t, addr)
	open.AuthTLS(&tls.Config{RootCAs: roots, ServerName: "ftp.test", ClientSessionCache: tls.NewLRUClientSessionCache(4)})
	open.LoginProtP(be.User, be.Password)
	open.Cmd(200, "TYPE I")
	dataAddr := open.EPSV()
	open.Send("RETR big.bin")
	d := open.DialData(dataAddr)
	open.Expect(150)
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(d, head); err != nil {
		t.Fatal(err)
	}

	waitObtained(t, logs, "ftp.test", "renew")
	rest := ftptest.ReadAll(t, d)
	d.Close()
	open.Expect(226)
	h := sha256.New()
	h.Write(head)
	h.Write(rest)
	if got := hex.EncodeToString(h.Sum(nil)); got != sum || len(head)+len(rest) != 64<<20 {
		t.Fatalf("the download in flight across the renewal: %d bytes, sha256 %s; want %d bytes, %s", len(head)+len(rest), got, 64<<20, sum)
	}
	if cs := d.Conn.(*tls.Conn).ConnectionState(); !cs.PeerCertificates[0].Equal(first) {
		t.Fatal("the transfer's data connection changed certificate")
	}
	second := loginVerified(t, addr, roots, be)[0][0]
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || !second.NotAfter.After(first.NotAfter) {
		t.Fatalf("after the renewal, serial %x (expires %v); before, %x (expires %v)", second.SerialNumber, second.NotAfter,
			first.SerialNumber, first.NotAfter)
	}
	if got := open.Ctrl.(*tls.Conn).ConnectionState().PeerCertificates[0]; !got.Equal(first) {
		t.Fatal("the open session's certificate changed")
	}
	open.Cmd(200, "NOOP")
	open.Cmd(221, "QUIT")
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `ftpsgate_acme_certificate_requests_total{acme="ca",domain="ftp.test",operation="renew",result="success"}`) {
		t.Fatalf("/metrics:\n%s", rec.Body.String())
	}
	ev := certificateEvents(t, auditBuf.String())
	if len(ev) < 2 || ev[0]["operation"] != "obtain" || ev[1]["operation"] != "renew" {
		t.Fatalf("audit certificate events %v", ev)
	}
	for _, e := range ev[:2] {
		if e["result"] != "success" || e["acme"] != "ca" || e["domain"] != "ftp.test" || e["issuer"] == nil {
			t.Fatalf("audit certificate event %v", e)
		}
	}
}

// startACMEServer runs a proxy.Server of the configuration src in this
// process, its renewal check every second, until the test ends; it
// returns the server, its log and its audit stream.
func startACMEServer(t *testing.T, src string) (srv *proxy.Server, logs, auditBuf *ftptest.SyncBuffer) {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "acme.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	logs, auditBuf = &ftptest.SyncBuffer{}, &ftptest.SyncBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zap.InfoLevel))
	aud := audit.New(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(audit.EncoderConfig()), zapcore.AddSync(auditBuf), zap.InfoLevel)))
	srv = proxy.New(cfg, proxy.Options{Logger: log, Audit: aud, ACMERenewCheckInterval: time.Second})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, logs, auditBuf
}

// certificateEvents are the audit's certificate events, as JSON objects.
func certificateEvents(t *testing.T, stream string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(stream, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == "certificate" {
			out = append(out, m)
		}
	}
	return out
}

// waitObtained waits for the log line of domain's certificate obtained
// by op ("obtain" or "renew").
func waitObtained(t *testing.T, logs *ftptest.SyncBuffer, domain, op string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, l := range logLines(t, logs.String(), "certificate obtained") {
			if l["operation"] == op && l["domain"] == domain {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate obtained for %s by %s:\n%s", domain, op, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the log, bounded by deadline
	}
}

// waitServing waits for domain's certificate obtained, then until the
// listener at addr serves it: certmagic announces a certificate (the log
// line waitObtained reads) when it is stored, a moment before its cache
// has it, and meanwhile AUTH TLS gets 431 ("no certificate; try again
// later"), as a client would.
func waitServing(t *testing.T, logs *ftptest.SyncBuffer, domain, addr string) {
	t.Helper()
	waitObtained(t, logs, domain, "obtain")
	deadline := time.Now().Add(time.Minute)
	for {
		c := ftptest.Dial(t, addr)
		c.Send("AUTH TLS")
		code, msg := c.Read()
		if code == 234 {
			tc := tls.Client(c.Raw, &tls.Config{InsecureSkipVerify: true, ServerName: strings.TrimPrefix(domain, "*.")}) // only whether one is served
			tc.SetDeadline(time.Now().Add(30 * time.Second))
			err := tc.Handshake()
			tc.Close()
			if err != nil {
				t.Fatalf("%s: handshake after 234: %v", addr, err)
			}
			return
		}
		c.Raw.Close()
		if code != 431 || time.Now().After(deadline) {
			t.Fatalf("%s: AUTH TLS after %s's certificate was obtained: %d %s", addr, domain, code, msg)
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded by deadline
	}
}

// TestACMESharedHTTP01: two acme blocks share one HTTP-01 listener (port
// 80 is one port); each obtains its own domain's certificate through it,
// and each listener serves its own block's.
func TestACMESharedHTTP01(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	httpPort := ftptest.FreePort(t)
	p := startPebble(t, httpPort, ftptest.FreePort(t))
	f1, l1 := ftptest.FreePortRange(t, 5)
	f2, l2 := ftptest.FreePortRange(t, 5)
	for f2 <= l1 && f1 <= l2 {
		f2, l2 = ftptest.FreePortRange(t, 5)
	}
	var blocks string
	for _, name := range []string{"one", "two"} {
		// Each its email: two blocks without one are refused (certmagic
		// would register the second as mailto:default).
		blocks += fmt.Sprintf(`acme %q {
  domains = ["%s.test"]
  email = "ops-%s@example.test"
  directory = %q
  ca_roots = %q
  storage = %q
  http01 { address = "127.0.0.1:%d" }
}
`, name, name, name, p.directory, p.caFile, filepath.Join(t.TempDir(), "acme"), httpPort)
	}
	src := fmt.Sprintf(`listener "one" {
  address = "127.0.0.1:0"
  acme = "one"
  passive_ports = "%d-%d"
  backend = "b"
}
listener "two" {
  address = "127.0.0.1:0"
  acme = "two"
  passive_ports = "%d-%d"
  backend = "b"
}
%sbackend "b" { address = %q }
`, f1, l1, f2, l2, blocks, be.Addr)
	srv, logs, _ := startACMEServer(t, src)
	roots := p.issuingRoot(t)
	for _, name := range []string{"one", "two"} {
		waitServing(t, logs, name+".test", srv.Addr(name).String())
		c := ftptest.Dial(t, srv.Addr(name).String())
		c.AuthTLS(&tls.Config{RootCAs: roots, ServerName: name + ".test"})
		c.LoginProtP(be.User, be.Password)
		c.Cmd(221, "QUIT")
	}
}

// TestACMESharedStorage: two instances on one storage directory, started
// together, place one order at the CA (certmagic's lock in the storage),
// and both serve the certificate. The CA reaches the HTTP-01 listener of
// the first only; when the second wins the lock (about half the runs), its
// challenge is answered by the first, from the shared storage.
func TestACMESharedStorage(t *testing.T) {
	testACMEShared(t, fmt.Sprintf("storage = %q", filepath.Join(t.TempDir(), "acme")), "")
}

// TestACMESharedRedisStorage: TestACMESharedStorage with the storage in
// a real redis-server (storage_redis, the state block's Redis) instead
// of a shared directory: one order, both instances serve, and the one
// that did not order loaded the certificate from Redis.
func TestACMESharedRedisStorage(t *testing.T) {
	rd := ftptest.StartRedis(t)
	testACMEShared(t, "storage_redis = true", fmt.Sprintf("state {\n  redis {\n    address = %q\n  }\n}\n", rd.Addr))
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer rdb.Close()
	keys, err := rdb.ZRange(context.Background(), "ftpsgate:acme:index", 0, -1).Result()
	if err != nil || !slices.ContainsFunc(keys, func(k string) bool { return strings.HasSuffix(k, "/ftp.test/ftp.test.key") }) {
		t.Fatalf("the certificate's key is not in Redis: %v %v", keys, err)
	}
	if locks, _ := rdb.Keys(context.Background(), "ftpsgate:acme:lock:*").Result(); len(locks) != 0 {
		t.Fatalf("locks left in Redis after the order: %v", locks)
	}
}

// testACMEShared runs two instances whose acme blocks share storage
// (the block's storage line), with extra blocks, and checks that they
// place one order and both serve the certificate.
func testACMEShared(t *testing.T, storage, extra string) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	httpPort := ftptest.FreePort(t)
	p := startPebble(t, httpPort, ftptest.FreePort(t))
	srcs := make([]string, 2)
	for i, port := range []int{httpPort, ftptest.FreePort(t)} {
		f, l := ftptest.FreePortRange(t, 5)
		srcs[i] = fmt.Sprintf(`listener "ftps" {
  address = "127.0.0.1:0"
  tls = "implicit"
  acme = "ca"
  passive_ports = "%d-%d"
  backend = "b"
}
acme "ca" {
  domains = ["ftp.test"]
  email = "ops@ftp.test"
  directory = %q
  ca_roots = %q
  %s
  http01 { address = "127.0.0.1:%d" }
}
backend "b" { address = %q }
%s`, f, l, p.directory, p.caFile, storage, port, be.Addr, extra)
	}
	type started struct {
		srv  *proxy.Server
		logs *ftptest.SyncBuffer
	}
	var gates [2]started
	var wg sync.WaitGroup
	for i := range gates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, diags := config.Parse([]byte(srcs[i]), "shared.hcl")
			if diags.HasErrors() {
				t.Error(diags.Error())
				return
			}
			gates[i].logs = &ftptest.SyncBuffer{}
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(gates[i].logs), zap.InfoLevel))
			gates[i].srv = proxy.New(cfg, proxy.Options{Logger: log})
			if err := gates[i].srv.Start(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, g := range gates {
		if g.srv != nil {
			t.Cleanup(func() { g.srv.Close() })
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	roots := p.issuingRoot(t)
	deadline := time.Now().Add(2 * time.Minute)
	for _, g := range gates {
		// The instance that did not order loads the certificate from
		// storage when its lock is released: no log line of its own.
		for {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", g.srv.Addr("ftps").String(),
				&tls.Config{RootCAs: roots, ServerName: "ftp.test", NextProtos: []string{"ftp"}})
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no certificate served: %v\n%s\n%s", err, gates[0].logs.String(), gates[1].logs.String())
			}
			time.Sleep(50 * time.Millisecond) // polling for the certificate, bounded by deadline
		}
	}
	if n := strings.Count(p.out.String(), "Added order"); n != 1 {
		t.Fatalf("%d orders at the CA, want 1:\n%s", n, p.out.String())
	}
}
