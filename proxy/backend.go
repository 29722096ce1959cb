package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpsgate/ftpsgate/agent"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// backendConn is a session's control connection to its FTP server. It is
// used by one goroutine at a time: the session's, or its transfer's while
// one runs.
type backendConn struct {
	cfg    *config.Backend
	raw    net.Conn // the TCP connection
	conn   net.Conn // raw, or the *tls.Conn over it
	r      *bufio.Reader
	remote netip.AddrPort // the address actually connected to
	// tlsConf is this session's client TLS configuration toward an FTPS
	// backend (nil for a plain one), with a session cache of its own
	// shared by the control and data connections.
	tlsConf *tls.Config
	// noEPSV is set once the backend refused EPSV; PASV is used after.
	noEPSV bool
	// noEPRT: likewise for EPRT and PORT (data_mode = "active").
	noEPRT bool
	// server is the pool member this connection counts against, and
	// queue the backend's queue, where its session slot is given back.
	server    *poolServer
	queue     *backendQueue
	closeOnce sync.Once
}

// backendLimits bound what a backend may send in one reply.
var backendLimits = rewrite.ReplyLimits{}

// replyText is the text of a backend's reply for the client's own reply:
// its first line after the code, printable ASCII only, at most 160 bytes.
func replyText(rep *rewrite.Reply) string {
	line := rep.Lines[0]
	if len(line) > 4 {
		line = line[4:]
	} else {
		line = ""
	}
	line = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' || r == '"' {
			return -1
		}
		return r
	}, line)
	if len(line) > 160 {
		line = line[:160]
	}
	return strings.TrimSpace(line)
}

// authTLS upgrades the control connection with AUTH TLS (RFC 4217 §4).
func (b *backendConn) authTLS(timeout time.Duration) error {
	rep, err := b.roundTrip(rewrite.Command{Verb: "AUTH", Arg: "TLS"}, timeout)
	if err != nil {
		return err
	}
	if rep.Code != 234 {
		return fmt.Errorf("reply %q", rep.String())
	}
	// Bytes after the 234, before the handshake, would be read as if they
	// came under TLS: a forged reply injected in clear (the STARTTLS
	// injection class, toward the backend).
	if b.r.Buffered() > 0 {
		return fmt.Errorf("%d bytes of plaintext after the 234 reply", b.r.Buffered())
	}
	return b.startTLS(timeout)
}

// startTLS runs the client TLS handshake on the control connection.
func (b *backendConn) startTLS(timeout time.Duration) error {
	tc := tls.Client(b.raw, b.tlsConf)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	b.conn, b.r = tc, bufio.NewReaderSize(tc, controlBufferSize)
	return nil
}

// close closes the control connection (with close_notify under TLS).
func (b *backendConn) close() {
	b.raw.SetWriteDeadline(time.Now().Add(time.Second))
	b.conn.Close()
	b.closeOnce.Do(func() {
		if b.server != nil {
			b.server.sessions.Add(-1)
		}
		if b.queue != nil {
			b.queue.release(b.server.addr)
		}
	})
}

// send writes cmd to the backend, rebuilt from its parsed form.
func (b *backendConn) send(cmd rewrite.Command) error {
	b.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := b.conn.Write(cmd.Wire()); err != nil {
		return fmt.Errorf("%w: sending %s: %w", errBackendLost, cmd.Verb, err)
	}
	return nil
}

// read reads one reply, waiting at most timeout.
func (b *backendConn) read(timeout time.Duration) (*rewrite.Reply, error) {
	b.raw.SetReadDeadline(time.Now().Add(timeout))
	rep, err := rewrite.ReadReply(b.r, backendLimits)
	if err != nil {
		return nil, fmt.Errorf("%w: reading reply: %w", errBackendLost, err)
	}
	return rep, nil
}

// roundTrip sends cmd and returns its final reply, skipping preliminary
// ones; nothing is relayed to the client.
func (b *backendConn) roundTrip(cmd rewrite.Command, timeout time.Duration) (*rewrite.Reply, error) {
	if err := b.send(cmd); err != nil {
		return nil, err
	}
	for {
		rep, err := b.read(timeout)
		if err != nil || rep.Final() {
			return rep, err
		}
	}
}

// backendError says why a backend server could not take a session; what
// is the end of the 421 the client gets when no server could
// ("Service not available: " + what), and cause is the kind of failure,
// for the retry decision and the metrics.
type backendError struct {
	backend, what string
	cause         string
	err           error
}

func (e *backendError) Error() string   { return e.what + ": " + e.err.Error() }
func (e *backendError) Unwrap() []error { return []error{errBackendRefused, e.err} }

// retryable reports whether the failure was fast and may pass: the server
// is there but refused, reset or closed, or said it was busy.
func (e *backendError) retryable() bool {
	switch e.cause {
	case causeRefused, causeReset, causeClosed, causeBusy:
		return true
	}
	return false
}

// reply is the client's 421 text.
func (e *backendError) reply() string {
	if e.cause == causeQueue {
		return e.what + ", try again later."
	}
	return "Service not available: " + e.what + "; try again later."
}

// What the client is told.
const (
	backendUnreachable = "the FTP server cannot be reached"
	backendRefused     = "the FTP server refused the connection"
	backendReset       = "the FTP server reset the connection"
	backendClosed      = "the FTP server closed the connection before its greeting"
	backendSilent      = "the FTP server did not answer"
	backendRefusedTLS  = "TLS with the FTP server failed"
	// A via_agent backend: no agent of its name is connected, or the
	// agent refused (allow_targets) or failed the connection.
	backendNoAgent      = "no agent connected"
	backendAgentRefused = "the agent could not connect to the FTP server"
)

// Why a connection to a backend server failed (backendError.cause, the
// label of ftpsgate_backend_retries_total).
const (
	causeRefused = "refused" // the dial was refused
	causeReset   = "reset"   // reset before the greeting
	causeClosed  = "closed"  // closed before the greeting
	causeBusy    = "busy"    // a 421 greeting
	causeTimeout = "timeout" // no connection, greeting or reply in time
	causeTLS     = "tls"     // TLS toward an FTPS backend failed
	causeOther   = "other"
	// causeNoAgent: no agent of a via_agent backend is connected;
	// causeAgentRefused: the agent refused or failed the connection.
	causeNoAgent      = "no_agent"
	causeAgentRefused = "agent_refused"
	// causeQueue: the login waited in the backend's queue past
	// queue_timeout; no server was tried.
	causeQueue = "queue_timeout"
)

// failureCause classifies a connection's error.
func failureCause(err error) string {
	switch {
	case errors.Is(err, errNoAgent):
		return causeNoAgent
	case errors.Is(err, agent.ErrRefused):
		return causeAgentRefused
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		return causeTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return causeRefused
	case errors.Is(err, syscall.ECONNRESET):
		return causeReset
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return causeClosed
	}
	return causeOther
}
