package proxy_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Clients that do not resume the control connection's TLS session on
// their data connections, and clients as users run them, through ftpsgate
// in front of a real vsftpd.

// TestRefusedDataConnectionReason: a data connection refused for its TLS
// session fails, in each client, with the transfer command's 522 (issue
// 15, item 4), not with a reset that the client reports first while the
// 522 waits, unread, for its next command. No data byte goes to a refused
// connection, the backend receives no byte of a refused upload, and the
// session's next command works.
func TestRefusedDataConnectionReason(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("the data\n"))
	g := startGate(t, be.Addr, gateOptions{})
	dir := t.TempDir()
	up := filepath.Join(dir, "up.bin")
	ftptest.RandomFile(t, up, 1<<20) // more than the sockets buffer
	const reuse = "522 Data connection refused: TLS session reuse required; the data connection must resume the control connection's TLS session (see ftpsgate's README for your client)."
	noByte := func(t *testing.T, name string) {
		t.Helper()
		if fi, err := os.Stat(filepath.Join(be.Root, name)); err == nil && fi.Size() > 0 {
			t.Fatalf("the backend received %d bytes of the refused upload %s", fi.Size(), name)
		}
	}

	t.Run("ftplib, the seed's snippet", func(t *testing.T) {
		// The article's code as a new user runs it, with the CA of the
		// proxy's certificate and its address; only the transfer varies.
		script := writeFile(t, t.TempDir(), "seed.py", []byte(`import ssl, sys
from ftplib import FTP_TLS

host, port, user, password, cafile, upload = sys.argv[1:]
ftps = FTP_TLS(context=ssl.create_default_context(cafile=cafile))
ftps.connect(host, int(port))
ftps.login(user=user, passwd=password)
ftps.prot_p()  # Switch to secure data connection
if upload:
    with open(upload, "rb") as f:
        ftps.storbinary("STOR seed-up.bin", f)
else:
    # List files in the current directory
    ftps.retrlines('LIST')
ftps.quit()
`))
		for _, upload := range []string{"", up} {
			_, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "python3"), script,
				"127.0.0.1", strconv.Itoa(port(t, g.explicit)), be.User, be.Password, g.certs.CAFile, upload)
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if err == nil || lines[len(lines)-1] != "ftplib.error_perm: "+reuse {
				t.Fatalf("upload %q: %v; want the 522 as ftplib.error_perm, got:\n%s", upload, err, errOut)
			}
		}
		noByte(t, "seed-up.bin")
	})

	t.Run("ftplib, stock, then the next command", func(t *testing.T) {
		res := ftptest.Python(t, ftptest.PythonSpec{
			Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
			User: be.User, Password: be.Password, Stock: true,
			Steps: []ftptest.PythonStep{
				{Op: "download", Remote: "f.txt", MayFail: true},
				{Op: "upload", Local: up, Remote: "py-up.bin", MayFail: true},
				{Op: "cmd", Line: "PWD"},
			},
		})
		for _, st := range res.Steps[:2] {
			if st.Error != "error_perm: "+reuse || st.Size != 0 {
				t.Fatalf("stock ftplib %s: error %q, %d bytes", st.Op, st.Error, st.Size)
			}
		}
		if !strings.HasPrefix(res.Steps[2].Reply, "257 ") || !strings.HasPrefix(res.Quit, "221") {
			t.Fatalf("after the refusals: PWD %q, QUIT %q", res.Steps[2].Reply, res.Quit)
		}
		noByte(t, "py-up.bin")
	})

	t.Run("Go client without a session cache", func(t *testing.T) {
		c := g.login(t, be.User, be.Password)
		fresh := g.certs.ClientConfig()
		fresh.ClientSessionCache = nil
		d := c.DialDataTLS(c.EPSV(), fresh)
		c.Cmd(150, "RETR f.txt")
		refusedCleanly(t, d)
		if msg := c.Expect(522); "522 "+msg != reuse {
			t.Fatalf("download: 522 %q", msg)
		}
		d = c.DialDataTLS(c.EPSV(), fresh)
		c.Cmd(150, "STOR go-up.bin")
		data, err := os.ReadFile(up)
		if err != nil {
			t.Fatal(err)
		}
		d.WriteAll(t, data) // no write error: the proxy reads what the client sends
		if msg := c.Expect(522); "522 "+msg != reuse {
			t.Fatalf("upload: 522 %q", msg)
		}
		c.Cmd(257, "PWD")
		noByte(t, "go-up.bin")
	})

	t.Run("curl --no-sessionid", func(t *testing.T) {
		// curl finishes its data handshake before it sends the transfer
		// command, which gets the 522; curl prints its code.
		curl := func(args ...string) string {
			_, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "curl"), append([]string{
				"--silent", "--show-error", "--ssl-reqd", "--no-sessionid", "--cacert", g.certs.CAFile}, args...)...)
			if err == nil {
				t.Fatalf("curl %q was served", args)
			}
			return strings.TrimSpace(errOut)
		}
		if got := curl("-o", filepath.Join(dir, "curl.down"), ftpURL("ftp", be.User, be.Password, g.explicit, "f.txt")); got != "curl: (19) RETR response: 522" {
			t.Fatalf("download: %q", got)
		}
		if got := curl("-T", up, ftpURL("ftp", be.User, be.Password, g.explicit, "curl-up.bin")); got != "curl: (25) Failed FTP upload: 522" {
			t.Fatalf("upload: %q", got)
		}
		if got := curl(ftpURL("ftp", be.User, be.Password, g.explicit, "")); got != "curl: (19) RETR response: 522" {
			t.Fatalf("listing: %q", got)
		}
		if got := curl("-v", "-o", filepath.Join(dir, "curl.down"), ftpURL("ftp", be.User, be.Password, g.explicit, "f.txt")); !strings.Contains(got, "\n< "+reuse) {
			t.Fatalf("curl -v does not show the 522's text:\n%s", got)
		}
		noByte(t, "curl-up.bin")
	})

	t.Run("wget --no-ftps-resume-ssl", func(t *testing.T) {
		_, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "wget"), "--tries=1", "--no-ftps-resume-ssl",
			"--ca-certificate="+g.certs.CAFile, "-O", filepath.Join(dir, "wget.down"), ftpURL("ftps", be.User, be.Password, g.explicit, "f.txt"))
		if err == nil || !strings.Contains(errOut, "Data transfer aborted.") {
			t.Fatalf("wget: %v\n%s", err, errOut)
		}
	})

	t.Run("Commons Net FTPSClient", func(t *testing.T) {
		res := ftptest.Java(t, ftptest.JavaSpec{
			Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile, User: be.User, Password: be.Password,
			Steps: []string{"download:f.txt", "upload:" + up + ":java-up.bin", "list"},
		})
		for _, st := range res.Steps {
			if st.OK || st.Error != "" || st.Reply != reuse || st.Size != 0 {
				t.Fatalf("Commons Net %s: ok %v, exception %q, reply %q, %d bytes", st.Op, st.OK, st.Error, st.Reply, st.Size)
			}
		}
		if !strings.HasPrefix(res.Quit, "221") {
			t.Fatalf("QUIT: %q", res.Quit)
		}
		noByte(t, "java-up.bin")
	})

	t.Run("uploads, no lingering data connections", func(t *testing.T) {
		// With no data connection lingering after its close, an upload
		// is read to its end before the refusal closes it: else the
		// client's bytes arriving after the close would meet a reset,
		// and its write would fail before it reads the 522.
		g := startGate(t, be.Addr, gateOptions{extra: "limits {\n  max_lingering_data_legs = 0\n}"})
		c := g.login(t, be.User, be.Password)
		fresh := g.certs.ClientConfig()
		fresh.ClientSessionCache = nil
		d := c.DialDataTLS(c.EPSV(), fresh)
		c.Cmd(150, "STOR nolinger.bin")
		d.WriteAll(t, mustRead(t, up))
		if msg := c.Expect(522); "522 "+msg != reuse {
			t.Fatalf("upload: 522 %q", msg)
		}
		res := ftptest.Python(t, ftptest.PythonSpec{
			Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
			User: be.User, Password: be.Password, Stock: true,
			Steps: []ftptest.PythonStep{{Op: "upload", Local: up, Remote: "nolinger-py.bin", MayFail: true}},
		})
		if st := res.Steps[0]; st.Error != "error_perm: "+reuse {
			t.Fatalf("stock ftplib upload: error %q", st.Error)
		}
		noByte(t, "nolinger.bin")
		noByte(t, "nolinger-py.bin")
	})

	t.Run("refused uploads, bounded", func(t *testing.T) {
		// What a refused upload may send is bounded in bytes (64 MiB)
		// and in time without progress (data_stall): past either, its
		// connection is reset, and the 522 still comes.
		g := startGate(t, be.Addr, gateOptions{extra: "timeouts {\n  data_stall = \"1s\"\n}"})
		c := g.login(t, be.User, be.Password)
		fresh := g.certs.ClientConfig()
		fresh.ClientSessionCache = nil

		d := c.DialDataTLS(c.EPSV(), fresh)
		c.Cmd(150, "STOR endless.bin")
		d.SetDeadline(time.Now().Add(time.Minute))
		chunk := make([]byte, 1<<20)
		var sent int
		var err error
		for sent < 100<<20 && err == nil {
			var n int
			n, err = d.Write(chunk)
			sent += n
		}
		if err == nil || sent < 64<<20 {
			t.Fatalf("wrote %d MiB to a refused upload, then %v; want a reset past 64 MiB", sent>>20, err)
		}
		if msg := c.Expect(522); "522 "+msg != reuse {
			t.Fatalf("endless upload: 522 %q", msg)
		}

		d = c.DialDataTLS(c.EPSV(), fresh)
		c.Cmd(150, "STOR stalled.bin")
		if _, err := d.Write([]byte("a few bytes, then nothing")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if msg := c.Expect(522); "522 "+msg != reuse {
			t.Fatalf("stalled upload: 522 %q", msg)
		}
		if e := time.Since(start); e < 500*time.Millisecond {
			t.Fatalf("522 after %s, before the stall deadline", e)
		}
		if _, err := readAllErr(d); err == nil {
			t.Fatal("a stalled refused upload was closed cleanly, not reset")
		}
		noByte(t, "endless.bin")
		noByte(t, "stalled.bin")
		if !g.logged("refused upload's data connection reset") {
			t.Fatal("no log line for the reset refused uploads")
		}
	})

	for _, e := range g.eventsOf(t, "transfer") {
		if e["code"] != float64(522) || e["result"] != "failed" || e["bytes"] != float64(0) {
			t.Fatalf("transfer event %v", e)
		}
	}
}

// TestRcloneThroughGate: rclone, whose connections share one TLS session
// cache, copies up, checks, copies down and syncs with four transfers at
// once, the certificate verified; none of its data connections is refused
// (issue 15, item 3). Retries are off, so a refusal fails the run.
func TestRcloneThroughGate(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	src := filepath.Join(t.TempDir(), "src")
	sums := map[string]string{}
	for i := range 40 {
		rel := fmt.Sprintf("f%02d.bin", i)
		if i%5 == 0 {
			rel = filepath.Join("sub", rel)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		sums[rel] = ftptest.RandomFile(t, filepath.Join(src, rel), int64(i*7919%300000+1))
	}
	rclone := func(caFile string, args ...string) error {
		env := []string{"RCLONE_CONFIG_GATE_TYPE=ftp", "RCLONE_CONFIG_GATE_HOST=127.0.0.1",
			"RCLONE_CONFIG_GATE_PORT=" + strconv.Itoa(port(t, g.explicit)), "RCLONE_CONFIG_GATE_USER=" + be.User,
			"RCLONE_CONFIG_GATE_PASS=" + ftptest.RcloneObscure(t, be.Password), "RCLONE_CONFIG_GATE_EXPLICIT_TLS=true"}
		_, errOut, err := ftptest.Rclone(t, caFile, env, append([]string{"--transfers", "4", "--retries", "1", "--low-level-retries", "1"}, args...)...)
		if err != nil {
			return fmt.Errorf("rclone %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return nil
	}
	// The certificate is verified: with another CA, rclone refuses.
	if err := rclone(ftptest.NewCerts(t, ftptest.ECDSA).CAFile, "lsd", "gate:"); err == nil {
		t.Fatal("rclone accepted a certificate it cannot verify")
	}
	for _, args := range [][]string{
		{"copy", src, "gate:tree"},
		{"check", src, "gate:tree"},
	} {
		if err := rclone(g.certs.CAFile, args...); err != nil {
			t.Fatal(err)
		}
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := rclone(g.certs.CAFile, "copy", "gate:tree", back); err != nil {
		t.Fatal(err)
	}
	for rel, sum := range sums {
		if got := ftptest.FileSHA256(t, filepath.Join(back, rel)); got != sum {
			t.Fatalf("%s differs after the round trip", rel)
		}
	}
	gone := filepath.Join("sub", "f05.bin")
	if err := os.Remove(filepath.Join(src, gone)); err != nil {
		t.Fatal(err)
	}
	if err := rclone(g.certs.CAFile, "sync", src, "gate:tree"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(be.Root, "tree", gone)); !os.IsNotExist(err) {
		t.Fatalf("sync left %s on the backend: %v", gone, err)
	}
	for rel, sum := range sums {
		if rel == gone {
			continue
		}
		if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "tree", rel)); got != sum {
			t.Fatalf("%s differs on the backend", rel)
		}
	}
	for _, e := range g.eventsOf(t, "transfer") {
		if e["code"] == float64(522) {
			t.Fatalf("a data connection was refused: %v", e)
		}
	}
	g.requireResumed(t)
}

// TestCompatibilityMatrix runs every row of the README's compatibility
// matrix (Tested servers and clients) against vsftpd, through a proxy with
// the default settings and through one with require_session_reuse = false,
// and checks that the README states what happened. A row works when an
// upload (where the client uploads) and a download arrive whole.
func TestCompatibilityMatrix(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	strict := startGate(t, be.Addr, gateOptions{})
	lax := startGate(t, be.Addr, gateOptions{listenerExtra: "require_session_reuse = false"})
	dir := t.TempDir()
	local := filepath.Join(dir, "local.bin")
	sum := ftptest.RandomFile(t, local, 300<<10+11)
	writeFile(t, be.Root, "matrix.bin", mustRead(t, local))

	// Each row's client uploads local as name (unless it cannot upload)
	// and downloads matrix.bin; it returns "" when it did, else what the
	// client said.
	type row struct {
		name       string // the README's first cell
		works      bool   // with the default settings
		wantOutput string // what the client says when refused
		run        func(t *testing.T, g *gate, name string) string
	}
	downloaded := func(t *testing.T, path string) bool {
		_, err := os.Stat(path)
		return err == nil && ftptest.FileSHA256(t, path) == sum
	}
	uploaded := func(t *testing.T, name string) bool {
		_, err := os.Stat(filepath.Join(be.Root, name))
		return err == nil && ftptest.FileSHA256(t, filepath.Join(be.Root, name)) == sum
	}
	curl := func(extra ...string) func(t *testing.T, g *gate, name string) string {
		return func(t *testing.T, g *gate, name string) string {
			base := append([]string{"--silent", "--show-error", "--ssl-reqd", "--cacert", g.certs.CAFile}, extra...)
			bin := ftptest.Tool(t, "curl")
			if _, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", bin, append(base, "-T", local, ftpURL("ftp", be.User, be.Password, g.explicit, name))...); err != nil {
				return strings.TrimSpace(errOut)
			}
			out := filepath.Join(t.TempDir(), "down")
			if _, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", bin, append(base, "-o", out, ftpURL("ftp", be.User, be.Password, g.explicit, "matrix.bin"))...); err != nil {
				return strings.TrimSpace(errOut)
			}
			if !uploaded(t, name) || !downloaded(t, out) {
				return "files differ"
			}
			return ""
		}
	}
	lftp := func(priority string) func(t *testing.T, g *gate, name string) string {
		return func(t *testing.T, g *gate, name string) string {
			out := filepath.Join(t.TempDir(), "down")
			ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf(`set ssl:priority %q; open -u %s,%s ftp://%s; put %s -o %s; get matrix.bin -o %s`,
				priority, be.User, be.Password, g.explicit, local, name, out))
			if !uploaded(t, name) || !downloaded(t, out) {
				return "files differ"
			}
			return ""
		}
	}
	python := func(stock bool) func(t *testing.T, g *gate, name string) string {
		return func(t *testing.T, g *gate, name string) string {
			res := ftptest.Python(t, ftptest.PythonSpec{
				Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
				User: be.User, Password: be.Password, Stock: stock,
				Steps: []ftptest.PythonStep{
					{Op: "upload", Local: local, Remote: name, MayFail: true},
					{Op: "download", Remote: "matrix.bin", MayFail: true},
				},
			})
			for _, st := range res.Steps {
				if st.Error != "" {
					return st.Error
				}
			}
			if !uploaded(t, name) || res.Steps[1].SHA256 != sum {
				return "files differ"
			}
			return ""
		}
	}
	rows := []row{
		{name: "curl 7.88.1 (OpenSSL 3), TLS 1.3", works: true, run: curl()},
		{name: "curl 7.88.1 (OpenSSL 3), TLS 1.2 (`--tls-max 1.2`)", wantOutput: "curl: (25) Failed FTP upload: 522", run: curl("--tls-max", "1.2")},
		{name: "lftp 4.9.2 (GnuTLS), TLS 1.3", works: true, run: lftp("NORMAL")},
		{name: "lftp 4.9.2 (GnuTLS), TLS 1.2", works: true, run: lftp("NORMAL:-VERS-TLS1.3")},
		{name: "wget 1.21.3 (GnuTLS), download only", works: true, run: func(t *testing.T, g *gate, name string) string {
			out := filepath.Join(t.TempDir(), "down")
			if _, errOut, err := ftptest.RunErr(ftptest.ClientTimeout, "", ftptest.Tool(t, "wget"), "--tries=1", "--quiet",
				"--ca-certificate="+g.certs.CAFile, "-O", out, ftpURL("ftps", be.User, be.Password, g.explicit, "matrix.bin")); err != nil {
				return strings.TrimSpace(errOut)
			}
			if !downloaded(t, out) {
				return "file differs"
			}
			return ""
		}},
		{name: "rclone 1.60.1 (Go), `--transfers 4`", works: true, run: func(t *testing.T, g *gate, name string) string {
			env := []string{"RCLONE_CONFIG_GATE_TYPE=ftp", "RCLONE_CONFIG_GATE_HOST=127.0.0.1",
				"RCLONE_CONFIG_GATE_PORT=" + strconv.Itoa(port(t, g.explicit)), "RCLONE_CONFIG_GATE_USER=" + be.User,
				"RCLONE_CONFIG_GATE_PASS=" + ftptest.RcloneObscure(t, be.Password), "RCLONE_CONFIG_GATE_EXPLICIT_TLS=true"}
			out := filepath.Join(t.TempDir(), "down")
			for _, args := range [][]string{{"copyto", local, "gate:" + name}, {"copyto", "gate:matrix.bin", out}} {
				if _, errOut, err := ftptest.Rclone(t, g.certs.CAFile, env, append([]string{"--transfers", "4", "--retries", "1", "--low-level-retries", "1"}, args...)...); err != nil {
					return strings.TrimSpace(errOut)
				}
			}
			if !uploaded(t, name) || !downloaded(t, out) {
				return "files differ"
			}
			return ""
		}},
		{name: "Python 3.11 `ftplib.FTP_TLS`, stock", wantOutput: "error_perm: 522 Data connection refused", run: python(true)},
		{name: "Python 3.11 `ftplib`, the README's subclass", works: true, run: python(false)},
		{name: "Apache Commons Net 3.9 `FTPSClient` (OpenJDK 17)", wantOutput: "522 Data connection refused", run: func(t *testing.T, g *gate, name string) string {
			res := ftptest.Java(t, ftptest.JavaSpec{
				Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile, User: be.User, Password: be.Password,
				Steps: []string{"upload:" + local + ":" + name, "download:matrix.bin"},
			})
			for _, st := range res.Steps {
				if !st.OK {
					return st.Reply + st.Error
				}
			}
			if !uploaded(t, name) || res.Steps[1].SHA256 != sum {
				return "files differ"
			}
			return ""
		}},
	}
	readme := readmeMatrix(t)
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got := r.run(t, strict, fmt.Sprintf("strict-%d.bin", i))
			switch {
			case r.works && got != "":
				t.Fatalf("with the default settings: %s", got)
			case !r.works && !strings.Contains(got, r.wantOutput):
				t.Fatalf("with the default settings: %q, want %q", got, r.wantOutput)
			}
			if got := r.run(t, lax, fmt.Sprintf("lax-%d.bin", i)); got != "" {
				t.Fatalf("with require_session_reuse = false: %s", got)
			}
			cells, ok := readme[r.name]
			want := "refused"
			if r.works {
				want = "works"
			}
			if !ok || !strings.HasPrefix(cells[0], want) || !strings.HasPrefix(cells[1], "works") ||
				(!r.works && !strings.Contains(cells[0], r.wantOutput)) {
				t.Fatalf("README's row %q says %q; the test saw %s with the defaults (%q), works without reuse", r.name, cells, want, got)
			}
		})
	}
	for _, e := range lax.eventsOf(t, "transfer") {
		if e["result"] != "complete" {
			t.Fatalf("without reuse required: %v", e)
		}
	}
}

// readmeMatrix reads the compatibility matrix of README.md: for each
// client, the cells after its name.
func readmeMatrix(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "| client | with the defaults"):
			in = true
		case in && !strings.HasPrefix(line, "|"):
			return rows
		case in && !strings.HasPrefix(line, "| ---"):
			cells := strings.Split(strings.Trim(line, "|"), " | ")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows[cells[0]] = cells[1:]
		}
	}
	if len(rows) == 0 {
		t.Fatal("README.md has no compatibility matrix")
	}
	return rows
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
