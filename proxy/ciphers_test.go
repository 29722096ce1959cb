package proxy_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// cbcOnly is a TLS 1.2 client configuration that offers only the ECDHE
// CBC-SHA1 suites of an ECDSA certificate, as an old client would.
func cbcOnly(g *gate) *tls.Config {
	conf := g.certs.ClientConfig()
	conf.MaxVersion = tls.VersionTLS12
	conf.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	return conf
}

// handshakes runs a TLS handshake with conf on each listener of g: after
// AUTH TLS on the explicit one, at once on the implicit one.
func handshakes(t *testing.T, g *gate, conf *tls.Config) map[string]error {
	t.Helper()
	errs := map[string]error{}
	c := ftptest.Dial(t, g.explicit)
	c.Cmd(234, "AUTH TLS")
	tc := tls.Client(c.Raw, conf)
	c.Raw.SetDeadline(time.Now().Add(20 * time.Second))
	errs["explicit"] = tc.Handshake()
	if err := errs["explicit"]; err == nil && tls.CipherSuiteName(tc.ConnectionState().CipherSuite) == "" {
		t.Fatal("no cipher suite")
	}
	raw, err := net.DialTimeout("tcp", g.implicit, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	errs["implicit"] = tls.Client(raw, conf).Handshake()
	return errs
}

// TestCipherSuites: by default a TLS 1.2 client offering only CBC suites is
// refused at the handshake, on control connections of both listeners and on
// a data connection, while AES-GCM still serves TLS 1.2; tls_cipher_suites
// replaces the list, so a named CBC suite gets in and a suite left out does
// not.
func TestCipherSuites(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("cipher suites\n"))

	t.Run("default", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{})
		for l, err := range handshakes(t, g, cbcOnly(g)) {
			if err == nil {
				t.Errorf("%s listener: a CBC-only TLS 1.2 client was served", l)
			}
		}
		gcm := g.certs.ClientConfig()
		gcm.MaxVersion = tls.VersionTLS12
		for l, err := range handshakes(t, g, gcm) {
			if err != nil {
				t.Errorf("%s listener: TLS 1.2 with Go's client defaults: %v", l, err)
			}
		}

		// The data leg: its TLS configuration is the control one's.
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(gcm)
		c.LoginProtP(be.User, be.Password)
		d := c.DialDataTLS(c.EPSV(), cbcOnly(g))
		if err := d.Conn.(*tls.Conn).Handshake(); err == nil {
			t.Error("a data connection offering only CBC suites was served")
		}
		d.Close()
		c.Cmd(221, "QUIT")
	})

	t.Run("widened for an old client", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{listenerExtra: `tls_cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"]`})
		for l, err := range handshakes(t, g, cbcOnly(g)) {
			if err != nil {
				t.Errorf("%s listener: the named CBC suite was refused: %v", l, err)
			}
		}
		only256 := g.certs.ClientConfig()
		only256.MaxVersion = tls.VersionTLS12
		only256.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
		for l, err := range handshakes(t, g, only256) {
			if err == nil {
				t.Errorf("%s listener: a suite outside tls_cipher_suites was served", l)
			}
		}
		// The old client's whole session works, its data connection
		// resuming the control connection's CBC session.
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(cbcOnly(g))
		c.LoginProtP(be.User, be.Password)
		d := c.DialData(c.EPSV())
		c.Cmd(150, "RETR f.txt")
		if got := string(ftptest.ReadAll(t, d)); got != "cipher suites\n" {
			t.Errorf("downloaded %q", got)
		}
		st := d.Conn.(*tls.Conn).ConnectionState()
		if st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA || !st.DidResume {
			t.Errorf("data connection: %s, resumed %v", tls.CipherSuiteName(st.CipherSuite), st.DidResume)
		}
		d.Close()
		c.Expect(226)
		c.Cmd(221, "QUIT")
	})
}

// TestTLSScanner scans both listeners with a standard TLS scanner,
// Debian's testssl.sh, as an auditor would (STARTTLS ftp on the explicit
// one): protocols, cipher categories, forward secrecy, every cipher per
// protocol, the server's preferences, and the vulnerability checks
// (Heartbleed, CCS, ticketbleed, ROBOT, renegotiation, CRIME, POODLE,
// fallback, SWEET32, FREAK, DROWN, LOGJAM, BEAST, LUCKY13, RC4). No finding
// may be rated LOW or worse, none may mention CBC, and the scanner may not
// be left unsure (a WARN) of any result. The certificate checks (-S) are
// left out: the certificate is the operator's, not a default of the proxy.
func TestTLSScanner(t *testing.T) {
	scanner := ftptest.Tool(t, "testssl")
	g := startGate(t, "127.0.0.1:1", gateOptions{}) // the scanner never logs in
	for _, tc := range []struct{ name, addr, starttls string }{
		{"explicit", g.explicit, "ftp"},
		{"implicit", g.implicit, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			findings, text := testssl(t, scanner, tc.addr, tc.starttls)
			defer func() {
				if t.Failed() {
					t.Logf("testssl's report:\n%s", text)
				}
			}()
			seen := map[string]bool{}
			for _, f := range findings {
				seen[f.ID] = true
				switch {
				case f.ID == "engine_problem", f.Severity == "DEBUG" && f.ID == "service":
					// The machine's OpenSSL lacks GOST; the implicit
					// listener speaks FTP, not HTTP: facts of the scan.
				case f.Severity == "WARN":
					t.Errorf("the scanner was left unsure: %s: %s", f.ID, f.Finding)
				case f.Severity == "LOW" || f.Severity == "MEDIUM" || f.Severity == "HIGH" || f.Severity == "CRITICAL":
					t.Errorf("%s finding %s: %s", f.Severity, f.ID, f.Finding)
				case strings.Contains(strings.ToUpper(f.ID+" "+f.Finding), "CBC"):
					t.Errorf("CBC finding %s (%s): %s", f.ID, f.Severity, f.Finding)
				}
			}
			// The scan ran what it was asked to (a scanner that stopped
			// early would report nothing wrong).
			for _, id := range []string{"TLS1_2", "TLS1_3", "cipherlist_AVERAGE", "PFS", "LUCKY13", "BEAST", "ROBOT", "cipher_order"} {
				if !seen[id] {
					t.Errorf("the scan has no %s finding", id)
				}
			}
		})
	}
}

// finding is one entry of testssl.sh's flat JSON output.
type finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// testssl scans addr (127.0.0.1:port) with the testssl.sh at scanner and
// returns its findings and its report. It connects to that address only: no DNS look-up,
// no certificate revocation check, nothing outside loopback.
func testssl(t *testing.T, scanner, addr, starttls string) ([]finding, string) {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Fatalf("refusing to scan %q: loopback only", addr)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "findings.json")
	args := []string{"--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none", "--ip", host,
		"--connect-timeout", "10", "--openssl-timeout", "10", "--jsonfile", out,
		"-p", "-s", "-f", "-E", "-U", "-P"}
	if starttls != "" {
		args = append(args, "--starttls", starttls)
	}
	args = append(args, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, scanner, args...)
	cmd.Dir = dir
	// HEADER_MAXSLEEP: how long the scanner waits on an openssl s_client
	// that the server keeps open; an FTP server keeps it open for the
	// next command, so the default 5 s would be waited every time.
	cmd.Env = append(os.Environ(), "HEADER_MAXSLEEP=2", "TERM=dumb")
	// Its openssl children are killed with it, as a process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	text, err := cmd.CombinedOutput()
	t.Logf("testssl %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Second))
	b, rerr := os.ReadFile(out)
	if ctx.Err() != nil || rerr != nil {
		t.Fatalf("testssl: %v (%v)\n%s", err, rerr, text)
	}
	// testssl.sh's exit status counts findings; the JSON judges them.
	var fs []finding
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatalf("testssl's JSON: %v\n%s", err, b)
	}
	if len(fs) < 20 {
		t.Fatalf("testssl reported %d findings:\n%s", len(fs), text)
	}
	return fs, string(text)
}
