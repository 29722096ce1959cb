package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// backendConn is a session's control connection to its FTP server. It is
// used by one goroutine at a time: the session's, or its transfer's while
// one runs.
type backendConn struct {
	cfg    *config.Backend
	conn   net.Conn
	r      *bufio.Reader
	remote netip.AddrPort // the address actually connected to
	// noEPSV is set once the backend refused EPSV; PASV is used after.
	noEPSV bool
}

// backendLimits bound what a backend may send in one reply.
var backendLimits = rewrite.ReplyLimits{}

// connectBackend dials b and reads its greeting. Every failure is logged
// here and returned as errBackendRefused, which ends the session with 421.
func (s *session) connectBackend(b *config.Backend) (*backendConn, error) {
	t := s.cfg.Timeouts
	ctx, cancel := context.WithTimeout(context.Background(), t.BackendDial)
	defer cancel()
	start := time.Now()
	c, err := s.srv.dial(ctx, "tcp", b.Address)
	if err != nil {
		s.log.Warn("backend dial failed", zap.String("backend", b.Name), zap.String("address", b.Address), zap.Error(err))
		return nil, fmt.Errorf("%w: %v", errBackendRefused, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	be := &backendConn{cfg: b, conn: c, r: bufio.NewReader(c), remote: addrPortOf(c.RemoteAddr())}
	greet, err := be.read(t.BackendReply)
	if err != nil {
		c.Close()
		s.log.Warn("backend greeting not received", zap.String("backend", b.Name), zap.Stringer("address", be.remote), zap.Error(err))
		return nil, fmt.Errorf("%w: %v", errBackendRefused, err)
	}
	if greet.Code != 220 {
		c.Close()
		s.log.Warn("backend refused the connection", zap.String("backend", b.Name), zap.Stringer("address", be.remote),
			zap.String("reply", greet.String()))
		return nil, fmt.Errorf("%w: greeting %d", errBackendRefused, greet.Code)
	}
	s.log.Debug("backend connected", zap.String("backend", b.Name), zap.Stringer("address", be.remote),
		zap.Duration("took", time.Since(start)), zap.String("greeting", greet.String()))
	return be, nil
}

// send writes cmd to the backend, rebuilt from its parsed form.
func (b *backendConn) send(cmd rewrite.Command) error {
	b.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := b.conn.Write(cmd.Wire()); err != nil {
		return fmt.Errorf("%w: sending %s: %v", errBackendLost, cmd.Verb, err)
	}
	return nil
}

// read reads one reply, waiting at most timeout.
func (b *backendConn) read(timeout time.Duration) (*rewrite.Reply, error) {
	b.conn.SetReadDeadline(time.Now().Add(timeout))
	rep, err := rewrite.ReadReply(b.r, backendLimits)
	if err != nil {
		return nil, fmt.Errorf("%w: reading reply: %v", errBackendLost, err)
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

// openPassive asks the backend for a passive data port and connects to
// it. EPSV is tried first (it names no address); PASV after a refusal. The
// address a 227 names is ignored: the data connection always goes to the
// host of the control connection, so a backend cannot make the proxy
// connect anywhere else (RFC 2577 §3, ProFTPD's IgnoreForeignAddress).
func (s *session) openPassive() (net.Conn, error) {
	b := s.be
	t := s.cfg.Timeouts
	var port uint16
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
			s.log.Debug("backend refused EPSV; using PASV", zap.String("reply", rep.String()))
		}
	}
	if port == 0 {
		rep, err := b.roundTrip(rewrite.Command{Verb: "PASV"}, t.BackendReply)
		if err != nil {
			return nil, err
		}
		ap, err := rewrite.ParsePASV(rep)
		if err != nil {
			return nil, fmt.Errorf("backend PASV: %w", err)
		}
		if ap.Addr() != b.remote.Addr().Unmap() {
			s.log.Info("backend PASV names another address; using the control connection's host",
				zap.Stringer("named", ap.Addr()), zap.Stringer("used", b.remote.Addr()))
		}
		port = ap.Port()
	}
	addr := netip.AddrPortFrom(b.remote.Addr(), port)
	ctx, cancel := context.WithTimeout(context.Background(), t.BackendDial)
	defer cancel()
	c, err := s.srv.dial(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("backend data connection to %s: %w", addr, err)
	}
	return c, nil
}
