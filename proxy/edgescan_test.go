package proxy_test

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestEdgeAuthScans: a session an auth block logged in goes through its
// listener's scan block like any other: with the scanner unreachable and
// on_error = "reject", its upload is refused (451) and never stored.
func TestEdgeAuthScans(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	down := downScanner(t)
	t.Setenv("FTPSGATE_TEST_EDGE_SCAN_PW", be.Password)
	g := startGate(t, be.Addr, gateOptions{listenerExtra: "auth = \"staff\"\n  scan = \"av\"",
		extra: fmt.Sprintf("auth \"staff\" {\n  user_file = %q\n  backend_user = %q\n  backend_password_env = \"FTPSGATE_TEST_EDGE_SCAN_PW\"\n}\nscan \"av\" {\n  engine = \"clamd\"\n  address = %q\n  on_error = \"reject\"\n}\n",
			edgeUsers(t, t.TempDir()), be.User, down)})
	c := g.login(t, "alice", "alice-edge-pw")
	uploadRefusedUnscanned(t, c, be.Root)
}

// downScanner is a clamd address where nothing listens: a scanner that is
// down.
func downScanner(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "tcp:" + ln.Addr().String()
}

// uploadRefusedUnscanned uploads on c, whose scan block's scanner is down
// with on_error = "reject": the upload must get 451 and never be stored
// in root.
func uploadRefusedUnscanned(t *testing.T, c *ftptest.Conn, root string) {
	t.Helper()
	d := c.DialDataTLS(c.EPSV(), c.TLS)
	c.Send("STOR unscanned.bin")
	code, msg := c.Read()
	if code == 150 {
		d.WriteAll(t, []byte("payload"))
		code, msg = c.Read()
	} else {
		d.Close()
	}
	if code != 451 || exists(filepath.Join(root, "unscanned.bin")) {
		t.Fatalf("upload with the scanner down: %d %s", code, msg)
	}
}
