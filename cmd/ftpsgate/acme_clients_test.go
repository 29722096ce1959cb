package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestACMEClients: real clients verify the chain ftpsgate serves from
// Pebble against Pebble's root alone, under the domain's name: curl
// (OpenSSL) lists and downloads through the explicit listener (AUTH TLS)
// and the implicit one, and Python's ftplib (FTP_TLS with a context
// loaded with that root) lists and downloads through the explicit one.
// Against a root that is not Pebble's, curl refuses to log in.
func TestACMEClients(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	content := []byte("through an ACME certificate\n")
	if err := os.WriteFile(filepath.Join(be.Root, "hello.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	httpPort := ftptest.FreePort(t)
	p := startPebble(t, httpPort, ftptest.FreePort(t))
	g := startACMEGate(t, be.Addr, p.directory, p.caFile, fmt.Sprintf(`http01 { address = "127.0.0.1:%d" }`, httpPort))
	g.waitLog(t, "certificate obtained", 2*time.Minute)
	root := p.issuingRootPEM(t)

	for _, l := range []struct{ scheme, addr string }{{"ftp", g.addr}, {"ftps", g.implicit}} {
		_, port, _ := net.SplitHostPort(l.addr)
		base := []string{"--cacert", root, "--resolve", "ftp.test:" + port + ":127.0.0.1", "--ssl-reqd",
			"--user", be.User + ":" + be.Password}
		url := fmt.Sprintf("%s://ftp.test:%s/", l.scheme, port)
		if out := ftptest.Curl(t, append(base, url)...); !strings.Contains(out, "hello.txt") {
			t.Fatalf("curl %s listing:\n%s", url, out)
		}
		if out := ftptest.Curl(t, append(base, url+"hello.txt")...); out != string(content) {
			t.Fatalf("curl %shello.txt: %q", url, out)
		}
	}

	host, port, _ := net.SplitHostPort(g.addr)
	portN := 0
	fmt.Sscan(port, &portN)
	res := ftptest.Python(t, ftptest.PythonSpec{Host: host, Port: portN, ServerName: "ftp.test", CAFile: root,
		User: be.User, Password: be.Password,
		Steps: []ftptest.PythonStep{{Op: "list"}, {Op: "download", Remote: "hello.txt"}}})
	if len(res.Steps) != 2 || !strings.Contains(strings.Join(res.Steps[0].Lines, "\n"), "hello.txt") ||
		!strings.HasPrefix(res.Steps[0].Reply, "226") || res.Steps[1].SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("ftplib: %+v", res)
	}

	// curl trusting another root: no login.
	other := ftptest.NewCerts(t, ftptest.ECDSA).CAFile
	if _, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "curl"), "--silent", "--show-error",
		"--max-time", "60", "--cacert", other, "--resolve", "ftp.test:"+port+":127.0.0.1", "--ssl-reqd",
		"--user", be.User+":"+be.Password, "ftp://ftp.test:"+port+"/"); err == nil || !strings.Contains(errOut, "certificate") {
		t.Fatalf("curl trusting another root: %v\n%s", err, errOut)
	}
}

// issuingRootPEM writes the root Pebble signs certificates under to a
// file and returns its path.
func (p *pebble) issuingRootPEM(t *testing.T) string {
	t.Helper()
	resp, err := p.client().Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Fatalf("Pebble's root: %v %q", err, b)
	}
	path := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestACMERenewalCAStopped: the CA stops while the proxy holds a
// short-lived certificate. The renewal fails: logged at error level with
// operation renew, counted, in the audit; the proxy goes on serving the
// cached certificate, which logins still verify.
func TestACMERenewalCAStopped(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	httpPort := ftptest.FreePort(t)
	p := startPebble(t, httpPort, ftptest.FreePort(t), time.Minute)
	f, l := ftptest.FreePortRange(t, 5)
	src := fmt.Sprintf(`listener "ftps" {
  address = "127.0.0.1:0"
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
  http01 { address = "127.0.0.1:%d" }
}
backend "b" { address = %q }
`, f, l, p.directory, p.caFile, filepath.Join(t.TempDir(), "acme"), httpPort, be.Addr)
	srv, logs, auditBuf := startACMEServer(t, src)
	addr := srv.Addr("ftps").String()
	waitServing(t, logs, "ftp.test", addr)
	roots := p.issuingRoot(t)
	first := loginVerified(t, addr, roots, be)[0][0]
	p.stop(t)

	deadline := time.Now().Add(2 * time.Minute)
	for {
		var renew map[string]any
		for _, l := range logLines(t, logs.String(), "certificate not obtained: the CA refused or could not be reached; retrying with backoff, "+
			"listeners serve the current certificate if there is one") {
			if l["operation"] == "renew" {
				renew = l
			}
		}
		if renew != nil {
			if renew["level"] != "error" || renew["domain"] != "ftp.test" || !strings.Contains(fmt.Sprint(renew["error"]), "connection refused") {
				t.Fatalf("log line %v", renew)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed renewal logged:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the log, bounded by deadline
	}
	if time.Now().After(first.NotAfter) {
		t.Fatalf("the certificate expired (%v) before the failed renewal was seen: nothing left to check", first.NotAfter)
	}
	if got := loginVerified(t, addr, roots, be)[0][0]; !got.Equal(first) {
		t.Fatal("after the failed renewal, another certificate was served")
	}
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `ftpsgate_acme_certificate_requests_total{acme="ca",domain="ftp.test",operation="renew",result="failure"}`) {
		t.Fatalf("/metrics:\n%s", rec.Body.String())
	}
	var failed bool
	for _, e := range certificateEvents(t, auditBuf.String()) {
		failed = failed || e["operation"] == "renew" && e["result"] == "failure"
	}
	if !failed {
		t.Fatalf("no failed renewal in the audit:\n%s", auditBuf.String())
	}
}
