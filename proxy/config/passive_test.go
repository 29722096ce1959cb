package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// overridesAttr is inserted after the first listener's public_address
// (line 7 of validTmpl): the attribute starts on line 8.
func withOverrides(base, attr string) string {
	return strings.Replace(base, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+"\n  "+attr, 1)
}

// TestPassiveAddressOverrides: the first override whose networks hold the
// client's address gives the 227's address; no match gives
// public_address, or the invalid address (the caller then uses the one
// the client reached) when that is unset.
func TestPassiveAddressOverrides(t *testing.T) {
	cert, key := testCert(t)
	src := withOverrides(fmt.Sprintf(validTmpl, cert, key), `passive_address_overrides = [
    { networks = ["10.0.0.0/8", "192.168.7.7"], address = "10.1.2.3" },
    { networks = ["172.16.0.0/12", "2001:db8::/32"], address = "172.16.0.1" },
    { networks = ["0.0.0.0/0"], address = "198.51.100.1" },
  ]`)
	cfg, diags := Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	l, other := cfg.Listeners[0], cfg.Listeners[1]
	for _, tc := range []struct{ client, want string }{
		{"10.9.8.7", "10.1.2.3"},
		{"::ffff:10.9.8.7", "10.1.2.3"}, // an IPv4 client on a dual-stack socket
		{"192.168.7.7", "10.1.2.3"},
		{"192.168.7.8", "198.51.100.1"},
		{"172.20.0.1", "172.16.0.1"},
		{"2001:db8::5", "172.16.0.1"},
		{"2001:db9::5", "203.0.113.10"}, // no override: public_address
	} {
		if got := l.PassiveAddress(netip.MustParseAddr(tc.client)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("client %s: %s, want %s", tc.client, got, tc.want)
		}
	}
	if got := other.PassiveAddress(netip.MustParseAddr("10.9.8.7")); got.IsValid() {
		t.Errorf("listener without overrides or public_address: %s, want none", got)
	}
}

// TestPassiveAddressOverrideDiagnostics: each mistake is an error at the
// line of the element that makes it.
func TestPassiveAddressOverrideDiagnostics(t *testing.T) {
	cert, key := testCert(t)
	base := fmt.Sprintf(validTmpl, cert, key)
	for _, tc := range []struct {
		name, attr string
		line       int
		summary    string
	}{
		{"bad CIDR", `passive_address_overrides = [
    { networks = ["10.0.0.0/8"], address = "10.1.2.3" },
    { networks = ["10.0.0.0/33"], address = "10.1.2.3" },
  ]`, 10, "Invalid address range"},
		{"host bits", `passive_address_overrides = [{ networks = ["10.1.2.3/8"], address = "10.1.2.3" }]`, 8, "Invalid address range"},
		{"IPv6 address", `passive_address_overrides = [
    { networks = ["10.0.0.0/8"], address = "2001:db8::1" },
  ]`, 9, "Invalid passive_address_overrides"},
		{"host name", `passive_address_overrides = [{ networks = ["10.0.0.0/8"], address = "gw.example" }]`, 8, "Invalid passive_address_overrides"},
		{"no networks", `passive_address_overrides = [{ networks = [], address = "10.1.2.3" }]`, 8, "Invalid passive_address_overrides"},
		{"shadowed", `passive_address_overrides = [
    { networks = ["10.0.0.0/8"], address = "10.1.2.3" },
    { networks = ["192.168.0.0/16", "10.2.0.0/16"], address = "10.9.9.9" },
  ]`, 10, "Unreachable passive_address_overrides"},
		{"missing address", `passive_address_overrides = [{ networks = ["10.0.0.0/8"] }]`, 8, "Invalid passive_address_overrides"},
		{"unknown attribute", `passive_address_overrides = [{ networks = ["10.0.0.0/8"], address = "10.1.2.3", port = 21 }]`, 8, "Invalid passive_address_overrides"},
		{"not a list", `passive_address_overrides = "10.0.0.0/8"`, 8, "Invalid passive_address_overrides"},
		{"null", `passive_address_overrides = null`, 8, "Invalid passive_address_overrides"},
		{"element not an object", `passive_address_overrides = [
    { networks = ["10.0.0.0/8"], address = "10.1.2.3" },
    "192.168.0.0/16",
  ]`, 10, "Invalid passive_address_overrides"},
		{"networks a string", `passive_address_overrides = [{ networks = "10.0.0.0/8", address = "10.1.2.3" }]`, 8, "Invalid passive_address_overrides"},
		{"address a list", `passive_address_overrides = [{ networks = ["10.0.0.0/8"], address = ["10.1.2.3"] }]`, 8, "Invalid passive_address_overrides"},
		{"a variable", `passive_address_overrides = [{ networks = [lan], address = "10.1.2.3" }]`, 8, "Variables not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(withOverrides(base, tc.attr)), "gate.hcl")
			if cfg != nil || !diags.HasErrors() {
				t.Fatal("accepted")
			}
			var found bool
			for _, d := range diags {
				if d.Summary == tc.summary {
					found = true
					if d.Subject == nil || d.Subject.Filename != "gate.hcl" || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want gate.hcl line %d", d.Summary, d.Subject, tc.line)
					}
				}
			}
			if !found {
				t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
			}
		})
	}
}
