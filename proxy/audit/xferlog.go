package audit

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// XferlogLine formats t in the wu-ftpd xferlog format (xferlog(5)), which
// log tools and fail2ban filters read:
//
//	current-time transfer-time remote-host file-size filename transfer-type
//	special-action-flag direction access-mode username service-name
//	authentication-method authenticated-user-id completion-status
//
// The time is the transfer's end in local time, "Mon Jan  2 15:04:05 2006";
// the transfer time is in whole seconds, at least 1. Spaces and control
// characters in the file name and user name become "_", as ProFTPD does,
// so that the line always has its 18 fields.
func XferlogLine(t Transfer, end time.Time) string {
	typ := "a"
	if t.Binary {
		typ = "b"
	}
	dir := "o"
	if t.Direction == "upload" {
		dir = "i"
	}
	status := "i"
	if t.Result == "complete" {
		status = "c"
	}
	secs := int64(t.Duration.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	path := t.Path
	if path == "" {
		path = "-"
	}
	return fmt.Sprintf("%s %d %s %d %s %s _ %s r %s ftp 0 * %s\n",
		end.Local().Format("Mon Jan _2 15:04:05 2006"), secs, field(t.Client), t.Bytes, field(path),
		typ, dir, field(t.User), status)
}

// field makes s one whitespace-free field.
func field(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

func writeXferlog(w io.Writer, t Transfer) {
	if w == nil || !t.File {
		return
	}
	io.WriteString(w, XferlogLine(t, time.Now()))
}
