package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestActiveTarget(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := netip.MustParseAddr
	own := []netip.Addr{a("192.0.2.10"), a("2001:db8::10"), a("198.51.100.7")}
	tests := []struct {
		name       string
		target     netip.AddrPort
		client     netip.Addr
		allowLocal bool
		refused    bool
		reason     string // part of the reason, when refused
	}{
		{"client's own address", ap("203.0.113.5:40000"), a("203.0.113.5"), false, false, ""},
		{"client's own IPv6 address", ap("[2001:db8:1::5]:40000"), a("2001:db8:1::5"), false, false, ""},
		{"IPv4-mapped client", ap("203.0.113.5:40000"), a("::ffff:203.0.113.5"), false, false, ""},
		{"port 1024", ap("203.0.113.5:1024"), a("203.0.113.5"), false, false, ""},
		{"another host: bounce", ap("203.0.113.6:40000"), a("203.0.113.5"), false, true, "not the client's"},
		{"another host, allowLocal changes nothing", ap("203.0.113.6:40000"), a("203.0.113.5"), true, true, "not the client's"},
		{"privileged port", ap("203.0.113.5:1023"), a("203.0.113.5"), false, true, "privileged port 1023"},
		{"privileged port, allowLocal", ap("127.0.0.1:25"), a("127.0.0.1"), true, true, "privileged port 25"},
		{"loopback", ap("127.0.0.1:40000"), a("127.0.0.1"), false, true, "loopback"},
		{"loopback 127/8", ap("127.3.2.1:40000"), a("127.3.2.1"), false, true, "loopback"},
		{"IPv6 loopback", ap("[::1]:40000"), a("::1"), false, true, "loopback"},
		{"loopback allowed", ap("127.0.0.1:40000"), a("127.0.0.1"), true, false, ""},
		{"unspecified", ap("0.0.0.0:40000"), a("0.0.0.0"), false, true, "unspecified"},
		{"IPv6 unspecified", ap("[::]:40000"), a("::"), false, true, "unspecified"},
		{"the proxy's own address", ap("192.0.2.10:40000"), a("192.0.2.10"), false, true, "belongs to the proxy"},
		{"the proxy's own IPv6 address", ap("[2001:db8::10]:40000"), a("2001:db8::10"), false, true, "belongs to the proxy"},
		{"a backend's address", ap("198.51.100.7:40000"), a("198.51.100.7"), false, true, "belongs to the proxy"},
		{"a backend's address allowed", ap("198.51.100.7:40000"), a("198.51.100.7"), true, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, reason := ActiveTarget(tc.target, tc.client, own, tc.allowLocal)
			if !tc.refused {
				if d != nil {
					t.Fatalf("refused: %v (%s)", d, reason)
				}
				return
			}
			if d == nil || d.Rule != RuleActiveAddress || d.Code != 504 || !strings.Contains(reason, tc.reason) {
				t.Fatalf("got %v, %q; want a 504 by %s, reason with %q", d, reason, RuleActiveAddress, tc.reason)
			}
			if strings.Contains(d.Text, tc.target.Addr().String()) {
				t.Fatalf("the reply text %q names the address", d.Text)
			}
		})
	}
}
