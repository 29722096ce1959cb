package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/dataport"
)

// The client's data connection, from PASV, EPSV, PORT or EPRT to the
// transfer that uses it.
//
// Who owns the connection, at each hand-over:
//   - The goroutine started by listenData (passive) or dialData (active)
//     owns every connection it accepts or dials until it sends its one
//     dataResult on pendingData.ready; connections that lose (a stranger's,
//     a failed handshake, a second winner) it resets itself.
//   - The dataResult in ready belongs to whoever takes it out: the
//     transfer (transfer.awaitClient), earlyRefusal (which puts anything
//     but a refusal back), or pendingData.close (which closes what it
//     finds).
//   - The transfer owns the client leg from then on: it registers the
//     leg's reset with transfer.addLeg (so that ABOR and the session's end
//     can cut it), and when the transfer succeeds, closeClientLeg hands it
//     to a lingering goroutine (lingerClose) that closes it.

// pendingData is the client's data connection being set up by a goroutine
// of its own: in passive mode a listener on one of the proxy's passive
// ports, taking one connection from the client's own address only (RFC 2577
// §5: port stealing); in active mode a connection out to the address the
// client gave in PORT or EPRT. Under PROT P it also runs the TLS handshake
// and checks the binding to the control session.
type pendingData struct {
	ready  chan dataResult // receives exactly one result
	cancel context.CancelFunc
	done   chan struct{} // closed when the accept goroutine ends
	active bool          // set up by PORT or EPRT
	// hello, in passive mode under PROT P, is closed when a ClientHello
	// from the client's address arrives (see earlyRefusal).
	hello chan struct{}
	// passive, in passive mode, is the port the client was told to
	// connect to.
	passive passivePort
}

// passivePort is what a 227 or 229 told the client, and where the proxy
// waits: the fields of the diagnostic log's lines about it.
type passivePort struct {
	verb string // PASV or EPSV
	// advertised: the address a 227 gives (public_address, or the
	// address the client reached); a 229 gives only the port, and the
	// client uses the address it reached.
	advertised netip.Addr
	port       uint16
	local      netip.Addr // the address the proxy listens on
}

func (pp passivePort) fields() []zap.Field {
	f := []zap.Field{zap.String("verb", pp.verb), zap.Uint16("advertised_port", pp.port),
		zap.Stringer("listening", netip.AddrPortFrom(pp.local, pp.port))}
	if pp.verb == "PASV" {
		f = append(f, zap.Stringer("advertised_address", pp.advertised))
	}
	return f
}

// where is where the client was told to connect, for a reply's text.
func (pp passivePort) where() string {
	if pp.verb == "PASV" {
		return netip.AddrPortFrom(pp.advertised, pp.port).String()
	}
	return "port " + strconv.Itoa(int(pp.port))
}

// dataResult is the client's data connection, or why there is none.
type dataResult struct {
	conn *clientData
	err  error
	// refused, with an *errNotResumed err, is the refused connection,
	// still open for refuseData: its handshake completed and nothing
	// was sent on it.
	refused *clientData
}

// clientData is the client leg of a transfer.
type clientData struct {
	tcp  *net.TCPConn // the raw connection
	eof  *eofConn     // tcp, recording a TCP-level EOF
	conn net.Conn     // eof, or the *tls.Conn over it
	tls  *tls.Conn    // nil when the leg is clear
	// resumed: the TLS session resumed the control connection's, or a
	// sibling session's (sibling: that session's id; see tlsBinding).
	resumed bool
	sibling string
}

// timedOut is the error of a transfer whose data connection did not come
// within d. In active mode it is errActiveData, as for every other failure
// to reach the client's address.
func (p *pendingData) timedOut(d time.Duration) error {
	if p.active {
		return errActiveData
	}
	return &errNoDataConn{where: p.passive.where(), after: d}
}

// errNoDataConn: the client did not connect to the passive port it was
// told within the passive-accept timeout.
type errNoDataConn struct {
	where string // passivePort.where
	after time.Duration
}

func (e *errNoDataConn) Error() string {
	return fmt.Sprintf("no data connection to %s within %s", e.where, e.after)
}

// earlyRefusal returns the refusal of the client's data connection for
// its TLS session when it is known before the transfer command goes to
// the backend: clients that start their data connection's TLS handshake
// as soon as they connect (curl) have finished it by then, and read the
// 522 as the command's reply. If a handshake has begun, it waits for the
// outcome, at most d. Any other result stays for the transfer.
func (p *pendingData) earlyRefusal(d time.Duration) (dataResult, bool) {
	var r dataResult
	select {
	case r = <-p.ready:
	case <-p.hello: // nil in active mode: never
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case r = <-p.ready:
		case <-t.C:
			return dataResult{}, false
		}
	default:
		return dataResult{}, false
	}
	var nr *errNotResumed
	if errors.As(r.err, &nr) && r.refused != nil {
		return r, true
	}
	p.ready <- r // the one result, back in its buffer
	return dataResult{}, false
}

// close stops waiting and closes any connection that arrived. A nil p is
// nothing to close.
func (p *pendingData) close() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	select {
	case r := <-p.ready:
		if r.conn != nil {
			r.conn.tcp.Close()
		}
		if r.refused != nil {
			resetLeg(r.refused.tcp)
		}
	default:
	}
}

// dataConnector makes the client legs of one session's transfers: it
// accepts them on passive ports (acceptData) or connects to the address
// of a PORT or EPRT (connectData), and secures them (secureClientData).
// It holds what they are checked against, taken from the session when
// the data connection is set up.
type dataConnector struct {
	client   clientInfo
	timeouts config.Timeouts
	// requireReuse: the listener's require_session_reuse.
	requireReuse bool
	bind         *tlsBinding
	log          *zap.Logger
	// denied records a refusal in the audit stream and the metrics
	// (session.denied).
	denied func(rule, verb, reason string)
	// wg is the session's: the session waits for these goroutines
	// before it ends.
	wg *sync.WaitGroup
	// verb: the command its refusals are audited under (session.dataConnector).
	verb string
}

// listenData starts the goroutine that accepts the client's data
// connection on ln.
func (d *dataConnector) listenData(ln *dataport.Listener, useTLS bool) *pendingData {
	hello := make(chan struct{})
	var once sync.Once
	p := d.startPending(func(ctx context.Context) dataResult {
		defer ln.Close()
		return d.acceptData(ctx, ln, useTLS, func() { once.Do(func() { close(hello) }) })
	})
	p.hello = hello
	return p
}

// dialData starts connecting to the client's active-mode address ap, from
// the address the client reached.
func (d *dataConnector) dialData(ap netip.AddrPort, useTLS bool) *pendingData {
	p := d.startPending(func(ctx context.Context) dataResult { return d.connectData(ctx, ap, useTLS) })
	p.active = true
	return p
}

// startPending runs get in a goroutine of the session (setUpData); its
// result is the pending data connection's.
func (d *dataConnector) startPending(get func(context.Context) dataResult) *pendingData {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pendingData{ready: make(chan dataResult, 1), cancel: cancel, done: make(chan struct{})}
	d.wg.Add(1)
	go setUpData(ctx, d.wg, p, get)
	return p
}

// setUpData is the goroutine of a pending data connection.
func setUpData(ctx context.Context, wg *sync.WaitGroup, p *pendingData, get func(context.Context) dataResult) {
	defer wg.Done()
	defer close(p.done)
	p.ready <- get(ctx)
}

// Bounds on the connections from the client's address that one passive
// port takes while it waits (connections from elsewhere are refused at
// once and not counted): in all, and with their TLS handshakes running at
// once. Past the first bound the port closes; past the second a newcomer
// is refused, and the port goes on.
const (
	maxDataAttempts       = 16
	maxConcurrentAttempts = 4
)

// errTooManyAttempts ends a passive port's wait after maxDataAttempts
// connections from the client's address, none of which became the data
// connection.
var errTooManyAttempts = errors.New("too many data connection attempts")

// refusalGrace is how long a passive port goes on taking connections
// after the TLS handshake of a client from the client's address failed:
// the client's own connection may still come; if not, the transfer fails
// with that failure.
const refusalGrace = 3 * time.Second

// acceptData waits for the data connection on a passive port: the first
// connection from the client's address (under PROT P, the first whose TLS
// handshake completes and is bound to the control session) wins, and the
// port closes. Connections from another address are refused and logged.
// Under PROT P each connection from the client's address runs its
// handshake in a goroutine of its own, so that one that fails or stalls
// (a stray byte, a port scan, a stranger behind the same NAT) neither
// closes the port nor holds it: it is logged and audited, and the wait
// goes on until the transfer's passive-accept deadline (issue 14, item 8).
// A TLS client whose session is not bound (*errNotResumed) closes the
// port at once: it is, in all but name, the client itself, which waits
// on that connection for the transfer's reply (refuseData tells it why).
// Handshakes already running may still win; then it is reset. When a TLS
// handshake fails after its ClientHello, the port takes new connections
// for refusalGrace more, in case that one raced the client's own; then,
// if no handshake still running succeeds, that failure is the result.
//
// onHello is called when a ClientHello arrives on a connection from the
// client's address.
func (d *dataConnector) acceptData(ctx context.Context, ln *dataport.Listener, useTLS bool, onHello func()) dataResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	w := &passiveWait{d: d, ln: ln, ctx: ctx, won: cancel, onHello: onHello}
	var err error
	for attempts := 0; ; {
		c, aerr := ln.AcceptTCP()
		if aerr != nil {
			err = aerr
			break
		}
		if d.foreign(c, ln.Port()) {
			continue
		}
		if !useTLS {
			ln.Close() // one connection per PASV; the port is free again
			cd, err := d.secureClientData(ctx, c, false, nil)
			return dataResult{conn: cd, err: err}
		}
		if !w.admit(c) {
			continue
		}
		attempts++
		w.wg.Add(1)
		go w.handshake(c)
		if attempts == maxDataAttempts {
			d.log.Warn("passive port closed after too many data connection attempts",
				zap.Uint16("port", ln.Port()), zap.Int("attempts", attempts))
			d.denied(policy.RuleDataHandshake, d.verb, errTooManyAttempts.Error())
			ln.Close()
			err = errTooManyAttempts
			break
		}
	}
	w.wg.Wait() // the handshakes still running may yet win
	return w.result(err)
}

// foreign refuses (resets, logs and audits) a connection to a passive
// port that policy.DataPeer refuses: from anywhere but the client's
// address (or its PROXY-protocol balancer's); it reports whether it did.
func (d *dataConnector) foreign(c *net.TCPConn, port uint16) bool {
	peer := addrPortOf(c.RemoteAddr())
	var balancer netip.Addr
	if d.client.tcpPeer.IsValid() {
		balancer = d.client.tcpPeer.Addr()
	}
	refused, why := policy.DataPeer(peer.Addr(), d.client.addr.Addr(), balancer, d.client.key)
	if !refused {
		return false
	}
	d.log.Warn("data connection from a foreign address refused",
		zap.Stringer("from", peer), zap.Uint16("port", port), zap.String("reason", why))
	d.denied(policy.RuleDataPeer, d.verb, why)
	resetLeg(c)
	return true
}

// passiveWait is the state of one passive port's TLS handshakes, each in
// a goroutine of its own (handshake), while acceptData takes more
// connections.
type passiveWait struct {
	d       *dataConnector
	ln      *dataport.Listener
	ctx     context.Context // ends when one wins, or the wait is abandoned
	won     func()          // ends ctx
	onHello func()
	wg      sync.WaitGroup

	mu         sync.Mutex  // guards the five below
	winner     *clientData // the first bound handshake's connection
	notResumed *clientData // the first connection refused for its TLS session, open
	nrErr      error       // and its *errNotResumed
	refused    error       // the first failed handshake of a TLS client from the client's address
	running    int         // handshakes in progress
}

// admit counts a handshake in, or refuses c when maxConcurrentAttempts
// are running already; it reports whether c was taken.
func (w *passiveWait) admit(c *net.TCPConn) bool {
	w.mu.Lock()
	full := w.running == maxConcurrentAttempts
	if !full {
		w.running++
	}
	w.mu.Unlock()
	if full {
		w.d.log.Warn("data connection refused: too many TLS handshakes in progress on the passive port",
			zap.Stringer("from", addrPortOf(c.RemoteAddr())), zap.Uint16("port", w.ln.Port()), zap.Int("running", maxConcurrentAttempts))
		w.d.denied(policy.RuleDataHandshake, w.d.verb, fmt.Sprintf("%d data connection handshakes in progress already", maxConcurrentAttempts))
		resetLeg(c)
	}
	return !full
}

// handshake runs one connection's TLS handshake and records how it went.
func (w *passiveWait) handshake(c *net.TCPConn) {
	defer w.wg.Done()
	peer := addrPortOf(c.RemoteAddr())
	cd, err := w.d.secureClientData(w.ctx, c, true, w.onHello)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running--
	var nr *errNotResumed
	var he *errDataHandshake
	switch {
	case err == nil && w.winner == nil:
		w.winner = cd
		w.won() // the port closes, and the other handshakes end
	case err == nil: // another won meanwhile
		resetLeg(cd.tcp)
	case errors.As(err, &nr): // logged and audited by secureClientData
		if w.notResumed != nil || w.winner != nil || w.ctx.Err() != nil {
			resetLeg(cd.tcp)
			break
		}
		w.notResumed, w.nrErr = cd, err
		w.ln.Close() // no newcomer; the handshakes running go on
	case w.ctx.Err() != nil: // abandoned
	case errors.As(err, &he):
		w.d.log.Warn("data connection handshake failed; the passive port stays open",
			zap.Stringer("from", peer), zap.Uint16("port", w.ln.Port()), zap.Bool("tls_client", he.hello), zap.Error(err))
		w.d.denied(policy.RuleDataHandshake, w.d.verb, err.Error())
		if he.hello && w.refused == nil {
			w.refused = err
			w.ln.SetDeadline(time.Now().Add(refusalGrace))
		}
	}
}

// result is the wait's outcome once every handshake has ended; err is
// why the port stopped taking connections.
func (w *passiveWait) result(err error) dataResult {
	switch {
	case w.winner != nil:
		if w.notResumed != nil {
			resetLeg(w.notResumed.tcp) // a stranger's, after all
		}
		return dataResult{conn: w.winner}
	case w.notResumed != nil:
		return dataResult{err: w.nrErr, refused: w.notResumed}
	case w.refused != nil:
		return dataResult{err: w.refused}
	case w.ctx.Err() != nil:
		return dataResult{err: w.ctx.Err()}
	}
	return dataResult{err: err}
}

// errDataHandshake is a failed TLS handshake on a client data connection.
type errDataHandshake struct {
	err error
	// hello: the peer had sent a ClientHello (see dataHandshake).
	hello bool
}

func (e *errDataHandshake) Error() string {
	return "TLS handshake on the data connection: " + e.err.Error()
}
func (e *errDataHandshake) Unwrap() error { return e.err }

// secureClientData makes c the client leg of a transfer: under PROT P it
// runs the TLS handshake (the proxy is the TLS server in either data mode,
// RFC 4217 §7) and refuses, with *errNotResumed, a session that does not
// resume the control connection's or a sibling's (tlsBinding) when the
// listener requires it; a failed handshake is an *errDataHandshake. The
// client may start its handshake only once it has seen the transfer's 150
// reply (Python's ftplib does), so its first byte may take as long as the
// passive accept and the handshake together; from that byte on, the
// handshake has the tls_handshake timeout. With *errNotResumed the
// connection is returned as well, open, with nothing sent on it: the
// caller resets it or refuses it cleanly (refuseData). On any other error
// c is closed. onHello, if not nil, is called when the ClientHello
// arrives.
func (d *dataConnector) secureClientData(ctx context.Context, c *net.TCPConn, useTLS bool, onHello func()) (*clientData, error) {
	cd := &clientData{tcp: c, eof: &eofConn{Conn: c}}
	cd.conn = cd.eof
	if !useTLS {
		return cd, nil
	}
	t := d.timeouts
	c.SetDeadline(time.Now().Add(t.PassiveAccept + t.TLSHandshake))
	cd.eof.firstRead = func() { c.SetDeadline(time.Now().Add(t.TLSHandshake)) }
	h := dataHandshake{onHello: onHello, waiting: func(sibling string) {
		d.log.Debug("data connection waits for the login of the session whose TLS ticket it resumes", zap.String("sibling", sibling))
	}}
	cd.tls = tls.Server(cd.eof, d.bind.data(&h, ctx.Done()))
	cd.conn = cd.tls
	err := cd.tls.HandshakeContext(ctx)
	cd.eof.firstRead = nil
	c.SetDeadline(time.Time{})
	if err != nil {
		resetLeg(c)
		return nil, &errDataHandshake{err: err, hello: h.hello}
	}
	cd.resumed = cd.tls.ConnectionState().DidResume // only bound tickets resume
	if cd.resumed && h.sibling != "" {
		cd.sibling = h.sibling
		d.log.Info("data connection resumed the TLS session of a sibling session (same client address and user)",
			zap.String("sibling", h.sibling))
	}
	if cd.resumed || !d.requireReuse {
		if !cd.resumed {
			d.log.Info("data connection did not resume the control TLS session; accepted (require_session_reuse = false)",
				zap.Bool("foreign_ticket", h.foreign != notForeign))
		}
		return cd, nil
	}
	nr := &errNotResumed{foreign: h.foreign, idOnly: h.idOnly}
	d.log.Warn("data connection refused", zap.Stringer("from", addrPortOf(c.RemoteAddr())), zap.Error(nr))
	d.denied(policy.RuleSessionReuse, d.verb, nr.Error())
	return cd, nr
}

// connectData connects to the client's active-mode address ap and secures
// the connection.
func (d *dataConnector) connectData(ctx context.Context, ap netip.AddrPort, useTLS bool) dataResult {
	dctx, cancel := context.WithTimeout(ctx, d.timeouts.PassiveAccept)
	defer cancel()
	dialer := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(d.client.local.Addr(), 0))}
	c, err := dialer.DialContext(dctx, "tcp", ap.String())
	var cd *clientData
	if err == nil {
		cd, err = d.secureClientData(ctx, c.(*net.TCPConn), useTLS, nil)
	}
	var nr *errNotResumed
	if errors.As(err, &nr) {
		return dataResult{err: err, refused: cd}
	}
	if err != nil && ctx.Err() == nil {
		// The reply says the same whatever the target did (refused,
		// reset, silence, a banner that is not TLS): different texts
		// would make PORT and EPRT a port scanner (issue 24, item 10).
		d.log.Info("active-mode data connection failed", zap.Stringer("target", ap), zap.Error(err))
		err = errActiveData
	}
	return dataResult{conn: cd, err: err}
}

// errActiveData is the error of every failed active-mode data connection
// but a refused TLS session (522, which only a TLS client can meet).
var errActiveData = errors.New("could not connect to the address of your PORT or EPRT")
