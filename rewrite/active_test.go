package rewrite

import (
	"errors"
	"net/netip"
	"testing"
)

// Arguments as real clients send them (curl 7.88 sends EPRT, then PORT
// after a 500; lftp 4.9 sends PORT or EPRT; Python's ftplib sends PORT for
// IPv4 and EPRT for IPv6), then hostile ones.
func TestParsePORT(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want string // "" when refused
	}{
		{"127,0,0,1,156,64", "127.0.0.1:40000"},
		{"10,1,2,3,4,1", "10.1.2.3:1025"},
		{"127,0,0,1,0,21", "127.0.0.1:21"}, // parsed; the port policy is the proxy's
		{"127,0,0,1,0,0", ""},              // port 0
		{"127,0,0,1,156", ""},              // five numbers
		{"127,0,0,1,156,64,1", ""},         // seven
		{"256,0,0,1,156,64", ""},           // out of range
		{"127,0,0,1,156,64 ", ""},          // trailing space
		{" 127,0,0,1,156,64", ""},
		{"127,0,0,1,156,064x", ""},
		{"127,,0,1,156,64", ""},
		{"0127,0,0,1,156,64", ""},
		{"", ""},
	} {
		got, err := ParsePORT(tc.arg)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("PORT %q accepted as %v", tc.arg, got)
		case tc.want != "" && (err != nil || got != netip.MustParseAddrPort(tc.want)):
			t.Errorf("PORT %q = %v, %v; want %s", tc.arg, got, err, tc.want)
		case err != nil && !errors.Is(err, ErrBadPORT):
			t.Errorf("PORT %q: error %v is not ErrBadPORT", tc.arg, err)
		}
	}
}

func TestParseEPRT(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want string // "" when refused
		err  error
	}{
		{"|1|127.0.0.1|40000|", "127.0.0.1:40000", nil},
		{"|2|::1|40000|", "[::1]:40000", nil},
		{"|2|2001:db8::7|1025|", "[2001:db8::7]:1025", nil},
		{"!1!10.0.0.1!2121!", "10.0.0.1:2121", nil}, // any delimiter, the same four times
		{"|3|127.0.0.1|40000|", "", ErrEPRTProtocol},
		{"|1|::1|40000|", "", ErrBadEPRT},              // family mismatch
		{"|2|127.0.0.1|40000|", "", ErrBadEPRT},        // family mismatch
		{"|2|::ffff:127.0.0.1|40000|", "", ErrBadEPRT}, // mapped: say it plainly
		{"|2|fe80::1%eth0|40000|", "", ErrBadEPRT},     // zone
		{"|1|127.0.0.1|0|", "", ErrBadEPRT},            // port 0
		{"|1|127.0.0.1|65536|", "", ErrBadEPRT},        // too big
		{"|1|127.0.0.1|+80|", "", ErrBadEPRT},          // sign
		{"|1|127.0.0.1|40000", "", ErrBadEPRT},         // three delimiters
		{"|1|127.0.0.1|40000|x", "", ErrBadEPRT},       // trailing text
		{"|1|127.0.0.1!40000|", "", ErrBadEPRT},        // mixed delimiters
		{"1127.0.0.1140000", "", ErrBadEPRT},           // digit as delimiter
		{"|1|localhost|40000|", "", ErrBadEPRT},        // names are not addresses
		{"|1|127.0.0.1|40000||", "", ErrBadEPRT},       // five delimiters
		{"", "", ErrBadEPRT},
	} {
		got, err := ParseEPRT(tc.arg)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("EPRT %q accepted as %v", tc.arg, got)
		case tc.want != "" && (err != nil || got != netip.MustParseAddrPort(tc.want)):
			t.Errorf("EPRT %q = %v, %v; want %s", tc.arg, got, err, tc.want)
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("EPRT %q: error %v, want %v", tc.arg, err, tc.err)
		}
	}
}

func TestActiveArgs(t *testing.T) {
	for _, tc := range []struct{ ap, port, eprt string }{
		{"127.0.0.1:40000", "127,0,0,1,156,64", "|1|127.0.0.1|40000|"},
		{"[::1]:1025", "", "|2|::1|1025|"},
		{"[::ffff:10.0.0.1]:21", "10,0,0,1,0,21", "|1|10.0.0.1|21|"},
	} {
		ap := netip.MustParseAddrPort(tc.ap)
		got, err := PORTArg(ap)
		if (tc.port == "") != (err != nil) || got != tc.port {
			t.Errorf("PORTArg(%s) = %q, %v; want %q", ap, got, err, tc.port)
		}
		if got := EPRTArg(ap); got != tc.eprt {
			t.Errorf("EPRTArg(%s) = %q, want %q", ap, got, tc.eprt)
		}
	}
}
