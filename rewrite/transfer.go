package rewrite

import (
	"regexp"
	"strconv"
	"strings"
)

// What a transfer's preliminary reply (125 or 150) says about the transfer.
// The servers word it differently; these are their exact lines, recorded by
// the proxy package's TestServersAnnounceSizes:
//
//	vsftpd:    150 Opening BINARY mode data connection for f.bin (3000000 bytes).
//	ProFTPD:   150 Opening BINARY mode data connection for f.bin (3000000 bytes)
//	pure-ftpd: 150-Accepted data connection
//	           150 2929.7 kbytes to download
//	STOU (RFC 1123 §4.1.2.9, "150 FILE: pppp"):
//	vsftpd:    150 FILE: STOU.1
//	ProFTPD:   150 FILE: ftpQlkUak
//	pure-ftpd: 150-FILE: pureftpd.6b1158d7.08.0000
//	           150 Accepted data connection

// announcedSize is a "(N bytes)" closing a line: the file name, which comes
// before it, cannot forge it.
var announcedSize = regexp.MustCompile(`\((\d+) bytes\)\.?$`)

// preliminary reports whether r opens a data transfer.
func preliminary(r *Reply) bool { return r != nil && (r.Code == 125 || r.Code == 150) }

// lineText is a reply line without its "150 " or "150-" prefix.
func lineText(code int, line string) string {
	if len(line) >= 4 && line[:3] == strconv.Itoa(code) && (line[3] == ' ' || line[3] == '-') {
		return line[4:]
	}
	return line
}

// AnnouncedSize is the size in bytes a transfer's 125 or 150 reply
// announces, as vsftpd and ProFTPD do for RETR ("… (3000000 bytes)", at
// the end of a line), and whether it names one. pure-ftpd's "2929.7 kbytes
// to download" is not a byte count and is not taken.
func AnnouncedSize(r *Reply) (int64, bool) {
	if !preliminary(r) {
		return 0, false
	}
	for i := len(r.Lines) - 1; i >= 0; i-- {
		m := announcedSize.FindStringSubmatch(lineText(r.Code, r.Lines[i]))
		if m == nil {
			continue
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// ExpectedBytes is how many bytes a download whose 150 announced
// announced bytes, restarted at offset (REST), should carry: at least
// least, at most most. Without an offset both are announced. After REST
// the servers differ, and the proxy cannot tell them apart: vsftpd
// announces the whole file (3000000 after REST 1000, then sends 2999000),
// ProFTPD what it will send (2999000). Fewer than least bytes is a
// short transfer; more than most, a file that grew while it was read.
func ExpectedBytes(announced, offset int64) (least, most int64) {
	if offset <= 0 {
		return announced, announced
	}
	return max(announced-offset, 0), announced
}

// STOUName is the name a server gave the file of a STOU, from its
// preliminary reply's "FILE: name" line (RFC 1123 §4.1.2.9), and whether
// the reply has one.
func STOUName(r *Reply) (string, bool) {
	if !preliminary(r) {
		return "", false
	}
	for _, l := range r.Lines {
		t := strings.TrimLeft(lineText(r.Code, l), " ")
		if len(t) < 5 || !strings.EqualFold(t[:5], "FILE:") {
			continue
		}
		if name := strings.TrimSpace(t[5:]); name != "" {
			return name, true
		}
	}
	return "", false
}
