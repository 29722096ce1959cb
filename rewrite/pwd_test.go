package rewrite

import (
	"bufio"
	"strings"
	"testing"
)

func TestParsePWD(t *testing.T) {
	for _, tc := range []struct {
		line, want string
		ok         bool
	}{
		{`257 "/" is the current directory`, "/", true}, // vsftpd, ProFTPD
		{`257 "/" is your current location`, "/", true}, // pure-ftpd
		{`257 "/home/alice/in box" is the current directory`, "/home/alice/in box", true},
		{`257 "/say ""hi""" is the current directory`, `/say "hi"`, true}, // RFC 959 App. II
		{`257 "" is the current directory`, "", true},
		{`257 "/unterminated`, "", false},
		{`257 no quotes here`, "", false},
		{`550 "/" not a 257`, "", false},
	} {
		r, err := ReadReply(bufio.NewReader(strings.NewReader(tc.line+"\r\n")), ReplyLimits{})
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		got, err := ParsePWD(r)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePWD(%q) = %q, %v; want %q, ok=%v", tc.line, got, err, tc.want, tc.ok)
		}
	}
}
