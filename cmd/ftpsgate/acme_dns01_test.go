package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// knot is a running Knot DNS (Debian's knot package), authoritative for
// the zone "test." on loopback, taking dynamic updates (RFC 2136) signed
// with a TSIG key of its own (RFC 8945), as an operator's primary would.
type knot struct {
	addr    string // host:port, UDP and TCP
	keyName string
	keyFile string // the key's base64 secret alone, mode 0600
	out     *ftptest.SyncBuffer
}

// knotZone is the zone "test." Knot starts with: the challenges' TXT
// records are added and removed by the updates.
const knotZone = `$ORIGIN test.
$TTL 5
@   SOA ns.test. hostmaster.test. 1 3600 600 86400 5
@   NS  ns.test.
ns  A   127.0.0.1
ftp A   127.0.0.1
`

// startKnot runs knotd with a generated configuration in a directory of
// its own, on a loopback port free for both UDP and TCP, until the test
// ends; it is ready once it answers the zone's SOA over TCP.
func startKnot(t *testing.T) *knot {
	t.Helper()
	bin := ftptest.Tool(t, "knotd")
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	k := &knot{keyName: "acme-update", keyFile: filepath.Join(dir, "tsig.key"), out: &ftptest.SyncBuffer{}}
	if err := os.WriteFile(k.keyFile, []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.zone"), []byte(knotZone), 0o600); err != nil {
		t.Fatal(err)
	}
	// Knot starts without its database directory, but then fails every
	// update (SERVFAIL, "not exists": the journal has nowhere to go).
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		k.addr = freeUDPTCPAddr(t)
		host, port, _ := net.SplitHostPort(k.addr)
		conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: %[2]s@%[3]s
log:
  - target: stderr
    any: info
database:
    storage: "%[1]s/db"
key:
  - id: %[4]s
    algorithm: hmac-sha256
    secret: %[5]s
acl:
  - id: acme
    key: %[4]s
    action: update
template:
  - id: default
    storage: "%[1]s"
    zonefile-sync: -1
zone:
  - domain: test
    file: test.zone
    acl: acme
`, dir, host, port, k.keyName, base64.StdEncoding.EncodeToString(secret))
		path := filepath.Join(dir, "knot.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", path)
		cmd.Stdout, cmd.Stderr = k.out, k.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if lastErr = k.waitReady(exited); lastErr == nil {
			t.Cleanup(func() { cmd.Process.Kill(); <-exited })
			return k
		}
		cmd.Process.Kill()
		<-exited
	}
	t.Fatalf("knotd did not start: %v\n%s", lastErr, k.out.String())
	return nil
}

// waitReady waits until Knot answers the zone's SOA, or exits.
func (k *knot) waitReady(exited chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	for {
		m := new(dns.Msg)
		m.SetQuestion("test.", dns.TypeSOA)
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, k.addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("SOA answered %s", dns.RcodeToString[r.Rcode])
		}
		select {
		case <-exited:
			return fmt.Errorf("knotd exited: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, bounded by deadline
	}
}

// txt returns the TXT records of name Knot serves now.
func (k *knot) txt(t *testing.T, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 10 * time.Second}).Exchange(m, k.addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

// freeUDPTCPAddr is a loopback address whose port was free a moment ago
// for both UDP and TCP.
func freeUDPTCPAddr(t *testing.T) string {
	t.Helper()
	for try := 0; try < 20; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		ln.Close()
		if err == nil {
			pc.Close()
			return ln.Addr().String()
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// dns01Block is an acme block's dns01 block for k.
func (k *knot) dns01Block(keyFile string) string {
	return fmt.Sprintf(`dns01 {
    provider            = "rfc2136"
    server              = %q
    key_name            = %q
    key_algorithm       = "hmac-sha256"
    key_file            = %q
    resolvers           = [%q]
    propagation_timeout = "1m"
  }`, k.addr, k.keyName, keyFile, k.addr)
}

// TestACMEDNS01: certificates for ftp.test and the wildcard *.ftp.test
// are obtained through DNS-01: ftpsgate sets the challenges' TXT records
// in a real Knot DNS by TSIG-signed RFC 2136 updates, Pebble (whose
// resolver is that Knot) validates them, and the records are removed
// afterwards. FTPS logins verify the certificates against Pebble's root,
// under ftp.test and under a name only the wildcard covers. A dns01
// block whose key Knot does not know gets nothing, and says why.
func TestACMEDNS01(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	k := startKnot(t)
	p := startPebbleDNS(t, ftptest.FreePort(t), ftptest.FreePort(t), k.addr)
	config := func(domains, keyFile string) string {
		f, l := ftptest.FreePortRange(t, 5)
		return fmt.Sprintf(`listener "ftps" {
  address = "127.0.0.1:0"
  acme = "ca"
  passive_ports = "%d-%d"
  backend = "b"
}
acme "ca" {
  domains = %s
  # An email: certmagic remembers, process-wide, the "default" account
  # name of a block without one and registers "mailto:default" for the
  # next block that has none, which Pebble refuses.
  email = "ops@ftp.test"
  directory = %q
  ca_roots = %q
  storage = %q
  %s
}
backend "b" { address = %q }
`, f, l, domains, p.directory, p.caFile, filepath.Join(t.TempDir(), "acme"), k.dns01Block(keyFile), be.Addr)
	}
	src := config(`["ftp.test", "*.ftp.test"]`, k.keyFile)
	srv, logs, _ := startACMEServer(t, src)
	waitObtained(t, logs, "ftp.test", "obtain")
	addr := srv.Addr("ftps").String()
	waitServing(t, logs, "*.ftp.test", addr)
	roots := p.issuingRoot(t)
	chains := loginVerified(t, addr, roots, be)
	if len(chains) == 0 || chains[0][0].DNSNames[0] != "ftp.test" {
		t.Fatalf("verified chains %v", chains)
	}
	c := ftptest.Dial(t, addr)
	c.AuthTLS(&tls.Config{RootCAs: roots, ServerName: "files.ftp.test"})
	if got := c.Ctrl.(*tls.Conn).ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "*.ftp.test" {
		t.Fatalf("files.ftp.test was served %v", got)
	}
	c.LoginProtP(be.User, be.Password)
	c.Cmd(221, "QUIT")

	// Pebble validated by DNS-01, through Knot, which took signed
	// updates; the challenge records are gone.
	tried := logLines(t, logs.String(), "trying to solve challenge")
	for _, l := range tried {
		if l["challenge_type"] != "dns-01" {
			t.Fatalf("a challenge other than DNS-01 was tried: %v", l)
		}
	}
	if len(tried) < 2 {
		t.Fatalf("%d challenges tried, want one per name:\n%s", len(tried), logs.String())
	}
	if !strings.Contains(k.out.String(), "DDNS, finished") {
		t.Fatalf("Knot logged no dynamic update:\n%s", k.out.String())
	}
	deadline := time.Now().Add(time.Minute)
	for len(k.txt(t, "_acme-challenge.ftp.test")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("challenge records left in the zone: %v", k.txt(t, "_acme-challenge.ftp.test"))
		}
		time.Sleep(50 * time.Millisecond) // polling the zone, bounded by deadline
	}

	// A key Knot does not know: the update is refused (Knot answers
	// NOTAUTH, BADKEY, unsigned, which miekg/dns reports as "bad
	// authentication"), the failure is logged with it, and nothing is
	// obtained.
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrong, []byte(base64.StdEncoding.EncodeToString([]byte("not the zone's key, not at all!!"))), 0o600); err != nil {
		t.Fatal(err)
	}
	_, logs2, _ := startACMEServer(t, config(`["other.ftp.test"]`, wrong))
	deadline = time.Now().Add(2 * time.Minute)
	for {
		lines := logLines(t, logs2.String(), "certificate not obtained: the CA refused or could not be reached; retrying with backoff, "+
			"listeners serve the current certificate if there is one")
		if len(lines) > 0 {
			if e := fmt.Sprint(lines[0]["error"]); !strings.Contains(e, `adding temporary record for zone "test."`) ||
				!strings.Contains(e, "bad authentication") && !strings.Contains(e, "NOTAUTH") {
				t.Fatalf("the failure does not say the DNS server refused the key: %v", lines[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged:\n%s", logs2.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the log, bounded by deadline
	}
	if got := logLines(t, logs2.String(), "certificate obtained"); len(got) != 0 {
		t.Fatalf("obtained with a key Knot does not know: %v", got)
	}
}

// TestValidateACMEBlocks: ftpsgate validate reports a mistake in a dns01
// or on_demand block at its file and line, and accepts the blocks once
// they are right.
func TestValidateACMEBlocks(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "tsig.key")
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString([]byte("a TSIG secret of 32 bytes, here."))), 0o600); err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf(`listener "ftps" {
  address = "127.0.0.1:2121"
  acme = "public"
  passive_ports = "50000-50009"
  backend = "b"
}
acme "public" {
  domains = ["ftp.example.com", "*.ftp.example.com"]
  storage = %q
  dns01 {
    provider = "rfc2136"
    server   = "127.0.0.1:53"
    key_name = "acme-update"
    key_file = %q
  }
  on_demand {
    allow = ["*.customers.example.com"]
    rate  = "5/1h"
  }
}
backend "b" { address = "127.0.0.1:21" }
`, filepath.Join(dir, "acme"), key)
	path := filepath.Join(dir, "gate.hcl")
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"valid", "", "", ""},
		{"unknown provider", `"rfc2136"`, `"cloudflare"`, path + ":11:"},
		{"MD5 key", `    key_file = `, "    key_algorithm = \"hmac-md5\"\n    key_file = ", path + ":14:"},
		{"pattern under a TLD", `"*.customers.example.com"`, `"*.com"`, path + ":17:"},
		{"bad rate", `"5/1h"`, `"lots"`, path + ":18:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(good, tc.old, tc.new, 1)
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut strings.Builder
			code := run([]string{"validate", path}, &out, &errOut)
			if tc.want == "" {
				if code != 0 {
					t.Fatalf("exit %d:\n%s", code, errOut.String())
				}
				return
			}
			if code != 1 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, want 1 and %q:\n%s", code, tc.want, errOut.String())
			}
		})
	}
}
