package rewrite

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

// reply reads one reply from its wire form.
func reply(t *testing.T, wire string) *Reply {
	t.Helper()
	r, err := ReadReply(bufio.NewReader(strings.NewReader(wire)), ReplyLimits{})
	if err != nil {
		t.Fatalf("%q: %v", wire, err)
	}
	return r
}

// The first rows are the servers' exact replies (see TestServersAnnounceSizes in
// the proxy package, which checks them against the running servers).
func TestAnnouncedSize(t *testing.T) {
	for _, tc := range []struct {
		name, wire string
		size       Size
		ok         bool
	}{
		{"vsftpd", "150 Opening BINARY mode data connection for f.bin (3000000 bytes).\r\n", Size{3000000, 0}, true},
		{"vsftpd after REST 1000", "150 Opening BINARY mode data connection for f.bin (3000000 bytes).\r\n", Size{3000000, 0}, true},
		{"ProFTPD", "150 Opening BINARY mode data connection for f.bin (3000000 bytes)\r\n", Size{3000000, 0}, true},
		{"ProFTPD after REST 1000", "150 Opening BINARY mode data connection for f.bin (2999000 bytes)\r\n", Size{2999000, 0}, true},
		{"ProFTPD TYPE A", "150 Opening ASCII mode data connection for f.bin (3000000 bytes)\r\n", Size{3000000, 0}, true},
		{"pure-ftpd", "150-Accepted data connection\r\n150 2929.7 kbytes to download\r\n", Size{3000012, 53}, true},
		{"pure-ftpd after REST 1000", "150-Accepted data connection\r\n150 2928.7 kbytes to download\r\n", Size{2998988, 53}, true},
		{"pure-ftpd, a small file", "150-Accepted data connection\r\n150 0.0 kbytes to download\r\n", Size{0, 53}, true},
		{"vsftpd LIST", "150 Here comes the directory listing.\r\n", Size{}, false},
		{"ProFTPD LIST", "150 Opening BINARY mode data connection for file list\r\n", Size{}, false},
		{"pure-ftpd LIST", "150 Accepted data connection\r\n", Size{}, false},
		{"vsftpd STOR", "150 Ok to send data.\r\n", Size{}, false},
		{"125", "125 Data connection already open; transfer starting (12 bytes)\r\n", Size{12, 0}, true},
		{"empty file", "150 Opening BINARY mode data connection for e (0 bytes).\r\n", Size{0, 0}, true},
		// Hostile and odd replies.
		{"a file named to forge a size", "150 Opening BINARY mode data connection for x (5 bytes) (3000000 bytes).\r\n", Size{3000000, 0}, true},
		{"a forged size alone in the name", "150 Opening BINARY mode data connection for x (5 bytes) now\r\n", Size{}, false},
		{"kbytes inside other text", "150 Opening x 1.0 kbytes to download\r\n", Size{}, false},
		{"not a preliminary reply", "226 Transfer complete (3000000 bytes)\r\n", Size{}, false},
		{"overflow", "150 for f (99999999999999999999 bytes)\r\n", Size{}, false},
		{"kbytes overflow", "150 99999999999999999.9 kbytes to download\r\n", Size{}, false},
		{"negative", "150 for f (-5 bytes)\r\n", Size{}, false},
		{"no number", "150 for f ( bytes)\r\n", Size{}, false},
		{"multi-line, size on the first line", "150-for f (7 bytes)\r\n150 go\r\n", Size{7, 0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size, ok := AnnouncedSize(reply(t, tc.wire))
			if size != tc.size || ok != tc.ok {
				t.Fatalf("AnnouncedSize = %+v, %v; want %+v, %v", size, ok, tc.size, tc.ok)
			}
		})
	}
	if _, ok := AnnouncedSize(nil); ok {
		t.Fatal("nil reply")
	}
}

func TestExpected(t *testing.T) {
	for _, tc := range []struct {
		size                Size
		offset, least, most int64
	}{
		{Size{3000000, 0}, 0, 3000000, 3000000},
		{Size{3000000, 0}, 1000, 2999000, 3000000}, // vsftpd sends 2999000; ProFTPD announces and sends 2999000
		{Size{2999000, 0}, 1000, 2998000, 2999000},
		{Size{3000012, 53}, 0, 2999959, 3000065},    // pure-ftpd's 2929.7 kbytes: 3000000
		{Size{2998988, 53}, 1000, 2997935, 2999041}, // pure-ftpd's 2928.7 kbytes after REST 1000: 2999000
		{Size{0, 53}, 0, 0, 53},
		{Size{100, 0}, 500, 0, 100}, // REST past the end
		{Size{10, 0}, -1, 10, 10},
	} {
		least, most := tc.size.Expected(tc.offset)
		if least != tc.least || most != tc.most {
			t.Errorf("%+v.Expected(%d) = %d, %d; want %d, %d", tc.size, tc.offset, least, most, tc.least, tc.most)
		}
	}
	// Every size pure-ftpd can announce in kbytes is within the range.
	for n := int64(0); n < 200000; n += 7 {
		s, ok := AnnouncedSize(NewReply(150, fmt.Sprintf("%.1f kbytes to download", float64(n)/1024)))
		if least, most := s.Expected(0); !ok || n < least || n > most {
			t.Fatalf("%d bytes announced as %+v: %d-%d", n, s, least, most)
		}
	}
}

func TestSTOUName(t *testing.T) {
	for _, tc := range []struct {
		name, wire, file string
		ok               bool
	}{
		{"vsftpd", "150 FILE: STOU.1\r\n", "STOU.1", true},
		{"vsftpd with a name", "150 FILE: x.bin\r\n", "x.bin", true},
		{"ProFTPD", "150 FILE: ftpQlkUak\r\n", "ftpQlkUak", true},
		{"pure-ftpd", "150-FILE: pureftpd.6b1158d7.08.0000\r\n150 Accepted data connection\r\n", "pureftpd.6b1158d7.08.0000", true},
		{"RFC 1123 with 125", "125 FILE: a b.txt\r\n", "a b.txt", true},
		{"lower case", "150 file: x\r\n", "x", true},
		{"continuation line", "150-Ok\r\n FILE: y\r\n150 go\r\n", "y", true},
		// Replies without a name.
		{"vsftpd STOR", "150 Ok to send data.\r\n", "", false},
		{"empty name", "150 FILE:   \r\n", "", false},
		{"final reply", "226 FILE: z\r\n", "", false},
		{"FILE not at the start", "150 Opening for FILE: q\r\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, ok := STOUName(reply(t, tc.wire))
			if file != tc.file || ok != tc.ok {
				t.Fatalf("STOUName = %q, %v; want %q, %v", file, ok, tc.file, tc.ok)
			}
		})
	}
}
