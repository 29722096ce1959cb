package rewrite

import (
	"math"
	"regexp"
	"strconv"
	"strings"
)

// What a transfer's preliminary reply (125 or 150) says about the transfer.
// The servers word it differently; these are their exact lines, as the
// proxy package's TestServersAnnounceSizes reads them from the servers:
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

// announcedBytes is a "(N bytes)" closing a line (vsftpd, ProFTPD): the
// file name, which comes before it, cannot forge it.
var announcedBytes = regexp.MustCompile(`\((\d+) bytes\)\.?$`)

// announcedKbytes is pure-ftpd's "N.N kbytes to download": what remains of
// the file (after REST too), in KiB rounded to one decimal.
var announcedKbytes = regexp.MustCompile(`^(\d+)\.(\d) kbytes to download$`)

// preliminary reports whether r opens a data transfer.
func preliminary(r *Reply) bool { return r != nil && (r.Code == 125 || r.Code == 150) }

// lineText is a reply line without its "150 " or "150-" prefix.
func lineText(code int, line string) string {
	if len(line) >= 4 && line[:3] == strconv.Itoa(code) && (line[3] == ' ' || line[3] == '-') {
		return line[4:]
	}
	return line
}

// Size is the size of a transfer as its preliminary reply announced it:
// Bytes, give or take Slack (0 for a count of bytes; 53 for pure-ftpd's
// kbytes, which are rounded to a tenth of a KiB).
type Size struct {
	Bytes, Slack int64
}

// AnnouncedSize is the size a transfer's 125 or 150 reply announces, and
// whether it announces one: vsftpd's and ProFTPD's "… (3000000 bytes)" at
// the end of a line, or pure-ftpd's "2929.7 kbytes to download".
func AnnouncedSize(r *Reply) (Size, bool) {
	if !preliminary(r) {
		return Size{}, false
	}
	for i := len(r.Lines) - 1; i >= 0; i-- {
		t := lineText(r.Code, r.Lines[i])
		if m := announcedBytes.FindStringSubmatch(t); m != nil {
			n, err := strconv.ParseInt(m[1], 10, 64)
			if err != nil {
				return Size{}, false
			}
			return Size{Bytes: n}, true
		}
		if m := announcedKbytes.FindStringSubmatch(t); m != nil {
			k, err := strconv.ParseInt(m[1]+m[2], 10, 64) // tenths of a KiB
			if err != nil || k > math.MaxInt64/1024 {
				return Size{}, false
			}
			return Size{Bytes: k * 1024 / 10, Slack: 53}, true
		}
	}
	return Size{}, false
}

// Expected is how many bytes a download announced as s, restarted at
// offset (REST), should carry: at least least, at most most. After REST
// the servers differ, and the proxy cannot tell them apart: vsftpd
// announces the whole file (3000000 after REST 1000, then sends 2999000),
// ProFTPD and pure-ftpd what they will send. Fewer than least bytes is a
// short transfer; more than most, a file that grew while it was read.
func (s Size) Expected(offset int64) (least, most int64) {
	least, most = s.Bytes-s.Slack, s.Bytes+s.Slack
	if offset > 0 {
		least -= offset
	}
	return max(least, 0), most
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
