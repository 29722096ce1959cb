package proxy_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestFTPSBackends: ftpsgate in front of a real vsftpd doing FTPS itself,
// explicit and implicit, under TLS 1.2 and TLS 1.3, with vsftpd's
// require_ssl_reuse=YES: every backend data connection must resume the
// session's own backend control TLS session. One session moves several
// files each way (each data connection needs a ticket vsftpd accepts), then
// curl and lftp do the same through the gate.
func TestFTPSBackends(t *testing.T) {
	beCerts := ftptest.NewCerts(t, ftptest.RSA)
	for _, mode := range []string{"explicit", "implicit"} {
		be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: beCerts, Implicit: mode == "implicit"})
		for _, version := range []string{"1.2", "1.3"} {
			t.Run(mode+"/TLS"+version, func(t *testing.T) {
				g := startGate(t, be.Addr, gateOptions{backend: fmt.Sprintf(`tls = %q
  ca_file = %q
  tls_min_version = %q
  tls_max_version = %q`, mode, beCerts.CAFile, version, version)})
				dir := t.TempDir()
				c := g.login(t, be.User, be.Password)
				c.Cmd(200, "TYPE I")
				sums := map[string]string{}
				for i := 0; i < 4; i++ {
					name := fmt.Sprintf("f%d-%s.bin", i, version)
					local := filepath.Join(dir, name)
					sums[name] = ftptest.RandomFile(t, local, int64(i*300000+11))
					data, err := os.ReadFile(local)
					if err != nil {
						t.Fatal(err)
					}
					d := c.DialData(c.EPSV())
					c.Cmd(150, "STOR %s", name)
					d.WriteAll(t, data)
					c.Expect(226)
				}
				for name, sum := range sums {
					if got := ftptest.FileSHA256(t, filepath.Join(be.Root, name)); got != sum {
						t.Fatalf("%s differs on the backend", name)
					}
					d := c.DialData(c.EPSV())
					c.Cmd(150, "RETR %s", name)
					if got := fmt.Sprintf("%x", sha256.Sum256(ftptest.ReadAll(t, d))); got != sum {
						t.Fatalf("%s differs after download", name)
					}
					c.Expect(226)
				}
				d := c.DialData(c.EPSV())
				c.Cmd(150, "LIST")
				if list := string(ftptest.ReadAll(t, d)); !strings.Contains(list, "f3-"+version+".bin") {
					t.Fatalf("LIST %q", list)
				}
				c.Expect(226)
				c.Cmd(221, "QUIT")

				url := ftpURL("ftp", be.User, be.Password, g.explicit, "f1-"+version+".bin")
				out := filepath.Join(dir, "curl.down")
				ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-o", out, url)
				if got := ftptest.FileSHA256(t, out); got != sums["f1-"+version+".bin"] {
					t.Fatal("curl's download differs")
				}
				ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf("open -u %s,%s ftp://%s; put %s -o lftp-%s.bin",
					be.User, be.Password, g.explicit, out, version))
				if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "lftp-"+version+".bin")); got != sums["f1-"+version+".bin"] {
					t.Fatal("lftp's upload differs")
				}
				if g.logged("backend data connection failed") || g.logged("transfer failed") {
					t.Fatal("a backend data connection failed")
				}
			})
		}
	}
}

// TestFTPSBackendRefusals: the proxy will not talk to an FTPS backend it
// cannot trust. A certificate from an unknown CA, or naming another host,
// ends the session with 421 and a log line; insecure_skip_verify accepts it
// by explicit choice, with a warning at start. A backend that appends a
// forged line after its 234 (STARTTLS injection toward the proxy) and one
// that does not speak TLS are refused too.
func TestFTPSBackendRefusals(t *testing.T) {
	beCerts := ftptest.NewCerts(t, ftptest.ECDSA)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: beCerts})
	forged := startScriptedBackend(t, &scriptedBackend{authReply: "234 go ahead\r\n230 forged login\r\n"})
	plain := startScriptedBackend(t, &scriptedBackend{})
	for _, tc := range []struct {
		name, addr, backend, log string
		detail                   string // in the log line's error
	}{
		{"unknown CA", be.Addr, `tls = "explicit"`, "backend AUTH TLS failed", "unknown authority"},
		{"wrong server name", be.Addr, fmt.Sprintf("tls = \"explicit\"\n  ca_file = %q\n  server_name = \"ftp.example.com\"", beCerts.CAFile), "backend AUTH TLS failed", "not ftp.example.com"},
		{"implicit TLS toward an explicit server", be.Addr, fmt.Sprintf("tls = \"implicit\"\n  ca_file = %q", beCerts.CAFile), "backend TLS handshake failed", ""},
		{"forged line after 234", forged.ln.Addr().String(), `tls = "explicit"`, "backend AUTH TLS failed", "plaintext after the 234"},
		{"no TLS on the backend", plain.ln.Addr().String(), `tls = "explicit"`, "backend AUTH TLS failed", "no TLS here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGate(t, tc.addr, gateOptions{backend: tc.backend})
			c := ftptest.Dial(t, g.explicit)
			c.AuthTLS(g.certs.ClientConfig())
			if msg := c.Cmd(421, "USER %s", be.User); !strings.Contains(msg, "TLS with the FTP server failed") {
				t.Fatalf("421 text %q", msg)
			}
			entries := g.logs.FilterMessage(tc.log).All()
			if len(entries) == 0 {
				t.Fatalf("no %q log line", tc.log)
			}
			if e := fmt.Sprint(entries[0].ContextMap()["error"]); !strings.Contains(e, tc.detail) {
				t.Fatalf("log error %q lacks %q", e, tc.detail)
			}
		})
	}
	t.Run("insecure_skip_verify", func(t *testing.T) {
		g := startGate(t, be.Addr, gateOptions{backend: "tls = \"explicit\"\n  insecure_skip_verify = true"})
		if !g.logged("backend certificate not verified (insecure_skip_verify)") {
			t.Fatal("no warning at start")
		}
		c := g.login(t, be.User, be.Password)
		c.Cmd(221, "QUIT")
	})
}
