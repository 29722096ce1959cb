// Package agent is ftpsgate's outbound-only agent: run inside the internal
// network, it dials the edge (an ftpsgate in the DMZ) over mutual TLS,
// carries multiplexed streams (yamux) over each connection, and opens on
// the edge's request only the TCP connections its allow_targets permit.
//
// # The stream protocol
//
// The agent is the TLS client (ALPN "ftpsgate-agent/1") and the yamux
// server; the edge opens every stream. A stream starts with one request
// line from the edge and one answer line from the agent, each at most 512
// bytes:
//
//	edge:  OPEN 10.0.0.5:2121\n
//	agent: OK\n                       the connection to the target is up
//	agent: ERR <reason>\n             refused or failed; the stream ends
//
// The target is an IP address and a port exactly as allow_targets
// permits it; nothing is resolved. After OK, both directions carry frames:
//
//	'D' len(uint16, big endian, 1..65535) bytes   data
//	'F'                                           end of this direction (a TCP FIN)
//	'R'                                           abort (a TCP reset)
//
// A frame after 'F' or 'R', an unknown type or an empty 'D' is a protocol
// error and resets both ends. 'R' exists because yamux has only a clean
// close: an upload the edge aborts must reach the FTP server as a reset,
// never as a FIN that completes a truncated file.
package agent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
)

// ALPN is the protocol name the agent and the edge negotiate in TLS; a
// later incompatible protocol gets another.
const ALPN = "ftpsgate-agent/1"

// maxLine bounds the request and answer lines.
const maxLine = 512

// Frame types.
const (
	frameData  = 'D'
	frameFIN   = 'F'
	frameReset = 'R'
)

// ErrRefused wraps the agent's reason for refusing a stream.
var ErrRefused = errors.New("the agent refused the connection")

// ErrReset is what a Conn's Read returns after the peer aborted its
// direction ('R'); it wraps syscall.ECONNRESET, as a TCP reset's error
// does.
var ErrReset = fmt.Errorf("connection reset through the agent: %w", syscall.ECONNRESET)

// errProtocol: the peer broke the framing.
var errProtocol = errors.New("agent stream protocol error")

// Open asks the agent at the other end of stream for a connection to
// target and returns it as a Conn, or an error wrapping ErrRefused with
// the agent's reason. timeout bounds the exchange (the agent's dial
// included). On error the stream is closed.
func Open(stream net.Conn, target netip.AddrPort, timeout time.Duration) (*Conn, error) {
	stream.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(stream, "OPEN %s\n", target); err != nil {
		stream.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(stream, 64<<10)
	line, err := readLine(r)
	if err != nil {
		stream.Close()
		return nil, fmt.Errorf("reading the agent's answer: %w", err)
	}
	switch {
	case line == "OK":
	case strings.HasPrefix(line, "ERR "):
		stream.Close()
		return nil, fmt.Errorf("%w: %s", ErrRefused, line[4:])
	default:
		stream.Close()
		return nil, fmt.Errorf("%w: answer %q", errProtocol, line)
	}
	stream.SetDeadline(time.Time{})
	return newConn(stream, r, net.TCPAddrFromAddrPort(target)), nil
}

// readLine reads one line of at most maxLine bytes, without its "\n".
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return string(b), nil
		}
		if len(b) >= maxLine || c < ' ' || c > '~' {
			return "", fmt.Errorf("%w: bad line", errProtocol)
		}
		b = append(b, c)
	}
}

// ParseRequest reads the edge's request line from r: the target it asks
// for.
func ParseRequest(r *bufio.Reader) (netip.AddrPort, error) {
	line, err := readLine(r)
	if err != nil {
		return netip.AddrPort{}, err
	}
	verb, arg, _ := strings.Cut(line, " ")
	if verb != "OPEN" {
		return netip.AddrPort{}, fmt.Errorf("%w: request %q", errProtocol, line)
	}
	ap, err := netip.ParseAddrPort(arg)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: target %q is not IP:port", errProtocol, arg)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Conn is a connection carried by an agent stream: a net.Conn with TCP's
// half-close (CloseWrite) and abort (Reset), framed as the package doc
// says. It is safe for one reader and one writer at a time; Close and
// Reset may come from any goroutine.
type Conn struct {
	stream net.Conn
	r      *bufio.Reader
	remote net.Addr

	// rmu guards the read side's state.
	rmu     sync.Mutex
	left    int   // bytes of the current data frame not yet read
	readErr error // io.EOF after 'F', ErrReset after 'R', or a failure

	// wmu guards writes and the end of the write side.
	wmu    sync.Mutex
	wended bool // 'F' or 'R' sent
	wbuf   []byte

	closed    chan struct{} // closed by Close or Reset
	closeOnce sync.Once
}

func newConn(stream net.Conn, r *bufio.Reader, remote net.Addr) *Conn {
	return &Conn{stream: stream, r: r, remote: remote, closed: make(chan struct{})}
}

// Read reads data; it returns io.EOF once the peer's direction ended with
// 'F', and an error wrapping syscall.ECONNRESET once it was aborted.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for c.left == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		t, err := c.r.ReadByte()
		if err == io.EOF {
			// The stream ended without 'F': the agent or its connection
			// went away, and what came is not known to be whole.
			c.readErr = io.ErrUnexpectedEOF
			continue
		}
		if err != nil {
			return 0, err // a deadline or the session's end
		}
		switch t {
		case frameData:
			var n [2]byte
			if _, err := io.ReadFull(c.r, n[:]); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			c.left = int(binary.BigEndian.Uint16(n[:]))
			if c.left == 0 {
				c.readErr = errProtocol
			}
		case frameFIN:
			c.readErr = io.EOF
		case frameReset:
			c.readErr = ErrReset
		default:
			c.readErr = errProtocol
		}
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	if err == io.EOF { // the stream ended inside a frame
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Write sends p as data frames.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wended {
		return 0, net.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), 0xFFFF)
		c.wbuf = append(c.wbuf[:0], frameData, byte(n>>8), byte(n))
		c.wbuf = append(c.wbuf, p[:n]...)
		if _, err := c.stream.Write(c.wbuf); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// end sends the last frame of the write side, once.
func (c *Conn) end(t byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wended {
		return nil
	}
	c.wended = true
	_, err := c.stream.Write([]byte{t})
	return err
}

// CloseWrite ends the write side cleanly: the far end's TCP connection is
// half-closed (FIN).
func (c *Conn) CloseWrite() error { return c.end(frameFIN) }

// Reset aborts the connection: the far end's TCP connection is reset, so
// that what was sent cannot pass for a complete stream. The write is
// bounded, so that a stalled stream cannot hold the caller.
func (c *Conn) Reset() error {
	c.stream.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := c.end(frameReset)
	c.stream.SetReadDeadline(time.Now()) // a yamux Close leaves reads waiting for the peer
	c.stream.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}

// Close ends the write side cleanly, if it was not ended, and closes the
// stream. Safe to call more than once.
func (c *Conn) Close() error {
	c.stream.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.end(frameFIN)
	// A yamux Close is a half-close: a pending Read would wait for the
	// peer's end. As with TCP, Close ends it now.
	c.stream.SetReadDeadline(time.Now())
	err := c.stream.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}

// Closed returns a channel closed once c is closed (Close or Reset).
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// AgentGone returns a channel closed when the connection with the agent
// that carries c ends: the agent went away, or the edge closed its
// connection (a reload revoked its name). Nothing then reaches the
// target; a user of c that does not read learns it so. Nil (never
// closed) when c's stream is not a yamux stream.
func (c *Conn) AgentGone() <-chan struct{} {
	if st, ok := c.stream.(interface{ Session() *yamux.Session }); ok {
		return st.Session().CloseChan()
	}
	return nil
}

// LocalAddr is the stream's (the edge's end of the agent's connection).
func (c *Conn) LocalAddr() net.Addr { return c.stream.LocalAddr() }

// AgentAddr is the address of the agent at the other end of the stream
// (its connection to the edge).
func (c *Conn) AgentAddr() net.Addr { return c.stream.RemoteAddr() }

// RemoteAddr is the target the agent connected to.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) SetDeadline(t time.Time) error      { return c.stream.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.stream.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.stream.SetWriteDeadline(t) }

var _ net.Conn = (*Conn)(nil)
