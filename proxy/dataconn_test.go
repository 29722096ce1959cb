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

// TestPassivePortSurvivesBadHandshakes: under PROT P, connections to a
// pending passive port from the client's own address that fail their TLS
// handshake (one garbage byte, a hang-up) or stall it (connect, send
// nothing) neither close the port nor hold it: each is logged and audited,
// and the client's real data connection, coming after them, is served
// (issue 14, item 8). Handshakes running at once are capped: past the cap
// a newcomer is refused while the port goes on; past the total cap the
// port closes and the transfer gets 425.
func TestPassivePortSurvivesBadHandshakes(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "f.txt", []byte("the real data\n"))
	g := startGate(t, be.Addr, gateOptions{})
	c := g.login(t, be.User, be.Password)
	dial := func(addr string) net.Conn {
		t.Helper()
		// From the client's own address, as the FTP client's are.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Timeout: 10 * time.Second}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// refusedNow reports whether the proxy ended conn (reset or closed)
	// within a few seconds, instead of waiting for a handshake.
	refusedNow := func(conn net.Conn) bool {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	fetch := func(addr string) {
		t.Helper()
		d := c.DialData(addr)
		c.Cmd(150, "RETR f.txt")
		if got := ftptest.ReadAll(t, d); string(got) != "the real data\n" {
			t.Fatalf("client got %q", got)
		}
		c.Expect(226)
	}

	t.Run("garbage, hang-up and stall first", func(t *testing.T) {
		addr := c.EPSV()
		stalled := dial(addr) // sends nothing
		garbage := dial(addr)
		io.WriteString(garbage, "HELO attacker\r\n") // not TLS
		if !refusedNow(garbage) {
			t.Fatal("the garbage connection was kept")
		}
		oneByte := dial(addr)
		oneByte.Write([]byte{0x42})
		oneByte.(*net.TCPConn).CloseWrite()
		if !refusedNow(oneByte) {
			t.Fatal("the one-byte connection was kept")
		}
		fetch(addr)
		if !refusedNow(stalled) {
			t.Fatal("the stalled connection outlived the transfer")
		}
	})
	t.Run("stalled handshakes capped", func(t *testing.T) {
		addr := c.EPSV()
		var stalled []net.Conn
		for range 4 { // maxConcurrentAttempts
			stalled = append(stalled, dial(addr))
		}
		// The fifth is reset at once: so soon, on loopback, that the
		// dial itself may report the reset.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Timeout: 10 * time.Second}
		extra, err := d.Dial("tcp", addr)
		if err == nil {
			defer extra.Close()
			if !refusedNow(extra) {
				t.Fatal("a fifth handshake was let run")
			}
		} else if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		failed := g.logs.FilterMessage(handshakeFailed).Len()
		for _, s := range stalled {
			s.Close() // each fails; the port stays open
		}
		// The real client comes once the proxy has seen them fail.
		for deadline := time.Now().Add(20 * time.Second); g.logs.FilterMessage(handshakeFailed).Len() < failed+4; {
			if time.Now().After(deadline) {
				t.Fatal("the closed connections' handshakes did not fail")
			}
			time.Sleep(10 * time.Millisecond)
		}
		fetch(addr)
	})
	t.Run("total attempts capped", func(t *testing.T) {
		addr := c.EPSV()
		for i := range 16 { // maxDataAttempts
			conn := dial(addr)
			conn.Write([]byte{0x16, 0x03}) // a handshake record cut short
			conn.(*net.TCPConn).CloseWrite()
			if !refusedNow(conn) {
				t.Fatalf("attempt %d: kept", i+1)
			}
		}
		c.Cmd(150, "RETR f.txt")
		if msg := c.Expect(425); !strings.Contains(msg, "too many data connection attempts") {
			t.Fatalf("425 text %q", msg)
		}
	})
	c.Cmd(221, "QUIT")
	if !g.logged(handshakeFailed) ||
		!g.logged("data connection refused: too many TLS handshakes in progress on the passive port") ||
		!g.logged("passive port closed after too many data connection attempts") {
		t.Fatal("a log line is missing")
	}
	n := 0
	for _, e := range g.eventsOf(t, "policy_denied") {
		if e["rule"] == "data_handshake" {
			n++
		}
	}
	if n < 4+1+16 {
		t.Fatalf("%d data_handshake denials in the audit", n)
	}
}

const handshakeFailed = "data connection handshake failed; the passive port stays open"

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
		c := g.login(t, be.User, be.Password)
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
		c := g.login(t, be.User, be.Password)
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
