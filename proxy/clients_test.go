package proxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Real clients through ftpsgate in front of a real plaintext vsftpd; every
// transfer checked by checksum.

func TestCurlThroughGate(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	sum := ftptest.RandomFile(t, local, 3<<20+17)
	explicit := func(path string) string { return ftpURL("ftp", be.User, be.Password, g.explicit, path) }
	tlsArgs := []string{"--ssl-reqd", "--cacert", g.certs.CAFile}

	t.Run("EPSV upload and download", func(t *testing.T) {
		ftptest.Curl(t, append(tlsArgs, "-T", local, explicit("epsv.bin"))...)
		if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "epsv.bin")); got != sum {
			t.Fatalf("uploaded file differs on the backend")
		}
		out := filepath.Join(dir, "epsv.down")
		ftptest.Curl(t, append(tlsArgs, "-o", out, explicit("epsv.bin"))...)
		if got := ftptest.FileSHA256(t, out); got != sum {
			t.Fatalf("downloaded file differs")
		}
	})
	t.Run("PASV upload and download", func(t *testing.T) {
		ftptest.Curl(t, append(tlsArgs, "--disable-epsv", "-T", local, explicit("pasv.bin"))...)
		out := filepath.Join(dir, "pasv.down")
		ftptest.Curl(t, append(tlsArgs, "--disable-epsv", "-o", out, explicit("pasv.bin"))...)
		if got := ftptest.FileSHA256(t, out); got != sum {
			t.Fatalf("downloaded file differs")
		}
	})
	t.Run("implicit FTPS", func(t *testing.T) {
		url := ftpURL("ftps", be.User, be.Password, g.implicit, "implicit.bin")
		ftptest.Curl(t, "--cacert", g.certs.CAFile, "-T", local, url)
		out := filepath.Join(dir, "implicit.down")
		ftptest.Curl(t, "--cacert", g.certs.CAFile, "-o", out, url)
		if got := ftptest.FileSHA256(t, out); got != sum {
			t.Fatalf("downloaded file differs")
		}
	})
	t.Run("LIST and NLST", func(t *testing.T) {
		list := ftptest.Curl(t, append(tlsArgs, explicit("/"))...)
		if !strings.Contains(list, "epsv.bin") || !strings.Contains(list, "-rw-") {
			t.Fatalf("LIST output %q lacks epsv.bin", list)
		}
		nlst := ftptest.Curl(t, append(tlsArgs, "--list-only", explicit("/"))...)
		names := strings.Fields(nlst)
		sort.Strings(names)
		if strings.Join(names, " ") != "epsv.bin implicit.bin pasv.bin" {
			t.Fatalf("NLST gave %q", nlst)
		}
	})
	t.Run("REST and RETR", func(t *testing.T) {
		out := filepath.Join(dir, "rest.down")
		full, err := os.ReadFile(local)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, full[:1000001], 0o644); err != nil {
			t.Fatal(err)
		}
		ftptest.Curl(t, append(tlsArgs, "-C", "-", "-o", out, explicit("epsv.bin"))...)
		if got := ftptest.FileSHA256(t, out); got != sum {
			t.Fatalf("resumed download differs")
		}
	})
	if evs := g.eventsOf(t, "transfer"); len(evs) < 9 {
		t.Fatalf("want at least 9 transfer audit events, got %d", len(evs))
	}
	g.requireResumed(t)
}

// requireResumed checks that every TLS transfer's data connection resumed
// its control connection's TLS session: the client under test resumes.
func (g *gate) requireResumed(t *testing.T) {
	t.Helper()
	n := 0
	for _, e := range g.eventsOf(t, "transfer") {
		if e["data_tls"] == true {
			n++
			if e["data_tls_resumed"] != true {
				t.Fatalf("a data connection did not resume its control session: %v", e)
			}
		}
	}
	if n == 0 {
		t.Fatal("no TLS transfer in the audit")
	}
}

func TestLftpMirrorThroughGate(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	src := filepath.Join(t.TempDir(), "tree")
	sums := map[string]string{}
	for i := 0; i < 120; i++ {
		sub := ""
		if i%4 == 0 {
			sub = fmt.Sprintf("sub%d", i%3)
		}
		if err := os.MkdirAll(filepath.Join(src, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		rel := filepath.Join(sub, fmt.Sprintf("f%03d.bin", i))
		sums[rel] = ftptest.RandomFile(t, filepath.Join(src, rel), int64(i*i*37%200000))
	}
	url := fmt.Sprintf("ftp://%s", g.explicit)
	login := fmt.Sprintf("open -u %s,%s %s; ", be.User, be.Password, url)
	ftptest.Lftp(t, g.certs.CAFile, login+"mirror --reverse --verbose=0 "+src+" /tree")
	back := filepath.Join(t.TempDir(), "back")
	ftptest.Lftp(t, g.certs.CAFile, login+"mirror --verbose=0 /tree "+back)
	for rel, sum := range sums {
		if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "tree", rel)); got != sum {
			t.Errorf("%s differs on the backend", rel)
		}
		if got := ftptest.FileSHA256(t, filepath.Join(back, rel)); got != sum {
			t.Errorf("%s differs after the round trip", rel)
		}
	}
	g.requireResumed(t)
}

func TestPythonFTPLibThroughGate(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	dir := t.TempDir()
	local := filepath.Join(dir, "data.bin")
	sum := ftptest.RandomFile(t, local, 2<<20+3)
	small := writeFile(t, dir, "small.txt", []byte("appended\n"))
	rest := int64(700001)

	for _, implicit := range []bool{false, true} {
		addr := g.explicit
		if implicit {
			addr = g.implicit
		}
		t.Run(fmt.Sprintf("implicit=%v", implicit), func(t *testing.T) {
			name := fmt.Sprintf("py-%v.bin", implicit)
			res := ftptest.Python(t, ftptest.PythonSpec{
				Host: "127.0.0.1", Port: port(t, addr), CAFile: g.certs.CAFile,
				User: be.User, Password: be.Password, Implicit: implicit,
				Steps: []ftptest.PythonStep{
					{Op: "upload", Local: local, Remote: name},
					{Op: "download", Remote: name},
					{Op: "download", Remote: name, Rest: &rest},
					{Op: "upload", Local: local, Remote: "rest-" + name}, // whole file, then
					{Op: "upload", Local: local, Remote: "rest-" + name, Rest: &rest},
					{Op: "download", Remote: "rest-" + name},
					{Op: "append", Local: small, Remote: "log-" + name},
					{Op: "append", Local: small, Remote: "log-" + name},
					{Op: "stou", Local: small},
					{Op: "list"},
					{Op: "nlst"},
				},
			})
			st := res.Steps
			if st[0].Reply[:3] != "226" || st[1].SHA256 != sum {
				t.Fatalf("upload/download: %+v / %+v", st[0], st[1])
			}
			if st[2].Size != 2<<20+3-rest {
				t.Fatalf("REST %d download got %d bytes", rest, st[2].Size)
			}
			if st[5].SHA256 != sum {
				t.Fatalf("REST+STOR produced a different file")
			}
			log, err := os.ReadFile(filepath.Join(be.Root, "log-"+name))
			if err != nil || string(log) != "appended\nappended\n" {
				t.Fatalf("APPE twice gave %q (%v)", log, err)
			}
			if !strings.HasPrefix(st[8].Reply, "226") {
				t.Fatalf("STOU: %q", st[8].Reply)
			}
			if !strings.Contains(strings.Join(st[9].Lines, "\n"), name) {
				t.Fatalf("LIST lacks %s: %q", name, st[9].Lines)
			}
			if !contains(st[10].Names, name) || !strings.HasPrefix(res.Quit, "221") {
				t.Fatalf("NLST %q, QUIT %q", st[10].Names, res.Quit)
			}
		})
	}
	g.requireResumed(t)
}

// TestLargeTransfer moves 100 MiB each way through the proxy.
func TestLargeTransfer(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	dir := t.TempDir()
	local := filepath.Join(dir, "large.bin")
	sum := ftptest.RandomFile(t, local, 100<<20)
	url := ftpURL("ftp", be.User, be.Password, g.explicit, "large.bin")
	ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-T", local, url)
	if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "large.bin")); got != sum {
		t.Fatal("100 MiB upload differs on the backend")
	}
	out := filepath.Join(dir, "large.down")
	ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-o", out, url)
	if got := ftptest.FileSHA256(t, out); got != sum {
		t.Fatal("100 MiB download differs")
	}
	for _, ev := range g.eventsOf(t, "transfer") {
		if ev["bytes"].(float64) != 100<<20 || ev["result"] != "complete" {
			t.Fatalf("transfer event %v", ev)
		}
	}
}

// TestPureFTPdBackend runs MLSD (which vsftpd lacks) and multi-line replies
// through the proxy in front of pure-ftpd.
func TestPureFTPdBackend(t *testing.T) {
	be := ftptest.PureFTPd(t)
	g := startGate(t, be.Addr, gateOptions{})
	dir := t.TempDir()
	local := filepath.Join(dir, "m.bin")
	sum := ftptest.RandomFile(t, local, 1<<20+5)
	res := ftptest.Python(t, ftptest.PythonSpec{
		Host: "127.0.0.1", Port: port(t, g.explicit), CAFile: g.certs.CAFile,
		User: be.User, Password: be.Password,
		Steps: []ftptest.PythonStep{
			{Op: "upload", Local: local, Remote: "m.bin"},
			{Op: "mlsd"},
			{Op: "download", Remote: "m.bin"},
			{Op: "list"},
		},
	})
	facts, ok := res.Steps[1].Entries["m.bin"]
	if !ok || facts["type"] != "file" || facts["size"] != fmt.Sprint(1<<20+5) {
		t.Fatalf("MLSD entries %v", res.Steps[1].Entries)
	}
	if res.Steps[2].SHA256 != sum {
		t.Fatal("download differs")
	}
	// pure-ftpd ends LIST with a multi-line 226; ftplib checks it whole.
	if !strings.HasPrefix(res.Steps[3].Reply, "226") {
		t.Fatalf("LIST reply %q", res.Steps[3].Reply)
	}
	// lftp uses MLSD when the backend lists MLST in FEAT after login.
	out := ftptest.Lftp(t, g.certs.CAFile, fmt.Sprintf("open -u %s,%s ftp://%s; cls -l /", be.User, be.Password, g.explicit))
	if !strings.Contains(out, "m.bin") {
		t.Fatalf("lftp cls: %q", out)
	}
	if len(g.eventsOf(t, "transfer")) < 4 {
		t.Fatal("missing transfer events")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
