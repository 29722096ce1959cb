package proxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
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

// scanGate starts a gate in front of be whose explicit listener scans
// uploads with the scan block "av", whose body is scanBody.
func scanGate(t *testing.T, be *ftptest.Server, scanBody string) *gate {
	t.Helper()
	return startGate(t, be.Addr, gateOptions{
		listenerExtra: `scan = "av"`,
		extra:         "scan \"av\" {\n  engine = \"clamd\"\n" + scanBody + "\n}\n",
	})
}

// scanUpload stores data as name through c, and returns the final reply's
// code and text.
func scanUpload(t *testing.T, c *ftptest.Conn, name string, data []byte) (int, string) {
	t.Helper()
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR %s", name)
	d.WriteAll(t, data)
	return c.Read()
}

// metricsText is what the gate's /metrics serves.
func (g *gate) metricsText(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	g.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestScanClamd: uploads through the proxy to a real vsftpd, scanned by a
// real clamd. EICAR is refused with 550 naming the signature and deleted
// on the backend, over the unix socket and over TCP; a clean file gets
// its 226 and stays; the session goes on after a refusal.
func TestScanClamd(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, addr := range []string{"unix:" + clamd.Unix, "tcp:" + clamd.TCP} {
		t.Run(strings.SplitN(addr, ":", 2)[0], func(t *testing.T) {
			g := scanGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"200M\"", addr))
			c := g.login(t, be.User, be.Password)
			code, msg := scanUpload(t, c, "eicar.com", ftptest.EICAR)
			if code != 550 || msg != "Upload rejected: malware detected ("+ftptest.EICARSignature+")." {
				t.Fatalf("EICAR upload: %d %s", code, msg)
			}
			if exists(filepath.Join(be.Root, "eicar.com")) {
				t.Fatal("EICAR left on the backend")
			}
			clean := []byte("just a text file\n")
			if code, msg := scanUpload(t, c, "clean.txt", clean); code != 226 {
				t.Fatalf("clean upload after a refusal: %d %s", code, msg)
			}
			if got, err := os.ReadFile(filepath.Join(be.Root, "clean.txt")); err != nil || !bytes.Equal(got, clean) {
				t.Fatalf("clean file on the backend: %q %v", got, err)
			}
			c.Cmd(221, "QUIT")

			e := g.transferEvent(t, "/eicar.com")
			if e["result"] != "rejected" || e["scan"] != "infected" || e["signature"] != ftptest.EICARSignature ||
				e["deleted"] != true || e["code"] != float64(550) {
				t.Fatalf("EICAR's transfer event: %v", e)
			}
			if e := g.transferEvent(t, "/clean.txt"); e["result"] != "complete" || e["scan"] != "clean" || e["code"] != float64(226) {
				t.Fatalf("clean file's transfer event: %v", e)
			}
			if !g.logged("upload rejected: malware detected") || !g.logged("scanned upload deleted on the backend") {
				t.Fatal("refusal not logged")
			}
			body := g.metricsText(t)
			for _, want := range []string{`ftpsgate_scan_verdicts_total{engine="clamd",result="infected",scan="av"} 1`,
				`ftpsgate_scan_verdicts_total{engine="clamd",result="clean",scan="av"} 1`, `ftpsgate_scan_latency_seconds_count{engine="clamd",scan="av"} 2`} {
				if !strings.Contains(body, want) {
					t.Fatalf("/metrics lacks %s", want)
				}
			}
		})
	}
}

// TestScanLargeCleanUpload: a clean 100 MiB file, scanned whole by clamd
// while it streams to the backend, arrives byte-identical and gets 226.
func TestScanLargeCleanUpload(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := scanGate(t, be, fmt.Sprintf("address = %q\nmax_size = \"200M\"", "unix:"+clamd.Unix))
	data := make([]byte, 100<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	c := g.login(t, be.User, be.Password)
	start := time.Now()
	if code, msg := scanUpload(t, c, "big.bin", data); code != 226 {
		t.Fatalf("clean 100 MiB upload: %d %s", code, msg)
	}
	t.Logf("100 MiB uploaded and scanned in %v", time.Since(start))
	c.Cmd(221, "QUIT")
	if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "big.bin")); got != hex.EncodeToString(sum[:]) {
		t.Fatal("the file on the backend differs from the upload")
	}
	e := g.transferEvent(t, "/big.bin")
	if e["scan"] != "clean" || e["bytes"] != float64(100<<20) {
		t.Fatalf("transfer event: %v", e)
	}
}

// TestScanScannerDown: with clamd stopped, an upload is refused with 451
// under on_error = "reject" before the backend sees it, and passes with
// 226 under "pass"; both are logged and audited.
func TestScanScannerDown(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	clamd.Stop()
	for _, tc := range []struct {
		onError string
		code    int
		stored  bool
		result  string
		path    string // in the audit: refused before the backend, the command's argument
		logged  string
	}{
		{"reject", 451, false, "failed", "down-reject.bin", "scanner unavailable; upload refused (on_error = reject)"},
		{"pass", 226, true, "complete", "/down-pass.bin", "scanner unavailable; upload passed unscanned (on_error = pass)"},
	} {
		t.Run(tc.onError, func(t *testing.T) {
			g := scanGate(t, be, fmt.Sprintf("address = %q\non_error = %q", "unix:"+clamd.Unix, tc.onError))
			c := g.login(t, be.User, be.Password)
			name := "down-" + tc.onError + ".bin"
			d := c.DialData(c.EPSV())
			c.Send("STOR " + name)
			code, msg := c.Read()
			if code == 150 {
				d.WriteAll(t, ftptest.EICAR)
				code, msg = c.Read()
			} else {
				d.Close()
			}
			if code != tc.code {
				t.Fatalf("upload with the scanner down: %d %s", code, msg)
			}
			if exists(filepath.Join(be.Root, name)) != tc.stored {
				t.Fatalf("file on the backend: %v, want %v", !tc.stored, tc.stored)
			}
			c.Cmd(200, "NOOP") // the session goes on
			c.Cmd(221, "QUIT")
			if e := g.transferEvent(t, tc.path); e["result"] != tc.result || e["scan"] != "error" || e["scan_error"] == nil {
				t.Fatalf("transfer event: %v", e)
			}
			if !g.logged(tc.logged) {
				t.Fatalf("not logged: %s", tc.logged)
			}
		})
	}
}

// slowScanner is a clamd stand-in on loopback that reads one INSTREAM to
// its end, then answers reply when release is closed (never, if it is
// nil). streamed receives when the stream has ended.
func slowScanner(t *testing.T, reply string, release <-chan struct{}) (addr string, streamed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{}, 1)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cmd := make([]byte, len("zINSTREAM\x00"))
		if _, err := io.ReadFull(c, cmd); err != nil {
			return
		}
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n == 0 {
				break
			}
			if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
				return
			}
		}
		ended <- struct{}{}
		select {
		case <-release:
			c.Write([]byte(reply))
		case <-done:
		}
	}()
	return "tcp:" + ln.Addr().String(), ended
}

// TestScanVerdictPending: while the verdict is pending, the backend's 226
// is held and the control channel is answered: NOOP, and STAT saying what
// the upload waits for. The verdict then releases the 226.
func TestScanVerdictPending(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	release := make(chan struct{})
	addr, streamed := slowScanner(t, "stream: OK\x00", release)
	g := scanGate(t, be, fmt.Sprintf("address = %q\ntimeout = \"60s\"", addr))
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR pending.txt")
	d.WriteAll(t, []byte("pending\n"))
	<-streamed
	c.Cmd(200, "NOOP")
	if msg := c.Cmd(211, "STAT"); !strings.Contains(msg, "waiting for the malware scan") {
		t.Fatalf("STAT while the verdict is pending: %s", msg)
	}
	close(release)
	c.Expect(226)
	c.Cmd(221, "QUIT")
	if !exists(filepath.Join(be.Root, "pending.txt")) {
		t.Fatal("clean file missing on the backend")
	}
}

// TestScanVerdictTimeout: a scanner that takes the stream and never
// answers: after the scan block's timeout the upload is refused with 451
// under on_error = "reject", and the file the backend already has is
// deleted; under "pass" it gets its 226.
func TestScanVerdictTimeout(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, tc := range []struct {
		onError string
		code    int
		stored  bool
	}{{"reject", 451, false}, {"pass", 226, true}} {
		t.Run(tc.onError, func(t *testing.T) {
			addr, _ := slowScanner(t, "", nil)
			g := scanGate(t, be, fmt.Sprintf("address = %q\ntimeout = \"1s\"\non_error = %q", addr, tc.onError))
			c := g.login(t, be.User, be.Password)
			name := "timeout-" + tc.onError + ".txt"
			if code, msg := scanUpload(t, c, name, []byte("late verdict\n")); code != tc.code {
				t.Fatalf("upload: %d %s", code, msg)
			}
			c.Cmd(221, "QUIT")
			if exists(filepath.Join(be.Root, name)) != tc.stored {
				t.Fatalf("file on the backend: %v, want %v", !tc.stored, tc.stored)
			}
			if e := g.transferEvent(t, "/"+name); e["scan"] != "error" {
				t.Fatalf("transfer event: %v", e)
			}
		})
	}
}

// TestScanIncompleteUploadDeleted: EICAR sent whole, then the data
// connection cut without TLS close_notify. The upload fails its
// integrity check (426) and is never judged, but what reached the
// backend is deleted: a scanned listener does not keep unjudged bytes.
func TestScanIncompleteUploadDeleted(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := scanGate(t, be, fmt.Sprintf("address = %q", "unix:"+clamd.Unix))
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR cut.com")
	d.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := d.Write(ftptest.EICAR); err != nil {
		t.Fatal(err)
	}
	d.TCP.(*net.TCPConn).CloseWrite() // FIN, no close_notify
	c.Expect(426)
	c.Cmd(221, "QUIT")
	if exists(filepath.Join(be.Root, "cut.com")) {
		t.Fatal("an incomplete scanned upload was left on the backend")
	}
	if e := g.transferEvent(t, "/cut.com"); e["scan"] != "none" || e["result"] != "incomplete" || e["deleted"] != true {
		t.Fatalf("transfer event: %v", e)
	}
}

// noEICAR fails the test if any file under root holds the EICAR bytes.
func noEICAR(t *testing.T, root string) {
	t.Helper()
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, ftptest.EICAR) {
				t.Errorf("EICAR on the backend: %s", p)
			}
		}
		return nil
	})
}

// TestScanSTOUAndRoute: a STOU upload is deleted under the name the
// backend's 150 gave it; a route's scan block applies to its users on a
// listener that scans nothing.
func TestScanSTOUAndRoute(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: fmt.Sprintf(`
scan "av" {
  engine  = "clamd"
  address = %q
}
route "scanned" {
  users   = [%q]
  backend = "legacy"
  scan    = "av"
}`, "unix:"+clamd.Unix, be.User)})
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	if msg := c.Cmd(150, "STOU"); !strings.Contains(msg, "FILE:") {
		t.Fatalf("vsftpd's STOU reply names no file: %s", msg)
	}
	d.WriteAll(t, ftptest.EICAR)
	if msg := c.Expect(550); !strings.Contains(msg, ftptest.EICARSignature) {
		t.Fatalf("STOU of EICAR: %s", msg)
	}
	if code, msg := scanUpload(t, c, "e.com", ftptest.EICAR); code != 550 {
		t.Fatalf("STOR of EICAR: %d %s", code, msg)
	}
	c.Cmd(221, "QUIT")
	noEICAR(t, be.Root)
	if !g.logged("scanned upload deleted on the backend") {
		t.Fatal("deletion not logged")
	}
}

// TestScanAboveMax: an upload larger than max_size is scanned for its
// first max_size bytes; then above_max decides: "reject" gives 552 and
// deletes it, "pass" gives 226 and audits it as partly scanned. A clamd
// whose StreamMaxLength is below max_size refuses the stream: an error,
// 451 under on_error = "reject", with a hint in the log.
func TestScanAboveMax(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	small := ftptest.StartClamd(t, 1<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	data := make([]byte, 3<<20)
	rand.Read(data)
	for _, tc := range []struct {
		name, body string
		code       int
		stored     bool
		scan       string
		logged     string
	}{
		{"reject", fmt.Sprintf("address = %q\nmax_size = \"64K\"", "unix:"+clamd.Unix), 552, false, "too_large",
			"upload rejected: larger than the scan's max_size (above_max = reject)"},
		{"pass", fmt.Sprintf("address = %q\nmax_size = \"64K\"\nabove_max = \"pass\"", "unix:"+clamd.Unix), 226, true, "partial",
			"upload passed: only its first max_size bytes were scanned (above_max = pass)"},
		{"clamd limit", fmt.Sprintf("address = %q\nmax_size = \"25M\"", "unix:"+small.Unix), 451, false, "error",
			"scan failed; upload rejected (on_error = reject)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := scanGate(t, be, tc.body)
			c := g.login(t, be.User, be.Password)
			name := strings.ReplaceAll(tc.name, " ", "-") + ".bin"
			if code, msg := scanUpload(t, c, name, data); code != tc.code {
				t.Fatalf("upload: %d %s", code, msg)
			}
			c.Cmd(221, "QUIT")
			if exists(filepath.Join(be.Root, name)) != tc.stored {
				t.Fatalf("file on the backend: %v, want %v", !tc.stored, tc.stored)
			}
			if e := g.transferEvent(t, "/"+name); e["scan"] != tc.scan {
				t.Fatalf("transfer event: %v", e)
			}
			if !g.logged(tc.logged) {
				t.Fatalf("not logged: %s", tc.logged)
			}
		})
	}
}

// stalledScanner accepts connections and never reads from them.
func stalledScanner(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "tcp:" + ln.Addr().String()
}

// TestScanStalledScanner: a scanner that stops reading holds the upload
// back (bounded buffering) no longer than the scan's timeout: the upload
// then completes, and is refused (451) and deleted. An ABOR while the
// relay waits for such a scanner is answered at once, not after the
// timeout.
func TestScanStalledScanner(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	data := make([]byte, 32<<20) // more than the sockets hold
	t.Run("timeout", func(t *testing.T) {
		g := scanGate(t, be, fmt.Sprintf("address = %q\ntimeout = \"1s\"", stalledScanner(t)))
		c := g.login(t, be.User, be.Password)
		if code, msg := scanUpload(t, c, "stalled.bin", data); code != 451 {
			t.Fatalf("upload: %d %s", code, msg)
		}
		c.Cmd(221, "QUIT")
		if exists(filepath.Join(be.Root, "stalled.bin")) {
			t.Fatal("file left on the backend")
		}
	})
	t.Run("ABOR", func(t *testing.T) {
		g := scanGate(t, be, fmt.Sprintf("address = %q\ntimeout = \"90s\"", stalledScanner(t)))
		c := g.login(t, be.User, be.Password)
		d := c.DialData(c.EPSV())
		c.Cmd(150, "STOR aborted.bin")
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			d.SetDeadline(time.Now().Add(2 * time.Minute))
			d.Write(data) // blocks once the scanner's buffers are full; fails at ABOR
		}()
		// The relay waits on the scanner once the bytes it moved stop
		// growing (STAT polled every 100 ms).
		last := int64(-1)
		for {
			msg := c.Cmd(211, "STAT")
			var n int64
			if i := strings.Index(msg, "aborted.bin, "); i >= 0 {
				fmt.Sscanf(msg[i+len("aborted.bin, "):], "%d", &n)
			}
			if n > 0 && n == last {
				break
			}
			last = n
			time.Sleep(100 * time.Millisecond)
		}
		start := time.Now()
		c.Send("ABOR")
		c.Expect(426)
		c.Expect(226)
		if took := time.Since(start); took > 30*time.Second {
			t.Fatalf("ABOR answered after %v", took)
		}
		d.TCP.Close()
		<-wrote
		c.Cmd(221, "QUIT")
		if exists(filepath.Join(be.Root, "aborted.bin")) {
			t.Fatal("aborted scanned upload left on the backend")
		}
	})
}

// TestScanAbandonedWhilePending: an ABOR while the verdict is pending is
// answered (426, then 226 for the ABOR) and the unjudged file is deleted;
// so is the file of a client that vanishes while its verdict is pending.
func TestScanAbandonedWhilePending(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	for _, how := range []string{"ABOR", "vanish"} {
		t.Run(how, func(t *testing.T) {
			addr, streamed := slowScanner(t, "", nil)
			g := scanGate(t, be, fmt.Sprintf("address = %q\ntimeout = \"90s\"", addr))
			c := g.login(t, be.User, be.Password)
			name := "pending-" + how + ".txt"
			d := c.DialData(c.EPSV())
			c.Cmd(150, "STOR %s", name)
			d.WriteAll(t, []byte("never judged\n"))
			<-streamed
			if how == "ABOR" {
				c.Send("ABOR")
				c.Expect(426)
				c.Expect(226)
				c.Cmd(221, "QUIT")
			} else {
				c.Raw.Close()
			}
			// The session's end is the transfer's: once the audit has
			// the transfer, its file has been dealt with.
			var e map[string]any
			for deadline := time.Now().Add(30 * time.Second); e == nil; {
				if time.Now().After(deadline) {
					t.Fatal("no transfer event")
				}
				for _, ev := range g.eventsOf(t, "transfer") {
					if ev["path"] == "/"+name {
						e = ev
					}
				}
				if e == nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
			if exists(filepath.Join(be.Root, name)) {
				t.Fatal("unjudged upload left on the backend")
			}
			if e["scan"] != "none" || e["deleted"] != true {
				t.Fatalf("transfer event: %v", e)
			}
			if !g.logged("incomplete scanned upload; deleting what reached the backend") {
				t.Fatal("not logged")
			}
		})
	}
}

// TestScanWithMaxFileSize: an upload that both a scan block and
// max_file_size cover, cut at the size limit, was never judged, so none
// of it stays on the backend: not a new file, and not an appended one
// either (where max_file_size alone keeps the file, which held data
// before). The 552 names the size limit, and the audit says both.
func TestScanWithMaxFileSize(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: `scan = "av"`,
		extra: fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  address = %q\n}\n", "unix:"+clamd.Unix) +
			"limits {\n  max_file_size = \"1MiB\"\n}\n",
	})
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	if code, msg := scanUpload(t, c, "log.bin", []byte("held before\n")); code != 226 { // clean, small: kept
		t.Fatalf("first upload: %d %s", code, msg)
	}
	for _, tc := range []struct{ verb, name string }{{"STOR", "big.bin"}, {"APPE", "log.bin"}} {
		d := c.DialData(c.EPSV())
		c.Cmd(150, "%s %s", tc.verb, tc.name)
		written := writeData(d, randomBytes(t, 8*mib), time.Minute)
		if msg := c.Expect(552); !strings.Contains(msg, "1MiB") {
			t.Fatalf("%s: 552 %q does not name the limit", tc.verb, msg)
		}
		<-written
		if exists(filepath.Join(be.Root, tc.name)) {
			t.Fatalf("%s: the unjudged upload was left on the backend", tc.verb)
		}
		evs := g.eventsOf(t, "transfer")
		if e := evs[len(evs)-1]; e["path"] != "/"+tc.name || e["verb"] != tc.verb || e["result"] != "too_large" || e["scan"] != "none" ||
			e["deleted"] != true || e["partial_file"] != "removed" {
			t.Fatalf("%s: transfer event %v", tc.verb, e)
		}
	}
	c.Cmd(200, "NOOP") // the session goes on
}

// TestScanEdgeAuthLogin: a listener with both an auth block and a scan
// block scans the uploads of a login the edge checked, as it does those
// the backend checked. (The edge's USER set the session's route without
// its scan block, so these uploads went through unscanned.)
func TestScanEdgeAuthLogin(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	pw := filepath.Join(t.TempDir(), "backend.pass")
	if err := os.WriteFile(pw, []byte(be.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, be.Addr, gateOptions{
		listenerExtra: "auth = \"staff\"\n  scan = \"av\"",
		extra: fmt.Sprintf(`auth "staff" {
  user_file = %q
  backend_user = %q
  backend_password_file = %q
}
scan "av" {
  engine = "clamd"
  address = %q
  max_size = "200M"
}
`, edgeUsers(t, t.TempDir()), be.User, pw, "unix:"+clamd.Unix),
	})
	c := g.login(t, "alice", "alice-edge-pw")
	if code, msg := scanUpload(t, c, "eicar.com", ftptest.EICAR); code != 550 ||
		msg != "Upload rejected: malware detected ("+ftptest.EICARSignature+")." {
		t.Fatalf("EICAR upload after an edge login: %d %s", code, msg)
	}
	noEICAR(t, be.Root)
	if code, msg := scanUpload(t, c, "clean.txt", []byte("clean\n")); code != 226 {
		t.Fatalf("clean upload after an edge login: %d %s", code, msg)
	}
	c.Cmd(221, "QUIT")
	if e := g.transferEvent(t, "/clean.txt"); e["scan"] != "clean" {
		t.Fatalf("clean file's transfer event: %v", e)
	}
}
