package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"go.uber.org/zap"

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

// proxyTLVs describes the client's session for a PROXY v2 header, the way
// HAProxy's send-proxy-v2-ssl does: PP2_TYPE_SSL (the client used TLS; its
// version as "TLSv1.3" and its cipher suite, by Go's name), the SNI it sent
// as PP2_TYPE_AUTHORITY, and the proxy's session id as PP2_TYPE_UNIQUE_ID,
// so that the backend's logs meet ftpsgate's audit stream.
func (s *session) proxyTLVs() []proxyproto.TLV {
	tlvs := []proxyproto.TLV{{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte(s.id)}}
	if s.tls == nil {
		return tlvs
	}
	st := s.tls.ConnectionState()
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, TLV: []proxyproto.TLV{
		{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(strings.Replace(tls.VersionName(st.Version), "TLS ", "TLSv", 1))},
		{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(st.CipherSuite))},
	}}
	// Verify is 0 only for a verified client certificate; ftpsgate asks
	// for none.
	ssl.Verify = 1
	if t, err := ssl.Marshal(); err == nil {
		tlvs = append(tlvs, t)
	}
	if st.ServerName != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(st.ServerName)})
	}
	return tlvs
}

// connectBackend connects the session to b: to one of its servers, in the
// order its pool gives for user (a balance's choice first, servers marked
// down last). Each server is taken within b's limits: the login waits in
// b's queue for a server with room (waitTurn), then connects to it,
// trying again after a fast failure (connectRetrying). A server that
// fails is marked and the next one taken; only when every one has failed
// does the session end, with 421.
func (s *session) connectBackend(b *config.Backend, user string) (*backendConn, error) {
	p := s.srv.poolFor(b)
	var order []*poolServer
	if p != nil {
		order = p.order(user)
	} else { // a backend of a configuration a reload replaced
		for _, a := range b.Servers {
			order = append(order, &poolServer{addr: a})
		}
	}
	q := s.srv.queueFor(b.Name)
	var err error
	for first := true; len(order) > 0; first = false {
		ps, werr := s.waitTurn(q, b, order)
		if werr != nil {
			return nil, werr
		}
		if !first {
			s.log.Info("trying the backend's next server", zap.String("backend", b.Name), zap.String("server", ps.addr))
		}
		order = slices.DeleteFunc(order, func(o *poolServer) bool { return o == ps })
		var be *backendConn
		be, err = s.connectRetrying(b, ps.addr)
		q.dialed(ps.addr)
		if err == nil {
			ps.sessions.Add(1)
			be.server, be.queue = ps, q
			if p != nil {
				p.served(ps)
			}
			return be, nil
		}
		q.release(ps.addr)
		var bErr *backendError
		if p != nil && !(errors.As(err, &bErr) && bErr.cause == causeBusy) { // busy is not down
			p.failed(ps, err)
		}
	}
	return nil, err
}

// waitTurn takes a server of order (the first with room, in that order)
// from q, within b's limits: at once when nobody waits before the login
// and one has room, else after a wait in line. It returns the server with
// a session slot and a dial slot held (given back by q.release and
// q.dialed). While the login waits, the session stays responsive
// (watchClient): the client's QUIT (errQueueQuit), its hang-up, the login
// timeout and the server's shutdown end the wait, and a wait longer than
// queue_timeout ends with a backendError whose reply is "421 Server busy:
// N sessions waiting, try again later." Leaving the line frees the
// login's place.
func (s *session) waitTurn(q *backendQueue, b *config.Backend, order []*poolServer) (*poolServer, error) {
	w := &waiter{limits: b.Limits, servers: order, since: time.Now()}
	q.enter(w)
	observe := func(result string) {
		s.srv.metrics.queueWait.WithLabelValues(b.Name, result).Observe(time.Since(w.since).Seconds())
	}
	// A place freed by a session the server's shutdown just closed must
	// not start a login the shutdown would close again at once.
	granted := func(ps *poolServer) (*poolServer, error) {
		if s.srv.shuttingDown() {
			q.dialed(ps.addr)
			q.release(ps.addr)
			observe("left")
			return nil, errDraining
		}
		observe("served")
		return ps, nil
	}
	select {
	case ps := <-w.grant:
		return granted(ps)
	default:
	}
	s.log.Debug("backend at its limits; login queued", zap.String("backend", b.Name), zap.Int("waiting", q.waitingCount()))
	s.setView(func(v *sessionView) { v.Backend, v.Server = b.Name, "queued" })
	defer s.setView(func(v *sessionView) { v.Backend, v.Server = "", "" }) // cmdUSER names the server taken
	timer := time.NewTimer(b.Limits.QueueTimeout)
	defer timer.Stop()
	gone, stop := s.watchClient()
	var err error
	select {
	case ps := <-w.grant:
		stop()
		return granted(ps)
	case <-timer.C:
	case err = <-gone:
	}
	stop()
	waiting := q.waitingCount()
	if ps := q.leave(w); ps != nil { // granted as the wait ended
		if err == nil {
			return granted(ps)
		}
		q.dialed(ps.addr)
		q.release(ps.addr)
	}
	if err != nil {
		observe("left")
		s.log.Info("login left the backend's queue", zap.String("backend", b.Name),
			zap.Duration("waited", time.Since(w.since)), zap.Error(err))
		return nil, err
	}
	observe("timeout")
	s.log.Warn("login waited past the backend's queue_timeout; refused as busy", zap.String("backend", b.Name),
		zap.Duration("queue_timeout", b.Limits.QueueTimeout), zap.Int("waiting", waiting))
	noun := "sessions"
	if waiting == 1 {
		noun = "session"
	}
	return nil, &backendError{backend: b.Name, cause: causeQueue,
		what: fmt.Sprintf("Server busy: %d %s waiting", waiting, noun),
		err:  fmt.Errorf("no server of the backend within max_sessions and max_dials for %s", b.Limits.QueueTimeout)}
}

// errQueueQuit: the client sent QUIT while its login waited in a
// backend's queue. The USER gets 530 and the QUIT its 221 (cmdUSER).
var errQueueQuit = errors.New("QUIT while waiting in the backend's queue")

// watchClient watches the client's control connection while the session
// goroutine waits in a backend's queue and reads nothing. gone receives
// why the wait must end: the client sent QUIT (errQueueQuit) or closed
// the connection, the login (or idle) timeout passed, the server drains
// or kills the session, or the client's address was banned (the reasons
// readCommand would find). Other commands the client sends are left for
// readCommand, as is the QUIT. stop ends the watch and returns once the
// watching goroutine has ended.
func (s *session) watchClient() (gone <-chan error, stop func()) {
	ch := make(chan error, 1)
	done, quit := make(chan struct{}), make(chan struct{})
	var stopped bool // under s.mu
	// arm sets the read deadline of readCommand, unless stop came first.
	arm := func() (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if stopped {
			return false, nil
		}
		return true, s.armReadDeadlineLocked()
	}
	halted := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return stopped
	}
	go func() {
		defer close(done)
		scanned, lineStart := 0, 0 // bytes of s.r's buffer looked at; where the last partial line starts
		for {
			ok, err := arm()
			if !ok {
				return
			}
			if err == nil {
				if scanned >= s.r.Size() {
					// A buffer full of lines, none a QUIT: the client
					// pipelines; nothing more can be seen before
					// readCommand reads.
					<-quit
					return
				}
				_, err = s.r.Peek(scanned + 1) // until the client sends more, or a deadline
			}
			if halted() {
				return
			}
			if isTimeout(err) {
				if err = s.timeoutReason(); err == nil {
					continue
				}
			}
			if err != nil {
				ch <- err
				return
			}
			buf, _ := s.r.Peek(s.r.Buffered())
			for i := scanned; i < len(buf); i++ {
				if buf[i] != '\n' {
					continue
				}
				line := bytes.TrimSuffix(buf[lineStart:i], []byte("\r"))
				if cmd, err := rewrite.ParseCommand(line); err == nil && cmd.Verb == "QUIT" {
					ch <- errQueueQuit
					return
				}
				lineStart = i + 1
			}
			scanned = len(buf)
		}
	}()
	return ch, func() {
		s.mu.Lock()
		stopped = true
		s.raw.SetReadDeadline(time.Now()) // wakes Peek
		s.mu.Unlock()
		close(quit)
		<-done
	}
}

// connectRetrying is connectServer, tried again after a fast failure
// (backendError.retryable: refused, reset, closed before the greeting, a
// 421 greeting) up to b's retries times, each after a jittered backoff:
// a server that is only busy for a moment (a burst, a session process not
// yet reaped) then takes the session.
func (s *session) connectRetrying(b *config.Backend, addr string) (*backendConn, error) {
	for attempt := 0; ; attempt++ {
		be, err := s.connectServer(b, addr)
		var bErr *backendError
		if err == nil || attempt >= b.Limits.Retries || !errors.As(err, &bErr) || !bErr.retryable() {
			return be, err
		}
		d := retryBackoff(attempt)
		s.srv.metrics.backendRetries.WithLabelValues(b.Name, bErr.cause).Inc()
		s.log.Info("retrying the backend server", zap.String("backend", b.Name), zap.String("address", addr),
			zap.String("cause", bErr.cause), zap.Int("retry", attempt+1), zap.Duration("backoff", d))
		time.Sleep(d)
	}
}

// retryBackoff is the wait before retry attempt+1: 100 ms, doubling,
// at most 1 s, each drawn from half to one and a half times that, so that
// the logins of a burst do not come back together.
func retryBackoff(attempt int) time.Duration {
	d := min(100*time.Millisecond<<attempt, time.Second)
	return d/2 + rand.N(d)
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
	// causeQueue: the login waited in the backend's queue past
	// queue_timeout; no server was tried.
	causeQueue = "queue_timeout"
)

// failureCause classifies a connection's error.
func failureCause(err error) string {
	switch {
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

// connectServer dials one server of b and reads its greeting, all within
// timeouts.backend_greeting; toward an FTPS backend it also secures the
// control connection (TLS first for an implicit one, within the same
// bound; AUTH TLS, PBSZ 0 and PROT P for an explicit one). Every failure
// is logged here and returned as a *backendError.
func (s *session) connectServer(b *config.Backend, addr string) (*backendConn, error) {
	t := s.cfg.Timeouts
	start := time.Now()
	greetBy := start.Add(t.BackendGreeting)
	ctx, cancel := context.WithDeadline(context.Background(), greetBy)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, t.BackendDial)
	defer dcancel()
	c, err := s.srv.dial(dctx, "tcp", addr)
	if err != nil {
		s.srv.metrics.backendFailures.WithLabelValues(b.Name).Inc()
		s.log.Warn("backend dial failed", zap.String("backend", b.Name), zap.String("address", addr), zap.Error(err))
		cause, what := failureCause(err), backendUnreachable
		switch cause {
		case causeRefused:
			what = backendRefused
		case causeReset:
			what = backendReset
		}
		return nil, &backendError{backend: b.Name, what: what, cause: cause, err: err}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	be := &backendConn{cfg: b, raw: c, conn: c, r: bufio.NewReaderSize(c, controlBufferSize), remote: addrPortOf(c.RemoteAddr())}
	if b.TLSConfig != nil {
		be.tlsConf = serverTLS(b, addr)
		be.tlsConf.ClientSessionCache = &sessionCache{}
	}
	// greeted: the 220 came; bound is how long the step under way may
	// take: the greeting's bound until then, a reply's after.
	greeted, bound := false, t.BackendGreeting
	// fail ends the attempt; what is the client's explanation, unless the
	// backend ran out of time (then it did not answer within bound), or
	// reset or closed the connection before its greeting. Only those
	// failures before the greeting are retried (connectRetrying): after
	// it, the server is there and refused what followed.
	fail := func(msg, what string, err error) (*backendConn, error) {
		s.srv.metrics.backendFailures.WithLabelValues(b.Name).Inc()
		c.Close()
		s.log.Warn(msg, zap.String("backend", b.Name), zap.Stringer("address", be.remote), zap.Error(err))
		cause := failureCause(err)
		switch {
		case cause == causeTimeout:
			what = fmt.Sprintf("%s within %s", backendSilent, bound)
		case greeted && (cause == causeReset || cause == causeClosed):
			cause = causeOther
		case cause == causeReset:
			what = backendReset
		case cause == causeClosed:
			what = backendClosed
		}
		if what == backendRefusedTLS {
			cause = causeTLS
		}
		return nil, &backendError{backend: b.Name, what: what, cause: cause, err: fmt.Errorf("%s: %w", msg, err)}
	}
	if b.ProxyProtocol != 0 {
		// The client's address, for servers that log or judge it (ProFTPD
		// with mod_proxy_protocol, SFTPGo…): first bytes on the wire,
		// before TLS.
		dst := s.client.local
		if dst.Addr().Is4() != s.client.addr.Addr().Is4() {
			// A header carries one family: an IPv6 client (from a PROXY
			// header) reached an IPv4 address, or the reverse.
			dst = netip.AddrPortFrom(netip.IPv6Unspecified(), dst.Port())
			if s.client.addr.Addr().Is4() {
				dst = netip.AddrPortFrom(netip.IPv4Unspecified(), dst.Port())
			}
		}
		h := proxyproto.HeaderProxyFromAddrs(b.ProxyProtocol, net.TCPAddrFromAddrPort(s.client.addr), net.TCPAddrFromAddrPort(dst))
		if b.ProxyProtocolTLVs {
			if err := h.SetTLVs(s.proxyTLVs()); err != nil {
				return fail("building the PROXY header's TLVs failed", backendUnreachable, err)
			}
		}
		c.SetWriteDeadline(time.Now().Add(t.BackendReply))
		if _, err := h.WriteTo(c); err != nil {
			return fail("sending the PROXY header failed", backendUnreachable, err)
		}
	}
	if b.TLS == config.BackendImplicit {
		if err := be.startTLS(time.Until(greetBy)); err != nil {
			return fail("backend TLS handshake failed", backendRefusedTLS, err)
		}
	}
	greet, err := be.read(time.Until(greetBy))
	if err != nil {
		return fail("backend greeting not received", backendUnreachable, err)
	}
	if greet.Code != 220 {
		c.Close()
		s.srv.metrics.backendFailures.WithLabelValues(b.Name).Inc()
		s.log.Warn("backend refused the connection", zap.String("backend", b.Name), zap.Stringer("address", be.remote),
			zap.String("greeting", greet.String()))
		// Its own words, which say why (pure-ftpd: "421 100 users (the
		// maximum) are already logged in, sorry").
		cause, what := causeOther, fmt.Sprintf("the FTP server refused the session: %q", replyText(greet))
		if greet.Code == 421 {
			cause, what = causeBusy, fmt.Sprintf("the FTP server is busy: %q", replyText(greet))
		}
		return nil, &backendError{backend: b.Name, what: what, cause: cause, err: fmt.Errorf("greeting %q", greet.String())}
	}
	greeted, bound = true, t.BackendReply
	if b.SendHost && s.host != "" {
		// RFC 7151 §3: HOST before AUTH, so that the server can choose
		// the virtual host's certificate.
		rep, err := be.roundTrip(rewrite.Command{Verb: "HOST", Arg: s.host}, t.BackendReply)
		if err != nil {
			return fail("backend HOST failed", backendUnreachable, err)
		}
		if rep.Code != 220 {
			return fail("backend refused HOST", "the FTP server refused the host name", fmt.Errorf("reply %q", rep.String()))
		}
	}
	if b.TLS == config.BackendExplicit {
		if err := be.authTLS(t.BackendReply); err != nil {
			return fail("backend AUTH TLS failed", backendRefusedTLS, err)
		}
	}
	if be.tlsConf != nil {
		// PROT P: the backend's data connections are protected too. Its
		// reply is read before any data connection, so that TLS 1.3
		// tickets sent after the handshake are in the cache by then.
		for _, cmd := range []rewrite.Command{{Verb: "PBSZ", Arg: "0"}, {Verb: "PROT", Arg: "P"}} {
			rep, err := be.roundTrip(cmd, t.BackendReply)
			if err != nil {
				return fail("backend "+cmd.Verb+" failed", backendRefusedTLS, err)
			}
			if rep.Code != 200 {
				return fail("backend "+cmd.Verb+" refused", backendRefusedTLS, fmt.Errorf("reply %q", rep.String()))
			}
		}
	}
	s.srv.metrics.backendDial.WithLabelValues(b.Name).Observe(time.Since(start).Seconds())
	s.log.Debug("backend connected", zap.String("backend", b.Name), zap.Stringer("address", be.remote),
		zap.Stringer("tls", b.TLS), zap.Duration("took", time.Since(start)), zap.String("greeting", greet.String()))
	return be, nil
}

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
		return fmt.Errorf("%w: sending %s: %v", errBackendLost, cmd.Verb, err)
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

// backendData is the backend leg of a transfer. In passive mode it is
// connected when created; in active mode it holds the listener the backend
// will connect to. The transfer goroutine completes it (connectBackendData);
// close may come from the session goroutine (ABOR, shutdown), hence mu.
type backendData struct {
	mu   sync.Mutex
	ln   *net.TCPListener // active mode, until the backend connected
	tcp  *net.TCPConn
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
// may be called more than once, from any goroutine.
func (bd *backendData) close() {
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

// openBackendData prepares the backend leg of a transfer, before the
// transfer command is sent: a passive connection, or an active listener.
func (s *session) openBackendData() (*backendData, error) {
	if s.be.cfg.ActiveData {
		return s.listenBackendData()
	}
	c, err := s.openPassive()
	if err != nil {
		return nil, err
	}
	return s.be.newBackendData(c), nil
}

// newBackendData wraps a connected leg, as a TLS client resuming the
// control connection's session toward an FTPS backend. The handshake runs
// in connectBackendData. Like a client leg, it goes through an eofConn,
// where the relay measures its progress.
func (b *backendConn) newBackendData(c *net.TCPConn) *backendData {
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
func (s *session) openPassive() (*net.TCPConn, error) {
	b := s.be
	t := s.cfg.Timeouts
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
			s.log.Debug("backend refused EPSV; using PASV", zap.String("reply", rep.String()))
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
			s.log.Info("backend PASV names another address; using the control connection's host",
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
		s.log.Warn("backend passive port refused", zap.String("verb", verb), zap.Uint16("port", port),
			zap.Stringer("backend", b.remote))
		s.denied("backend_passive_port", "", why)
		return nil, errors.New(why)
	}
	addr := netip.AddrPortFrom(b.remote.Addr(), port)
	ctx, cancel := context.WithTimeout(context.Background(), t.BackendDial)
	defer cancel()
	c, err := s.srv.dial(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("backend data connection to %s: %w", addr, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok { // a custom dialer must give TCP: legs are reset and half-closed
		c.Close()
		return nil, fmt.Errorf("backend data connection to %s: not a TCP connection", addr)
	}
	return tc, nil
}

// listenBackendData opens a listener on the proxy's address toward the
// backend and tells the backend to connect to it: EPRT, or PORT after a
// refusal (backend data_mode = "active").
func (s *session) listenBackendData() (*backendData, error) {
	b := s.be
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
		rep, err := b.roundTrip(rewrite.Command{Verb: "EPRT", Arg: rewrite.EPRTArg(ap)}, s.cfg.Timeouts.BackendReply)
		switch {
		case err != nil:
			return fail(err)
		case rep.Code == 200:
			return &backendData{ln: ln}, nil
		case rep.Code >= 500:
			b.noEPRT = true
			s.log.Debug("backend refused EPRT; using PORT", zap.String("reply", rep.String()))
		default:
			return fail(fmt.Errorf("backend EPRT: %s", rep))
		}
	}
	arg, err := rewrite.PORTArg(ap)
	if err != nil {
		return fail(fmt.Errorf("backend refused EPRT and PORT cannot carry %s", ap.Addr()))
	}
	rep, err := b.roundTrip(rewrite.Command{Verb: "PORT", Arg: arg}, s.cfg.Timeouts.BackendReply)
	if err != nil {
		return fail(err)
	}
	if rep.Code != 200 {
		return fail(fmt.Errorf("backend PORT: %s", rep))
	}
	return &backendData{ln: ln}, nil
}

// connectBackendData completes the backend leg in the transfer goroutine:
// in active mode it waits for the backend's connection (from the backend's
// host only; others are refused and logged), then, toward an FTPS backend,
// runs the TLS handshake.
func (s *session) connectBackendData(bd *backendData) error {
	t := s.cfg.Timeouts
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
			if peer := addrPortOf(c.RemoteAddr()); peer.Addr() != s.be.remote.Addr() {
				s.log.Warn("backend data connection from a foreign address refused", zap.Stringer("from", peer))
				resetLeg(c)
				continue
			}
			wrapped := s.be.newBackendData(c)
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

// ---- the TLS session cache toward a backend ----

// sessionCache is one client session's TLS session cache toward its
// backend, shared by the backend control connection and its data
// connections, so that data connections resume the control session as
// vsftpd's require_ssl_reuse (its default) and ProFTPD demand. One cache
// per session: a cache shared across sessions would resume another
// session's TLS session. The key Go passes (ServerName, or the address with
// its port, which differs on every data connection) is ignored: a cache
// serves one backend.
//
// OpenSSL servers may accept each TLS 1.3 ticket once, so the cache keeps
// the last few tickets and hands out the least used, newest first.
type sessionCache struct {
	mu      sync.Mutex
	entries []*cacheEntry // oldest first
	last    *cacheEntry   // the entry Get returned last
}

type cacheEntry struct {
	cs   *tls.ClientSessionState
	uses int
}

// maxCachedSessions bounds a session cache.
const maxCachedSessions = 8

func (c *sessionCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *cacheEntry
	for i := len(c.entries) - 1; i >= 0; i-- {
		if e := c.entries[i]; best == nil || e.uses < best.uses {
			best = e
		}
	}
	if best == nil {
		return nil, false
	}
	best.uses++
	c.last = best
	return best.cs, true
}

// Put adds a session; nil (Go's "forget this session") drops the one
// handed out last.
func (c *sessionCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs == nil {
		if c.last != nil {
			c.entries = slices.DeleteFunc(c.entries, func(e *cacheEntry) bool { return e == c.last })
			c.last = nil
		}
		return
	}
	if len(c.entries) == maxCachedSessions {
		c.entries = slices.Delete(c.entries, 0, 1)
	}
	c.entries = append(c.entries, &cacheEntry{cs: cs})
}
