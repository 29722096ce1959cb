package rewrite

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exchange is one command and the exact bytes a real server answered.
type exchange struct {
	server, cmd string
	raw         []byte
}

// loadTranscripts reads testdata/*.transcript, recorded from real servers
// by the proxy package's TestServerTranscripts -update-transcripts: a
// "> COMMAND" line, then the server's reply bytes, CRLF kept.
func loadTranscripts(t *testing.T) []exchange {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.transcript")
	if len(files) < 3 {
		t.Fatalf("transcripts missing from testdata: %v", files)
	}
	var out []exchange
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		server := strings.TrimSuffix(filepath.Base(f), ".transcript")
		for _, line := range bytes.SplitAfter(b, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("> ")) && !bytes.HasSuffix(line, []byte("\r\n")) {
				out = append(out, exchange{server: server, cmd: string(bytes.TrimSpace(line[2:]))})
				continue
			}
			if len(out) > 0 {
				out[len(out)-1].raw = append(out[len(out)-1].raw, line...)
			}
		}
	}
	return out
}

func TestRealRepliesParse(t *testing.T) {
	for _, ex := range loadTranscripts(t) {
		r := bufio.NewReader(bytes.NewReader(ex.raw))
		rep, err := ReadReply(r, ReplyLimits{})
		if err != nil {
			t.Errorf("%s %s: %v", ex.server, ex.cmd, err)
			continue
		}
		if _, err := r.ReadByte(); err != io.EOF {
			t.Errorf("%s %s: bytes left after the reply", ex.server, ex.cmd)
		}
		if !bytes.Equal(rep.Wire(), ex.raw) {
			t.Errorf("%s %s: relayed reply differs:\n%q\n%q", ex.server, ex.cmd, rep.Wire(), ex.raw)
		}
		switch {
		case ex.cmd == "PASV":
			ap, err := ParsePASV(rep)
			if err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") || ap.Port() < 1024 {
				t.Errorf("%s PASV %q: %v %v", ex.server, rep, ap, err)
			}
		case ex.cmd == "EPSV":
			if p, err := ParseEPSV(rep); err != nil || p < 1024 {
				t.Errorf("%s EPSV %q: %v %v", ex.server, rep, p, err)
			}
		case ex.cmd == "FEAT":
			f := ParseFEAT(rep)
			names := map[string]bool{}
			for _, l := range f {
				names[FeatureName(l)] = true
			}
			if !names["SIZE"] || !names["MDTM"] || !names["REST"] {
				t.Errorf("%s FEAT parsed to %q", ex.server, f)
			}
		case strings.HasPrefix(ex.cmd, "MKD"), ex.cmd == "PWD":
			// A 257 echoing "(1,2,3,4,5,6)" is not a PASV reply.
			if _, err := ParsePASV(rep); err == nil {
				t.Errorf("%s: a %d reply parsed as PASV", ex.server, rep.Code)
			}
		}
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, in string
		code     int
		lines    int
		err      error
	}{
		{"single", "200 OK\r\n", 200, 1, nil},
		{"bare LF", "200 OK\n", 200, 1, nil},
		{"code only", "200\r\n", 200, 1, nil},
		{"multi", "211-Features:\r\n MLST\r\n211 End\r\n", 211, 3, nil},
		{"multi with inner code lines", "214-Help\r\n200 not the end\r\n214-still not\r\n214 End\r\n", 214, 4, nil},
		{"multi ended by code alone", "211-a\r\n b\r\n211\r\n", 211, 3, nil},
		{"bad code", "2x0 OK\r\n", 0, 0, ErrMalformedReply},
		{"code 600", "600 what\r\n", 0, 0, ErrMalformedReply},
		{"code 099", "099 what\r\n", 0, 0, ErrMalformedReply},
		{"no separator", "200OK\r\n", 0, 0, ErrMalformedReply},
		{"garbage", "HTTP/1.1 200 OK\r\n", 0, 0, ErrMalformedReply},
		{"bare CR inside", "200 O\rK\r\n", 0, 0, ErrMalformedReply},
		{"NUL inside", "200 O\x00K\r\n", 0, 0, ErrMalformedReply},
		{"unterminated multi", "211-a\r\n b\r\n", 0, 0, io.ErrUnexpectedEOF},
		{"empty", "", 0, 0, io.EOF},
		{"line too long", "200 " + strings.Repeat("a", 9000) + "\r\n", 0, 0, ErrReplyTooLarge},
		{"endless multi", "211-a\r\n" + strings.Repeat(" x\r\n", 30000), 0, 0, ErrReplyTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ReadReply(bufio.NewReader(strings.NewReader(tc.in)), ReplyLimits{})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || rep.Code != tc.code || len(rep.Lines) != tc.lines {
				t.Fatalf("got %+v, %v", rep, err)
			}
		})
	}
}

func TestParsePASV(t *testing.T) {
	tests := []struct {
		name, line string
		want       string // "" for an error
	}{
		{"vsftpd", "227 Entering Passive Mode (127,0,0,1,195,80).", "127.0.0.1:50000"},
		{"pure-ftpd", "227 Entering Passive Mode (127,0,0,1,251,43)", "127.0.0.1:64299"},
		{"proftpd", "227 Entering Passive Mode (10,0,0,5,156,64).", "10.0.0.5:40000"},
		{"no parentheses (RFC 1123)", "227 Entering Passive Mode 192,168,1,2,4,1", "192.168.1.2:1025"},
		{"=", "227 =127,0,0,1,4,1", "127.0.0.1:1025"},
		{"octet 256", "227 Entering Passive Mode (127,0,0,256,4,1).", ""},
		{"port 0", "227 Entering Passive Mode (127,0,0,1,0,0).", ""},
		{"five numbers", "227 Entering Passive Mode (127,0,0,1,4).", ""},
		{"four-digit number", "227 Entering Passive Mode (1270,0,0,1,4,1).", ""},
		{"negative", "227 Entering Passive Mode (127,0,0,1,-4,1).", ""},
		{"wrong code", "229 Entering Passive Mode (127,0,0,1,4,1).", ""},
		{"empty", "227", ""},
		{"4 KiB of commas", "227 " + strings.Repeat("1,", 2048), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := mustReply(t, tc.line)
			ap, err := ParsePASV(rep)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("parsed %v, want an error", ap)
				}
				return
			}
			if err != nil || ap.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", ap, err, tc.want)
			}
		})
	}
}

func TestParsePASVReadsOnlyTheLastLine(t *testing.T) {
	rep := &Reply{Code: 227, Lines: []string{"227-Note (10,0,0,9,4,1)", "227 Entering Passive Mode (127,0,0,1,4,2)"}}
	ap, err := ParsePASV(rep)
	if err != nil || ap.String() != "127.0.0.1:1026" {
		t.Fatalf("got %v, %v", ap, err)
	}
}

func TestParseEPSV(t *testing.T) {
	tests := []struct {
		name, line string
		want       uint16 // 0 for an error
	}{
		{"vsftpd", "229 Entering Extended Passive Mode (|||50000|)", 50000},
		{"pure-ftpd", "229 Extended Passive mode OK (|||26389|)", 26389},
		{"other delimiter", "229 Entering Extended Passive Mode (!!!1025!)", 1025},
		{"port 0", "229 Entering Extended Passive Mode (|||0|)", 0},
		{"port 65536", "229 Entering Extended Passive Mode (|||65536|)", 0},
		{"mixed delimiters", "229 Entering Extended Passive Mode (||!1025|)", 0},
		{"digit delimiter", "229 Entering Extended Passive Mode (1111)", 0},
		{"no parenthesis", "229 Entering Extended Passive Mode |||1025|", 0},
		{"unclosed", "229 Entering Extended Passive Mode (|||1025|", 0},
		{"letters", "229 Entering Extended Passive Mode (|||10a5|)", 0},
		{"address given", "229 Entering Extended Passive Mode (|1|10.0.0.1|1025|)", 0},
		{"wrong code", "227 Entering Extended Passive Mode (|||1025|)", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseEPSV(mustReply(t, tc.line))
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("parsed %d, want an error", p)
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("got %d, %v; want %d", p, err, tc.want)
			}
		})
	}
}

func TestPassiveReplies(t *testing.T) {
	rep, err := PASVReply(netip.MustParseAddrPort("203.0.113.10:50000"))
	if err != nil || string(rep.Wire()) != "227 Entering Passive Mode (203,0,113,10,195,80).\r\n" {
		t.Fatalf("%q %v", rep.Wire(), err)
	}
	if ap, err := ParsePASV(rep); err != nil || ap.String() != "203.0.113.10:50000" {
		t.Fatalf("round trip: %v %v", ap, err)
	}
	if _, err := PASVReply(netip.MustParseAddrPort("[2001:db8::1]:50000")); err == nil {
		t.Fatal("PASV reply for IPv6")
	}
	if got := string(EPSVReply(50001).Wire()); got != "229 Entering Extended Passive Mode (|||50001|)\r\n" {
		t.Fatalf("%q", got)
	}
}

func TestReadLineAndParseCommand(t *testing.T) {
	tests := []struct {
		name, in  string
		verb, arg string
		err       error
	}{
		{"CRLF", "USER alice\r\n", "USER", "alice", nil},
		{"bare LF", "user alice\n", "USER", "alice", nil},
		{"no argument", "PWD\r\n", "PWD", "", nil},
		{"spaces kept in argument", "RETR  my file.txt \r\n", "RETR", " my file.txt ", nil},
		{"8-bit path", "RETR caf\xc3\xa9\xff.txt\r\n", "RETR", "caf\xc3\xa9\xff.txt", nil},
		{"Telnet IP DM before ABOR", "\xff\xf4\xff\xf2ABOR\r\n", "ABOR", "", nil},
		{"Telnet negotiation before verb", "\xff\xfb\x01NOOP\r\n", "NOOP", "", nil},
		{"bare CR injects a second command", "USER a\rPASS b\r\n", "", "", ErrBareCR},
		{"CR CR LF", "NOOP\r\r\n", "", "", ErrBareCR},
		{"NUL", "RETR a\x00b\r\n", "", "", ErrNUL},
		{"empty line", "\r\n", "", "", ErrSyntax},
		{"digits in verb", "R3TR x\r\n", "", "", ErrSyntax},
		{"long verb", "ABCDEFGHIJ\r\n", "", "", ErrSyntax},
		{"leading space", " NOOP\r\n", "", "", ErrSyntax},
		{"too long", "RETR " + strings.Repeat("a", 5000) + "\r\n", "", "", ErrLineTooLong},
		{"endless", strings.Repeat("a", 100000), "", "", ErrLineFlood},
		{"eof mid line", "NOOP", "", "", io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line, err := ReadLine(bufio.NewReader(strings.NewReader(tc.in)), 4096)
			var cmd Command
			if err == nil {
				cmd, err = ParseCommand(line)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || cmd.Verb != tc.verb || cmd.Arg != tc.arg {
				t.Fatalf("got %+v, %v", cmd, err)
			}
			if got := string(cmd.Wire()); strings.Count(got, "\r\n") != 1 || !strings.HasSuffix(got, "\r\n") {
				t.Fatalf("wire form %q", got)
			}
		})
	}
}

func TestReadLineResynchronises(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(strings.Repeat("x", 5000) + "\r\nNOOP\r\n"))
	if _, err := ReadLine(r, 4096); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("first line: %v", err)
	}
	line, err := ReadLine(r, 4096)
	if err != nil || string(line) != "NOOP" {
		t.Fatalf("next line %q, %v", line, err)
	}
}

func TestCommandRedaction(t *testing.T) {
	for _, c := range []Command{{"PASS", "hunter2"}, {"ACCT", "secret-acct"}} {
		for _, s := range []string{c.String(), c.Redacted(), c.LogArg()} {
			if strings.Contains(s, c.Arg) {
				t.Fatalf("%s leaks its argument: %q", c.Verb, s)
			}
		}
		if string(c.Wire()) != c.Verb+" "+c.Arg+"\r\n" {
			t.Fatalf("wire form %q", c.Wire())
		}
	}
	if (Command{"USER", "alice"}).String() != "USER alice" {
		t.Fatal("USER redacted")
	}
}

func TestFeaturesMerge(t *testing.T) {
	backend := mustReply(t, "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n AUTH SSL\r\n PBSZ\r\n211 End")
	drop := func(n string) bool { return n == "EPRT" || n == "AUTH" || n == "PBSZ" || n == "PROT" }
	got := ParseFEAT(backend).Merge([]string{"AUTH TLS", "PBSZ", "PROT", "EPSV"}, drop)
	want := "EPSV|MDTM|PASV|REST STREAM|SIZE|TVFS|UTF8|AUTH TLS|PBSZ|PROT"
	if strings.Join(got, "|") != want {
		t.Fatalf("merged %q\nwant   %q", strings.Join(got, "|"), want)
	}
	wire := string(got.Reply().Wire())
	if !strings.HasPrefix(wire, "211-Features:\r\n EPSV\r\n") || !strings.HasSuffix(wire, " PROT\r\n211 End\r\n") {
		t.Fatalf("reply %q", wire)
	}
	// No FEAT at the backend: only ours.
	if got := ParseFEAT(mustReply(t, "500 Unknown command.")).Merge([]string{"PBSZ"}, drop); strings.Join(got, "|") != "PBSZ" {
		t.Fatalf("got %q", got)
	}
}

func TestNewReply(t *testing.T) {
	if got := string(NewReply(220, "ready").Wire()); got != "220 ready\r\n" {
		t.Fatalf("%q", got)
	}
	got := string(NewReply(211, "Features:", "226 looks like an end", "End").Wire())
	if got != "211-Features:\r\n 226 looks like an end\r\n211 End\r\n" {
		t.Fatalf("%q", got)
	}
}

func mustReply(t testing.TB, s string) *Reply {
	t.Helper()
	if !strings.HasSuffix(s, "\n") {
		s += "\r\n"
	}
	rep, err := ReadReply(bufio.NewReader(strings.NewReader(s)), ReplyLimits{})
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return rep
}
