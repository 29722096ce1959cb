package proxy_test

import (
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// The command dispatch, verb by verb, in front of the scripted backend:
// what the proxy answers itself, what it refuses and when, what it
// relays. It needs neither root nor an FTP server, so make unit runs it
// (the real servers' own replies are checked in protocol_test.go).

// exchange is one command and the code of its final reply.
type exchange struct {
	cmd  string
	code int
}

// TestDispatchWithoutRoot: the verb table's rules, before and after login.
func TestDispatchWithoutRoot(t *testing.T) {
	be := startScriptedBackend(t, &scriptedBackend{})
	g := startGate(t, be.ln.Addr().String(), gateOptions{policy: `deny_commands = ["DELE"]`})
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	for _, x := range []exchange{
		// Before login: the proxy answers, or refuses with 530.
		{"FOO", 502},           // not in the verb table: unknown_commands = "reject"
		{"PWD", 530},           // needs a login
		{"REIN", 530},          // refused (502) only once logged in
		{"REST 10", 530},       // likewise
		{"NOOP", 200},          // no backend yet: the proxy's own
		{"ABOR", 225},          // nothing to abort
		{"CCC", 534},           // the control connection stays encrypted
		{"ADAT", 502},          // TLS needs no security data
		{"AUTH TLS", 503},      // TLS is up already
		{"PROT P", 503},        // PBSZ first
		{"PBSZ x", 501},        // a number
		{"PBSZ 0", 200},        //
		{"PROT", 501},          // one of C, S, E, P
		{"PROT P", 200},        //
		{"PASS secret", 503},   // USER first
		{"HOST bad host", 501}, // a host name or an [address]
		{"HOST ftp.example", 220},
		{"FEAT", 211}, // the proxy's features, before any backend
		// The login, relayed to the backend, its replies the proxy's own.
		{"USER bob", 331},
		{"PASS secret", 230},
		// After login.
		{"HOST ftp.example", 503},    // HOST comes before USER
		{"USER alice", 503},          // a new user needs a new session
		{"PWD", 200},                 // relayed: the scripted backend says 200
		{"TYPE I", 200},              // relayed
		{"REIN", 502},                // refused by the proxy
		{"REST -1", 501},             // a byte offset from 0
		{"REST 1e3", 501},            //
		{"REST 10", 350},             // held for the next transfer
		{"DELE f", 502},              // deny_commands
		{"SITE CHMOD 600 f", 200},    // relayed
		{"XCWD /", 200},              // an alias, relayed
		{"FEAT", 211},                // merged with the backend's
		{"RETR f", 425},              // no PASV, EPSV, PORT or EPRT yet
		{"EPSV 3", 501},              // 1, 2 or ALL
		{"EPSV 2", 522},              // IPv6, on an IPv4 connection
		{"PORT 127,0,0,2,4,1", 504},  // not the client's address
		{"PORT 127,0,0,1,0,21", 504}, // a privileged port
		{"EPSV ALL", 200},            // only EPSV from now on
		{"PASV", 503},                //
		{"PORT 127,0,0,1,4,1", 503},  //
		{"ABOR", 200},                // no transfer: relayed
		{"NOOP", 200},                // relayed
		{"QUIT", 221},
	} {
		c.Send(x.cmd)
		if got, msg := c.Read(); got != x.code {
			t.Fatalf("%s: got %d %q, want %d", x.cmd, got, msg, x.code)
		}
	}
}

// TestDispatchReadOnly: a read-only user may read and list, not write.
func TestDispatchReadOnly(t *testing.T) {
	be := startScriptedBackend(t, &scriptedBackend{})
	g := startGate(t, be.ln.Addr().String(), gateOptions{policy: `read_only_users = ["reader"]`})
	c := g.login(t, "reader", "secret")
	for _, x := range []exchange{
		{"PWD", 200},
		{"SIZE f", 200},
		{"MDTM f", 200},
		{"MDTM 20000101000000 f", 550}, // sets the file's time
		{"DELE f", 550},
		{"MKD d", 550},
		{"XMKD d", 550}, // the alias too
		{"SITE CHMOD 600 f", 550},
		{"SITE HELP", 200},
		{"CHMOD 600 f", 550}, // pure-ftpd's bare CHMOD is SITE CHMOD
		{"STOR f", 550},
		{"QUIT", 221},
	} {
		c.Send(x.cmd)
		if got, msg := c.Read(); got != x.code {
			t.Fatalf("%s: got %d %q, want %d", x.cmd, got, msg, x.code)
		}
	}
}
