package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestACMEOnDemand: a handshake whose SNI matches an on_demand pattern
// gets a certificate for that name, ordered from Pebble during the
// handshake and verified against Pebble's root, then served from the
// cache; a name no pattern matches (another domain, two labels in place
// of the "*", the pattern itself) and a client without SNI get the
// default certificate, and no order reaches the CA; once the rate's two
// orders are spent, a third allowed name gets the default certificate,
// no order, a log line and a count.
func TestACMEOnDemand(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	httpPort := ftptest.FreePort(t)
	p := startPebble(t, httpPort, ftptest.FreePort(t))
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
  on_demand {
    allow = ["*.customers.test"]
    rate  = "2/1h"
  }
}
backend "b" { address = %q }
timeouts { tls_handshake = "2m" } # an on-demand order runs inside the handshake
`, f, l, p.directory, p.caFile, filepath.Join(t.TempDir(), "acme"), httpPort, be.Addr)
	srv, logs, _ := startACMEServer(t, src)
	addr := srv.Addr("ftps").String()
	waitServing(t, logs, "ftp.test", addr)
	roots := p.issuingRoot(t)
	orders := func() int { return strings.Count(p.out.String(), "Added order") }
	if n := orders(); n != 1 {
		t.Fatalf("%d orders at start, want 1 (ftp.test)", n)
	}
	// served is the certificate a handshake with SNI sni gets; verify
	// checks it against Pebble's root under sni.
	served := func(sni string, verify bool) *x509.Certificate {
		t.Helper()
		c := ftptest.Dial(t, addr)
		conf := &tls.Config{RootCAs: roots, ServerName: sni}
		if !verify {
			conf = &tls.Config{InsecureSkipVerify: true, ServerName: sni} // only which certificate is looked at
		}
		c.AuthTLS(conf)
		if verify {
			c.LoginProtP(be.User, be.Password)
			c.Cmd(221, "QUIT")
		}
		return c.Ctrl.(*tls.Conn).ConnectionState().PeerCertificates[0]
	}

	if got := served("a.customers.test", true).DNSNames; len(got) != 1 || got[0] != "a.customers.test" {
		t.Fatalf("a.customers.test was served %v", got)
	}
	if n := orders(); n != 2 {
		t.Fatalf("%d orders after a.customers.test, want 2", n)
	}
	waitObtained(t, logs, "a.customers.test", "obtain")
	served("A.Customers.Test", true) // from the cache, whatever the case
	for _, sni := range []string{"", "ftp2.test", "x.y.customers.test", "customers.test", "a.customers.test.evil.test", "127.0.0.1"} {
		if got := served(sni, false).DNSNames; len(got) != 1 || got[0] != "ftp.test" {
			t.Fatalf("SNI %q was served %v, want the default certificate", sni, got)
		}
	}
	if n := orders(); n != 2 {
		t.Fatalf("%d orders after names outside the patterns, want 2:\n%s", n, p.out.String())
	}

	// The rate: one token left, then none.
	if got := served("b.customers.test", true).DNSNames; got[0] != "b.customers.test" {
		t.Fatalf("b.customers.test was served %v", got)
	}
	if got := served("c.customers.test", false).DNSNames; got[0] != "ftp.test" {
		t.Fatalf("c.customers.test, past the rate, was served %v", got)
	}
	if n := orders(); n != 3 {
		t.Fatalf("%d orders, want 3 (ftp.test, a. and b.customers.test)", n)
	}
	refused := logLines(t, logs.String(), "on-demand certificate refused: the on_demand rate is spent; the handshake gets the default certificate")
	if len(refused) != 1 || refused[0]["domain"] != "c.customers.test" || refused[0]["level"] != "warn" {
		t.Fatalf("refusal log lines %v", refused)
	}
	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `ftpsgate_acme_on_demand_refused_total{acme="ca"} 1`) ||
		!strings.Contains(rec.Body.String(), `ftpsgate_acme_certificate_expiry_timestamp_seconds{acme="ca",domain="b.customers.test"}`) {
		t.Fatalf("/metrics:\n%s", rec.Body.String())
	}
}
