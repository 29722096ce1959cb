package rewrite

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBadPassive reports a 227 or 229 reply whose address cannot be used.
var ErrBadPassive = errors.New("unusable passive reply")

// ParsePASV reads the host and port of a 227 reply (RFC 959 §4.1.2). Only the
// reply's last line is read, never text echoed elsewhere. Servers word the
// text differently and some omit the parentheses (RFC 1123 §4.1.2.6), so the
// parser looks for the first run of six comma-separated numbers.
func ParsePASV(r *Reply) (netip.AddrPort, error) {
	if r.Code != 227 {
		return netip.AddrPort{}, fmt.Errorf("%w: code %d, want 227", ErrBadPassive, r.Code)
	}
	text := r.Text()
	for i := 0; i < len(text); i++ {
		// A tuple starts at a digit not preceded by a digit or a comma, so
		// that a longer run of numbers is never read as an address.
		if !isDigit(text[i]) || (i > 0 && (isDigit(text[i-1]) || text[i-1] == ',')) {
			continue
		}
		if ap, ok := parseSixTuple(text[i:]); ok {
			return ap, nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("%w: no h1,h2,h3,h4,p1,p2 in %q", ErrBadPassive, truncate(text, 80))
}

// parseSixTuple parses "h1,h2,h3,h4,p1,p2" at the start of s.
func parseSixTuple(s string) (netip.AddrPort, bool) {
	var v [6]byte
	for k := 0; k < 6; k++ {
		j := 0
		for j < len(s) && j < 4 && isDigit(s[j]) {
			j++
		}
		if j == 0 || j > 3 {
			return netip.AddrPort{}, false
		}
		n, _ := strconv.Atoi(s[:j])
		if n > 255 {
			return netip.AddrPort{}, false
		}
		v[k] = byte(n)
		s = s[j:]
		if k < 5 {
			if len(s) == 0 || s[0] != ',' {
				return netip.AddrPort{}, false
			}
			s = s[1:]
		}
	}
	if len(s) > 0 && (isDigit(s[0]) || s[0] == ',') {
		return netip.AddrPort{}, false
	}
	port := uint16(v[4])<<8 | uint16(v[5])
	if port == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[:4])), port), true
}

// ParseEPSV reads the port of a 229 reply (RFC 2428 §3): "(<d><d><d>port<d>)"
// where <d> is one delimiter character, the same four times.
func ParseEPSV(r *Reply) (uint16, error) {
	if r.Code != 229 {
		return 0, fmt.Errorf("%w: code %d, want 229", ErrBadPassive, r.Code)
	}
	text := r.Text()
	open := strings.IndexByte(text, '(')
	if open < 0 {
		return 0, fmt.Errorf("%w: no '(' in %q", ErrBadPassive, truncate(text, 80))
	}
	s := text[open+1:]
	close := strings.IndexByte(s, ')')
	if close < 0 {
		return 0, fmt.Errorf("%w: no ')' in %q", ErrBadPassive, truncate(text, 80))
	}
	s = s[:close]
	if len(s) < 5 {
		return 0, fmt.Errorf("%w: %q", ErrBadPassive, s)
	}
	d := s[0]
	if d < 33 || d > 126 || isDigit(d) || s[1] != d || s[2] != d || s[len(s)-1] != d {
		return 0, fmt.Errorf("%w: bad delimiters in %q", ErrBadPassive, s)
	}
	digits := s[3 : len(s)-1]
	if len(digits) == 0 || len(digits) > 5 {
		return 0, fmt.Errorf("%w: bad port in %q", ErrBadPassive, s)
	}
	for i := 0; i < len(digits); i++ {
		if !isDigit(digits[i]) {
			return 0, fmt.Errorf("%w: bad port in %q", ErrBadPassive, s)
		}
	}
	n, _ := strconv.Atoi(digits)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: port %d out of range", ErrBadPassive, n)
	}
	return uint16(n), nil
}

// PASVReply is the proxy's 227 for a passive listener at ap, which must be
// an IPv4 address (PASV cannot carry another family).
func PASVReply(ap netip.AddrPort) (*Reply, error) {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return nil, fmt.Errorf("PASV needs an IPv4 address, have %s", a)
	}
	b := a.As4()
	p := ap.Port()
	return NewReply(227, fmt.Sprintf("Entering Passive Mode (%d,%d,%d,%d,%d,%d).",
		b[0], b[1], b[2], b[3], p>>8, p&0xFF)), nil
}

// EPSVReply is the proxy's 229 for a passive listener on port.
func EPSVReply(port uint16) *Reply {
	return NewReply(229, fmt.Sprintf("Entering Extended Passive Mode (|||%d|)", port))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
