package audit

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ftpsgate/ftpsgate/rewrite"
)

// recordTap is a Tap that keeps what it is given.
type recordTap struct {
	mu    sync.Mutex
	wants map[string]bool // nil: every kind
	got   []tapEvent
}

type tapEvent struct {
	kind string
	body string
}

func (r *recordTap) Wants(kind string) bool { return r.wants == nil || r.wants[kind] }

func (r *recordTap) Event(kind string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, tapEvent{kind, string(body)})
}

func (r *recordTap) events() []tapEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tapEvent(nil), r.got...)
}

func TestKind(t *testing.T) {
	tr := func(verb string, d Direction, r Result, scan string) Transfer {
		return Transfer{Verb: verb, Direction: d, Result: r, Scan: scan, Announced: -1}
	}
	for _, tc := range []struct {
		name string
		emit func(s *Session)
		want string
	}{
		{"upload complete", func(s *Session) { s.Transfer(tr("STOR", Upload, Complete, "")) }, KindUploadComplete},
		{"scanned upload complete", func(s *Session) { s.Transfer(tr("STOR", Upload, Complete, "clean")) }, KindUploadComplete},
		{"download complete", func(s *Session) { s.Transfer(tr("RETR", Download, Complete, "")) }, KindDownloadComplete},
		{"listing", func(s *Session) { s.Transfer(tr("LIST", Download, Complete, "")) }, ""},
		{"download incomplete", func(s *Session) { s.Transfer(tr("RETR", Download, Incomplete, "")) }, ""},
		{"upload incomplete", func(s *Session) { s.Transfer(tr("STOR", Upload, Incomplete, "")) }, ""},
		{"upload aborted", func(s *Session) { s.Transfer(tr("APPE", Upload, Aborted, "")) }, ""},
		{"upload failed", func(s *Session) { s.Transfer(tr("STOR", Upload, Failed, "")) }, ""},
		{"infected", func(s *Session) { s.Transfer(tr("STOR", Upload, Rejected, "infected")) }, KindUploadRejected},
		{"too large", func(s *Session) { s.Transfer(tr("STOU", Upload, TooLarge, "")) }, KindUploadRejected},
		{"over quota", func(s *Session) { s.Transfer(tr("STOR", Upload, QuotaExceeded, "")) }, KindUploadRejected},
		{"download over quota", func(s *Session) { s.Transfer(tr("RETR", Download, QuotaExceeded, "")) }, ""},
		{"scanner down, rejected", func(s *Session) { s.Transfer(tr("STOR", Upload, Failed, "error")) }, KindUploadRejected},
		{"policy refuses STOR", func(s *Session) { s.PolicyDenied("read_only", "STOR", "no") }, KindUploadRejected},
		{"policy refuses APPE", func(s *Session) { s.PolicyDenied("read_only", "APPE", "no") }, KindUploadRejected},
		{"policy refuses DELE", func(s *Session) { s.PolicyDenied("read_only", "DELE", "no") }, ""},
		{"login failed", func(s *Session) { s.Login(Login{User: "bob", Code: 530}) }, KindLoginFailed},
		{"login", func(s *Session) { s.Login(Login{User: "bob", OK: true, Code: 230}) }, ""},
		{"ban", func(s *Session) { s.Ban("192.0.2.1", time.Now(), 3) }, KindBan},
		{"command", func(s *Session) { s.Command(rewrite.Command{Verb: "STOR", Arg: "a"}) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tap := &recordTap{}
			s := New(nil).WithTap(tap).Session("s1")
			tc.emit(s)
			s.End("bob", time.Second, "quit", 0, 0)
			got := tap.events()
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("tapEvent %v", got)
			case tc.want != "" && (len(got) != 1 || got[0].kind != tc.want):
				t.Fatalf("tapEvent %v, want one %s", got, tc.want)
			}
		})
	}
}

// TestTapBodyIsTheAuditLine: the body a tap gets is the audit stream's
// line for the event, byte for byte but for the line ending.
func TestTapBodyIsTheAuditLine(t *testing.T) {
	var buf bytes.Buffer
	z := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel))
	tap := &recordTap{}
	s := New(z).WithTap(tap).Session("s1")
	s.Transfer(Transfer{Verb: "STOR", Direction: Upload, Path: "/in/a\x01b.csv", Bytes: 42, Result: Complete, Code: 226,
		Announced: -1, User: "bob", Client: "192.0.2.7"})
	s.Reply("STOR", 226)
	got := tap.events()
	if len(got) != 1 {
		t.Fatalf("tapEvent %v", got)
	}
	line, _, _ := strings.Cut(buf.String(), "\n")
	if got[0].body != line {
		t.Fatalf("body  %s\nline  %s", got[0].body, line)
	}
	if !strings.Contains(line, `"session":"s1"`) || !strings.Contains(line, `"path_b64"`) {
		t.Fatalf("line %s", line)
	}
}

// TestTapHoldsUntilTheReply: an event is handed over only once the
// client has the final reply to its command (or at the session's end),
// never at the moment the audit writes it (before the reply).
func TestTapHoldsUntilTheReply(t *testing.T) {
	tap := &recordTap{}
	s := New(nil).WithTap(tap).Session("s1")
	s.Transfer(Transfer{Verb: "STOR", Direction: Upload, Result: Complete, Code: 226, Announced: -1})
	if got := tap.events(); len(got) != 0 {
		t.Fatalf("handed over before the reply: %v", got)
	}
	s.Reply("NOOP", 200) // another command's reply, during the transfer
	if got := tap.events(); len(got) != 0 {
		t.Fatalf("handed over at another command's reply: %v", got)
	}
	s.Reply("STOR", 226)
	if got := tap.events(); len(got) != 1 || got[0].kind != KindUploadComplete {
		t.Fatalf("after the 226: %v", got)
	}
	// A failed login waits for the next final reply, whatever its verb.
	s.Login(Login{User: "bob", Code: 530})
	s.Reply("PASS", 530)
	// A ban ends the session: it goes at the end.
	s.Ban("192.0.2.1", time.Now(), 3)
	if got := tap.events(); len(got) != 2 || got[1].kind != KindLoginFailed {
		t.Fatalf("after the 530: %v", got)
	}
	s.End("bob", time.Second, "banned", 0, 0)
	if got := tap.events(); len(got) != 3 || got[2].kind != KindBan {
		t.Fatalf("at the end: %v", got)
	}
}

// TestTapWants: an event no one wants is not held (nor encoded).
func TestTapWants(t *testing.T) {
	tap := &recordTap{wants: map[string]bool{KindBan: true}}
	s := New(nil).WithTap(tap).Session("s1")
	s.Transfer(Transfer{Verb: "STOR", Direction: Upload, Result: Complete, Announced: -1})
	if s.held.evs != nil {
		t.Fatalf("held %v", s.held.evs)
	}
	s.Ban("192.0.2.1", time.Now(), 3)
	s.End("", 0, "banned", 0, 0)
	if got := tap.events(); len(got) != 1 || got[0].kind != KindBan {
		t.Fatalf("tapEvent %v", got)
	}
}

// TestTapHeldBound: a session holds at most maxHeld events; past that the
// oldest goes at once.
func TestTapHeldBound(t *testing.T) {
	tap := &recordTap{}
	s := New(nil).WithTap(tap).Session("s1")
	for range maxHeld + 3 {
		s.Login(Login{User: "bob", Code: 530})
	}
	if got := tap.events(); len(got) != 3 {
		t.Fatalf("%d handed over early, want 3", len(got))
	}
	s.End("", 0, "quit", 0, 0)
	if got := tap.events(); len(got) != maxHeld+3 {
		t.Fatalf("%d handed over, want %d", len(got), maxHeld+3)
	}
}
