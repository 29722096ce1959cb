package rewrite

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Errors of the active-mode parsers. ErrEPRTProtocol is an EPRT naming a
// network protocol other than 1 (IPv4) or 2 (IPv6): RFC 2428 §2 answers it
// 522.
var (
	ErrBadPORT      = errors.New("bad PORT argument")
	ErrBadEPRT      = errors.New("bad EPRT argument")
	ErrEPRTProtocol = errors.New("EPRT network protocol not supported")
)

// ParsePORT parses the argument of PORT (RFC 959 §4.1.2): exactly
// "h1,h2,h3,h4,p1,p2", each a decimal number 0-255, without spaces. Port 0
// is refused.
func ParsePORT(arg string) (netip.AddrPort, error) {
	ap, ok := parseSixTuple(arg)
	if !ok || len(arg) != sixTupleLen(arg) {
		return netip.AddrPort{}, fmt.Errorf("%w: %q", ErrBadPORT, truncate(arg, 80))
	}
	return ap, nil
}

// sixTupleLen is the length of the leading run of digits and commas.
func sixTupleLen(s string) int {
	i := 0
	for i < len(s) && (isDigit(s[i]) || s[i] == ',') {
		i++
	}
	return i
}

// ParseEPRT parses the argument of EPRT (RFC 2428 §2): "<d>proto<d>addr<d>port<d>"
// where <d> is one printable delimiter, the same four times; proto 1 takes an
// IPv4 address, 2 an IPv6 one. Zones, and IPv4-mapped addresses under proto 2,
// are refused: the address must say plainly where it is.
func ParseEPRT(arg string) (netip.AddrPort, error) {
	bad := func(why string) (netip.AddrPort, error) {
		return netip.AddrPort{}, fmt.Errorf("%w: %s in %q", ErrBadEPRT, why, truncate(arg, 80))
	}
	if len(arg) < 7 {
		return bad("too short")
	}
	d := arg[0]
	if d < 33 || d > 126 || isDigit(d) || d == '.' || d == ':' || isHex(d) {
		return bad("bad delimiter")
	}
	parts := strings.Split(arg, string(d))
	// "", proto, addr, port, "" around the four delimiters.
	if len(parts) != 5 || parts[0] != "" || parts[4] != "" {
		return bad("want 4 delimiters")
	}
	proto, host, port := parts[1], parts[2], parts[3]
	if proto != "1" && proto != "2" {
		if proto == "" || strings.Trim(proto, "0123456789") != "" {
			return bad("bad network protocol")
		}
		return netip.AddrPort{}, fmt.Errorf("%w: %s", ErrEPRTProtocol, proto)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return bad("bad address")
	}
	if a.Is4In6() {
		return bad("IPv4-mapped address")
	}
	if (proto == "1") != a.Is4() {
		return bad("address does not match the network protocol")
	}
	if len(port) == 0 || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return bad("bad port")
	}
	n, _ := strconv.Atoi(port)
	if n < 1 || n > 65535 {
		return bad("port out of range")
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}

func isHex(c byte) bool { return ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') }

// PORTArg formats ap, an IPv4 address, as the argument of PORT.
func PORTArg(ap netip.AddrPort) (string, error) {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return "", fmt.Errorf("PORT needs an IPv4 address, have %s", a)
	}
	b := a.As4()
	p := ap.Port()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", b[0], b[1], b[2], b[3], p>>8, p&0xFF), nil
}

// EPRTArg formats ap as the argument of EPRT, with "|" as delimiter.
func EPRTArg(ap netip.AddrPort) string {
	a := ap.Addr().Unmap()
	proto := "2"
	if a.Is4() {
		proto = "1"
	}
	return fmt.Sprintf("|%s|%s|%d|", proto, a, ap.Port())
}
