package proxy_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

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

	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Login(be.User, be.Password)
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
			if e["path"] != audit.Escape(name) || e["path_b64"] != b64 || e["result"] != "complete" {
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
	if len(f) != 18 || f[8] != `a\xff\u0085\u2028\x20b\\x\x1b.txt` || f[13] != be.User {
		t.Fatalf("xferlog line %q: %d fields", lines[0], len(f))
	}
}
