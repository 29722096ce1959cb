package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/agent"
	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// The backend leg of a transfer: opened by the session's backendDialer
// before the transfer command (openData: a passive connection, or a
// listener for an active one), completed by the transfer goroutine
// (connectData).

// legConn is a backend data connection: TCP, or a stream through an agent
// (agent.Conn), which carries a half-close and a reset (resetLeg) to the
// FTP server as TCP would.
type legConn interface {
	net.Conn
	CloseWrite() error
}

var (
	_ legConn = (*net.TCPConn)(nil)
	_ legConn = (*agent.Conn)(nil)
)

// backendData is the backend leg of a transfer. In passive mode it is
// connected when created; in active mode it holds the listener the backend
// will connect to. The transfer goroutine completes it (connectData);
// close may come from the session goroutine (ABOR, shutdown), hence mu.
type backendData struct {
	mu   sync.Mutex
	ln   *net.TCPListener // active mode, until the backend connected
	tcp  legConn
	conn net.Conn  // raw, or the *tls.Conn over it
	tls  *tls.Conn // nil toward a plain backend
	// raw is tcp as the relay and TLS see it: it measures progress and
	// records whether reads reached the TCP end (eofConn).
	raw  *eofConn
	dead bool // closed
}

// closeNotified reports whether the backend ended its TLS data stream with
// close_notify; it is meaningful once a read returned io.EOF. Under TLS,
// (*tls.Conn).Read returns io.EOF both for a close_notify and for a bare
// TCP FIN at a record boundary, and only the latter reaches the TCP end. A
// bare FIN is what a truncation on the path looks like: vsftpd, ProFTPD
// and pure-ftpd all end their data connections with close_notify
// (TestBackendCloseNotify).
func (bd *backendData) closeNotified() bool {
	return bd.tls != nil && !bd.raw.sawTCPEOF()
}

// close resets the leg (TCP RST, so that a broken upload is never taken
// for a complete file) and stops any wait for the backend's connection. It
// may be called more than once, from any goroutine, and on nil (a spooled
// upload's leg before it is opened).
func (bd *backendData) close() {
	if bd == nil {
		return
	}
	bd.mu.Lock()
	defer bd.mu.Unlock()
	bd.dead = true
	if bd.ln != nil {
		bd.ln.Close()
	}
	if bd.tcp != nil {
		resetLeg(bd.tcp)
	}
}

// openData prepares the backend leg of a transfer on b, before the
// transfer command is sent: a passive connection, or an active listener.
func (d *backendDialer) openData(b *backendConn) (*backendData, error) {
	if b.cfg.ActiveData {
		return d.listenData(b)
	}
	c, err := d.openPassive(b)
	if err != nil {
		return nil, err
	}
	return b.newBackendData(c), nil
}

// newBackendData wraps a connected leg, as a TLS client resuming the
// control connection's session toward an FTPS backend. The handshake runs
// in connectData. Like a client leg, it goes through an eofConn,
// where the relay measures its progress.
func (b *backendConn) newBackendData(c legConn) *backendData {
	raw := &eofConn{Conn: c}
	bd := &backendData{tcp: c, conn: raw, raw: raw}
	if b.tlsConf != nil {
		bd.tls = tls.Client(raw, b.tlsConf)
		bd.conn = bd.tls
	}
	return bd
}

// openPassive asks the backend for a passive data port and connects to
// it. EPSV is tried first (it names no address); PASV after a refusal. The
// address a 227 names is ignored: the data connection always goes to the
// host of the control connection, so a backend cannot make the proxy
// connect anywhere else (RFC 2577 §3, ProFTPD's IgnoreForeignAddress).
func (d *backendDialer) openPassive(b *backendConn) (legConn, error) {
	t := d.timeouts
	var port uint16
	verb := "EPSV"
	if !b.noEPSV {
		rep, err := b.roundTrip(rewrite.Command{Verb: "EPSV"}, t.BackendReply)
		if err != nil {
			return nil, err
		}
		if rep.Code == 229 {
			p, err := rewrite.ParseEPSV(rep)
			if err != nil {
				return nil, fmt.Errorf("backend EPSV: %w", err)
			}
			port = p
		} else {
			b.noEPSV = true
			d.log.Debug("backend refused EPSV; using PASV", zap.String("reply", rep.String()))
		}
	}
	if port == 0 {
		verb = "PASV"
		rep, err := b.roundTrip(rewrite.Command{Verb: "PASV"}, t.BackendReply)
		if err != nil {
			return nil, err
		}
		ap, err := rewrite.ParsePASV(rep)
		if err != nil {
			return nil, fmt.Errorf("backend PASV: %w", err)
		}
		if ap.Addr() != b.remote.Addr().Unmap() {
			d.log.Info("backend PASV names another address; using the control connection's host",
				zap.Stringer("named", ap.Addr()), zap.Stringer("used", b.remote.Addr()))
		}
		port = ap.Port()
	}
	if port < 1024 {
		// A privileged port on the backend's host is another service
		// (SSH, SMTP…): the proxy would talk to it and relay its banner
		// as a listing (the bounce attack from the server's side, RFC
		// 2577 §3; issue 14, item 7).
		why := fmt.Sprintf("the FTP server's %s reply names privileged port %d", verb, port)
		d.log.Warn("backend passive port refused", zap.String("verb", verb), zap.Uint16("port", port),
			zap.Stringer("backend", b.remote))
		d.denied(policy.RuleBackendPassivePort, verb, why)
		return nil, errors.New(why)
	}
	addr := netip.AddrPortFrom(b.remote.Addr(), port)
	ctx, cancel := context.WithTimeout(context.Background(), t.BackendDial)
	defer cancel()
	c, err := d.dialTo(b.cfg)(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("backend data connection to %s: %w", addr, err)
	}
	tc, ok := c.(legConn)
	if !ok { // a custom dialer must give TCP (or a stream through an agent): legs are reset and half-closed
		c.Close()
		return nil, fmt.Errorf("backend data connection to %s: not a TCP connection", addr)
	}
	return tc, nil
}

// listenData opens a listener on the proxy's address toward the
// backend and tells the backend to connect to it: EPRT, or PORT after a
// refusal (backend data_mode = "active").
func (d *backendDialer) listenData(b *backendConn) (*backendData, error) {
	local := addrPortOf(b.raw.LocalAddr())
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		return nil, fmt.Errorf("listening for the backend's data connection: %w", err)
	}
	ap := netip.AddrPortFrom(local.Addr(), addrPortOf(ln.Addr()).Port())
	fail := func(err error) (*backendData, error) {
		ln.Close()
		return nil, err
	}
	if !b.noEPRT {
		rep, err := b.roundTrip(rewrite.Command{Verb: "EPRT", Arg: rewrite.EPRTArg(ap)}, d.timeouts.BackendReply)
		switch {
		case err != nil:
			return fail(err)
		case rep.Code == 200:
			return &backendData{ln: ln}, nil
		case rep.Code >= 500:
			b.noEPRT = true
			d.log.Debug("backend refused EPRT; using PORT", zap.String("reply", rep.String()))
		default:
			return fail(fmt.Errorf("backend EPRT: %s", rep))
		}
	}
	arg, err := rewrite.PORTArg(ap)
	if err != nil {
		return fail(fmt.Errorf("backend refused EPRT and PORT cannot carry %s", ap.Addr()))
	}
	rep, err := b.roundTrip(rewrite.Command{Verb: "PORT", Arg: arg}, d.timeouts.BackendReply)
	if err != nil {
		return fail(err)
	}
	if rep.Code != 200 {
		return fail(fmt.Errorf("backend PORT: %s", rep))
	}
	return &backendData{ln: ln}, nil
}

// connectData completes the backend leg bd in the transfer goroutine:
// in active mode it waits for the backend's connection (from the backend's
// host only; others are refused and logged), then, toward an FTPS backend,
// runs the TLS handshake.
func (d *backendDialer) connectData(b *backendConn, bd *backendData) error {
	t := d.timeouts
	bd.mu.Lock()
	ln := bd.ln
	bd.mu.Unlock()
	if ln != nil {
		ln.SetDeadline(time.Now().Add(t.PassiveAccept))
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return fmt.Errorf("waiting for the FTP server's data connection: %w", err)
			}
			if peer := addrPortOf(c.RemoteAddr()); peer.Addr() != b.remote.Addr() {
				d.log.Warn("backend data connection from a foreign address refused", zap.Stringer("from", peer))
				resetLeg(c)
				continue
			}
			wrapped := b.newBackendData(c)
			bd.mu.Lock()
			bd.ln.Close()
			bd.ln = nil
			bd.tcp, bd.conn, bd.tls, bd.raw = wrapped.tcp, wrapped.conn, wrapped.tls, wrapped.raw
			if bd.dead {
				resetLeg(c)
			}
			bd.mu.Unlock()
			break
		}
	}
	if bd.tls == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.BackendDial+t.BackendReply)
	defer cancel()
	if err := bd.tls.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake with the FTP server's data connection: %w", err)
	}
	return nil
}

// finish ends a leg whose transfer succeeded: under TLS, close_notify then
// FIN, and a bounded wait for the server's own close (which also reads
// any session tickets it sent on this connection); clear, a FIN.
func (bd *backendData) finish(wait time.Duration) {
	if bd.tls == nil {
		bd.tcp.Close()
		return
	}
	bd.tcp.SetDeadline(time.Now().Add(wait))
	if bd.tls.CloseWrite() == nil {
		bd.tcp.CloseWrite()
		var buf [512]byte
		for {
			if _, err := bd.tls.Read(buf[:]); err != nil {
				break
			}
		}
	}
	bd.tcp.Close()
}
