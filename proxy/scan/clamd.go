// Package scan is a client of malware scanners: clamd's INSTREAM command,
// over TCP or a Unix socket (clamd.go), and an ICAP server's RESPMOD
// service, over TCP or TLS (icap.go). It streams what it is given and
// returns the scanner's verdict; it knows nothing of FTP, and what a
// verdict leads to is the caller's.
package scan

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Verdict is what a scanner found in one stream.
type Verdict struct {
	// Infected: the scanner matched a signature, Signature ("Eicar-Test-
	// Signature").
	Infected  bool
	Signature string
	// Scanned is how many bytes the scanner was sent; Truncated reports
	// that the stream was longer than the client's MaxSize, so that only
	// its first Scanned bytes were scanned.
	Scanned   int64
	Truncated bool
}

// ErrSizeLimit is clamd's "INSTREAM size limit exceeded": the stream was
// longer than clamd's StreamMaxLength, and clamd scanned none of it.
var ErrSizeLimit = errors.New("clamd: INSTREAM size limit exceeded (StreamMaxLength is below max_size)")

// A ReplyError is a clamd reply that is neither a verdict nor the size
// limit: "stream: Can't allocate memory ERROR", "UNKNOWN COMMAND", or a
// reply that does not parse.
type ReplyError struct{ Reply string }

func (e *ReplyError) Error() string { return fmt.Sprintf("clamd replied %q", e.Reply) }

// Clamd scans streams with a clamd daemon, one connection per stream.
type Clamd struct {
	// Network is "tcp" or "unix", and Address its address
	// ("127.0.0.1:3310", "/run/clamav/clamd.ctl").
	Network, Address string
	// Timeout bounds the connection to clamd, each write to it without
	// progress, and the wait for the verdict after the stream's end. It
	// never bounds a whole scan, whose stream lasts as long as its
	// upload. Zero: 60 s.
	Timeout time.Duration
	// MaxSize is the most bytes sent to clamd for one stream; it must not
	// exceed clamd's StreamMaxLength, or clamd answers ErrSizeLimit.
	// Bytes past it are counted, not sent (Verdict.Truncated). Zero: no
	// bound.
	MaxSize int64
	// Dial, if set, opens the connection to clamd (a test's seam). Nil:
	// a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// DefaultTimeout is Clamd.Timeout's default.
const DefaultTimeout = 60 * time.Second

// maxReply bounds a reply: clamd's longest is a signature name.
const maxReply = 4 << 10

func (c *Clamd) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Clamd) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if c.Dial != nil {
		return c.Dial(ctx, c.Network, c.Address)
	}
	var d net.Dialer
	return d.DialContext(ctx, c.Network, c.Address)
}

// Ping reports whether clamd answers PING with PONG.
func (c *Clamd) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("clamd: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.timeout()))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("clamd: %w", err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return &ReplyError{reply}
	}
	return nil
}

// Start opens a connection to clamd and starts an INSTREAM scan: the
// stream's bytes are then written to the returned Stream, and its Finish
// returns the verdict. The Stream owns the connection.
func (c *Clamd) Start(ctx context.Context) (*Stream, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	s := &Stream{c: c, conn: conn}
	// The z prefix: the command, and every reply, ends with NUL.
	if err := s.write([]byte("zINSTREAM\x00")); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// Stream is one INSTREAM scan in progress. It is used by one goroutine,
// but for Close.
type Stream struct {
	c    *Clamd
	conn net.Conn
	seen int64 // bytes written to the Stream
	sent int64 // bytes sent to clamd
	err  error // the first failure to send; Finish then reads what clamd said
	hdr  [4]byte
	once sync.Once
}

// Write sends p to clamd as one chunk (a 4-byte big-endian length, then
// the bytes), up to MaxSize bytes in all; past MaxSize it only counts.
// After a failure it returns the error; Finish may still read clamd's
// reply, which says why (clamd answers, then closes, when a stream
// exceeds its StreamMaxLength).
func (s *Stream) Write(p []byte) (int, error) {
	n := len(p)
	s.seen += int64(n)
	if s.err != nil {
		return 0, s.err
	}
	if s.c.MaxSize > 0 {
		if room := s.c.MaxSize - s.sent; int64(len(p)) > room {
			p = p[:max(room, 0)]
		}
	}
	if len(p) == 0 {
		return n, nil
	}
	binary.BigEndian.PutUint32(s.hdr[:], uint32(len(p)))
	if err := s.write(s.hdr[:]); err != nil {
		return 0, err
	}
	if err := s.write(p); err != nil {
		return 0, err
	}
	s.sent += int64(len(p))
	return n, nil
}

// write writes b within the timeout of each write's progress.
func (s *Stream) write(b []byte) error {
	if err := writeProgress(s.conn, b, s.c.timeout()); err != nil {
		s.err = fmt.Errorf("clamd: sending the stream: %w", err)
		return s.err
	}
	return nil
}

// writeProgress writes b to conn, failing only when timeout passes with no
// byte written (a slow scanner that keeps reading is not a stalled one).
func writeProgress(conn net.Conn, b []byte, timeout time.Duration) error {
	for len(b) > 0 {
		conn.SetWriteDeadline(time.Now().Add(timeout))
		n, err := conn.Write(b)
		b = b[n:]
		if err != nil && (n == 0 || !isTimeout(err)) {
			return err
		}
	}
	return nil
}

// Finish ends the stream (a zero-length chunk), reads clamd's reply within
// the timeout, and closes the connection. An error means no verdict: the
// scan failed (ErrSizeLimit, a *ReplyError, a network error).
func (s *Stream) Finish() (Verdict, error) {
	defer s.Close()
	v := Verdict{Scanned: s.sent, Truncated: s.seen > s.sent}
	werr := s.err
	if werr == nil {
		werr = s.write([]byte{0, 0, 0, 0})
	}
	s.conn.SetReadDeadline(time.Now().Add(s.c.timeout()))
	reply, err := readReply(s.conn)
	if err != nil {
		if werr != nil {
			return v, werr // the cause; the read failed after it
		}
		return v, err
	}
	found, sig, err := ParseReply(reply)
	if err != nil {
		return v, err
	}
	if werr != nil && !found {
		// clamd had not seen everything: an "OK" cannot be trusted.
		return v, werr
	}
	v.Infected, v.Signature = found, sig
	return v, nil
}

// Close abandons the scan, if Finish did not end it. It may be called
// from another goroutine, and more than once: a Write or Finish blocked on
// clamd then returns an error.
func (s *Stream) Close() error {
	err := net.ErrClosed
	s.once.Do(func() { err = s.conn.Close() })
	return err
}

// readReply reads one reply, up to its NUL (or the connection's end).
func readReply(r io.Reader) (string, error) {
	buf := make([]byte, 0, 128)
	var tmp [256]byte
	for {
		n, err := r.Read(tmp[:])
		buf = append(buf, tmp[:n]...)
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			return string(buf[:i]), nil
		}
		if len(buf) > maxReply {
			return "", &ReplyError{string(buf[:64]) + "…"}
		}
		if err == io.EOF {
			if len(buf) == 0 {
				return "", errors.New("clamd: closed the connection without a reply")
			}
			return string(buf), nil // a reply without its NUL: parsed as it is
		}
		if err != nil {
			return "", fmt.Errorf("clamd: reading the reply: %w", err)
		}
	}
}

// ParseReply reads a reply to INSTREAM, without its terminating NUL:
// "stream: OK" (clean), "stream: NAME FOUND" (infected, found reports it
// and sig is NAME), "INSTREAM size limit exceeded. ERROR" (ErrSizeLimit),
// anything else (a *ReplyError). clamd's ExtendedDetectionInfo appends the
// matched hash and size to NAME ("Eicar(44d8…:68)"); it is kept.
func ParseReply(reply string) (found bool, sig string, err error) {
	reply = strings.TrimRight(reply, "\r\n")
	if reply == "INSTREAM size limit exceeded. ERROR" {
		return false, "", ErrSizeLimit
	}
	rest, ok := strings.CutPrefix(reply, "stream: ")
	if !ok {
		return false, "", &ReplyError{reply}
	}
	if rest == "OK" {
		return false, "", nil
	}
	if name, ok := strings.CutSuffix(rest, " FOUND"); ok && name != "" && !strings.ContainsAny(name, "\x00\r\n") {
		return true, name, nil
	}
	return false, "", &ReplyError{reply}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ParseAddress reads a scanner address: "unix:/path" or "tcp:host:port".
func ParseAddress(s string) (network, address string, err error) {
	network, address, ok := strings.Cut(s, ":")
	if !ok || address == "" {
		return "", "", fmt.Errorf("%q is not unix:/path or tcp:host:port", s)
	}
	switch network {
	case "unix":
		if !strings.HasPrefix(address, "/") {
			return "", "", fmt.Errorf("%q: a Unix socket's path must be absolute", s)
		}
	case "tcp":
		host, port, err := net.SplitHostPort(address)
		if err != nil || host == "" || port == "" || port == "0" {
			return "", "", fmt.Errorf("%q: a TCP address must be tcp:host:port", s)
		}
	default:
		return "", "", fmt.Errorf("%q: the scheme must be unix: or tcp:", s)
	}
	return network, address, nil
}
