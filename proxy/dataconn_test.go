package proxy_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// throttledConn passes at most chunk bytes per read or write, at about
// rate bytes per second: a client on a slow link.
type throttledConn struct {
	net.Conn
	chunk int
	rate  int // bytes per second
}

func (c *throttledConn) pause(n int) {
	time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
}

func (c *throttledConn) Read(p []byte) (int, error) {
	if len(p) > c.chunk {
		p = p[:c.chunk]
	}
	n, err := c.Conn.Read(p)
	c.pause(n)
	return n, err
}

func (c *throttledConn) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		m := min(len(p), c.chunk)
		w, err := c.Conn.Write(p[:m])
		n += w
		if err != nil {
			return n, err
		}
		c.pause(w)
		p = p[m:]
	}
	return n, nil
}

// dialSmallBuffer connects to addr with a 4 KiB receive buffer, set before
// the connection so that the window stays small: what the client does not
// read backs up into the proxy quickly.
func dialSmallBuffer(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn.(*net.TCPConn)
}

// TestDataStallCountsBytes: data_stall is a time without progress, counted
// in bytes moved, not a bound on each write or TLS record (issue 24, item
// 6). With data_stall = 1s, a TLS client reading at 16 KB/s (one 64 KiB
// chunk of the relay takes it 4 s) and one writing at 8 KB/s (one 16 KiB
// TLS record takes it 2 s) move their files whole; a client that stops
// reading is cut after about data_stall with 426.
func TestDataStallCountsBytes(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	down := bytes.Repeat([]byte("slow reader "), 128<<10/12)
	writeFile(t, be.Root, "down.bin", down)
	ftptest.RandomFile(t, filepath.Join(be.Root, "big.bin"), 8<<20)
	g := startGate(t, be.Addr, gateOptions{extra: `timeouts {
  data_stall = "1s"
}`})
	login := func() *ftptest.Conn {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Login(be.User, be.Password)
		c.Cmd(200, "TYPE I")
		return c
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	t.Run("slow reader", func(t *testing.T) {
		t.Parallel()
		c := login()
		raw := dialSmallBuffer(t, c.EPSV())
		c.Cmd(150, "RETR down.bin")
		d := tls.Client(&throttledConn{Conn: raw, chunk: 512, rate: 16 << 10}, c.TLS)
		d.SetDeadline(time.Now().Add(time.Minute))
		got, err := io.ReadAll(d)
		if msg := c.Expect(226); err != nil || sum(got) != sum(down) {
			t.Fatalf("%d of %d bytes, %v; %q", len(got), len(down), err, msg)
		}
	})
	t.Run("slow writer", func(t *testing.T) {
		t.Parallel()
		up := bytes.Repeat([]byte("slow writer "), 48<<10/12)
		c := login()
		raw := dialSmallBuffer(t, c.EPSV())
		c.Cmd(150, "STOR up.bin")
		conf := c.TLS.Clone()                   // the same session cache: the session resumes
		conf.DynamicRecordSizingDisabled = true // full 16 KiB records from the start
		d := tls.Client(&throttledConn{Conn: raw, chunk: 512, rate: 8 << 10}, conf)
		d.SetDeadline(time.Now().Add(time.Minute))
		_, err := d.Write(up)
		if err == nil {
			err = d.Close()
		}
		if msg := c.Expect(226); err != nil {
			t.Fatalf("%v; %q", err, msg)
		}
		if got, err := os.ReadFile(filepath.Join(be.Root, "up.bin")); err != nil || sum(got) != sum(up) {
			t.Fatalf("the file stored: %d of %d bytes, %v", len(got), len(up), err)
		}
	})
	t.Run("stopped reader", func(t *testing.T) {
		t.Parallel()
		c := login()
		raw := dialSmallBuffer(t, c.EPSV())
		c.Cmd(150, "RETR big.bin")
		d := tls.Client(raw, c.TLS)
		d.SetDeadline(time.Now().Add(time.Minute))
		if _, err := io.ReadFull(d, make([]byte, 1)); err != nil { // the handshake, then nothing
			t.Fatal(err)
		}
		start := time.Now()
		if msg := c.Expect(426); !strings.Contains(msg, "no progress for 1s") {
			t.Fatalf("426 text %q", msg)
		}
		t.Logf("cut after %s", time.Since(start).Round(time.Millisecond))
	})
}

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
