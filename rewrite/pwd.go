package rewrite

import (
	"errors"
	"strings"
)

// ErrNoPath reports a 257 reply without a quoted path.
var ErrNoPath = errors.New("no quoted path in the 257 reply")

// ParsePWD returns the directory a 257 reply to PWD (or MKD) names: the
// text between the first double quote and its closing one, where a
// doubled quote stands for one (RFC 959 Appendix II). The servers' lines:
//
//	vsftpd:    257 "/" is the current directory
//	ProFTPD:   257 "/" is the current directory
//	pure-ftpd: 257 "/" is your current location
func ParsePWD(r *Reply) (string, error) {
	if r == nil || r.Code != 257 {
		return "", ErrNoPath
	}
	t := r.Text()
	i := strings.IndexByte(t, '"')
	if i < 0 {
		return "", ErrNoPath
	}
	var b strings.Builder
	for t = t[i+1:]; ; {
		j := strings.IndexByte(t, '"')
		if j < 0 {
			return "", ErrNoPath
		}
		b.WriteString(t[:j])
		if j+1 < len(t) && t[j+1] == '"' {
			b.WriteByte('"')
			t = t[j+2:]
			continue
		}
		return b.String(), nil
	}
}
