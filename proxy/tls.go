package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// alpnFTP is the ALPN protocol id of FTP (IANA registry; RFC 7301). A
// client that offers ALPN without it is refused at the handshake, which
// stops cross-protocol attacks such as ALPACA (a browser's HTTPS request
// redirected to the FTP port).
const alpnFTP = "ftp"

// frontTLSConfig is the server-side TLS configuration of a listener, shared
// by its control and data connections: data connections resume the control
// connection's session from the tickets this configuration issues.
// The certificate comes from cert at each handshake, so that a reload can
// replace it; the minimum version and the TLS 1.2 cipher suites are set
// per session from the listener's configuration (tlsBinding), which a
// reload may change.
func frontTLSConfig(cert func() *tls.Certificate) *tls.Config {
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert(), nil },
		MinVersion:     tls.VersionTLS12,
		// Never Go's default, which accepts CBC-SHA1 suites; sessions
		// replace this with their listener's tls_cipher_suites.
		CipherSuites: config.DefaultCipherSuites(),
		NextProtos:   []string{alpnFTP},
		// Go servers never renegotiate; session tickets are on, with
		// keys rotated by crypto/tls.
	}
}

// eofConn is the raw connection under every data leg, client and backend,
// clear or TLS. It records whether its reader reached the end of the TCP
// stream: under TLS, (*tls.Conn).Read returns io.EOF both for a
// close_notify alert and for a TCP FIN at a record boundary; a close_notify
// is read without the TCP stream ending, so "TLS said EOF and TCP did not"
// means the peer ended the stream with close_notify, and an upload's end is
// verified.
//
// It also coalesces: between hold and flush, the TLS records written to it
// (crypto/tls writes each record with its own write) are gathered into one
// write, so a 64 KiB chunk leaves as one TCP send instead of four or more.
// On loopback and fast links that per-send cost, not the cipher, bounded
// downloads (see the relay).
//
// And it measures a transfer's progress in bytes (see progress): the stall
// deadline lives here, below TLS, because a TLS record or a chunk may take
// longer than the deadline to cross a slow link while bytes keep moving,
// and a *tls.Conn whose write hits a deadline is broken for good.
type eofConn struct {
	net.Conn
	eof  atomic.Bool
	out  []byte // non-nil between hold and flush; used by one goroutine
	werr error  // a failed coalesced write, reported by flush and later writes

	// stall, while positive, is the progress deadline of every read and
	// write; readBy is a read deadline set through the connection
	// meanwhile (readHeld's "do not wait"), which applies when it comes
	// first. Used by one goroutine, the relay's.
	stall  time.Duration
	readBy time.Time
	// firstRead, if set, runs once, after the first read that returned
	// data (a data connection's handshake deadline starts there).
	firstRead func()
}

// progress makes reads and writes fail only when stall passes with no
// byte moved, however long a whole read or write takes: each read gets a
// fresh deadline, and a write that times out after moving some bytes goes
// on with a fresh one. A reader that stops is thus cut after between stall
// and twice stall (the kernel accepts bytes into its buffer in steps).
// Zero turns it off; deadlines are then the caller's again.
func (c *eofConn) progress(stall time.Duration) {
	c.stall, c.readBy = stall, time.Time{}
}

// SetReadDeadline sets the read deadline; while progress is on, it is
// applied at the next read, with the stall deadline.
func (c *eofConn) SetReadDeadline(t time.Time) error {
	if c.stall > 0 {
		c.readBy = t
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// hold starts gathering writes into buf (its capacity is the limit; more
// is written through).
func (c *eofConn) hold(buf []byte) { c.out = buf[:0] }

func (c *eofConn) Write(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	if c.out == nil {
		return c.write(p)
	}
	if len(c.out)+len(p) > cap(c.out) {
		if err := c.send(); err != nil {
			return 0, err
		}
		if len(p) > cap(c.out) {
			return c.write(p)
		}
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// write writes p to the connection, under the progress deadline if on.
func (c *eofConn) write(p []byte) (int, error) {
	if c.stall <= 0 {
		return c.Conn.Write(p)
	}
	n := 0
	for {
		c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
		m, err := c.Conn.Write(p[n:])
		n += m
		// A timeout after some bytes moved is a slow reader, not a
		// stalled one.
		if err == nil || m == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
	}
}

// send writes what was gathered; after a failed write it only reports it.
func (c *eofConn) send() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.out) > 0 {
		if _, err := c.write(c.out); err != nil {
			c.werr = err
			return err
		}
		c.out = c.out[:0]
	}
	return nil
}

// flush writes what was gathered and stops gathering.
func (c *eofConn) flush() error {
	err := c.send()
	c.out = nil
	return err
}

func (c *eofConn) Read(p []byte) (int, error) {
	if c.stall > 0 {
		d := time.Now().Add(c.stall)
		if !c.readBy.IsZero() && c.readBy.Before(d) {
			d = c.readBy
		}
		c.Conn.SetReadDeadline(d)
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.firstRead != nil {
		f := c.firstRead
		c.firstRead = nil
		f()
	}
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

// sawTCPEOF reports whether the TCP stream ended.
func (c *eofConn) sawTCPEOF() bool { return c.eof.Load() }

// ---- binding data connections to their control connection ----

// bindTag marks the session-ticket entry that names the control session a
// ticket was issued to.
const bindTag = "ftpsgate-bind/"

// tlsBinding ties a client's data connections to the TLS session of its
// own control connection (RFC 4217 §10 leaves this to the server; vsftpd's
// require_ssl_reuse is the model). Every ticket the proxy issues to the
// session carries the session's random binding id, inside the encrypted
// ticket; a data connection may resume only a ticket carrying that id.
// ConnectionState.DidResume alone would accept any ticket this listener
// ever issued, including another client's.
type tlsBinding struct {
	id     []byte
	base   *tls.Config      // the listener's: its ticket keys encrypt every ticket
	listen *config.Listener // the session's listener configuration: versions, suites
}

func newTLSBinding(base *tls.Config, lc *config.Listener) *tlsBinding {
	id := make([]byte, 16)
	rand.Read(id)
	return &tlsBinding{id: append([]byte(bindTag), id...), base: base, listen: lc}
}

// session is the listener's configuration with the session's listener
// settings; control and data connections share them.
func (b *tlsBinding) session() *tls.Config {
	c := b.base.Clone()
	c.MinVersion = b.listen.MinTLSVersion
	if b.listen.CipherSuites != nil {
		c.CipherSuites = b.listen.CipherSuites
	}
	c.WrapSession = b.wrap
	return c
}

// wrap issues a ticket bound to this session, replacing any binding the
// state carried.
func (b *tlsBinding) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	extra := ss.Extra[:0:0]
	for _, e := range ss.Extra {
		if !bytes.HasPrefix(e, []byte(bindTag)) {
			extra = append(extra, e)
		}
	}
	ss.Extra = append(extra, b.id)
	return b.base.EncryptTicket(cs, ss)
}

// owns reports whether a ticket's state is bound to this session.
func (b *tlsBinding) owns(ss *tls.SessionState) bool {
	for _, e := range ss.Extra {
		if subtle.ConstantTimeCompare(e, b.id) == 1 {
			return true
		}
	}
	return false
}

// control is the configuration of the control connection: it issues bound
// tickets and never resumes one, so that a control session always gets
// tickets bound to itself (a ticket from an earlier connection would carry
// the earlier session's id).
func (b *tlsBinding) control() *tls.Config {
	c := b.session()
	c.UnwrapSession = func([]byte, tls.ConnectionState) (*tls.SessionState, error) { return nil, nil }
	return c
}

// dataHandshake is what one data connection's handshake offered.
type dataHandshake struct {
	// hello: the peer sent a ClientHello, so it is a TLS client (and,
	// from the client's address, most likely the FTP client itself).
	hello   bool
	foreign bool // it offered a valid ticket of another session
	// idOnly: a TLS 1.2-only client that offered no session ticket. It
	// can resume only by session ID, which Go's TLS server does not
	// support (curl with OpenSSL under TLS 1.2 does this).
	idOnly bool
}

// extSessionTicket is the session_ticket extension (RFC 5077).
const extSessionTicket = 35

// data is the configuration of one data connection: only tickets bound to
// this session are resumed; a foreign one is noted and ignored (a full
// handshake follows, which the caller refuses when reuse is required).
func (b *tlsBinding) data(h *dataHandshake) *tls.Config {
	c := b.session()
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		h.hello = true
		h.idOnly = !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) &&
			!slices.Contains(hello.Extensions, extSessionTicket)
		return nil, nil
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := b.base.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, nil // not ours to judge: unreadable or expired
		}
		if !b.owns(ss) {
			h.foreign = true
			return nil, nil
		}
		return ss, nil
	}
	return c
}

// errNotResumed refuses a data connection whose TLS session is not bound to
// its control connection.
type errNotResumed struct{ foreign, idOnly bool }

func (e *errNotResumed) Error() string {
	switch {
	case e.foreign:
		return "the data connection's TLS session belongs to another control connection"
	case e.idOnly:
		return "the data connection's TLS session does not resume the control connection's: " +
			"the client offered no session ticket under TLS 1.2 (resumption by session ID is not supported)"
	}
	return "the data connection's TLS session does not resume the control connection's"
}
