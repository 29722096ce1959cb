package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap/zaptest"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestAuditFidelity (issue 14, item 12): a file name with invalid UTF-8, a
// C1 control, U+2028, a space and a backslash goes through the proxy to
// vsftpd and back; the JSON audit logs it on clean lines, escaped, with its
// exact bytes in base64, and the xferlog line keeps its 18 fields with the
// name escaped so that it reads back as the bytes the client sent.
func TestAuditFidelity(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{})
	name := "a\xff\u0085\u2028 b\\x\x1b.txt"
	writeFile(t, be.Root, name, []byte("hostile name\n"))

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.SendRaw([]byte("RETR " + name + "\r\n"))
	c.Expect(150)
	if got := ftptest.ReadAll(t, d); string(got) != "hostile name\n" {
		t.Fatalf("RETR gave %q", got)
	}
	c.Expect(226)
	c.Cmd(221, "QUIT")

	// Every line is one line of UTF-8 with nothing raw a reader could
	// take for a line break or a terminal control.
	for _, line := range bytes.SplitAfter(g.auditBuf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		body := bytes.TrimSuffix(line, []byte("\n"))
		if !utf8.Valid(body) || bytes.ContainsAny(body, "\n\r\x1b\x7f\u0085\u2028\u2029") {
			t.Fatalf("audit line not clean: %q", line)
		}
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(name))
	var cmds, transfers int
	for _, e := range g.auditEvents(t) {
		switch {
		case e["event"] == "command" && e["verb"] == "RETR":
			cmds++
			if e["arg"] != audit.Escape(name) || e["arg_b64"] != b64 {
				t.Errorf("command event %v", e)
			}
		case e["event"] == "transfer":
			transfers++
			// The full path: the file is in vsftpd's root, "/".
			if e["path"] != audit.Escape("/"+name) || e["path_b64"] != base64.StdEncoding.EncodeToString([]byte("/"+name)) || e["result"] != "complete" {
				t.Errorf("transfer event %v", e)
			}
		case e["event"] == "command" && e["arg_b64"] != nil:
			t.Errorf("a clean argument with a _b64 field: %v", e)
		}
	}
	if cmds != 1 || transfers != 1 {
		t.Fatalf("%d RETR command events, %d transfer events:\n%s", cmds, transfers, g.auditBuf.Bytes())
	}
	// The observer core (the seam tests use) sees the same fields.
	var seen bool
	for _, e := range g.audit.FilterMessage("command").All() {
		if m := e.ContextMap(); m["verb"] == "RETR" {
			seen = m["arg_b64"] == b64
		}
	}
	if !seen {
		t.Error("the observed RETR command event lacks arg_b64")
	}

	lines := strings.Split(strings.TrimSuffix(string(g.xferlog.Bytes()), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("xferlog %q", g.xferlog.Bytes())
	}
	f := strings.Fields(lines[0])
	if len(f) != 18 || f[8] != `/a\xff\u0085\u2028\x20b\\x\x1b.txt` || f[13] != be.User {
		t.Fatalf("xferlog line %q: %d fields", lines[0], len(f))
	}
}

// admin answers one request of the admin handler.
func admin(g *gate, path string) (int, string) {
	rec := httptest.NewRecorder()
	g.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// upload logs in on a new session, stores name and quits.
func upload(t *testing.T, g *gate, be *ftptest.Server, name string) {
	t.Helper()
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR %s", name)
	d.WriteAll(t, []byte("data of "+name))
	c.Expect(226)
	c.Cmd(221, "QUIT")
}

// fullDiskGate is a gate whose audit and xferlog files are on a small
// tmpfs, with audit { on_error = onError }.
func fullDiskGate(t *testing.T, be *ftptest.Server, onError string) (g *gate, aud *audit.Logger, dir, auditPath, xferPath string) {
	dir = ftptest.Tmpfs(t, 1<<20)
	auditPath, xferPath = filepath.Join(dir, "audit.log"), filepath.Join(dir, "xferlog")
	aud, files, err := audit.Open(auditPath, xferPath, audit.Options{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() }) // after the gate's Close, registered later
	g = startGate(t, be.Addr, gateOptions{audit: aud, extra: fmt.Sprintf("audit {\n  on_error = %q\n}", onError)})
	return g, aud, dir, auditPath, xferPath
}

// checkAuditFiles fails unless every audit line is a JSON object and every
// xferlog line has 18 fields; it returns the audit events.
func checkAuditFiles(t *testing.T, auditPath, xferPath string) (events []map[string]any, xferlog []string) {
	t.Helper()
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("%s ends in a partial line", auditPath)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		events = append(events, m)
	}
	x, err := os.ReadFile(xferPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(x, []byte("\n")) {
		t.Fatalf("%s ends in a partial line", xferPath)
	}
	xferlog = strings.Split(strings.TrimSuffix(string(x), "\n"), "\n")
	for _, line := range xferlog {
		if f := strings.Fields(line); len(f) != 18 {
			t.Fatalf("xferlog line %q has %d fields", line, len(f))
		}
	}
	return events, xferlog
}

func count(events []map[string]any, event string) int {
	n := 0
	for _, e := range events {
		if e["event"] == event {
			n++
		}
	}
	return n
}

// TestAuditFullDisk (issue 24, item 9): the audit and xferlog files on a
// real filesystem that fills up. With on_error = "continue", sessions go on,
// the failures are counted in the metrics and /readyz says the audit is
// degraded, and once space returns every event of every session is in the
// files, each line whole. With "refuse", new sessions get 421 and /readyz
// 503 while writes fail, a running session finishes its transfer, and
// service resumes by itself when space returns.
func TestAuditFullDisk(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})

	t.Run("continue", func(t *testing.T) {
		g, aud, dir, auditPath, xferPath := fullDiskGate(t, be, "continue")
		upload(t, g, be, "before.bin")
		if err := aud.Sync(); err != nil {
			t.Fatal(err)
		}
		filler := ftptest.Fill(t, dir)
		sessions := 1
		for metric(t, g, `ftpsgate_audit_write_errors_total{sink="audit"}`) == `ftpsgate_audit_write_errors_total{sink="audit"} 0` ||
			metric(t, g, `ftpsgate_audit_write_errors_total{sink="xferlog"}`) == `ftpsgate_audit_write_errors_total{sink="xferlog"} 0` {
			if sessions == 60 {
				t.Fatalf("no audit write error after %d sessions on a full disk", sessions)
			}
			upload(t, g, be, fmt.Sprintf("full-%d.bin", sessions))
			sessions++
		}
		upload(t, g, be, "one more.bin") // served all the same
		sessions++
		if code, body := admin(g, "/readyz"); code != 200 || !strings.Contains(body, "audit degraded") ||
			!strings.Contains(body, "no space left on device") {
			t.Fatalf("/readyz on a full disk: %d %q", code, body)
		}
		if got := metric(t, g, `ftpsgate_audit_healthy{sink="audit"}`); got != `ftpsgate_audit_healthy{sink="audit"} 0` {
			t.Fatalf("metric %q", got)
		}

		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		if err := aud.Sync(); err != nil {
			t.Fatal(err)
		}
		if code, body := admin(g, "/readyz"); code != 200 || body != "ready\n" {
			t.Fatalf("/readyz once space returned: %d %q", code, body)
		}
		events, xferlog := checkAuditFiles(t, auditPath, xferPath)
		if count(events, "session_start") != sessions || count(events, "session_end") != sessions ||
			count(events, "transfer") != sessions || len(xferlog) != sessions {
			t.Fatalf("%d sessions, but %d session_start, %d session_end, %d transfer events, %d xferlog lines",
				sessions, count(events, "session_start"), count(events, "session_end"), count(events, "transfer"), len(xferlog))
		}
		if got := metric(t, g, `ftpsgate_audit_dropped_total{sink="audit"}`); got != `ftpsgate_audit_dropped_total{sink="audit"} 0` {
			t.Fatalf("metric %q", got)
		}
	})

	t.Run("refuse", func(t *testing.T) {
		g, aud, dir, auditPath, xferPath := fullDiskGate(t, be, "refuse")
		writeFile(t, be.Root, "big.bin", bytes.Repeat([]byte("x"), 1<<20))
		running := g.login(t, be.User, be.Password)
		running.Cmd(200, "TYPE I")
		if err := aud.Sync(); err != nil {
			t.Fatal(err)
		}
		filler := ftptest.Fill(t, dir)
		// The running session's commands fill what is left of the files'
		// last pages; then a write fails.
		for i := 0; ; i++ {
			if code, _ := admin(g, "/readyz"); code == 503 {
				break
			}
			if i == 2000 {
				t.Fatal("/readyz still 200 with the audit on a full disk")
			}
			running.Cmd(257, "PWD")
		}
		if _, body := admin(g, "/readyz"); !strings.Contains(body, "new sessions are refused") ||
			!strings.Contains(body, "no space left on device") {
			t.Fatalf("/readyz body %q", body)
		}
		raw, err := net.Dial("tcp", g.explicit)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		line, _ := bufio.NewReader(raw).ReadString('\n')
		if !strings.HasPrefix(line, "421 ") {
			t.Fatalf("a new session on a full disk got %q, want 421", line)
		}
		// The running session finishes its work.
		d := running.DialData(running.EPSV())
		running.Cmd(150, "RETR big.bin")
		if got := ftptest.ReadAll(t, d); len(got) != 1<<20 {
			t.Fatalf("RETR gave %d bytes", len(got))
		}
		running.Expect(226)

		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for code, _ := admin(g, "/readyz"); code != 200; code, _ = admin(g, "/readyz") {
			if time.Now().After(deadline) {
				t.Fatal("/readyz stayed 503 after space returned")
			}
			time.Sleep(20 * time.Millisecond) // polling a state, bounded by deadline
		}
		upload(t, g, be, "after.bin")
		running.Cmd(221, "QUIT")
		if got := metric(t, g, `ftpsgate_policy_denials_total{rule="audit_unavailable"}`); got != `ftpsgate_policy_denials_total{rule="audit_unavailable"} 1` {
			t.Fatalf("metric %q", got)
		}
		if err := aud.Sync(); err != nil {
			t.Fatal(err)
		}
		events, xferlog := checkAuditFiles(t, auditPath, xferPath)
		if count(events, "transfer") != 2 || len(xferlog) != 2 || count(events, "policy_denied") != 1 {
			t.Fatalf("%d transfer events, %d xferlog lines, %d policy_denied", count(events, "transfer"), len(xferlog),
				count(events, "policy_denied"))
		}
	})
}
