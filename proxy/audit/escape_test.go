package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ftpsgate/ftpsgate/rewrite"
)

// TestZapJSONEncoder pins what zap's JSON encoder does with each class of
// character on its own: the reason for text and Escape. If a zap upgrade
// changes a row, text may be simplified (or must be fixed).
func TestZapJSONEncoder(t *testing.T) {
	tests := []struct {
		name, in, want string // want: the JSON string's bytes between the quotes
	}{
		{"printable ASCII as is", "a b/c.txt", "a b/c.txt"},
		{"quote and backslash escaped (lossless)", `a"b\c`, `a\"b\\c`},
		{"C0 escaped (lossless)", "a\x01\tb\n", `a\u0001\tb\n`},
		{"DEL raw", "a\x7fb", "a\x7fb"},
		{"invalid UTF-8 replaced: lossy", "a\xffb\xfe", `a\ufffdb\ufffd`},
		{"a real U+FFFD as is: the same as an invalid byte", "a\uFFFDb\uFFFD", "a\uFFFDb\uFFFD"},
		{"C1 raw", "a\u0085b\u009b", "a\u0085b\u009b"},
		{"U+2028 and U+2029 raw", "a\u2028b\u2029", "a\u2028b\u2029"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{})
			buf, err := enc.EncodeEntry(zapcore.Entry{}, []zap.Field{zap.String("k", tc.in)})
			if err != nil {
				t.Fatal(err)
			}
			want := `{"k":"` + tc.want + `"}` + "\n"
			if got := buf.String(); got != want {
				t.Fatalf("zap encodes %q as %q, want %q", tc.in, got, want)
			}
		})
	}
}

// unescape reads Escape's output back; ok is false on a malformed escape.
func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], `\\`):
			b.WriteByte('\\')
			i++
		case strings.HasPrefix(s[i:], `\x`) && i+4 <= len(s):
			n, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 3
		case strings.HasPrefix(s[i:], `\u`) && i+6 <= len(s):
			n, err := strconv.ParseUint(s[i+2:i+6], 16, 16)
			if err != nil {
				return "", false
			}
			b.WriteRune(rune(n))
			i += 5
		default:
			return "", false
		}
	}
	return b.String(), true
}

// hostile are values a client can put in a path, a user name or a HOST.
var hostile = []struct{ name, in, json, xferlog string }{
	// name, input, the JSON audit's field (the input when it is clean, else
	// Escape(input)), and the xferlog field.
	{"plain", "pub/file.txt", "pub/file.txt", "pub/file.txt"},
	{"space", "a b", "a b", `a\x20b`},
	{"underscore, which a space used to become", "a_b", "a_b", "a_b"},
	{"backslash", `dir\file`, `dir\file`, `dir\\file`},
	{"a literal escape", `a\xffb`, `a\xffb`, `a\\xffb`},
	{"a literal escape beside a real one", "a\\xff\xff", `a\\xff\xff`, `a\\xff\xff`},
	{"invalid byte", "a\xffb", `a\xffb`, `a\xffb`},
	{"another invalid byte", "a\xfeb", `a\xfeb`, `a\xfeb`},
	{"real U+FFFD", "a\uFFFDb", "a\uFFFDb", "a\uFFFDb"},
	{"truncated sequence", "a\xe2\x80", `a\xe2\x80`, `a\xe2\x80`},
	{"overlong slash", "a\xc0\xafb", `a\xc0\xafb`, `a\xc0\xafb`},
	{"surrogate", "\xed\xa0\x80", `\xed\xa0\x80`, `\xed\xa0\x80`},
	{"C0: tab, ESC, CR, LF", "a\tb\x1b[31m\r\n", `a\x09b\x1b[31m\x0d\x0a`, `a\x09b\x1b[31m\x0d\x0a`},
	{"DEL", "a\x7f", `a\x7f`, `a\x7f`},
	{"C1: NEL and CSI", "a\u0085b\u009b", `a\u0085b\u009b`, `a\u0085b\u009b`},
	{"line and paragraph separators", "a\u2028b\u2029", `a\u2028b\u2029`, `a\u2028b\u2029`},
	{"no-break space", "a\u00a0b", "a\u00a0b", `a\u00a0b`},
	{"ideographic space", "a\u3000b", "a\u3000b", `a\u3000b`},
	{"UTF-8 name", "résumé 履歴.pdf", "résumé 履歴.pdf", `résumé\x20履歴.pdf`},
	{"emoji", "😀", "😀", "😀"},
	{"a lone dash", "-", "-", `\x2d`},
	{"empty", "", "", "-"},
}

func TestEscape(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			if got := Escape(tc.in); !clean(tc.in) && got != tc.json {
				t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.json)
			}
			if got := field(tc.in); got != tc.xferlog {
				t.Errorf("field(%q) = %q, want %q", tc.in, got, tc.xferlog)
			}
			if back, ok := unescape(Escape(tc.in)); !ok || back != tc.in {
				t.Errorf("Escape(%q) reads back as %q (%v)", tc.in, back, ok)
			}
			if tc.in != "" && tc.in != "-" {
				if back, ok := unescape(field(tc.in)); !ok || back != tc.in {
					t.Errorf("field(%q) reads back as %q (%v)", tc.in, back, ok)
				}
			}
			if f := strings.Fields("x " + field(tc.in) + " y"); len(f) != 3 {
				t.Errorf("field(%q) = %q splits into %d fields", tc.in, field(tc.in), len(f)-2)
			}
		})
	}
}

// loggedText is how text logs s: the JSON line's fields k and k_b64.
func loggedText(t *testing.T, s string) (line []byte, k string, b64 *string) {
	t.Helper()
	enc := zapcore.NewJSONEncoder(EncoderConfig())
	buf, err := enc.EncodeEntry(zapcore.Entry{Message: "x"}, text(nil, "k", s))
	if err != nil {
		t.Fatal(err)
	}
	line = append([]byte(nil), buf.Bytes()...)
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	k, _ = m["k"].(string)
	if v, ok := m["k_b64"].(string); ok {
		b64 = &v
	}
	return line, k, b64
}

// checkLine fails unless line is one line of valid UTF-8 with no C1
// control, DEL, U+2028 or U+2029 in it (and no C0 but its final newline).
func checkLine(t *testing.T, line []byte) {
	t.Helper()
	body, ok := bytes.CutSuffix(line, []byte("\n"))
	if !ok || !utf8.Valid(body) {
		t.Fatalf("not one line of UTF-8: %q", line)
	}
	for _, r := range string(body) {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029 {
			t.Fatalf("raw %U in %q", r, line)
		}
	}
}

// TestTextField: every hostile value logs on one clean line, readable, with
// its exact bytes beside it when it needed escaping; no two log alike.
func TestTextField(t *testing.T) {
	seen := map[string]string{}
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			line, k, b64 := loggedText(t, tc.in)
			checkLine(t, line)
			if k != tc.json {
				t.Fatalf("k = %q, want %q", k, tc.json)
			}
			if clean(tc.in) != (b64 == nil) {
				t.Fatalf("clean %v, but _b64 %v", clean(tc.in), b64)
			}
			if b64 != nil {
				raw, err := base64.StdEncoding.DecodeString(*b64)
				if err != nil || string(raw) != tc.in {
					t.Fatalf("k_b64 %q decodes to %q (%v), want %q", *b64, raw, err, tc.in)
				}
			}
			key := k
			if b64 != nil {
				key += "\x00" + *b64
			}
			if other, ok := seen[key]; ok {
				t.Fatalf("%q and %q log alike: %q", tc.in, other, line)
			}
			seen[key] = tc.in
		})
	}
}

// TestEveryEventField: each event's every text field goes through text,
// so a hostile value never reaches a line raw.
func TestEveryEventField(t *testing.T) {
	const h = "x\xff\u0085\u2028\x1b\x7fy"
	var buf bytes.Buffer
	z := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), zapcore.AddSync(&buf), zapcore.InfoLevel))
	s := New(z).Session("s1")
	s.Start(h, h, h, h)
	s.TLS(h, h, h, h, false)
	s.Login(Login{User: h, Host: h, Backend: h, BackendAddress: h, Route: h, Reason: h, Client: h})
	s.Command(rewrite.Command{Verb: h, Arg: h})
	s.Reply(h, 550)
	s.Transfer(Transfer{Verb: h, Direction: h, Path: h, Result: h, User: h, Client: h})
	s.Ban(h, time.Unix(0, 0), 3)
	s.PolicyDenied(h, h, h)
	s.End(h, time.Second, h, 1, 2)
	s.HostDropped(h, h)
	s.BackendUnavailable(h, h, h)
	New(z).Certificate(Certificate{ACME: h, Domain: h, Operation: h, Result: h, Issuer: h, Error: h})
	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	if len(lines) != 13 { // 12 events and the empty rest
		t.Fatalf("%d lines: %q", len(lines), buf.Bytes())
	}
	texts := 0
	for _, line := range lines[:12] {
		checkLine(t, line)
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			if v == Escape(h) {
				texts++
				if m[k+"_b64"] != base64.StdEncoding.EncodeToString([]byte(h)) {
					t.Fatalf("%s without its _b64: %q", k, line)
				}
			}
		}
	}
	if texts != 41 {
		t.Fatalf("%d text fields logged escaped, want 41", texts)
	}
}

// FuzzEscape: Escape and field always give one line that reads back as
// the input; field gives one whitespace-free field.
func FuzzEscape(f *testing.F) {
	for _, tc := range hostile {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if back, ok := unescape(e); !ok || back != s {
			t.Fatalf("Escape(%q) = %q reads back as %q", s, e, back)
		}
		x := field(s)
		if s != "" && s != "-" {
			if back, ok := unescape(x); !ok || back != s {
				t.Fatalf("field(%q) = %q reads back as %q", s, x, back)
			}
		}
		if len(strings.Fields(x)) != 1 {
			t.Fatalf("field(%q) = %q", s, x)
		}
		if clean(s) {
			if !strings.Contains(s, `\`) && e != s {
				t.Fatalf("clean %q escaped as %q", s, e)
			}
		} else {
			line, _, b64 := loggedText(t, s)
			checkLine(t, line)
			if b64 == nil {
				t.Fatalf("%q logged without _b64", s)
			}
		}
	})
}
