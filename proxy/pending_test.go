package proxy_test

import (
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestOnePendingListener: a session holds at most one passive listener: a
// second PASV/EPSV (or a PORT) releases the first port, and QUIT releases
// the last. A client cannot drain the range by asking again and again.
func TestOnePendingListener(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{ports: 5, listenerExtra: allowLocal})
	c := g.login(t, be.User, be.Password)
	for i := 0; i < 20; i++ { // four times the range
		c.EPSV()
		if n := g.srv.PassivePortsInUse("ftps"); n != 1 {
			t.Fatalf("after EPSV %d: %d passive ports held", i+1, n)
		}
	}
	c.Cmd(200, "PORT 127,0,0,1,156,64")
	if n := g.srv.PassivePortsInUse("ftps"); n != 0 {
		t.Fatalf("after PORT: %d passive ports held", n)
	}
	c.EPSV()
	c.Cmd(221, "QUIT")
	c.ReadErr() // the close
	g.srv.Close()
	if n := g.srv.PassivePortsInUse("ftps"); n > 0 {
		t.Fatalf("after QUIT: %d passive ports held", n)
	}
}
