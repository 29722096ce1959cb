package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Issue 24: no short transfer is ever reported complete. The truncation
// tests put a relay on the path that passes a number of TLS records and then
// cuts the stream with a bare TCP FIN (no TLS alert), the way a broken
// middlebox or an attacker on the path would.

// cutRelay relays one TCP connection between a sender and a receiver. After
// n TLS records from the sender it half-closes toward the receiver with a
// bare FIN and swallows the rest, so that the sender believes everything
// was delivered. What the receiver sends is relayed whole. n <= 0 relays
// everything.
type cutRelay struct {
	sender, receiver *net.TCPConn
	cut              atomic.Bool // the stream was cut
	wg               sync.WaitGroup
}

func startCut(sender, receiver *net.TCPConn, n int) *cutRelay {
	r := &cutRelay{sender: sender, receiver: receiver}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		cut, err := passRecords(receiver, sender, n)
		if err != nil && !errors.Is(err, io.EOF) {
			receiver.SetLinger(0) // the sender broke: so does its stream
			receiver.Close()
			return
		}
		receiver.CloseWrite() // the cut, or the sender's own end
		if cut {
			r.cut.Store(true)
			io.Copy(io.Discard, sender)
		}
	}()
	go func() {
		defer r.wg.Done()
		io.Copy(sender, receiver)
		sender.CloseWrite()
	}()
	return r
}

// stop closes both connections and waits for the relay's goroutines.
func (r *cutRelay) stop() {
	r.sender.Close()
	r.receiver.Close()
	r.wg.Wait()
}

// passRecords copies whole TLS records (5-byte header, then the length it
// names) from src to dst, n of them, and reports whether it stopped there.
func passRecords(dst, src net.Conn, n int) (bool, error) {
	var hdr [5]byte
	for i := 0; n <= 0 || i < n; i++ {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return false, err
		}
		rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
		copy(rec, hdr[:])
		if _, err := io.ReadFull(src, rec[5:]); err != nil {
			return false, err
		}
		if _, err := dst.Write(rec); err != nil {
			return false, err
		}
	}
	return true, nil
}

// cutDialer is the proxy's dialer toward a backend whose control address is
// control: data connections go through a cutRelay that cuts what the
// server sends after cut TLS records (0: never).
type cutDialer struct {
	control string
	cut     atomic.Int64
	mu      sync.Mutex
	relays  []*cutRelay
}

func newCutDialer(t testing.TB, control string) *cutDialer {
	d := &cutDialer{control: control}
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range d.relays {
			r.stop()
		}
	})
	return d
}

func (d *cutDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	if addr == d.control {
		return nd.DialContext(ctx, network, addr)
	}
	up, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// A loopback connection of our own, whose far end the relay holds.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		up.Close()
		return nil, err
	}
	defer ln.Close()
	mine, err := nd.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		up.Close()
		return nil, err
	}
	theirs, err := ln.Accept()
	if err != nil {
		up.Close()
		mine.Close()
		return nil, err
	}
	r := startCut(up.(*net.TCPConn), theirs.(*net.TCPConn), int(d.cut.Load()))
	d.mu.Lock()
	d.relays = append(d.relays, r)
	d.mu.Unlock()
	return mine, nil
}

// cutClientData listens on loopback for the client's data connection and
// relays it to target (the proxy's passive port), cutting what the client
// sends after n TLS records. It returns the address to connect to.
func cutClientData(t testing.TB, target string, n int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relay := make(chan *cutRelay, 1)
	go func() {
		defer close(relay)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		relay <- startCut(c.(*net.TCPConn), up.(*net.TCPConn), n)
	}()
	t.Cleanup(func() {
		ln.Close()
		if r := <-relay; r != nil {
			r.stop()
		}
	})
	return ln.Addr().String()
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// transferEvent is the audit's transfer event for path, which must be
// there exactly once.
func (g *gate) transferEvent(t testing.TB, path string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, e := range g.eventsOf(t, "transfer") {
		if e["path"] == path {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d transfer events for %q: %v", len(found), path, g.eventsOf(t, "transfer"))
	}
	return found[0]
}

// xferlogStatus is the completion status (c or i) of the xferlog line
// naming path, which must be there exactly once.
func (g *gate) xferlogStatus(t testing.TB, path string) string {
	t.Helper()
	var status []string
	for _, l := range strings.Split(strings.TrimSpace(string(g.xferlog.Bytes())), "\n") {
		f := strings.Fields(l)
		if len(f) == 18 && f[8] == path {
			status = append(status, f[17])
		}
	}
	if len(status) != 1 {
		t.Fatalf("%d xferlog lines for %q:\n%s", len(status), path, g.xferlog.Bytes())
	}
	return status[0]
}

// serverLogCount counts the lines of a server's log that contain all of
// words.
func serverLogCount(t testing.TB, be *ftptest.Server, words ...string) int {
	t.Helper()
	b, err := os.ReadFile(be.Log)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
lines:
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range words {
			if !strings.Contains(l, w) {
				continue lines
			}
		}
		n++
	}
	return n
}

// TestBackendCloseNotify (issue 24, item 1): a download from an FTPS
// backend must end with the server's TLS close_notify. vsftpd, ProFTPD and
// pure-ftpd all send one, on RETR and on listings, so their downloads are
// complete. A relay between the proxy and the server's data port that
// passes 30 TLS records and then a bare FIN, swallowing the rest (the
// server believes it sent the whole file and says 226), fails the
// download: the client gets 426 and no close_notify, the audit and xferlog
// say incomplete with the bytes that came.
func TestBackendCloseNotify(t *testing.T) {
	beCerts := ftptest.NewCerts(t, ftptest.RSA)
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *ftptest.Server
	}{
		{"vsftpd", func(t *testing.T) *ftptest.Server { return ftptest.Vsftpd(t, ftptest.VsftpdOptions{TLS: beCerts}) }},
		{"proftpd", func(t *testing.T) *ftptest.Server { return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{TLS: beCerts}) }},
		{"pure-ftpd", func(t *testing.T) *ftptest.Server {
			return ftptest.PureFTPdWith(t, ftptest.PureFTPdOptions{TLS: beCerts})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := tc.start(t)
			content := randomBytes(t, 3000000)
			writeFile(t, be.Root, "f.bin", content)
			d := newCutDialer(t, be.Addr)
			g := startGate(t, be.Addr, gateOptions{dialBackend: d.dial,
				backend: fmt.Sprintf("tls = \"explicit\"\n  ca_file = %q", beCerts.CAFile)})
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")

			// Whole: the server's close_notify ends each stream.
			dd := c.DialData(c.EPSV())
			c.Cmd(150, "RETR f.bin")
			if got := ftptest.ReadAll(t, dd); !bytes.Equal(got, content) || !dd.CloseNotified() {
				t.Fatalf("RETR: %d bytes, close_notify %v", len(got), dd.CloseNotified())
			}
			c.Expect(226)
			dd = c.DialData(c.EPSV())
			c.Cmd(150, "LIST")
			if got := ftptest.ReadAll(t, dd); !bytes.Contains(got, []byte("f.bin")) {
				t.Fatalf("LIST: %q", got)
			}
			c.Expect(226)

			// Cut after 30 records.
			d.cut.Store(30)
			dd = c.DialData(c.EPSV())
			c.Cmd(150, "RETR f.bin")
			dd.SetDeadline(time.Now().Add(time.Minute))
			got, err := io.ReadAll(dd)
			if err == nil && dd.CloseNotified() {
				t.Fatalf("the cut download ended with close_notify after %d bytes", len(got))
			}
			if len(got) >= len(content) || !bytes.Equal(got, content[:len(got)]) {
				t.Fatalf("got %d bytes, not a prefix of the file", len(got))
			}
			if msg := c.Expect(426); !strings.Contains(msg, "without TLS close_notify") {
				t.Fatalf("426 text %q", msg)
			}
			c.Cmd(221, "QUIT")

			evs := g.eventsOf(t, "transfer")
			if len(evs) != 3 {
				t.Fatalf("transfer events %v", evs)
			}
			if e := evs[0]; e["result"] != "complete" || e["close_notify"] != true ||
				math.Abs(e["announced_bytes"].(float64)-3000000) > 53 { // pure-ftpd's kbytes are rounded
				t.Fatalf("whole RETR: %v", e)
			}
			e := evs[2]
			if e["result"] != "incomplete" || e["check"] != "backend_close_notify" || e["close_notify"] != false ||
				e["code"].(float64) != 426 || e["bytes"].(float64) < float64(len(got)) || e["bytes"].(float64) >= float64(len(content)) {
				t.Fatalf("cut RETR: %v", e)
			}
			lines := strings.Split(strings.TrimSpace(string(g.xferlog.Bytes())), "\n")
			if len(lines) != 2 || !strings.HasSuffix(lines[0], " c") || !strings.HasSuffix(lines[1], " i") {
				t.Fatalf("xferlog:\n%s", g.xferlog.Bytes())
			}
			if !g.logged("transfer failed an integrity check") {
				t.Fatal("no warning logged")
			}
			t.Logf("cut download: %.0f of %d bytes relayed, %d read by the client", e["bytes"], len(content), len(got))
			if be.Name == "vsftpd-ftps" {
				// The server took the cut download for a whole one.
				if n := serverLogCount(t, be, "OK DOWNLOAD", "f.bin"); n != 2 {
					t.Fatalf("vsftpd logged %d OK DOWNLOADs, want 2", n)
				}
			}
		})
	}
}

// TestUploadCloseNotify (issue 24, items 2 and 5): an upload under PROT P
// must end with the client's close_notify. A relay on the client's path
// passes 20 TLS records of a 3,000,000-byte upload, then a bare FIN, and
// swallows the rest (the client believes it sent everything, close_notify
// included): the client gets 426, the backend's data connection is reset
// so that vsftpd logs a failed upload, and the audit and xferlog say
// incomplete, with close_notify false. An upload the client resets midway
// is audited with close_notify false too. With upload_close_notify =
// "warn" the cut upload is completed as it came, with a warning.
func TestUploadCloseNotify(t *testing.T) {
	beCerts := ftptest.NewCerts(t, ftptest.RSA)
	content := randomBytes(t, 3000000)
	for _, tc := range []struct {
		name    string
		opt     ftptest.VsftpdOptions
		backend string
	}{
		{"vsftpd", ftptest.VsftpdOptions{}, ""},
		{"vsftpd FTPS", ftptest.VsftpdOptions{TLS: beCerts}, fmt.Sprintf("tls = \"explicit\"\n  ca_file = %q", beCerts.CAFile)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := ftptest.Vsftpd(t, tc.opt)
			g := startGate(t, be.Addr, gateOptions{backend: tc.backend})
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")

			d := c.DialData(c.EPSV())
			c.Cmd(150, "STOR whole.bin")
			d.WriteAll(t, content)
			c.Expect(226)

			d = c.DialData(cutClientData(t, c.EPSV(), 20))
			c.Cmd(150, "STOR cut.bin")
			d.WriteAll(t, content)
			if msg := c.Expect(426); !strings.Contains(msg, "without TLS close_notify") {
				t.Fatalf("426 text %q", msg)
			}

			d = c.DialData(c.EPSV())
			c.Cmd(150, "STOR reset.bin")
			if _, err := d.Write(content[:200000]); err != nil {
				t.Fatal(err)
			}
			d.TCP.(*net.TCPConn).SetLinger(0)
			d.TCP.Close()
			c.Expect(426)
			c.Cmd(221, "QUIT")

			if e := g.transferEvent(t, "/whole.bin"); e["result"] != "complete" || e["close_notify"] != true {
				t.Fatalf("whole upload: %v", e)
			}
			e := g.transferEvent(t, "/cut.bin")
			if e["result"] != "incomplete" || e["check"] != "upload_close_notify" || e["close_notify"] != false ||
				e["code"].(float64) != 426 || e["bytes"].(float64) >= float64(len(content)) {
				t.Fatalf("cut upload: %v", e)
			}
			if e := g.transferEvent(t, "/reset.bin"); e["result"] != "incomplete" || e["close_notify"] != false || e["check"] != nil {
				t.Fatalf("reset upload: %v", e)
			}
			if s := g.xferlogStatus(t, "/cut.bin"); s != "i" {
				t.Fatalf("xferlog says %q for the cut upload", s)
			}
			if fi, err := os.Stat(filepath.Join(be.Root, "cut.bin")); err == nil {
				if fi.Size() >= int64(len(content)) {
					t.Fatalf("the backend stored %d bytes", fi.Size())
				}
				t.Logf("cut upload: %.0f of %d bytes relayed, %d stored by the backend", e["bytes"], len(content), fi.Size())
			}
			if serverLogCount(t, be, "FAIL UPLOAD", "cut.bin") != 1 || serverLogCount(t, be, "OK UPLOAD", "cut.bin") != 0 {
				b, _ := os.ReadFile(be.Log)
				t.Fatalf("vsftpd did not record a failed upload:\n%s", b)
			}
		})
	}
	t.Run("warn", func(t *testing.T) {
		be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
		g := startGate(t, be.Addr, gateOptions{listenerExtra: `upload_close_notify = "warn"`})
		c := g.login(t, be.User, be.Password)
		c.Cmd(200, "TYPE I")
		d := c.DialData(cutClientData(t, c.EPSV(), 20))
		c.Cmd(150, "STOR cut.bin")
		d.WriteAll(t, content)
		c.Expect(226)
		c.Cmd(221, "QUIT")
		e := g.transferEvent(t, "/cut.bin")
		if e["result"] != "complete" || e["close_notify"] != false || e["check"] != nil {
			t.Fatalf("cut upload: %v", e)
		}
		if !g.logged("upload ended without TLS close_notify: its completeness cannot be verified") {
			t.Fatal("no warning for the unverified upload")
		}
	})
}

// TestAnnouncedSize (issue 24, item 4): a binary RETR whose 150 announced
// a size must carry it. A scripted backend announces a size, sends other
// than that, and replies 226; fewer bytes fail the transfer with 426.
// After REST, vsftpd announces the whole file and ProFTPD what remains
// (TestServersAnnounceSizes); both are accepted. pure-ftpd's kbytes are
// checked to a tenth of a KiB. More bytes than
// announced (a file that grew) and TYPE A (where the length may change)
// pass.
func TestAnnouncedSize(t *testing.T) {
	content := randomBytes(t, 200000)
	type sizeCase struct {
		name           string
		typ            string
		rest           int64
		announced      int64 // in the audit
		send           int
		code           int
		result, check  string
		longerLogEntry bool
		reply          string // the 150
		least          int64  // in the 426's text
	}
	var tests []sizeCase
	for _, tc := range []sizeCase{
		{"short", "I", 0, 200000, 100000, 426, "incomplete", "announced_size", false, "", 200000},
		{"whole", "I", 0, 200000, 200000, 226, "complete", "", false, "", 0},
		{"longer: the file grew", "I", 0, 100000, 200000, 226, "complete", "", true, "", 0},
		{"TYPE A is not checked", "A", 0, 200000, 100000, 226, "complete", "", false, "", 0},
		{"REST, the whole file announced (vsftpd)", "I", 1000, 200000, 199000, 226, "complete", "", false, "", 0},
		{"REST, the rest announced (ProFTPD)", "I", 1000, 199000, 199000, 226, "complete", "", false, "", 0},
		{"REST, short", "I", 1000, 200000, 150000, 426, "incomplete", "announced_size", false, "", 199000},
	} {
		tc.reply = fmt.Sprintf("150 Opening BINARY mode data connection for f (%d bytes).", tc.announced)
		tests = append(tests, tc)
	}
	// pure-ftpd's "195.3 kbytes to download" (200000 bytes) is 199987
	// bytes, give or take 53.
	for _, tc := range []sizeCase{
		{name: "pure-ftpd, whole", send: 200000, code: 226, result: "complete"},
		{name: "pure-ftpd, 100 bytes short", send: 199900, code: 426, result: "incomplete", check: "announced_size", least: 199934},
	} {
		tc.typ, tc.announced, tc.reply = "I", 199987, "150-Accepted data connection\r\n150 195.3 kbytes to download"
		tests = append(tests, tc)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := startScriptedBackend(t, &scriptedBackend{content: content, send: tc.send, retrReply: "226 Transfer complete.", retr150: tc.reply})
			g := startGate(t, be.ln.Addr().String(), gateOptions{})
			c := g.login(t, "anyone", "secret")
			c.Cmd(200, "TYPE %s", tc.typ)
			d := c.DialData(c.EPSV())
			if tc.rest > 0 {
				c.Cmd(350, "REST %d", tc.rest)
			}
			c.Cmd(150, "RETR f")
			d.SetDeadline(time.Now().Add(time.Minute))
			got, err := io.ReadAll(d)
			clean := err == nil && d.CloseNotified()
			if clean != (tc.code == 226) || len(got) > tc.send {
				t.Fatalf("got %d bytes, ended cleanly: %v", len(got), clean)
			}
			msg := c.Expect(tc.code)
			if tc.code == 426 && !strings.Contains(msg, fmt.Sprintf("%d of the %d bytes", tc.send, tc.least)) {
				t.Fatalf("426 text %q", msg)
			}
			c.Cmd(221, "QUIT")
			e := g.transferEvent(t, "f") // the scripted server answers no PWD: the name stays as sent
			if e["result"] != tc.result || e["bytes"].(float64) != float64(tc.send) ||
				e["announced_bytes"].(float64) != float64(tc.announced) || (tc.check == "") != (e["check"] == nil) ||
				tc.check != "" && e["check"] != tc.check || tc.rest > 0 && e["offset"].(float64) != float64(tc.rest) {
				t.Fatalf("transfer event %v", e)
			}
			if tc.check != "" && !g.logged("transfer failed an integrity check") {
				t.Fatal("no warning logged")
			}
			if l := g.logged("download longer than the FTP server announced; the file may have grown while it was read"); l != tc.longerLogEntry {
				t.Fatalf("longer-download log entry: %v", l)
			}
		})
	}
}

// TestSTOUPath (issue 24, item 5): a STOU upload is audited, and written to
// xferlog, under the name the server chose, which its 150 reply gives.
func TestSTOUPath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *ftptest.Server
	}{
		{"vsftpd", func(t *testing.T) *ftptest.Server { return ftptest.Vsftpd(t, ftptest.VsftpdOptions{}) }},
		{"pure-ftpd", func(t *testing.T) *ftptest.Server { return ftptest.PureFTPd(t) }},
		{"proftpd", func(t *testing.T) *ftptest.Server { return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := tc.start(t)
			g := startGate(t, be.Addr, gateOptions{})
			c := g.login(t, be.User, be.Password)
			c.Cmd(200, "TYPE I")
			d := c.DialData(c.EPSV())
			c.Cmd(150, "STOU")
			d.WriteAll(t, []byte("unique\n"))
			c.Expect(226)
			c.Cmd(221, "QUIT")
			ents, err := os.ReadDir(be.Root)
			if err != nil || len(ents) != 1 {
				t.Fatalf("files on the server: %v (%v)", ents, err)
			}
			name := ents[0].Name()
			if e := g.transferEvent(t, "/"+name); e["result"] != "complete" || e["verb"] != "STOU" {
				t.Fatalf("transfer event %v", e)
			}
			if s := g.xferlogStatus(t, "/"+name); s != "c" {
				t.Fatalf("xferlog status %q", s)
			}
		})
	}
}

// TestServersAnnounceSizes checks, against the real servers, the facts the
// size check and the STOU name rest on: what each server's 150 says for
// RETR, RETR after REST and STOU (rewrite's tables hold these lines).
// vsftpd and ProFTPD announce the size in bytes, vsftpd the whole file's
// even after REST, ProFTPD what remains; pure-ftpd what remains, in kbytes
// to one decimal. All three name STOU's file in their 150.
func TestServersAnnounceSizes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		start         func(t *testing.T) *ftptest.Server
		full, resumed rewrite.Size // the sizes announced, without and after REST 1000
	}{
		{"vsftpd", func(t *testing.T) *ftptest.Server { return ftptest.Vsftpd(t, ftptest.VsftpdOptions{}) },
			rewrite.Size{Bytes: 3000000}, rewrite.Size{Bytes: 3000000}},
		{"proftpd", func(t *testing.T) *ftptest.Server { return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{}) },
			rewrite.Size{Bytes: 3000000}, rewrite.Size{Bytes: 2999000}},
		{"pure-ftpd", func(t *testing.T) *ftptest.Server { return ftptest.PureFTPd(t) },
			rewrite.Size{Bytes: 3000012, Slack: 53}, rewrite.Size{Bytes: 2998988, Slack: 53}}, // 2929.7 and 2928.7 kbytes
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := tc.start(t)
			content := randomBytes(t, 3000000)
			writeFile(t, be.Root, "f.bin", content)
			c := dialRaw(t, be.Addr)
			c.cmd("USER " + be.User)
			c.cmd("PASS " + be.Password)
			c.cmd("TYPE I")
			for _, rest := range []int64{0, 1000} {
				if rest > 0 {
					if rep := c.cmd(fmt.Sprintf("REST %d", rest)); rep.Code != 350 {
						t.Fatalf("REST: %s", rep)
					}
				}
				d := c.data()
				rep := c.cmd("RETR f.bin")
				got := ftptest.ReadAll(t, d)
				d.Close() // ProFTPD lingers until the client closes too
				if fin := c.read(); fin.Code != 226 || !bytes.Equal(got, content[rest:]) {
					t.Fatalf("RETR after REST %d: %d bytes, %s", rest, len(got), fin)
				}
				want := tc.full
				if rest > 0 {
					want = tc.resumed
				}
				size, ok := rewrite.AnnouncedSize(rep)
				if !ok || size != want {
					t.Fatalf("REST %d: %q announces %+v, %v; want %+v", rest, rep.Lines, size, ok, want)
				}
				if least, most := size.Expected(rest); int64(len(got)) < least || int64(len(got)) > most {
					t.Fatalf("REST %d: %d bytes, outside %d-%d", rest, len(got), least, most)
				}
				t.Logf("%s, REST %d: %q", be.Name, rest, rep.Lines)
			}
			d := c.data()
			rep := c.cmd("STOU")
			d.Write([]byte("x"))
			d.Close()
			if fin := c.read(); fin.Code != 226 {
				t.Fatalf("STOU: %s", fin)
			}
			name, ok := rewrite.STOUName(rep)
			if _, err := os.Stat(filepath.Join(be.Root, name)); !ok || err != nil {
				t.Fatalf("STOU: %q names %q (%v)", rep.Lines, name, err)
			}
			t.Logf("%s, STOU: %q", be.Name, rep.Lines)
		})
	}
}

// rawConn is a plain FTP control connection whose replies are parsed by
// rewrite, as the proxy parses them.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if rep := c.read(); rep.Code != 220 {
		t.Fatalf("greeting %s", rep)
	}
	return c
}

func (c *rawConn) read() *rewrite.Reply {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	rep, err := rewrite.ReadReply(c.r, rewrite.ReplyLimits{})
	if err != nil {
		c.t.Fatal(err)
	}
	return rep
}

// cmd sends line and returns the first reply (the 150 of a transfer).
func (c *rawConn) cmd(line string) *rewrite.Reply {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

// data opens a passive data connection (EPSV).
func (c *rawConn) data() net.Conn {
	c.t.Helper()
	p, err := rewrite.ParseEPSV(c.cmd("EPSV"))
	if err != nil {
		c.t.Fatal(err)
	}
	d, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { d.Close() })
	return d
}
