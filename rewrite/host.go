package rewrite

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrBadHost reports a HOST argument that is neither a host name nor an
// address literal.
var ErrBadHost = errors.New("bad HOST argument")

// ParseHOST checks the argument of HOST (RFC 7151 §3): a domain name
// (letters, digits and hyphens in dot-separated labels of at most 63
// characters, 253 in all, a trailing dot allowed) or an IP address literal
// in square brackets. Names are returned in lower case.
func ParseHOST(arg string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s: %q", ErrBadHost, why, truncate(arg, 80))
	}
	if strings.HasPrefix(arg, "[") {
		if !strings.HasSuffix(arg, "]") {
			return bad("unclosed address literal")
		}
		a, err := netip.ParseAddr(arg[1 : len(arg)-1])
		if err != nil || a.Zone() != "" {
			return bad("bad address literal")
		}
		return "[" + a.String() + "]", nil
	}
	name := strings.TrimSuffix(arg, ".")
	if name == "" || len(name) > 253 {
		return bad("bad length")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad("bad label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(isDigit(c) || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c == '-') {
				return bad("bad character")
			}
		}
	}
	return strings.ToLower(name), nil
}
