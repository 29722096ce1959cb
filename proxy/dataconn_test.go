package proxy_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestLingeringDataLegsBounded: clients that read their downloads and
// never close their data connections cannot pile up the proxy's
// descriptors: at most limits.max_lingering_data_legs client legs linger,
// the rest are closed at once, and ftpsgate_data_legs_lingering counts
// them (issue 24, item 7). The test's own ends of the data connections
// stay open throughout, so that the proxy's lingering ones cannot end.
func TestLingeringDataLegsBounded(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("linger\n"))
	g := startGate(t, be.Addr, gateOptions{extra: `limits {
  max_lingering_data_legs = 3
}`})
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	const sessions, each = 3, 10
	var ctrls []*ftptest.Conn
	for range sessions {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Login(be.User, be.Password)
		ctrls = append(ctrls, c)
	}
	before, start := fds(), time.Now()
	var open []*ftptest.DataConn // kept open, and alive for the GC
	for range each {
		for _, c := range ctrls {
			d := c.DialData(c.EPSV())
			c.Cmd(150, "RETR f.txt")
			if got, err := io.ReadAll(d); err != nil || string(got) != "linger\n" {
				t.Fatalf("got %q, %v", got, err)
			}
			c.Expect(226)
			open = append(open, d)
		}
	}
	// Ours: one descriptor per data connection kept open. The proxy's:
	// at most 3 lingering, and a few of its own (backend, listeners).
	grown := fds() - before
	if limit := len(open) + 3 + 10; grown > limit {
		t.Fatalf("%d descriptors more after %d transfers, want at most %d", grown, len(open), limit)
	}
	rec := httptest.NewRecorder()
	g.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var lingering, refused int
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		fmt.Sscanf(line, "ftpsgate_data_legs_lingering %d", &lingering)
		fmt.Sscanf(line, "ftpsgate_data_legs_linger_refused_total %d", &refused)
	}
	// A lingering leg ends after 10 s: only a run that took less can
	// expect every slot still taken.
	if lingering > 3 || refused < 1 || (time.Since(start) < 10*time.Second && (lingering != 3 || refused != len(open)-3)) {
		t.Fatalf("metrics: %d lingering, %d closed at once, after %d transfers in %s", lingering, refused, len(open), time.Since(start))
	}
	t.Logf("%d transfers left open by the client: %d descriptors more in the process", len(open), grown)
	for _, c := range ctrls {
		c.Cmd(221, "QUIT")
	}
}
