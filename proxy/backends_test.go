package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestEveryBackend runs the same client scenarios through ftpsgate in front
// of every server it is tested with: vsftpd, pure-ftpd and ProFTPD plain,
// and vsftpd and ProFTPD doing FTPS themselves (explicit and implicit),
// both requiring TLS session reuse on data connections. curl, lftp and
// Python's ftplib move files both ways; a Go client checks exact bytes, a
// REST offset and TYPE A.
func TestEveryBackend(t *testing.T) {
	beCerts := ftptest.NewCerts(t, ftptest.RSA)
	ftps := func(mode string) string {
		return fmt.Sprintf("tls = %q\n  ca_file = %q", mode, beCerts.CAFile)
	}
	for _, tc := range []struct {
		name    string
		start   func(t *testing.T) *ftptest.Server
		backend string
	}{
		{"vsftpd", func(t *testing.T) *ftptest.Server { return ftptest.Vsftpd(t, ftptest.VsftpdOptions{}) }, ""},
		{"pure-ftpd", func(t *testing.T) *ftptest.Server { return ftptest.PureFTPd(t) }, ""},
		{"proftpd", func(t *testing.T) *ftptest.Server { return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{}) }, ""},
		{"vsftpd explicit FTPS", func(t *testing.T) *ftptest.Server {
			return ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: beCerts})
		}, ftps("explicit")},
		{"vsftpd implicit FTPS", func(t *testing.T) *ftptest.Server {
			return ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: beCerts, Implicit: true})
		}, ftps("implicit")},
		{"proftpd explicit FTPS", func(t *testing.T) *ftptest.Server {
			return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{TLS: beCerts})
		}, ftps("explicit")},
		{"proftpd implicit FTPS", func(t *testing.T) *ftptest.Server {
			return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{TLS: beCerts, Implicit: true})
		}, ftps("implicit")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := tc.start(t)
			g := startGate(t, be.Addr, gateOptions{backend: tc.backend})
			dir := t.TempDir()
			local := filepath.Join(dir, "up.bin")
			sum := ftptest.RandomFile(t, local, 1<<20+13)

			// curl
			url := ftpURL("ftp", be.User, be.Password, g.explicit, "curl.bin")
			args := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}
			ftptest.Curl(t, append(args, "-T", local, url)...)
			out := filepath.Join(dir, "curl.down")
			ftptest.Curl(t, append(args, "-o", out, url)...)
			if ftptest.FileSHA256(t, out) != sum || ftptest.FileSHA256(t, filepath.Join(be.Root, "curl.bin")) != sum {
				t.Fatal("curl: files differ")
			}
			// lftp
			lout := filepath.Join(dir, "lftp.down")
			ls := ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf("open -u %s,%s ftp://%s; put %s -o lftp.bin; get lftp.bin -o %s; cls -1",
				be.User, be.Password, g.explicit, local, lout))
			if ftptest.FileSHA256(t, lout) != sum || !strings.Contains(ls, "lftp.bin") {
				t.Fatalf("lftp: file differs or listing %q", ls)
			}
			// ftplib
			res := ftptest.Python(t, ftptest.PythonSpec{
				Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
				User: be.User, Password: be.Password,
				Steps: []ftptest.PythonStep{
					{Op: "upload", Local: local, Remote: "py.bin"},
					{Op: "download", Remote: "py.bin"},
					{Op: "nlst"},
				},
			})
			if res.Steps[1].SHA256 != sum || !contains(res.Steps[2].Names, "py.bin") {
				t.Fatalf("ftplib: %+v", res.Steps)
			}
			// Go client: every byte value, CR and LF runs, a REST offset,
			// and TYPE A passing the server's conversion through unchanged.
			var exact bytes.Buffer
			for i := 0; i < 3000; i++ {
				exact.WriteByte(byte(i))
				if i%7 == 0 {
					exact.WriteString("\r\n\r\r\n\n")
				}
			}
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")
			d := c.DialData(c.EPSV())
			c.Cmd(150, "STOR exact.bin")
			d.WriteAll(t, exact.Bytes())
			c.Expect(226)
			if got, err := os.ReadFile(filepath.Join(be.Root, "exact.bin")); err != nil || !bytes.Equal(got, exact.Bytes()) {
				t.Fatalf("the backend stored %d bytes, not the %d sent (%v)", len(got), exact.Len(), err)
			}
			d = c.DialData(c.EPSV())
			c.Cmd(350, "REST 1000")
			c.Cmd(150, "RETR exact.bin")
			if got := ftptest.ReadAll(t, d); !bytes.Equal(got, exact.Bytes()[1000:]) {
				t.Fatalf("REST 1000: got %d bytes", len(got))
			}
			c.Expect(226)
			writeFile(t, be.Root, "text.txt", []byte("line one\nline two\n"))
			c.Cmd(200, "TYPE A")
			d = c.DialData(c.EPSV())
			c.Cmd(150, "RETR text.txt")
			if got := string(ftptest.ReadAll(t, d)); got != "line one\r\nline two\r\n" && got != "line one\nline two\n" {
				t.Fatalf("TYPE A: %q", got)
			}
			c.Expect(226)
			// ABOR in the middle of a download: 426 then 226, and the
			// backend's own replies to ABOR (which differ between
			// servers) never leak into the next command's.
			c.Cmd(200, "TYPE I")
			ftptest.RandomFile(t, filepath.Join(be.Root, "big.bin"), 48<<20)
			d = c.DialData(c.EPSV())
			c.Cmd(150, "RETR big.bin")
			if _, err := io.ReadFull(d, make([]byte, 100000)); err != nil {
				t.Fatal(err)
			}
			c.Send("ABOR")
			c.Expect(426)
			c.Expect(226)
			d = c.DialData(c.EPSV())
			c.Cmd(150, "RETR exact.bin")
			if got := ftptest.ReadAll(t, d); !bytes.Equal(got, exact.Bytes()) {
				t.Fatalf("after ABOR: got %d bytes", len(got))
			}
			c.Expect(226)
			c.Cmd(257, "PWD")
			c.Cmd(221, "QUIT")
			for _, e := range g.eventsOf(t, "transfer") {
				if e["result"] != "complete" && (e["result"] != "aborted" || e["path"] != "/big.bin") {
					t.Fatalf("transfer %v", e)
				}
			}
			g.requireResumed(t)
		})
	}
}
