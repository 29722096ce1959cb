package proxy_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// TestPassiveAddressOverridesByClient: two clients of one listener, from
// 127.0.0.1 and 127.0.0.2, are told two addresses in their 227 replies:
// the one whose network passive_address_overrides names gets its
// override (127.0.0.1, which it then lists through), the other
// public_address. EPSV is the same for both.
func TestPassiveAddressOverridesByClient(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{public: "203.0.113.10", listenerExtra: `passive_address_overrides = [
    { networks = ["10.0.0.0/8"], address = "10.1.2.3" },
    { networks = ["127.0.0.2/32"], address = "127.0.0.1" },
  ]`})
	for _, tc := range []struct{ src, want string }{
		{"127.0.0.2", "127.0.0.1"},    // the override
		{"127.0.0.1", "203.0.113.10"}, // no override: public_address
	} {
		c := ftptest.DialFrom(t, tc.src, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.LoginProtP(be.User, be.Password)
		msg := c.Cmd(227, "PASV")
		ap, err := rewrite.ParsePASV(&rewrite.Reply{Code: 227, Lines: []string{"227 " + msg}})
		if err != nil || ap.Addr() != netip.MustParseAddr(tc.want) {
			t.Fatalf("client %s: 227 %q (%v, %v), want %s", tc.src, msg, ap, err, tc.want)
		}
		if tc.src == "127.0.0.2" { // the address it was told works
			d := c.DialData(ap.String())
			c.Cmd(150, "LIST")
			ftptest.ReadAll(t, d)
			c.Expect(226)
		}
		// EPSV names only a port, whoever asks.
		if msg := c.Cmd(229, "EPSV"); !strings.Contains(msg, "(|||") {
			t.Fatalf("client %s: 229 %q", tc.src, msg)
		}
		c.Cmd(221, "QUIT")
	}
	var logged []string
	for _, e := range g.logs.FilterMessage("passive data port offered").All() {
		if f := e.ContextMap(); f["verb"] == "PASV" {
			logged = append(logged, fmt.Sprint(f["advertised_address"]))
		}
	}
	if strings.Join(logged, " ") != "127.0.0.1 203.0.113.10" {
		t.Fatalf("the log says the 227s advertised %v", logged)
	}
}
