package proxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// spoolGate starts a gate in front of be whose explicit listener scans
// uploads with the scan block "av" in mode "spool", whose body is
// scanBody; its spool is a directory the gate creates. It returns the
// spool's directory.
func spoolGate(t *testing.T, be *ftptest.Server, scanBody string) (*gate, string) {
	t.Helper()
	dir := filepath.Join(ftptest.TempDir(t), "spool", "av")
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `scan = "av"`,
		extra:         fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  mode = \"spool\"\n  spool_dir = %q\n%s\n}\n", dir, scanBody),
	})
	return g, dir
}

// spoolFiles lists the files in the spool directory dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// spoolEmpty fails the test if the spool directory holds a file, or if
// the spool's metric says it holds bytes.
func spoolEmpty(t *testing.T, g *gate, dir string) {
	t.Helper()
	if names := spoolFiles(t, dir); len(names) > 0 {
		t.Fatalf("spool not empty: %v", names)
	}
	if body := g.metricsText(t); !strings.Contains(body, `ftpsgate_spool_bytes{scan="av"} 0`) {
		t.Fatalf("spool bytes not 0:\n%s", linesContaining(body, "ftpsgate_spool"))
	}
}

func linesContaining(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// backendSaw reports whether the backend's log (vsftpd's, with
// log_ftp_protocol: every command it was sent, every upload it took)
// names name.
func backendSaw(t *testing.T, be *ftptest.Server, name string) bool {
	t.Helper()
	b, err := os.ReadFile(be.Log)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(name))
}

// transferEventWait waits for the transfer event of path: a session's
// end (a client that vanished) ends its transfer in the background.
func (g *gate) transferEventWait(t *testing.T, path string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		for _, ev := range g.eventsOf(t, "transfer") {
			if ev["path"] == path {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no transfer event for %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpoolEICAR: in spool mode, EICAR (STOR and STOU) is refused with
// 550 naming the signature, and the backend never saw it: no file, no
// command and no upload in its log. A clean file after it reaches the
// backend (the log shows its STOR and upload), and the spool is empty
// after each, its directory 0700.
func TestSpoolEICAR(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q", "unix:"+clamd.Unix))
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory: %v %v", fi, err)
	}
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	if msg := c.Cmd(150, "STOR eicar.com"); !strings.Contains(msg, "scanned before") {
		t.Fatalf("150: %s", msg)
	}
	d.WriteAll(t, ftptest.EICAR)
	if code, msg := c.Read(); code != 550 || msg != "Upload rejected: malware detected ("+ftptest.EICARSignature+")." {
		t.Fatalf("EICAR upload: %d %s", code, msg)
	}
	spoolEmpty(t, g, dir)
	d = c.DialData(c.EPSV())
	c.Cmd(150, "STOU")
	d.WriteAll(t, ftptest.EICAR)
	c.Expect(550)
	spoolEmpty(t, g, dir)
	clean := []byte("just a text file\n")
	if code, msg := scanUpload(t, c, "clean.txt", clean); code != 226 {
		t.Fatalf("clean upload: %d %s", code, msg)
	}
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")

	noEICAR(t, be.Root)
	if exists(filepath.Join(be.Root, "eicar.com")) {
		t.Fatal("EICAR on the backend")
	}
	if got, err := os.ReadFile(filepath.Join(be.Root, "clean.txt")); err != nil || !bytes.Equal(got, clean) {
		t.Fatalf("clean file on the backend: %q %v", got, err)
	}
	if backendSaw(t, be, "eicar.com") || backendSaw(t, be, "STOU") {
		t.Fatal("the backend's log names the EICAR uploads")
	}
	if !backendSaw(t, be, `"STOR clean.txt"`) || !backendSaw(t, be, "OK UPLOAD") {
		t.Fatal("the backend's log does not show the clean upload: the log assertion is blind")
	}
	e := g.transferEvent(t, "/eicar.com")
	if e["result"] != "rejected" || e["scan"] != "infected" || e["signature"] != ftptest.EICARSignature || e["code"] != float64(550) ||
		e["scan_mode"] != "spool" || e["spool_ms"] == nil || e["deleted"] != nil {
		t.Fatalf("EICAR's transfer event: %v", e)
	}
	if e := g.transferEvent(t, "/clean.txt"); e["result"] != "complete" || e["scan"] != "clean" || e["code"] != float64(226) || e["scan_mode"] != "spool" {
		t.Fatalf("clean file's transfer event: %v", e)
	}
}

// TestSpoolLargeCleanUpload: a clean 100 MiB file goes through the spool
// and arrives byte-identical; the spool is empty after.
func TestSpoolLargeCleanUpload(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"200M\"", "unix:"+clamd.Unix))
	data := make([]byte, 100<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	start := time.Now()
	if code, msg := scanUpload(t, c, "big.bin", data); code != 226 {
		t.Fatalf("clean 100 MiB upload: %d %s", code, msg)
	}
	t.Logf("100 MiB spooled, scanned and sent on in %v", time.Since(start))
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")
	if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "big.bin")); got != hex.EncodeToString(sum[:]) {
		t.Fatal("the file on the backend differs from the upload")
	}
	if e := g.transferEvent(t, "/big.bin"); e["scan"] != "clean" || e["bytes"] != float64(100<<20) || e["scan_mode"] != "spool" {
		t.Fatalf("transfer event: %v", e)
	}
}

// TestSpoolVerdictPending: while the verdict is pending, the control
// channel answers NOOP and STAT, the spool file is there, mode 0600, and
// the backend has not been sent the upload's command; the verdict then
// sends it on, and the 226 follows.
func TestSpoolVerdictPending(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	release := make(chan struct{})
	addr, streamed := slowScanner(t, "stream: OK\x00", release)
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q", addr))
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR pending.txt")
	d.WriteAll(t, []byte("pending\n"))
	<-streamed
	c.Cmd(200, "NOOP")
	if msg := c.Cmd(211, "STAT"); !strings.Contains(msg, "waiting for the malware scan") {
		t.Fatalf("STAT while the verdict is pending: %s", msg)
	}
	names := spoolFiles(t, dir)
	if len(names) != 1 || !strings.HasPrefix(names[0], "ftpsgate-spool-") {
		t.Fatalf("spool while pending: %v", names)
	}
	if fi, err := os.Stat(filepath.Join(dir, names[0])); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 8 {
		t.Fatalf("spool file: %v %v", fi, err)
	}
	if backendSaw(t, be, "pending.txt") {
		t.Fatal("the backend was sent the upload before its verdict")
	}
	close(release)
	c.Expect(226)
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")
	if got, err := os.ReadFile(filepath.Join(be.Root, "pending.txt")); err != nil || string(got) != "pending\n" {
		t.Fatalf("file on the backend: %q %v", got, err)
	}
}

// TestSpoolAbandoned: an upload the client abandons leaves nothing in
// the spool and nothing on the backend, which never hears of it: ABOR
// mid-upload, ABOR while the verdict is pending, a client that vanishes
// mid-upload (control and data connections dropped), and a server shut
// down while the verdict is pending. The backend gets no command for it,
// not even ABOR, and a file of the same name it held is left alone.
func TestSpoolAbandoned(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, how := range []string{"ABOR mid-upload", "ABOR pending", "vanish mid-upload", "shutdown pending"} {
		t.Run(how, func(t *testing.T) {
			addr, streamed := slowScanner(t, "", nil)
			g, dir := spoolGate(t, be, fmt.Sprintf("address = %q\ntimeout = \"90s\"", addr))
			c := g.login(t, be.User, be.Password)
			name := strings.ReplaceAll(how, " ", "-") + ".txt"
			// A file of that name is on the backend already: an
			// abandoned spooled upload must leave it as it was.
			before := filepath.Join(be.Root, name)
			if err := os.WriteFile(before, []byte("before\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			d := c.DialData(c.EPSV())
			c.Cmd(150, "STOR %s", name)
			if strings.HasSuffix(how, "pending") {
				d.WriteAll(t, []byte("never judged\n"))
				<-streamed
			} else {
				d.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := d.Write(make([]byte, 1<<20)); err != nil {
					t.Fatal(err)
				}
				// Mid-upload: the bytes are in the spool, the data
				// connection still open.
				for deadline := time.Now().Add(30 * time.Second); !strings.Contains(c.Cmd(211, "STAT"), "1048576 bytes"); {
					if time.Now().After(deadline) {
						t.Fatal("the upload's bytes never reached the spool")
					}
					time.Sleep(20 * time.Millisecond)
				}
				if len(spoolFiles(t, dir)) != 1 {
					t.Fatal("no spool file mid-upload")
				}
			}
			switch {
			case strings.HasPrefix(how, "ABOR"):
				c.Send("ABOR")
				c.Expect(426)
				c.Expect(226)
				d.Close()
				c.Cmd(221, "QUIT")
			case strings.HasPrefix(how, "vanish"):
				d.TCP.Close()
				c.Raw.Close()
			default:
				g.srv.Close()
			}
			e := g.transferEventWait(t, "/"+name)
			if e["scan"] != "none" || e["scan_mode"] != "spool" {
				t.Fatalf("transfer event: %v", e)
			}
			spoolEmpty(t, g, dir)
			if got, err := os.ReadFile(before); err != nil || string(got) != "before\n" || backendSaw(t, be, name) || backendSaw(t, be, "ABOR") {
				t.Fatalf("the backend heard of an abandoned spooled upload (its file: %q %v)", got, err)
			}
		})
	}
}

// TestSpoolFull: spool_max bounds the spool, all sessions together. An
// upload that fills it is cut with 452 and none of it reaches the
// backend; one that finds it full (another upload waiting for its
// verdict holds it all) is refused with 452 before its 150. Both are
// logged and counted.
func TestSpoolFull(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	release := make(chan struct{})
	addr, _ := slowScanner(t, "stream: OK\x00", release)
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"64K\"\nabove_max = \"pass\"\nspool_max = \"1MiB\"", addr))

	// Over spool_max: cut while it is received. (The slow scanner's one
	// connection is this upload's; it never gets a verdict.)
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR huge.bin")
	written := writeData(d, randomBytes(t, 4*mib), time.Minute)
	if msg := c.Expect(452); !strings.Contains(msg, "spool") {
		t.Fatalf("452: %s", msg)
	}
	<-written
	spoolEmpty(t, g, dir)
	if exists(filepath.Join(be.Root, "huge.bin")) || backendSaw(t, be, "huge.bin") {
		t.Fatal("an upload cut at spool_max reached the backend")
	}
	if e := g.transferEvent(t, "/huge.bin"); e["code"] != float64(452) || e["result"] != "incomplete" {
		t.Fatalf("transfer event: %v", e)
	}

	// Exactly spool_max, held while its verdict is pending: the spool
	// is full for the next upload.
	addr2, streamed2 := slowScanner(t, "stream: OK\x00", release)
	g2, dir2 := spoolGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"64K\"\nabove_max = \"pass\"\nspool_max = \"1MiB\"", addr2))
	c1 := g2.login(t, be.User, be.Password)
	d = c1.DialData(c1.EPSV())
	c1.Cmd(150, "STOR full.bin")
	d.WriteAll(t, randomBytes(t, 1*mib))
	<-streamed2
	c2 := g2.login(t, be.User, be.Password)
	d2 := c2.DialData(c2.EPSV())
	c2.Cmd(452, "STOR refused.bin")
	d2.Close()
	close(release)
	c1.Expect(226)
	spoolEmpty(t, g2, dir2)
	c2.Cmd(221, "QUIT")
	c1.Cmd(221, "QUIT")
	if exists(filepath.Join(be.Root, "refused.bin")) || backendSaw(t, be, "refused.bin") {
		t.Fatal("an upload refused for a full spool reached the backend")
	}
	if e := g2.transferEvent(t, "refused.bin"); e["code"] != float64(452) || e["result"] != "failed" || e["scan_mode"] != "spool" {
		t.Fatalf("transfer event: %v", e)
	}
	if !g.logged("upload cut: the spool is full") || !g2.logged("upload refused: the spool is full") {
		t.Fatal("not logged")
	}
	for gg, want := range map[*gate]string{g: `ftpsgate_spool_refusals_total{scan="av",when="during"} 1`, g2: `ftpsgate_spool_refusals_total{scan="av",when="before"} 1`} {
		if body := gg.metricsText(t); !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, linesContaining(body, "spool"))
		}
	}
}

// TestSpoolAboveMax: under above_max = "reject", an upload is cut as soon
// as it passes max_size (552), not spooled whole; the backend never
// hears of it. Under "pass" it goes through, partly scanned.
func TestSpoolAboveMax(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"64K\"", "unix:"+clamd.Unix))
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR big.bin")
	written := writeData(d, randomBytes(t, 8*mib), time.Minute)
	if msg := c.Expect(552); !strings.Contains(msg, "65536") {
		t.Fatalf("552: %s", msg)
	}
	<-written
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")
	if backendSaw(t, be, "big.bin") {
		t.Fatal("the backend heard of the upload")
	}
	if e := g.transferEvent(t, "/big.bin"); e["scan"] != "too_large" || e["result"] != "rejected" || e["bytes"].(float64) >= 8*mib {
		t.Fatalf("transfer event: %v", e)
	}

	// Under above_max = "pass" it is spooled whole, its first max_size
	// bytes scanned, and sent on.
	g, dir = spoolGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"64K\"\nabove_max = \"pass\"", "unix:"+clamd.Unix))
	c = g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	data := randomBytes(t, 3*mib)
	if code, msg := scanUpload(t, c, "passed.bin", data); code != 226 {
		t.Fatalf("upload under above_max = pass: %d %s", code, msg)
	}
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")
	if got, err := os.ReadFile(filepath.Join(be.Root, "passed.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file on the backend differs (%d bytes, %v)", len(got), err)
	}
	if e := g.transferEvent(t, "/passed.bin"); e["scan"] != "partial" || e["result"] != "complete" {
		t.Fatalf("transfer event: %v", e)
	}
}

// TestSpoolRESTAndBackendRefusal: REST before STOR is honoured (the
// backend is sent the same REST, and the spooled bytes land at the
// offset); STOU's file is the one the backend named; a backend that refuses the upload after its scan has its
// reply relayed, audited, and the spool emptied.
func TestSpoolRESTAndBackendRefusal(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q", "unix:"+clamd.Unix))
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	if code, msg := scanUpload(t, c, "resumed.txt", []byte("first half, ")); code != 226 {
		t.Fatalf("first part: %d %s", code, msg)
	}
	c.Cmd(350, "REST 12")
	if code, msg := scanUpload(t, c, "resumed.txt", []byte("second half\n")); code != 226 {
		t.Fatalf("resumed part: %d %s", code, msg)
	}
	if got, err := os.ReadFile(filepath.Join(be.Root, "resumed.txt")); err != nil || string(got) != "first half, second half\n" {
		t.Fatalf("resumed file: %q %v", got, err)
	}
	if e := g.eventsOf(t, "transfer"); e[len(e)-1]["offset"] != float64(12) {
		t.Fatalf("transfer event: %v", e[len(e)-1])
	}
	// STOU: the backend names the file; the audit says which.
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOU")
	d.WriteAll(t, []byte("unique\n"))
	c.Expect(226)
	stou := g.eventsOf(t, "transfer")
	if e := stou[len(stou)-1]; e["verb"] != "STOU" || e["result"] != "complete" {
		t.Fatalf("STOU's transfer event: %v", e)
	} else if got, err := os.ReadFile(filepath.Join(be.Root, e["path"].(string))); err != nil || string(got) != "unique\n" {
		t.Fatalf("STOU's file %v: %q %v", e["path"], got, err)
	}
	// vsftpd cannot create a file in a directory that does not exist.
	code, msg := scanUpload(t, c, "no/such/dir.txt", []byte("clean\n"))
	if code != 553 {
		t.Fatalf("upload the backend refuses: %d %s", code, msg)
	}
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")
	if e := g.transferEvent(t, "/no/such/dir.txt"); e["result"] != "failed" || e["code"] != float64(553) || e["scan"] != "clean" {
		t.Fatalf("transfer event: %v", e)
	}
	if !g.logged("FTP server refused a spooled upload") {
		t.Fatal("not logged")
	}
}

// TestSpoolDirectory: a crashed run's spool files are removed at start
// (and only they: another file is kept); a spool directory other users
// may enter is refused, and so is a symbolic link.
func TestSpoolDirectory(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	root := ftptest.TempDir(t)
	start := func(dir string) (*gate, error) {
		g := newGate(t, be.Addr, gateOptions{
			listenerExtra: `scan = "av"`,
			extra:         fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  address = \"tcp:127.0.0.1:1\"\n  mode = \"spool\"\n  spool_dir = %q\n}\n", dir),
		})
		return g, g.srv.Start()
	}
	stale := filepath.Join(root, "crashed")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ftpsgate-spool-0123456789abcdef", "keep.txt"} {
		if err := os.WriteFile(filepath.Join(stale, f), ftptest.EICAR, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g, err := start(stale)
	if err != nil {
		t.Fatal(err)
	}
	if names := spoolFiles(t, stale); len(names) != 1 || names[0] != "keep.txt" {
		t.Fatalf("spool after start: %v", names)
	}
	if !g.logged("removed files a previous run left in the spool") {
		t.Fatal("not logged")
	}
	open := filepath.Join(root, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := start(open); err == nil || !strings.Contains(err.Error(), "0700") {
		t.Fatalf("a spool others may enter: %v", err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(stale, link); err != nil {
		t.Fatal(err)
	}
	if _, err := start(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a spool behind a symbolic link: %v", err)
	}
}

// TestSpoolBackendNoData: a backend that gives no data connection (vsftpd
// with pasv_enable=NO refuses EPSV and PASV) fails a clean spooled upload
// after its scan: 451 saying so, the audit's result "failed", the spool
// emptied, and the session goes on.
func TestSpoolBackendNoData(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{Extra: []string{"pasv_enable=NO"}})
	g, dir := spoolGate(t, be, fmt.Sprintf("address = %q", "unix:"+clamd.Unix))
	c := g.login(t, be.User, be.Password)
	code, msg := scanUpload(t, c, "nodata.txt", []byte("clean\n"))
	if code != 451 || !strings.Contains(msg, "cannot open a data connection to the FTP server") {
		t.Fatalf("upload: %d %s", code, msg)
	}
	spoolEmpty(t, g, dir)
	c.Cmd(200, "NOOP")
	c.Cmd(221, "QUIT")
	if e := g.transferEvent(t, "/nodata.txt"); e["result"] != "failed" || e["code"] != float64(451) || e["scan"] != "clean" {
		t.Fatalf("transfer event: %v", e)
	}
	if !g.logged("spooled upload not stored on the FTP server") {
		t.Fatal("not logged")
	}
}

// TestSpoolReload: a reload that adds a scan block in mode "spool" opens
// its spool (created 0700) before new sessions use it; one whose
// spool_dir cannot be used is refused, and the running configuration
// stays.
func TestSpoolReload(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	root := ftptest.TempDir(t)
	reload := func(dir string) error {
		src := strings.Replace(g.src, "  backend       = \"legacy\"\n", "  backend       = \"legacy\"\n  scan = \"av\"\n", 1) +
			fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  address = %q\n  mode = \"spool\"\n  spool_dir = %q\n}\n", "unix:"+clamd.Unix, dir)
		cfg, diags := config.Parse([]byte(src), "test.hcl")
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		return g.srv.Reload(cfg)
	}
	file := filepath.Join(root, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := reload(file); err == nil || !strings.Contains(err.Error(), "spool_dir") {
		t.Fatalf("reload with a file as spool_dir: %v", err)
	}
	dir := filepath.Join(root, "spool")
	if err := reload(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory: %v %v", fi, err)
	}
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR eicar.com")
	d.WriteAll(t, ftptest.EICAR)
	c.Expect(550)
	spoolEmpty(t, g, dir)
	c.Cmd(221, "QUIT")
	if backendSaw(t, be, "eicar.com") {
		t.Fatal("the backend heard of EICAR")
	}
}

// TestSpoolDiskFull: a spool whose disk fills up before spool_max is
// reached (a 1 MiB tmpfs under a 1 GiB spool_max) cuts the upload with
// 452, logged as an error, and empties the spool; the backend never
// hears of it, and the next upload that fits goes through.
func TestSpoolDiskFull(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	dir := filepath.Join(ftptest.Tmpfs(t, 1<<20), "av")
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `scan = "av"`,
		extra: fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  address = %q\n  mode = \"spool\"\n  spool_dir = %q\n  above_max = \"pass\"\n}\n",
			"unix:"+clamd.Unix, dir),
	})
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR big.bin")
	written := writeData(d, randomBytes(t, 4*mib), time.Minute)
	if msg := c.Expect(452); !strings.Contains(msg, "disk is full") {
		t.Fatalf("452: %s", msg)
	}
	<-written
	spoolEmpty(t, g, dir)
	if code, msg := scanUpload(t, c, "small.txt", []byte("fits\n")); code != 226 {
		t.Fatalf("upload after the disk filled up: %d %s", code, msg)
	}
	c.Cmd(221, "QUIT")
	if backendSaw(t, be, "big.bin") {
		t.Fatal("the backend heard of the upload")
	}
	if !g.logged("upload cut: the spool file could not be written") {
		t.Fatal("not logged")
	}
}

// TestSpoolMaxFileSize: a spooled upload cut at limits.max_file_size gets
// the 552 that names the limit, and the backend hears nothing of it: a
// file of the same name it held stays as it was (an inline upload's cut
// removes the partial file with DELE; a spooled one has none).
func TestSpoolMaxFileSize(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	dir := filepath.Join(ftptest.TempDir(t), "spool")
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `scan = "av"`,
		extra: fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  address = %q\n  mode = \"spool\"\n  spool_dir = %q\n}\n", "unix:"+clamd.Unix, dir) +
			"limits {\n  max_file_size = \"1MiB\"\n}\n",
	})
	kept := filepath.Join(be.Root, "kept.bin")
	if err := os.WriteFile(kept, []byte("held before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR kept.bin")
	written := writeData(d, randomBytes(t, 8*mib), time.Minute)
	if msg := c.Expect(552); !strings.Contains(msg, "1MiB") {
		t.Fatalf("552 %q does not name the limit", msg)
	}
	<-written
	spoolEmpty(t, g, dir)
	c.Cmd(200, "NOOP")
	c.Cmd(221, "QUIT")
	if got, err := os.ReadFile(kept); err != nil || string(got) != "held before\n" || backendSaw(t, be, "kept.bin") {
		t.Fatalf("the backend heard of the upload (its file: %q %v)", got, err)
	}
	if e := g.transferEvent(t, "/kept.bin"); e["result"] != "too_large" || e["scan_mode"] != "spool" || e["partial_file"] != nil {
		t.Fatalf("transfer event: %v", e)
	}
}
