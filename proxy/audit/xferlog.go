package audit

import (
	"fmt"
	"io"
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
// the transfer time is in whole seconds, at least 1. The text fields are
// escaped so that the line always has its 18 fields and different names
// never log alike (ProFTPD's "_" for a space would make "a b" and "a_b"
// one): see field.
func XferlogLine(t Transfer, end time.Time) string {
	typ := "a"
	if t.Binary {
		typ = "b"
	}
	dir := "o"
	if t.Direction == Upload {
		dir = "i"
	}
	status := "i"
	if t.Result == Complete {
		status = "c"
	}
	secs := int64(t.Duration.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprintf("%s %d %s %d %s %s _ %s r %s ftp 0 * %s\n",
		end.Local().Format("Mon Jan _2 15:04:05 2006"), secs, field(t.Client), t.Bytes, field(t.Path),
		typ, dir, field(t.User), status)
}

// field makes s one whitespace-free field, injectively: "" is "-"; as
// Escape, plus spaces (ASCII `\x20` and Unicode `\u00a0`…) escaped, and a
// name that is just "-" written `\x2d`.
func field(s string) string {
	switch s {
	case "":
		return "-"
	case "-":
		return `\x2d`
	}
	return escape(s, true)
}

func writeXferlog(w io.Writer, t Transfer) {
	if w == nil || !t.File {
		return
	}
	io.WriteString(w, XferlogLine(t, time.Now()))
}
