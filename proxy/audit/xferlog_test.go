package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestXferlogLine(t *testing.T) {
	end := time.Date(2026, 11, 3, 9, 5, 7, 0, time.Local)
	tests := []struct {
		name string
		t    Transfer
		want string
	}{
		{"binary download, complete",
			Transfer{Verb: "RETR", Direction: "download", Path: "/pub/big.bin", Bytes: 3000000, Duration: 2600 * time.Millisecond,
				Result: "complete", Client: "203.0.113.7", User: "alice", Binary: true},
			"Tue Nov  3 09:05:07 2026 3 203.0.113.7 3000000 /pub/big.bin b _ o r alice ftp 0 * c"},
		{"ASCII upload, incomplete, under a second",
			Transfer{Verb: "STOR", Direction: "upload", Path: "notes.txt", Bytes: 10, Duration: 3 * time.Millisecond,
				Result: "incomplete", Client: "2001:db8::5", User: "bob"},
			"Tue Nov  3 09:05:07 2026 1 2001:db8::5 10 notes.txt a _ i r bob ftp 0 * i"},
		{"spaces and control characters cannot add fields",
			Transfer{Verb: "APPE", Direction: "upload", Path: "my file\tx\n.txt", Bytes: 1, Result: "aborted",
				Client: "192.0.2.1", User: "e ve", Binary: true},
			"Tue Nov  3 09:05:07 2026 1 192.0.2.1 1 my\\x20file\\x09x\\x0a.txt b _ i r e\\x20ve ftp 0 * i"},
		{"an underscore stays, distinct from a space",
			Transfer{Verb: "RETR", Direction: "download", Path: "my_file", Result: "complete", Client: "192.0.2.1", User: "e_ve"},
			"Tue Nov  3 09:05:07 2026 1 192.0.2.1 0 my_file a _ o r e_ve ftp 0 * c"},
		{"invalid UTF-8, C1, U+2028, a backslash and a literal escape",
			Transfer{Verb: "STOR", Direction: "upload", Path: "a\xff\u0085\u2028b\\x\\xff", Result: "complete", Client: "192.0.2.1",
				User: "u\u2029\x1b[1m", Binary: true},
			`Tue Nov  3 09:05:07 2026 1 192.0.2.1 0 a\xff\u0085\u2028b\\x\\xff b _ i r u\u2029\x1b[1m ftp 0 * c`},
		{"a file named -", Transfer{Verb: "RETR", Direction: "download", Path: "-", Result: "complete", Client: "192.0.2.1", User: "u"},
			`Tue Nov  3 09:05:07 2026 1 192.0.2.1 0 \x2d a _ o r u ftp 0 * c`},
		{"STOU without a name", Transfer{Verb: "STOU", Direction: "upload", Bytes: 5, Result: "complete", Client: "192.0.2.1", User: "u", Binary: true},
			"Tue Nov  3 09:05:07 2026 1 192.0.2.1 5 - b _ i r u ftp 0 * c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := XferlogLine(tc.t, end)
			if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
				t.Fatalf("not one line: %q", line)
			}
			if got := strings.TrimSuffix(line, "\n"); got != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
			if n := len(strings.Fields(line)); n != 18 {
				t.Fatalf("%d fields, xferlog has 18 (with the 5-field date)", n)
			}
		})
	}
}

// TestXferlogOnlyFiles: listings are not file transfers and stay out.
func TestXferlogOnlyFiles(t *testing.T) {
	var buf bytes.Buffer
	s := (&Logger{}).WithXferlog(&buf).Session("s1")
	s.Transfer(Transfer{Verb: "LIST", Direction: "download", Result: "complete"})
	s.Transfer(Transfer{Verb: "RETR", Direction: "download", Path: "a", Result: "complete", File: true, Client: "192.0.2.1", User: "u"})
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), " a a _ o r u ") {
		t.Fatalf("xferlog %q", buf.String())
	}
}

// TestReopen: after the file is renamed (logrotate), Reopen writes to a new
// file at the path, and nothing written before or after is lost.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	audit, xfer := filepath.Join(dir, "audit.log"), filepath.Join(dir, "xferlog")
	l, files, err := Open(audit, xfer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	s := l.Session("s1")
	s.Transfer(Transfer{Verb: "RETR", Direction: "download", Path: "before", Result: "complete", File: true, Client: "192.0.2.1", User: "u"})
	for _, p := range []string{audit, xfer} {
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Transfer(Transfer{Verb: "RETR", Direction: "download", Path: "after", Result: "complete", File: true, Client: "192.0.2.1", User: "u"})
	l.Sync()
	for _, c := range []struct{ path, want, not string }{
		{audit + ".1", `"path":"before"`, "after"}, {audit, `"path":"after"`, "before"},
		{xfer + ".1", " before ", "after"}, {xfer, " after ", "before"},
	} {
		b, err := os.ReadFile(c.path)
		if err != nil || !strings.Contains(string(b), c.want) || strings.Contains(string(b), c.not) {
			t.Fatalf("%s: %q (%v)", c.path, b, err)
		}
	}
}
