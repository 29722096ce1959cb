package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// A backendDialer connects one session to its backend: it takes a server
// of the backend's pool within the backend's limits (the queue), dials
// it, sends the PROXY header, reads the greeting and secures the control
// connection; and it opens the backend legs of the session's transfers
// (backenddata.go). The session makes one when it needs one
// (session.dialer), with what it knows then: the logger, the HOST and the
// TLS state of the client.
type backendDialer struct {
	srv      *Server // its pools, queues and shutdown
	dial     dialFunc
	metrics  *metrics
	timeouts config.Timeouts
	log      *zap.Logger
	// denied records a refusal in the audit stream and the metrics
	// (session.denied).
	denied func(rule, verb, reason string)

	client  clientInfo
	session string    // the session's id, in the PROXY header's TLVs
	host    string    // the client's HOST, sent on when the backend's send_host is set
	tls     *tls.Conn // the client's control connection under TLS, or nil
}

// queueWatch is what a login waiting in a backend's queue needs of its
// session: a watch on the client's control connection, which ends the
// wait when the client leaves (session.watchClient), and the status
// page's view.
type queueWatch interface {
	watchClient() (gone <-chan error, stop func())
	setView(change func(*sessionView))
}

// connect connects the session to b: to one of its servers, in the
// order its pool gives for user (a balance's choice first, servers marked
// down last). Each server is taken within b's limits: the login waits in
// b's queue for a server with room (waitTurn), then connects to it,
// trying again after a fast failure (connectRetrying). A server that
// fails is marked and the next one taken; only when every one has failed
// does the session end, with 421.
func (d *backendDialer) connect(b *config.Backend, user string, w queueWatch) (*backendConn, error) {
	p := d.srv.poolFor(b)
	var order []*poolServer
	if p != nil {
		order = p.order(user)
	} else { // a backend of a configuration a reload replaced
		for _, a := range b.Servers {
			order = append(order, &poolServer{addr: a})
		}
	}
	q := d.srv.queueFor(b.Name)
	var err error
	for first := true; len(order) > 0; first = false {
		ps, werr := d.waitTurn(q, b, order, w)
		if werr != nil {
			return nil, werr
		}
		if !first {
			d.log.Info("trying the backend's next server", zap.String("backend", b.Name), zap.String("server", ps.addr))
		}
		order = slices.DeleteFunc(order, func(o *poolServer) bool { return o == ps })
		var be *backendConn
		be, err = d.connectRetrying(b, ps.addr)
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
// (w.watchClient): the client's QUIT (errQueueQuit), its hang-up, the
// login timeout and the server's shutdown end the wait, and a wait longer
// than queue_timeout ends with a backendError whose reply is "421 Server
// busy: N sessions waiting, try again later." Leaving the line frees the
// login's place.
func (d *backendDialer) waitTurn(q *backendQueue, b *config.Backend, order []*poolServer, w queueWatch) (*poolServer, error) {
	wt := &waiter{limits: b.Limits, servers: order, since: time.Now()}
	q.enter(wt)
	observe := func(result string) {
		d.metrics.queueWait.WithLabelValues(b.Name, result).Observe(time.Since(wt.since).Seconds())
	}
	// A place freed by a session the server's shutdown just closed must
	// not start a login the shutdown would close again at once.
	granted := func(ps *poolServer) (*poolServer, error) {
		if d.srv.shuttingDown() {
			q.dialed(ps.addr)
			q.release(ps.addr)
			observe("left")
			return nil, errDraining
		}
		observe("served")
		return ps, nil
	}
	select {
	case ps := <-wt.grant:
		return granted(ps)
	default:
	}
	d.log.Debug("backend at its limits; login queued", zap.String("backend", b.Name), zap.Int("waiting", q.waitingCount()))
	w.setView(func(v *sessionView) { v.Backend, v.Server = b.Name, "queued" })
	defer w.setView(func(v *sessionView) { v.Backend, v.Server = "", "" }) // cmdUSER names the server taken
	timer := time.NewTimer(b.Limits.QueueTimeout)
	defer timer.Stop()
	gone, stop := w.watchClient()
	var err error
	select {
	case ps := <-wt.grant:
		stop()
		return granted(ps)
	case <-timer.C:
	case err = <-gone:
	}
	stop()
	waiting := q.waitingCount()
	if ps := q.leave(wt); ps != nil { // granted as the wait ended
		if err == nil {
			return granted(ps)
		}
		q.dialed(ps.addr)
		q.release(ps.addr)
	}
	if err != nil {
		observe("left")
		d.log.Info("login left the backend's queue", zap.String("backend", b.Name),
			zap.Duration("waited", time.Since(wt.since)), zap.Error(err))
		return nil, err
	}
	observe("timeout")
	return nil, d.busy(b, waiting)
}

// busy is the error of a login that waited past b's queue_timeout while
// waiting logins waited.
func (d *backendDialer) busy(b *config.Backend, waiting int) error {
	d.log.Warn("login waited past the backend's queue_timeout; refused as busy", zap.String("backend", b.Name),
		zap.Duration("queue_timeout", b.Limits.QueueTimeout), zap.Int("waiting", waiting))
	noun := "sessions"
	if waiting == 1 {
		noun = "session"
	}
	return &backendError{backend: b.Name, cause: causeQueue,
		what: fmt.Sprintf("Server busy: %d %s waiting", waiting, noun),
		err:  fmt.Errorf("no server of the backend within max_sessions and max_dials for %s", b.Limits.QueueTimeout)}
}

// errQueueQuit: the client sent QUIT while its login waited in a
// backend's queue. The USER gets 530 and the QUIT its 221 (cmdUSER).
var errQueueQuit = errors.New("QUIT while waiting in the backend's queue")

// connectRetrying is connectServer, tried again after a fast failure
// (backendError.retryable: refused, reset, closed before the greeting, a
// 421 greeting) up to b's retries times, each after a jittered backoff:
// a server that is only busy for a moment (a burst, a session process not
// yet reaped) then takes the session.
func (d *backendDialer) connectRetrying(b *config.Backend, addr string) (*backendConn, error) {
	for attempt := 0; ; attempt++ {
		be, err := d.connectServer(b, addr)
		var bErr *backendError
		if err == nil || attempt >= b.Limits.Retries || !errors.As(err, &bErr) || !bErr.retryable() {
			return be, err
		}
		wait := retryBackoff(attempt)
		d.metrics.backendRetries.WithLabelValues(b.Name, bErr.cause).Inc()
		d.log.Info("retrying the backend server", zap.String("backend", b.Name), zap.String("address", addr),
			zap.String("cause", bErr.cause), zap.Int("retry", attempt+1), zap.Duration("backoff", wait))
		time.Sleep(wait)
	}
}

// retryBackoff is the wait before retry attempt+1: 100 ms, doubling,
// at most 1 s, each drawn from half to one and a half times that, so that
// the logins of a burst do not come back together.
func retryBackoff(attempt int) time.Duration {
	d := min(100*time.Millisecond<<attempt, time.Second)
	return d/2 + rand.N(d)
}

// connectServer dials one server of b and reads its greeting, all within
// timeouts.backend_greeting; toward an FTPS backend it also secures the
// control connection (TLS first for an implicit one, within the same
// bound; AUTH TLS, PBSZ 0 and PROT P for an explicit one). Every failure
// is logged here and returned as a *backendError.
func (d *backendDialer) connectServer(b *config.Backend, addr string) (*backendConn, error) {
	t := d.timeouts
	start := time.Now()
	greetBy := start.Add(t.BackendGreeting)
	ctx, cancel := context.WithDeadline(context.Background(), greetBy)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, t.BackendDial)
	defer dcancel()
	c, err := d.dialTo(b)(dctx, "tcp", addr)
	if err != nil {
		return nil, d.dialFailed(b, addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	be := &backendConn{cfg: b, raw: c, conn: c, r: bufio.NewReaderSize(c, controlBufferSize), remote: addrPortOf(c.RemoteAddr())}
	if b.TLSConfig != nil {
		be.tlsConf = serverTLS(b, addr)
		be.tlsConf.ClientSessionCache = &sessionCache{}
	}
	a := &serverAttempt{d: d, be: be, bound: t.BackendGreeting}
	if b.ProxyProtocol != config.NoProxyProtocol {
		if msg, err := d.sendProxyHeader(b, c); err != nil {
			return nil, a.fail(msg, backendUnreachable, err)
		}
	}
	if b.TLS == config.BackendImplicit {
		if err := be.startTLS(time.Until(greetBy)); err != nil {
			return nil, a.fail("backend TLS handshake failed", backendRefusedTLS, err)
		}
	}
	greet, err := be.read(time.Until(greetBy))
	if err != nil {
		return nil, a.fail("backend greeting not received", backendUnreachable, err)
	}
	if greet.Code != 220 {
		return nil, d.refusedGreeting(be, greet)
	}
	a.greeted, a.bound = true, t.BackendReply
	if err := a.setUp(d.host); err != nil {
		return nil, err
	}
	d.metrics.backendDial.WithLabelValues(b.Name).Observe(time.Since(start).Seconds())
	d.log.Debug("backend connected", zap.String("backend", b.Name), zap.Stringer("address", be.remote),
		zap.Stringer("tls", b.TLS), zap.Duration("took", time.Since(start)), zap.String("greeting", greet.String()))
	return be, nil
}

// dialTo is how connections to b's servers are opened: through its
// agents (via_agent), else by the session's dialer.
func (d *backendDialer) dialTo(b *config.Backend) dialFunc {
	if b.ViaAgent != "" {
		return d.srv.dialFor(b)
	}
	return d.dial
}

// dialFailed logs and counts a failed dial of addr, a server of b, and
// returns its *backendError.
func (d *backendDialer) dialFailed(b *config.Backend, addr string, err error) error {
	d.metrics.backendFailures.WithLabelValues(b.Name).Inc()
	d.log.Warn("backend dial failed", zap.String("backend", b.Name), zap.String("address", addr), zap.Error(err))
	cause, what := failureCause(err), backendUnreachable
	switch cause {
	case causeRefused:
		what = backendRefused
	case causeReset:
		what = backendReset
	case causeNoAgent:
		what = backendNoAgent
	case causeAgentRefused:
		what = backendAgentRefused
	}
	return &backendError{backend: b.Name, what: what, cause: cause, err: err}
}

// refusedGreeting closes a connection whose server greeted with greet, not
// 220, and returns its *backendError: busy for a 421.
func (d *backendDialer) refusedGreeting(be *backendConn, greet *rewrite.Reply) error {
	b := be.cfg
	be.raw.Close()
	d.metrics.backendFailures.WithLabelValues(b.Name).Inc()
	d.log.Warn("backend refused the connection", zap.String("backend", b.Name), zap.Stringer("address", be.remote),
		zap.String("greeting", greet.String()))
	// Its own words, which say why (pure-ftpd: "421 100 users (the
	// maximum) are already logged in, sorry").
	cause, what := causeOther, fmt.Sprintf("the FTP server refused the session: %q", replyText(greet))
	if greet.Code == 421 {
		cause, what = causeBusy, fmt.Sprintf("the FTP server is busy: %q", replyText(greet))
	}
	return &backendError{backend: b.Name, what: what, cause: cause, err: fmt.Errorf("greeting %q", greet.String())}
}

// serverAttempt is one connection to a backend server being set up.
type serverAttempt struct {
	d  *backendDialer
	be *backendConn
	// greeted: the 220 came; bound is how long the step under way may
	// take: the greeting's bound until then, a reply's after.
	greeted bool
	bound   time.Duration
}

// fail ends the attempt; what is the client's explanation, unless the
// backend ran out of time (then it did not answer within bound), or reset
// or closed the connection before its greeting. Only those failures
// before the greeting are retried (connectRetrying): after it, the server
// is there and refused what followed.
func (a *serverAttempt) fail(msg, what string, err error) error {
	b := a.be.cfg
	a.d.metrics.backendFailures.WithLabelValues(b.Name).Inc()
	a.be.raw.Close()
	a.d.log.Warn(msg, zap.String("backend", b.Name), zap.Stringer("address", a.be.remote), zap.Error(err))
	cause := failureCause(err)
	switch {
	case cause == causeTimeout:
		what = fmt.Sprintf("%s within %s", backendSilent, a.bound)
	case a.greeted && (cause == causeReset || cause == causeClosed):
		cause = causeOther
	case cause == causeReset:
		what = backendReset
	case cause == causeClosed:
		what = backendClosed
	}
	if what == backendRefusedTLS {
		cause = causeTLS
	}
	return &backendError{backend: b.Name, what: what, cause: cause, err: fmt.Errorf("%s: %w", msg, err)}
}

// setUp does what follows the greeting: HOST (the client's host, if the
// backend takes it), then toward an FTPS backend AUTH TLS (explicit),
// PBSZ 0 and PROT P.
func (a *serverAttempt) setUp(host string) error {
	be, b, t := a.be, a.be.cfg, a.d.timeouts
	if b.SendHost && host != "" {
		// RFC 7151 §3: HOST before AUTH, so that the server can choose
		// the virtual host's certificate.
		rep, err := be.roundTrip(rewrite.Command{Verb: "HOST", Arg: host}, t.BackendReply)
		if err != nil {
			return a.fail("backend HOST failed", backendUnreachable, err)
		}
		if rep.Code != 220 {
			return a.fail("backend refused HOST", "the FTP server refused the host name", fmt.Errorf("reply %q", rep.String()))
		}
	}
	if b.TLS == config.BackendExplicit {
		if err := be.authTLS(t.BackendReply); err != nil {
			return a.fail("backend AUTH TLS failed", backendRefusedTLS, err)
		}
	}
	if be.tlsConf == nil {
		return nil
	}
	// PROT P: the backend's data connections are protected too. Its
	// reply is read before any data connection, so that TLS 1.3 tickets
	// sent after the handshake are in the cache by then.
	for _, cmd := range []rewrite.Command{{Verb: "PBSZ", Arg: "0"}, {Verb: "PROT", Arg: "P"}} {
		rep, err := be.roundTrip(cmd, t.BackendReply)
		if err != nil {
			return a.fail("backend "+cmd.Verb+" failed", backendRefusedTLS, err)
		}
		if rep.Code != 200 {
			return a.fail("backend "+cmd.Verb+" refused", backendRefusedTLS, fmt.Errorf("reply %q", rep.String()))
		}
	}
	return nil
}

// sendProxyHeader writes b's PROXY header on c: the client's address, for
// servers that log or judge it (ProFTPD with mod_proxy_protocol,
// SFTPGo…), as the first bytes on the wire, before TLS. On failure it
// returns what failed, for the log.
func (d *backendDialer) sendProxyHeader(b *config.Backend, c net.Conn) (string, error) {
	dst := d.client.local
	if dst.Addr().Is4() != d.client.addr.Addr().Is4() {
		// A header carries one family: an IPv6 client (from a PROXY
		// header) reached an IPv4 address, or the reverse.
		dst = netip.AddrPortFrom(netip.IPv6Unspecified(), dst.Port())
		if d.client.addr.Addr().Is4() {
			dst = netip.AddrPortFrom(netip.IPv4Unspecified(), dst.Port())
		}
	}
	h := proxyproto.HeaderProxyFromAddrs(byte(b.ProxyProtocol), net.TCPAddrFromAddrPort(d.client.addr), net.TCPAddrFromAddrPort(dst))
	if b.ProxyProtocolTLVs {
		if err := h.SetTLVs(d.proxyTLVs()); err != nil {
			return "building the PROXY header's TLVs failed", err
		}
	}
	c.SetWriteDeadline(time.Now().Add(d.timeouts.BackendReply))
	if _, err := h.WriteTo(c); err != nil {
		return "sending the PROXY header failed", err
	}
	return "", nil
}

// proxyTLVs describes the client's session for a PROXY v2 header, the way
// HAProxy's send-proxy-v2-ssl does: PP2_TYPE_SSL (the client used TLS; its
// version as "TLSv1.3" and its cipher suite, by Go's name), the SNI it sent
// as PP2_TYPE_AUTHORITY, and the proxy's session id as PP2_TYPE_UNIQUE_ID,
// so that the backend's logs meet ftpsgate's audit stream.
func (d *backendDialer) proxyTLVs() []proxyproto.TLV {
	tlvs := []proxyproto.TLV{{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte(d.session)}}
	if d.tls == nil {
		return tlvs
	}
	st := d.tls.ConnectionState()
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
