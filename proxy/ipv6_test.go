package proxy_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestIPv6Clients: a listener on [::1] in front of an IPv4-only vsftpd.
// Clients use EPSV (PASV cannot carry an IPv6 address and gets 425) and
// EPRT |2| (on loopback, with active_allow_local); curl, lftp and ftplib
// move files both ways, checked by checksum.
func TestIPv6Clients(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{listen: "[::1]:0", listenerExtra: allowLocal})
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	sum := ftptest.RandomFile(t, local, 1<<20+7)

	t.Run("protocol", func(t *testing.T) {
		c := g.login(t, be.User, be.Password)
		if msg := c.Cmd(425, "PASV"); !strings.Contains(msg, "EPSV") {
			t.Fatalf("PASV over IPv6: %q", msg)
		}
		c.Cmd(522, "EPSV 1")
		c.Cmd(504, "PORT 127,0,0,1,156,64")    // not the client's address
		c.Cmd(504, "EPRT |1|127.0.0.1|40000|") // likewise
		writeFile(t, be.Root, "six.txt", []byte("over IPv6\n"))
		d := c.DialData(c.EPSV())
		c.Cmd(150, "RETR six.txt")
		if got := ftptest.ReadAll(t, d); string(got) != "over IPv6\n" {
			t.Fatalf("got %q", got)
		}
		c.Expect(226)
		if !strings.HasPrefix(d.TCP.RemoteAddr().String(), "[::1]:") {
			t.Fatalf("data connection to %s", d.TCP.RemoteAddr())
		}
		// Active mode over IPv6: EPRT |2| to the client's own address.
		ln, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c.Cmd(200, "EPRT |2|::1|%d|", ln.Addr().(*net.TCPAddr).Port)
		c.Cmd(150, "RETR six.txt")
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		ad, err := ln.Accept()
		if err != nil {
			t.Fatalf("the proxy did not connect: %v", err)
		}
		defer ad.Close()
		if got := ftptest.ReadAll(t, tls.Client(ad, c.TLS)); string(got) != "over IPv6\n" {
			t.Fatalf("active over IPv6: %q", got)
		}
		c.Expect(226)
		c.Cmd(221, "QUIT")
	})
	t.Run("curl", func(t *testing.T) {
		url := ftpURL("ftp", be.User, be.Password, g.explicit, "curl6.bin")
		args := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}
		ftptest.Curl(t, append(args, "-T", local, url)...)
		out := filepath.Join(dir, "curl6.down")
		ftptest.Curl(t, append(args, "-o", out, url)...)
		if ftptest.FileSHA256(t, out) != sum {
			t.Fatal("curl's file differs")
		}
	})
	t.Run("lftp", func(t *testing.T) {
		out := filepath.Join(dir, "lftp6.down")
		ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf("open -u %s,%s ftp://%s; put %s -o lftp6.bin; get lftp6.bin -o %s",
			be.User, be.Password, g.explicit, local, out))
		if ftptest.FileSHA256(t, out) != sum {
			t.Fatal("lftp's file differs")
		}
	})
	t.Run("ftplib", func(t *testing.T) {
		for _, active := range []bool{false, true} {
			res := ftptest.Python(t, ftptest.PythonSpec{
				Host: "::1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
				User: be.User, Password: be.Password, Active: active,
				Steps: []ftptest.PythonStep{
					{Op: "upload", Local: local, Remote: "py6.bin"},
					{Op: "download", Remote: "py6.bin"},
				},
			})
			if res.Steps[1].SHA256 != sum {
				t.Fatalf("ftplib (active %v): file differs", active)
			}
		}
	})
	for _, e := range g.eventsOf(t, "session_start") {
		if !strings.HasPrefix(e["client"].(string), "[::1]:") {
			t.Fatalf("session_start %v", e)
		}
	}
	g.requireResumed(t)
}

// TestIPv6Backend: an IPv6-only vsftpd behind an IPv4 listener, with the
// backend's data connections both passive (EPSV) and active (EPRT |2|).
func TestIPv6Backend(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{IPv6: true})
	for _, mode := range []string{"passive", "active"} {
		t.Run(mode, func(t *testing.T) {
			g := startGate(t, be.Addr, gateOptions{backend: fmt.Sprintf("data_mode = %q", mode)})
			dir := t.TempDir()
			local := filepath.Join(dir, "up.bin")
			sum := ftptest.RandomFile(t, local, 1<<20+1)
			url := ftpURL("ftp", be.User, be.Password, g.explicit, mode+".bin")
			args := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}
			ftptest.Curl(t, append(args, "-T", local, url)...)
			out := filepath.Join(dir, "down.bin")
			ftptest.Curl(t, append(args, "-o", out, url)...)
			if ftptest.FileSHA256(t, out) != sum || ftptest.FileSHA256(t, filepath.Join(be.Root, mode+".bin")) != sum {
				t.Fatal("files differ")
			}
			for _, e := range g.eventsOf(t, "login") {
				if !strings.HasPrefix(e["backend_address"].(string), "[::1]:") {
					t.Fatalf("login event %v", e)
				}
			}
			log, err := os.ReadFile(be.Log)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]string{"passive": `"EPSV"`, "active": `"EPRT |2|::1|`}[mode]; !strings.Contains(string(log), want) {
				t.Fatalf("vsftpd never saw %s:\n%s", want, log)
			}
		})
	}
}
