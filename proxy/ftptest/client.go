package ftptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Conn is a minimal FTP client for protocol-level assertions. It parses
// replies with net/textproto, independently of the proxy's own parser.
// Every method fails the test on an I/O error.
type Conn struct {
	t    testing.TB
	Raw  net.Conn // the TCP connection
	Ctrl net.Conn // Raw, or the TLS connection over it
	tp   *textproto.Conn
	host string
	src  net.IP // the control connection's local address; data connections use it too
	TLS  *tls.Config
}

// opTimeout bounds each exchange of the test client.
const opTimeout = 30 * time.Second

// Dial connects to an explicit-FTPS (or plain) server and reads its greeting.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	return DialFrom(t, "", addr)
}

// DialFrom is Dial from the local address src ("127.0.0.2"; "" for any).
func DialFrom(t testing.TB, src, addr string) *Conn {
	t.Helper()
	d := net.Dialer{Timeout: opTimeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return Wrap(t, raw)
}

// Wrap makes an FTP client of a connected raw (after, say, a PROXY header
// was written on it) and reads the greeting.
func Wrap(t testing.TB, raw net.Conn) *Conn {
	t.Helper()
	c := &Conn{t: t, Raw: raw, Ctrl: raw, tp: textproto.NewConn(raw)}
	c.host, _, _ = net.SplitHostPort(raw.RemoteAddr().String())
	if ta, ok := raw.LocalAddr().(*net.TCPAddr); ok {
		c.src = ta.IP
	}
	t.Cleanup(func() { raw.Close() })
	c.Expect(220)
	return c
}

// DialImplicit connects with TLS from the first byte and reads the greeting.
func DialImplicit(t testing.TB, addr string, conf *tls.Config) *Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, opTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { raw.Close() })
	tc := tls.Client(raw, conf)
	raw.SetDeadline(time.Now().Add(opTimeout))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("implicit TLS handshake: %v", err)
	}
	c := &Conn{t: t, Raw: raw, Ctrl: tc, tp: textproto.NewConn(tc), TLS: conf}
	c.host, _, _ = net.SplitHostPort(addr)
	c.Expect(220)
	return c
}

// For makes c report its failures to t, a subtest that takes c over (to
// run it in parallel with others, say), and returns c.
func (c *Conn) For(t testing.TB) *Conn {
	c.t = t
	return c
}

// Send writes one command line.
func (c *Conn) Send(line string) {
	c.t.Helper()
	c.Raw.SetDeadline(time.Now().Add(opTimeout))
	if err := c.tp.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// SendRaw writes bytes as they are.
func (c *Conn) SendRaw(b []byte) {
	c.t.Helper()
	c.Raw.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.Ctrl.Write(b); err != nil {
		c.t.Fatalf("send raw: %v", err)
	}
}

// Read reads one reply (all lines of a multi-line reply).
func (c *Conn) Read() (int, string) {
	c.t.Helper()
	code, msg, err := c.ReadErr()
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// ReadErr reads one reply and returns an I/O error instead of failing.
func (c *Conn) ReadErr() (int, string, error) {
	c.Raw.SetDeadline(time.Now().Add(opTimeout))
	code, msg, err := c.tp.ReadResponse(0)
	if _, ok := err.(*textproto.Error); ok {
		err = nil // a reply whose code we did not ask about
	}
	return code, msg, err
}

// Expect reads one reply and fails the test unless its code is code.
func (c *Conn) Expect(code int) string {
	c.t.Helper()
	got, msg := c.Read()
	if got != code {
		c.t.Fatalf("got reply %d %q, want %d", got, msg, code)
	}
	return msg
}

// Cmd sends a command and expects a reply code.
func (c *Conn) Cmd(code int, format string, args ...any) string {
	c.t.Helper()
	c.Send(fmt.Sprintf(format, args...))
	return c.Expect(code)
}

// AuthTLS upgrades the control connection with AUTH TLS.
func (c *Conn) AuthTLS(conf *tls.Config) {
	c.t.Helper()
	c.Cmd(234, "AUTH TLS")
	tc := tls.Client(c.Raw, conf)
	c.Raw.SetDeadline(time.Now().Add(opTimeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after AUTH TLS: %v", err)
	}
	c.Ctrl, c.tp, c.TLS = tc, textproto.NewConn(tc), conf
}

// LoginProtP logs in with USER and PASS, then protects the data
// connections: PBSZ 0 and PROT P.
func (c *Conn) LoginProtP(user, pass string) {
	c.t.Helper()
	c.Cmd(331, "USER %s", user)
	c.Cmd(230, "PASS %s", pass)
	c.Cmd(200, "PBSZ 0")
	c.Cmd(200, "PROT P")
}

// EPSV sends EPSV and returns the data address: the control host and the
// port in the 229 reply.
func (c *Conn) EPSV() string {
	c.t.Helper()
	msg := c.Cmd(229, "EPSV")
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	if i < 0 || j < i {
		c.t.Fatalf("bad 229 reply %q", msg)
	}
	port, err := strconv.Atoi(msg[i+4 : j])
	if err != nil {
		c.t.Fatalf("bad 229 reply %q", msg)
	}
	return net.JoinHostPort(c.host, strconv.Itoa(port))
}

// DataConn is a client data connection.
type DataConn struct {
	net.Conn          // the TLS connection, or the TCP one
	TCP      net.Conn // the TCP connection
	eof      *eofTracker
}

// DialData opens the data connection to addr, with TLS when the control
// connection has it (PROT P is assumed), resuming its session.
func (c *Conn) DialData(addr string) *DataConn {
	c.t.Helper()
	return c.DialDataTLS(addr, c.TLS)
}

// DialDataTLS opens the data connection to addr with TLS configuration
// conf (nil: no TLS). A conf with another session cache, or none, makes a
// data connection that does not resume the control connection's session.
func (c *Conn) DialDataTLS(addr string, conf *tls.Config) *DataConn {
	c.t.Helper()
	d := net.Dialer{Timeout: opTimeout}
	if c.src != nil {
		d.LocalAddr = &net.TCPAddr{IP: c.src}
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		c.t.Fatalf("dial data %s: %v", addr, err)
	}
	c.t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(opTimeout))
	eof := &eofTracker{Conn: raw}
	dc := &DataConn{Conn: eof, TCP: raw, eof: eof}
	if conf != nil {
		dc.Conn = tls.Client(eof, conf)
	}
	return dc
}

// CloseNotified reports whether the TLS stream ended by close_notify: Go's
// TLS reader returns io.EOF both for close_notify and for a bare TCP FIN at
// a record boundary, but only the latter reaches the TCP end.
func (d *DataConn) CloseNotified() bool { return !d.eof.eof }

// ReadAll reads a data connection to its end, failing on an error.
func ReadAll(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(opTimeout))
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("read data: %v", err)
	}
	return b
}

type eofTracker struct {
	net.Conn
	eof bool
}

func (e *eofTracker) Read(p []byte) (int, error) {
	n, err := e.Conn.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

// WriteAll writes data and closes the connection (with close_notify under
// TLS), failing the test on an error.
func (d *DataConn) WriteAll(t testing.TB, data []byte) {
	t.Helper()
	d.SetDeadline(time.Now().Add(opTimeout))
	if _, err := d.Write(data); err != nil {
		t.Fatalf("write data: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("close data: %v", err)
	}
}

// Greeting connects to addr, from the local address src ("" for any), and
// returns the first line the server sends, with its line end. timeout
// bounds the connection and the read; an error is the dial's or the
// read's (with what was read of the line).
func Greeting(src, addr string, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	return bufio.NewReader(c).ReadString('\n')
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: the
// output of a process, or a log, that a test reads while it is written.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (s *SyncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// String returns what was written so far.
func (s *SyncBuffer) String() string { return string(s.Bytes()) }
