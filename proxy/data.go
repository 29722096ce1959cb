package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/dataport"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// ---- the client's data connection ----

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
}

// timedOut is the error of a transfer whose data connection did not come
// within d. In active mode it is errActiveData, as for every other failure
// to reach the client's address.
func (p *pendingData) timedOut(d time.Duration) error {
	if p.active {
		return errActiveData
	}
	return fmt.Errorf("no data connection from the client within %s", d)
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

// cmdPassive answers PASV and EPSV: it opens a listener on one of the
// proxy's passive ports and advertises it. The backend is asked for its own
// passive port only when the transfer command comes.
func (s *session) cmdPassive(cmd rewrite.Command) error {
	if cmd.Verb == "EPSV" && cmd.Arg != "" {
		switch {
		case strings.EqualFold(cmd.Arg, "ALL"):
			s.epsvAll = true // RFC 2428 §4: only EPSV from now on
			return s.reply(cmd, 200, "EPSV ALL ok.")
		case cmd.Arg == "1" && s.local.Addr().Is4(), cmd.Arg == "2" && s.local.Addr().Is6():
		case cmd.Arg == "1" || cmd.Arg == "2":
			return s.reply(cmd, 522, "Network protocol not supported, use ("+epsvProto(s.local.Addr())+")")
		default:
			return s.reply(cmd, 501, "EPSV argument must be 1, 2 or ALL.")
		}
	}
	if cmd.Verb == "PASV" && s.epsvAll {
		return s.reply(cmd, 503, "PASV refused after EPSV ALL.")
	}
	if refused, err := s.dataRefused(cmd); refused {
		return err
	}
	s.dropPendingData() // one pending data connection per session
	var advertise netip.Addr
	if cmd.Verb == "PASV" {
		advertise = s.lcfg.PublicAddress
		if !advertise.IsValid() {
			advertise = s.local.Addr()
		}
		if !advertise.Is4() {
			return s.reply(cmd, 425, "PASV works over IPv4 only; use EPSV.")
		}
	}
	ln, err := s.ports.Listen(s.local.Addr())
	if err != nil {
		s.log.Warn("no passive port", zap.Error(err), zap.Int("in_use", s.ports.InUse()))
		return s.reply(cmd, 425, "No data port available; try again later.")
	}
	s.pending = s.listenData(ln, s.prot == 'P')
	if cmd.Verb == "PASV" {
		rep, err := rewrite.PASVReply(netip.AddrPortFrom(advertise, ln.Port()))
		if err != nil { // unreachable: advertise is IPv4
			return err
		}
		return s.sendReply(cmd.Verb, rep)
	}
	return s.sendReply(cmd.Verb, rewrite.EPSVReply(ln.Port()))
}

// dataRefused answers a command that sets up a data connection before
// login, or before PROT P when the policy requires it.
func (s *session) dataRefused(cmd rewrite.Command) (bool, error) {
	if !s.loggedIn {
		return true, s.reply(cmd, 530, "Please login with USER and PASS.")
	}
	if d := s.cfg.Policy.Data(s.prot); d != nil {
		return true, s.deny(cmd, d)
	}
	return false, nil
}

func epsvProto(a netip.Addr) string {
	if a.Is4() {
		return "1"
	}
	return "2"
}

// listenData starts the goroutine that accepts the client's data
// connection on ln.
func (s *session) listenData(ln *dataport.Listener, useTLS bool) *pendingData {
	hello := make(chan struct{})
	var once sync.Once
	p := s.startPending(func(ctx context.Context) dataResult {
		defer ln.Close()
		return s.acceptData(ctx, ln, useTLS, func() { once.Do(func() { close(hello) }) })
	})
	p.hello = hello
	return p
}

// startPending runs get in a goroutine of the session; its result is the
// pending data connection's.
func (s *session) startPending(get func(context.Context) dataResult) *pendingData {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pendingData{ready: make(chan dataResult, 1), cancel: cancel, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(p.done)
		p.ready <- get(ctx)
	}()
	return p
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
func (s *session) acceptData(ctx context.Context, ln *dataport.Listener, useTLS bool, onHello func()) dataResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex // guards the five below
		won        *clientData
		notResumed *clientData // the first connection refused for its TLS session, open
		nrErr      error       // and its *errNotResumed
		refused    error       // the first failed handshake of a TLS client from the client's address
		running    int         // handshakes in progress
	)
	var err error
	for attempts := 0; ; {
		c, aerr := ln.AcceptTCP()
		if aerr != nil {
			err = aerr
			break
		}
		// Behind a PROXY-protocol balancer, the data connection may come
		// from the balancer, when it forwards the passive ports too.
		peer := addrPortOf(c.RemoteAddr())
		if peer.Addr() != s.client.Addr() && (!s.tcpPeer.IsValid() || peer.Addr() != s.tcpPeer.Addr()) {
			why := "data connection from " + peer.Addr().String()
			if s.clientKey.Contains(peer.Addr().Unmap()) {
				// Another address of the client's IPv6 prefix (a privacy
				// address, or a neighbour): still not the client.
				why += ", within the client's " + s.clientKey.String() + " but not its address"
			}
			s.log.Warn("data connection from a foreign address refused",
				zap.Stringer("from", peer), zap.Uint16("port", ln.Port()), zap.String("reason", why))
			s.denied("data_peer", "", why)
			resetLeg(c)
			continue
		}
		if !useTLS {
			ln.Close() // one connection per PASV; the port is free again
			cd, err := s.secureClientData(ctx, c, false, nil)
			return dataResult{conn: cd, err: err}
		}
		mu.Lock()
		full := running == maxConcurrentAttempts
		if !full {
			running++
		}
		mu.Unlock()
		if full {
			s.log.Warn("data connection refused: too many TLS handshakes in progress on the passive port",
				zap.Stringer("from", peer), zap.Uint16("port", ln.Port()), zap.Int("running", maxConcurrentAttempts))
			s.denied("data_handshake", "", fmt.Sprintf("%d data connection handshakes in progress already", maxConcurrentAttempts))
			resetLeg(c)
			continue
		}
		attempts++
		wg.Add(1)
		go func() {
			defer wg.Done()
			cd, err := s.secureClientData(ctx, c, true, onHello)
			mu.Lock()
			defer mu.Unlock()
			running--
			var nr *errNotResumed
			var he *errDataHandshake
			switch {
			case err == nil && won == nil:
				won = cd
				cancel() // the port closes, and the other handshakes end
			case err == nil: // another won meanwhile
				resetLeg(cd.tcp)
			case errors.As(err, &nr): // logged and audited by secureClientData
				if notResumed != nil || won != nil || ctx.Err() != nil {
					resetLeg(cd.tcp)
					break
				}
				notResumed, nrErr = cd, err
				ln.Close() // no newcomer; the handshakes running go on
			case ctx.Err() != nil: // abandoned
			case errors.As(err, &he):
				s.log.Warn("data connection handshake failed; the passive port stays open",
					zap.Stringer("from", peer), zap.Uint16("port", ln.Port()), zap.Bool("tls_client", he.hello), zap.Error(err))
				s.denied("data_handshake", "", err.Error())
				if he.hello && refused == nil {
					refused = err
					ln.SetDeadline(time.Now().Add(refusalGrace))
				}
			}
		}()
		if attempts == maxDataAttempts {
			s.log.Warn("passive port closed after too many data connection attempts",
				zap.Uint16("port", ln.Port()), zap.Int("attempts", attempts))
			s.denied("data_handshake", "", errTooManyAttempts.Error())
			ln.Close()
			err = errTooManyAttempts
			break
		}
	}
	wg.Wait() // the handshakes still running may yet win
	switch {
	case won != nil:
		if notResumed != nil {
			resetLeg(notResumed.tcp) // a stranger's, after all
		}
		return dataResult{conn: won}
	case notResumed != nil:
		return dataResult{err: nrErr, refused: notResumed}
	case refused != nil:
		return dataResult{err: refused}
	case ctx.Err() != nil:
		return dataResult{err: ctx.Err()}
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
func (s *session) secureClientData(ctx context.Context, c *net.TCPConn, useTLS bool, onHello func()) (*clientData, error) {
	cd := &clientData{tcp: c, eof: &eofConn{Conn: c}}
	cd.conn = cd.eof
	if !useTLS {
		return cd, nil
	}
	t := s.cfg.Timeouts
	c.SetDeadline(time.Now().Add(t.PassiveAccept + t.TLSHandshake))
	cd.eof.firstRead = func() { c.SetDeadline(time.Now().Add(t.TLSHandshake)) }
	h := dataHandshake{onHello: onHello, waiting: func(sibling string) {
		s.log.Debug("data connection waits for the login of the session whose TLS ticket it resumes", zap.String("sibling", sibling))
	}}
	cd.tls = tls.Server(cd.eof, s.bind.data(&h, ctx.Done()))
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
		s.log.Info("data connection resumed the TLS session of a sibling session (same client address and user)",
			zap.String("sibling", h.sibling))
	}
	if cd.resumed || !s.lcfg.RequireSessionReuse {
		if !cd.resumed {
			s.log.Info("data connection did not resume the control TLS session; accepted (require_session_reuse = false)",
				zap.Bool("foreign_ticket", h.foreign != notForeign))
		}
		return cd, nil
	}
	nr := &errNotResumed{foreign: h.foreign, idOnly: h.idOnly}
	s.log.Warn("data connection refused", zap.Stringer("from", addrPortOf(c.RemoteAddr())), zap.Error(nr))
	s.denied("session_reuse", "", nr.Error())
	return cd, nr
}

// refusedUploadLimit bounds what the client of a refused upload may send
// before its connection is reset instead of closed (refuseData).
const refusedUploadLimit = 64 << 20

// refuseData ends the client's data connection refused for its TLS
// session (522) so that the client's error is the transfer command's 522,
// not a reset on the data connection, which clients report first and
// without the reason (Python's ftplib raised BrokenPipeError, and read the
// 522 as the reply to its next command; issue 15, item 4). Nothing but our
// close_notify is sent on it. A download's client reads an empty stream
// ended by close_notify, then the 522. An upload's client writes at once,
// and a closed connection would fail its write: what it sends is read and
// discarded, never forwarded, until it closes its side (at most
// refusedUploadLimit bytes, each read within the stall deadline; past
// that the connection is reset); then it gets close_notify and the 522.
func (s *session) refuseData(x *transfer, cd *clientData) {
	x.addLeg(func() { resetLeg(cd.tcp) }) // ABOR, or the session's end
	if x.direction == "upload" {
		cd.eof.progress(s.cfg.Timeouts.DataStall)
		n, err := io.Copy(io.Discard, io.LimitReader(cd.conn, refusedUploadLimit+1))
		cd.eof.progress(0)
		if err != nil || n > refusedUploadLimit || x.cancelled() {
			s.log.Info("refused upload's data connection reset", zap.Int64("discarded", n), zap.Error(err))
			resetLeg(cd.tcp)
			return
		}
		s.log.Debug("refused upload's data discarded", zap.Int64("bytes", n))
	}
	s.closeClientLeg(cd)
}

// refusalGrace is how long a passive port goes on taking connections
// after the TLS handshake of a client from the client's address failed:
// the client's own connection may still come; if not, the transfer fails
// with that failure.
const refusalGrace = 3 * time.Second

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

// close stops waiting and closes any connection that arrived.
func (p *pendingData) close() {
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

// dialData starts connecting to the client's active-mode address ap, from
// the address the client reached.
func (s *session) dialData(ap netip.AddrPort, useTLS bool) *pendingData {
	p := s.startPending(func(ctx context.Context) dataResult { return s.connectData(ctx, ap, useTLS) })
	p.active = true
	return p
}

func (s *session) connectData(ctx context.Context, ap netip.AddrPort, useTLS bool) dataResult {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.PassiveAccept)
	defer cancel()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.local.Addr(), 0))}
	c, err := d.DialContext(dctx, "tcp", ap.String())
	var cd *clientData
	if err == nil {
		cd, err = s.secureClientData(ctx, c.(*net.TCPConn), useTLS, nil)
	}
	var nr *errNotResumed
	if errors.As(err, &nr) {
		return dataResult{err: err, refused: cd}
	}
	if err != nil && ctx.Err() == nil {
		// The reply says the same whatever the target did (refused,
		// reset, silence, a banner that is not TLS): different texts
		// would make PORT and EPRT a port scanner (issue 24, item 10).
		s.log.Info("active-mode data connection failed", zap.Stringer("target", ap), zap.Error(err))
		err = errActiveData
	}
	return dataResult{conn: cd, err: err}
}

// errActiveData is the error of every failed active-mode data connection
// but a refused TLS session (522, which only a TLS client can meet).
var errActiveData = errors.New("could not connect to the address of your PORT or EPRT")

// dropPendingData abandons a data connection set up by PASV, EPSV, PORT or
// EPRT and not used by a transfer.
func (s *session) dropPendingData() {
	if s.pending != nil {
		s.pending.close()
		s.pending = nil
	}
	s.active = netip.AddrPort{}
}

// cmdActive answers PORT and EPRT: the client listens and the proxy will
// connect to it for the next transfer (the backend leg keeps its own mode).
// policy.ActiveTarget says which targets are refused: another host (the
// FTP bounce attack, RFC 2577 §3), a privileged port, and, unless the
// listener has active_allow_local, the proxy's own host and its backends'.
func (s *session) cmdActive(cmd rewrite.Command) error {
	if s.epsvAll {
		return s.reply(cmd, 503, cmd.Verb+" refused after EPSV ALL.")
	}
	if refused, err := s.dataRefused(cmd); refused {
		return err
	}
	var ap netip.AddrPort
	var err error
	if cmd.Verb == "PORT" {
		ap, err = rewrite.ParsePORT(cmd.Arg)
	} else {
		ap, err = rewrite.ParseEPRT(cmd.Arg)
	}
	switch {
	case errors.Is(err, rewrite.ErrEPRTProtocol):
		return s.reply(cmd, 522, "Network protocol not supported, use (1,2)")
	case err != nil:
		s.log.Info("bad active-mode argument", zap.String("verb", cmd.Verb), zap.Error(err))
		return s.reply(cmd, 501, "Syntax error in "+cmd.Verb+" argument.")
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	var own []netip.Addr
	if !s.lcfg.ActiveAllowLocal {
		if own, err = s.ownAddrs(); err != nil {
			// Without the host's addresses, none can be told apart.
			s.log.Error("cannot list the host's addresses; active mode refused", zap.Error(err))
			s.denied(policy.RuleActiveAddress, cmd.Verb, "the host's addresses cannot be listed")
			return s.reply(cmd, 504, cmd.Verb+" refused: active mode is unavailable; use PASV or EPSV.")
		}
	}
	if d, why := policy.ActiveTarget(ap, s.client.Addr(), own, s.lcfg.ActiveAllowLocal); d != nil {
		s.log.Warn("active-mode address refused", zap.String("verb", cmd.Verb), zap.Stringer("named", ap), zap.String("reason", why))
		s.denied(d.Rule, cmd.Verb, why)
		return s.reply(cmd, d.Code, cmd.Verb+" refused: "+d.Text)
	}
	s.dropPendingData()
	s.active = ap
	return s.reply(cmd, 200, cmd.Verb+" command successful.")
}

// ownAddrs are the addresses an active-mode data connection must not
// reach: every address of the proxy's host (its interfaces, the address
// the client reached, the listener's public address) and its backends'
// (the one this session is connected to, and every server configured by
// address).
func (s *session) ownAddrs() ([]netip.Addr, error) {
	own := []netip.Addr{s.local.Addr()}
	if s.lcfg.PublicAddress.IsValid() {
		own = append(own, s.lcfg.PublicAddress)
	}
	if s.be != nil {
		own = append(own, s.be.remote.Addr())
	}
	for _, b := range s.cfg.Backends {
		for _, hp := range b.Servers {
			if host, _, err := net.SplitHostPort(hp); err == nil {
				if a, err := netip.ParseAddr(host); err == nil {
					own = append(own, a)
				}
			}
		}
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, ia := range ifaddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			own = append(own, p.Addr())
		}
	}
	return own, nil
}

// ---- transfers ----

// transfer is one data transfer in progress.
type transfer struct {
	verb, path, direction string
	start                 time.Time
	announced             rewrite.Size // by the 150 reply, if sized
	sized                 bool
	offset                int64        // the restart offset (REST) the backend was given
	bytes                 atomic.Int64 // relayed so far
	binary                bool         // under TYPE I (for xferlog, and the size check)
	file                  bool         // a file, not a listing (for xferlog)

	// state: transferRunning until the transfer goroutine is about to send
	// its final reply (transferDone), or until the client asks to abort
	// (transferAbort). Whoever moves it first decides who answers ABOR.
	state atomic.Int32

	mu     sync.Mutex // guards legs, killed
	legs   []func()   // each resets one data leg
	killed bool

	stop chan struct{} // closed by cancel
	done chan struct{} // closed when the transfer goroutine ends
}

const (
	transferRunning int32 = iota
	transferDone
	transferAbort
)

// addLeg registers the reset of a data leg so that cancel can run it; a
// leg added after cancel is reset at once.
func (x *transfer) addLeg(reset func()) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.legs = append(x.legs, reset)
	if x.killed {
		reset()
	}
}

// cancel interrupts the transfer: both legs are reset, which unblocks the
// relay (a deadline would not: the relay re-arms its own), and the transfer
// goroutine then ends it.
func (x *transfer) cancel() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.killed {
		close(x.stop)
	}
	x.killed = true
	for _, reset := range x.legs {
		reset()
	}
}

func (x *transfer) cancelled() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.killed
}

// cmdTransfer runs a transfer command: backend data connection, command,
// preliminary reply; then the relay runs in its own goroutine while the
// session reads on (for ABOR). The client's data connection is already
// being accepted (passive mode) or is dialled once the backend said 150
// (active mode).
func (s *session) cmdTransfer(cmd rewrite.Command) error {
	p, active := s.pending, s.active
	s.pending, s.active = nil, netip.AddrPort{}
	var bdata *backendData
	abandon := func() {
		if p != nil {
			p.close()
		}
		if bdata != nil {
			bdata.close()
		}
	}
	if d := s.cfg.Policy.Data(s.prot); d != nil {
		abandon()
		return s.deny(cmd, d)
	}
	if p == nil && !active.IsValid() {
		return s.reply(cmd, 425, "Use PASV, EPSV, PORT or EPRT first.")
	}
	if p != nil {
		if r, ok := p.earlyRefusal(s.cfg.Timeouts.TLSHandshake); ok {
			p.close()
			return s.refuseEarly(cmd, r)
		}
	}
	v := lookupVerb(cmd.Verb)
	if v.xferlog && (cmd.Verb == "STOU" || !strings.HasPrefix(cmd.Arg, "/")) {
		if err := s.learnCWD(); err != nil { // for the transfer's full path
			abandon()
			return err
		}
	}
	bdata, err := s.openBackendData()
	if err != nil {
		abandon()
		if errors.Is(err, errBackendLost) {
			return err
		}
		s.log.Warn("backend data connection failed", zap.String("verb", cmd.Verb), zap.Error(err))
		return s.reply(cmd, 425, "Cannot open data connection to the FTP server.")
	}
	rest := s.rest
	if cmd.Verb != "RETR" && cmd.Verb != "STOR" {
		rest = 0 // REST applies to these only (RFC 959 §4.1.3, RFC 3659 §5)
	}
	if rest > 0 {
		rep, err := s.be.roundTrip(rewrite.Command{Verb: "REST", Arg: strconv.FormatInt(rest, 10)}, s.cfg.Timeouts.BackendReply)
		if err != nil {
			abandon()
			return err
		}
		if rep.Code != 350 {
			abandon()
			s.log.Info("backend refused REST", zap.Int64("offset", rest), zap.String("reply", rep.String()))
			return s.sendReply(cmd.Verb, rep)
		}
	}
	if err := s.be.send(cmd); err != nil {
		abandon()
		return err
	}
	rep, err := s.be.read(s.cfg.Timeouts.BackendReply)
	if err != nil {
		abandon()
		return err
	}
	if rep.Final() { // refused (550…), or done without data
		// vsftpd, pure-ftpd and ProFTPD forget a REST when they refuse
		// its command (TestRESTHeldUntilItsTransfer).
		abandon()
		return s.sendReply(cmd.Verb, rep)
	}
	if active.IsValid() {
		p = s.dialData(active, s.prot == 'P')
	}
	if err := s.sendReply(cmd.Verb, rep); err != nil {
		abandon()
		return err
	}
	name := transferPath(cmd, rep)
	if v.xferlog {
		name = s.fullPath(name)
	}
	x := &transfer{verb: cmd.Verb, path: name, direction: v.data, file: v.xferlog, binary: s.binary,
		start: time.Now(), offset: rest, stop: make(chan struct{}), done: make(chan struct{})}
	x.announced, x.sized = rewrite.AnnouncedSize(rep)
	x.addLeg(bdata.close)
	s.mu.Lock()
	s.xfer = x
	s.mu.Unlock()
	s.wg.Add(1)
	go s.runTransfer(x, p, bdata)
	return nil
}

// refuseEarly answers a transfer command whose data connection was
// already refused for its TLS session (earlyRefusal) with 522, without the
// backend: it never sees the command, so no empty file is left behind an
// upload. The data connection ends with close_notify.
func (s *session) refuseEarly(cmd rewrite.Command, r dataResult) error {
	var nr *errNotResumed
	errors.As(r.err, &nr)
	s.closeClientLeg(r.refused)
	v := lookupVerb(cmd.Verb)
	s.log.Info("client data connection failed", zap.String("verb", cmd.Verb), zap.Error(r.err))
	s.audit.Transfer(audit.Transfer{
		Verb: cmd.Verb, Direction: v.data, Path: cmd.Arg, Result: "failed", Announced: -1, Code: 522,
		Client: s.client.Addr().String(), User: s.user, Binary: s.binary, File: v.xferlog,
	})
	s.srv.metrics.transfer(v.data, "failed", 0, 0)
	return s.reply(cmd, 522, notResumedText(nr))
}

// transferPath is the file a transfer command names: its argument, or for
// STOU the name the server chose, which its 150 reply gives ("150 FILE:
// name", RFC 1123 §4.1.2.9).
func transferPath(cmd rewrite.Command, rep *rewrite.Reply) string {
	if cmd.Verb == "STOU" {
		if name, ok := rewrite.STOUName(rep); ok {
			return name
		}
	}
	return cmd.Arg
}

// announcedBytes is the size the transfer's 150 reply announced, or -1.
func (x *transfer) announcedBytes() int64 {
	if !x.sized {
		return -1
	}
	return x.announced.Bytes
}

// currentTransfer is the transfer in progress, or nil.
func (s *session) currentTransfer() *transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xfer
}

// waitTransfer blocks until the transfer in progress, if any, has sent its
// final reply.
func (s *session) waitTransfer() {
	if x := s.currentTransfer(); x != nil {
		<-x.done
	}
}

// abortTransfer asks the running transfer to abort, and reports whether it
// will answer the ABOR itself. When it reports false, no transfer was
// running (or it had finished) and ABOR is handled as a plain command.
func (s *session) abortTransfer() bool {
	x := s.currentTransfer()
	if x == nil || !x.state.CompareAndSwap(transferRunning, transferAbort) {
		s.waitTransfer()
		return false
	}
	x.cancel()
	<-x.done
	return true
}

// answerDuringTransfer answers the commands a client may send while a
// transfer runs, without the backend (whose control connection the
// transfer owns): NOOP, and STAT with the transfer's progress (RFC 959
// §4.1.3). It reports false for any other command, which waits for the
// transfer to end.
func (s *session) answerDuringTransfer(cmd rewrite.Command) (bool, error) {
	x := s.currentTransfer()
	if x == nil || x.state.Load() != transferRunning {
		return false, nil
	}
	switch {
	case cmd.Verb == "NOOP":
		return true, s.reply(cmd, 200, "NOOP ok; transfer in progress.")
	case cmd.Verb == "STAT" && cmd.Arg == "":
		return true, s.reply(cmd, 211, fmt.Sprintf("Transfer in progress: %s %s, %d bytes in %s.",
			x.verb, x.path, x.bytes.Load(), time.Since(x.start).Round(time.Millisecond)))
	}
	return false, nil
}

// cmdABOR with no transfer running: forwarded, or answered locally before
// login.
func (s *session) cmdABOR(cmd rewrite.Command) error {
	if s.be == nil {
		return s.reply(cmd, 225, "No transfer to abort.")
	}
	s.dropPendingData()
	s.rest = 0
	return s.cmdForward(cmd)
}

// runTransfer is the transfer goroutine: it waits for the client's data
// connection, relays, and sends the final reply only after the last byte
// reached its destination and the client leg was closed cleanly.
func (s *session) runTransfer(x *transfer, p *pendingData, bdata *backendData) {
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("transfer panic", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			bdata.close()
			p.close()
			s.send(x.verb, rewrite.NewReply(426, "Internal error; transfer aborted."))
		}
		s.mu.Lock()
		s.xfer = nil
		if s.draining || s.fatal != nil || s.killed {
			s.raw.SetReadDeadline(time.Now()) // let the session end now
		} else {
			// The transfer was activity: the idle time counts from its end.
			s.raw.SetReadDeadline(time.Now().Add(s.cfg.Timeouts.Idle))
		}
		s.mu.Unlock()
		close(x.done)
	}()

	out := s.transferOutcome(x, p, bdata)
	s.finishTransfer(x, out)
}

// outcome is how a transfer ended, before the final reply.
type outcome struct {
	client      *clientData
	bytes       int64
	final       *rewrite.Reply // the backend's final reply, nil if not read
	backendLost error          // the backend control connection failed
	reply       *rewrite.Reply // what the client gets, when not final
	result      string         // complete, failed, aborted
	check       string         // the integrity check that failed, if any
	closeNotify bool           // the client leg's TLS stream ended with close_notify
	err         error
}

// transferOutcome waits for the client's data connection and relays.
func (s *session) transferOutcome(x *transfer, p *pendingData, bdata *backendData) outcome {
	var out outcome
	var cd *clientData
	// The backend's TLS handshake runs while the client connects.
	if err := s.connectBackendData(bdata); err != nil {
		p.close()
		bdata.close()
		out.result, out.err = "failed", err
		out.reply = rewrite.NewReply(425, "Cannot open data connection to the FTP server.")
		s.log.Warn("backend data connection failed", zap.String("verb", x.verb), zap.Error(err))
		s.readFinal(x, &out)
		return out
	}
	var refused *clientData
	timer := time.NewTimer(s.cfg.Timeouts.PassiveAccept)
	select {
	case r := <-p.ready:
		timer.Stop()
		cd, out.err, refused = r.conn, r.err, r.refused
	case <-timer.C:
		out.err = p.timedOut(s.cfg.Timeouts.PassiveAccept)
	case <-x.stop:
		timer.Stop()
		out.err = errors.New("transfer cancelled")
	}
	p.close()
	if cd == nil {
		bdata.close()
		out.result = "failed"
		out.reply = rewrite.NewReply(425, "Cannot open data connection: "+shortErr(out.err)+".")
		var nr *errNotResumed
		if errors.As(out.err, &nr) {
			out.reply = rewrite.NewReply(522, notResumedText(nr))
		}
		s.log.Info("client data connection failed", zap.String("verb", x.verb), zap.Error(out.err))
		if refused != nil {
			s.refuseData(x, refused) // before the 522, which the client reads after its data connection ends
		}
		s.readFinal(x, &out)
		return out
	}
	out.client = cd
	x.addLeg(func() { resetLeg(cd.tcp) })

	var rerr error
	if x.direction == "download" {
		out.bytes, rerr = relay(cd.conn, bdata.conn, false, s.cfg.Timeouts.DataStall, &x.bytes)
		s.bytesDown.Add(out.bytes)
		if rerr == nil {
			rerr = s.verifyDownload(x, bdata, out.bytes)
		}
	} else {
		out.bytes, rerr = relay(bdata.conn, cd.conn, true, s.cfg.Timeouts.DataStall, &x.bytes)
		s.bytesUp.Add(out.bytes)
		// The relay read io.EOF, and not from the TCP stream: the
		// client's close_notify.
		out.closeNotify = rerr == nil && cd.tls != nil && !cd.eof.sawTCPEOF()
		if rerr == nil {
			rerr = s.verifyUpload(cd, out.closeNotify)
		}
	}
	if rerr == nil {
		// The source ended cleanly. For an upload the backend learns the
		// end of the file from our close_notify (under TLS) and FIN.
		bdata.finish(lingerTimeout)
		out.result = "complete"
		s.readFinal(x, &out)
		return out
	}
	// Something broke. The backend must not take a broken upload for a
	// complete one: its leg is reset, not closed.
	bdata.close()
	out.err = rerr
	out.result = "incomplete"
	var ie *errIntegrity
	switch {
	case x.cancelled():
		// By the client's ABOR, or by the session's end (the client
		// vanished, or shutdown): only the first is "aborted".
		if x.state.Load() == transferAbort {
			out.result = "aborted"
		}
		out.reply = rewrite.NewReply(426, "Transfer aborted.")
	case errors.As(rerr, &ie):
		out.check = ie.check
		out.reply = rewrite.NewReply(426, ie.text)
		s.log.Warn("transfer failed an integrity check", zap.String("verb", x.verb), zap.String("path", x.path),
			zap.String("check", ie.check), zap.Int64("bytes", out.bytes), zap.Int64("announced", x.announcedBytes()), zap.Int64("offset", x.offset))
	case isTimeout(rerr):
		out.reply = rewrite.NewReply(426, fmt.Sprintf("Transfer aborted: no progress for %s.", s.cfg.Timeouts.DataStall))
	case errors.Is(rerr, errClientLeg):
		out.reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the client failed.")
	default:
		out.reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the FTP server failed.")
	}
	if ie == nil {
		s.log.Info("transfer failed", zap.String("verb", x.verb), zap.Int64("bytes", out.bytes), zap.Error(rerr))
	}
	s.readFinal(x, &out)
	return out
}

// errIntegrity is a data stream that ended as if complete but failed a
// check of its end or its length: the transfer is incomplete, and the
// client is told so with 426.
type errIntegrity struct {
	check string // its name in the audit's "check" field
	text  string // the 426 reply's text
}

func (e *errIntegrity) Error() string { return e.check + ": " + e.text }

// verifyDownload checks a download whose source ended as if complete. An
// FTPS backend's data must end with its close_notify: every server tested
// sends one, and a bare FIN is how a cut on the path looks (issue 24). A
// binary RETR must carry the bytes its 150 announced (vsftpd and ProFTPD
// announce them, pure-ftpd to a tenth of a KiB; see rewrite.Size.Expected
// for a restarted one); more is a file that grew while it was read, logged
// but not data loss.
func (s *session) verifyDownload(x *transfer, bdata *backendData, n int64) error {
	if bdata.tls != nil && !bdata.closeNotified() {
		return &errIntegrity{check: "backend_close_notify",
			text: "Transfer aborted: the FTP server's data connection ended without TLS close_notify; the data may be truncated."}
	}
	if x.verb != "RETR" || !x.binary || !x.sized {
		return nil // TYPE A may change the length; LIST and NLST announce none
	}
	least, most := x.announced.Expected(x.offset)
	switch {
	case n < least:
		return &errIntegrity{check: "announced_size",
			text: fmt.Sprintf("Transfer aborted: %d of the %d bytes the FTP server announced arrived.", n, least)}
	case n > most:
		s.log.Info("download longer than the FTP server announced; the file may have grown while it was read",
			zap.String("path", x.path), zap.Int64("bytes", n), zap.Int64("announced", x.announced.Bytes))
	}
	return nil
}

// verifyUpload checks an upload whose client leg ended as if complete:
// under PROT P it must have ended with the client's close_notify, unless
// the listener's upload_close_notify is "warn" (vsftpd's
// strict_ssl_read_eof is the model).
func (s *session) verifyUpload(cd *clientData, closeNotify bool) error {
	if cd.tls == nil || closeNotify || s.lcfg.UploadCloseNotify == config.WarnCloseNotify {
		return nil
	}
	return &errIntegrity{check: "upload_close_notify",
		text: "Transfer aborted: your data connection ended without TLS close_notify, so the upload may be truncated."}
}

// readFinal reads the backend's final reply to the transfer command, unless
// the client's ABOR already claimed the transfer: abortBackend then reads it
// together with the ABOR's reply.
func (s *session) readFinal(x *transfer, out *outcome) {
	if x.state.Load() == transferAbort {
		return
	}
	out.final, out.backendLost = s.be.read(s.cfg.Timeouts.BackendReply)
}

// finishTransfer closes the client leg and sends the final reply(ies).
func (s *session) finishTransfer(x *transfer, out outcome) {
	aborted := !x.state.CompareAndSwap(transferRunning, transferDone)
	reply := out.reply // the proxy's own verdict, when the relay failed
	if reply == nil {
		reply = out.final // else the backend's
	}
	if reply == nil { // backend control lost mid-transfer
		reply = rewrite.NewReply(426, "Transfer aborted: lost the connection to the FTP server.")
	}
	if !reply.Positive() && out.result == "complete" {
		out.result = "incomplete"
	}
	// The client leg ends cleanly (TLS close_notify, then FIN) only if
	// the transfer succeeded: a client can then tell a complete file from
	// a truncated one on the data connection too.
	if out.client != nil {
		if out.result == "complete" {
			if !s.closeClientLeg(out.client) {
				reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the client failed at close.")
				out.result = "incomplete"
			} else if x.direction == "download" {
				out.closeNotify = out.client.tls != nil // ours, sent
			}
		} else {
			resetLeg(out.client.tcp)
		}
	}
	if out.result == "complete" && x.direction == "upload" && out.client != nil && out.client.tls != nil && !out.closeNotify {
		s.log.Warn("upload ended without TLS close_notify: its completeness cannot be verified",
			zap.String("path", x.path), zap.Int64("bytes", out.bytes))
	}
	if aborted {
		reply = s.abortBackend(&out, reply)
	}
	if out.backendLost != nil && !x.cancelled() {
		s.log.Warn("backend control connection lost during transfer", zap.Error(out.backendLost))
		s.mu.Lock()
		s.fatal = out.backendLost // the session cannot go on
		s.mu.Unlock()
	}
	// Logged and audited before the reply, so that whoever reads the
	// audit after seeing the reply finds the transfer there.
	var resumedFrom string
	if out.client != nil {
		resumedFrom = out.client.sibling
	}
	d := time.Since(x.start)
	s.log.Info("transfer", zap.String("verb", x.verb), zap.String("path", x.path), zap.Int64("bytes", out.bytes),
		zap.Duration("duration", d), zap.String("result", out.result), zap.Int("code", reply.Code))
	s.audit.Transfer(audit.Transfer{
		Verb: x.verb, Direction: x.direction, Path: x.path, Bytes: out.bytes, Duration: d,
		Result: out.result, Check: out.check, Announced: x.announcedBytes(), Offset: x.offset,
		CloseNotify: out.closeNotify, TLS: out.client != nil && out.client.tls != nil,
		Resumed: out.client != nil && out.client.resumed, ResumedFrom: resumedFrom,
		Code:   reply.Code,
		Client: s.client.Addr().String(), User: s.user, Binary: x.binary, File: x.file,
	})
	s.srv.metrics.transfer(x.direction, out.result, out.bytes, d)
	s.sendReply(x.verb, reply)
	if aborted {
		s.sendReply("ABOR", rewrite.NewReply(226, "Abort successful."))
	}
}

// abortBackend completes an ABOR that arrived during the transfer (RFC 959
// §4.1.3): the backend is sent ABOR and its replies are consumed. It
// returns the reply the transfer command gets: 426, or its real result if
// it had completed; the ABOR itself then gets 226.
func (s *session) abortBackend(out *outcome, reply *rewrite.Reply) *rewrite.Reply {
	abor := rewrite.Command{Verb: "ABOR"}
	if out.backendLost == nil {
		if err := s.be.send(abor); err != nil {
			out.backendLost = err
		} else {
			want := 1 // the ABOR's own reply
			if out.final == nil {
				want = 2 // and the transfer's, not read yet
			}
			for i := 0; i < want; i++ {
				rep, err := s.be.read(5 * time.Second)
				if err != nil {
					if !isTimeout(err) {
						out.backendLost = err
					}
					break
				}
				s.log.Debug("backend reply to ABOR", zap.String("reply", rep.String()))
			}
		}
	}
	if out.result != "complete" {
		out.result = "aborted"
		reply = rewrite.NewReply(426, "Transfer aborted.")
	}
	return reply
}

// closeClientLeg ends a successful transfer's client leg: TLS close_notify,
// then TCP FIN; a lingering goroutine reads until the client closes too, so
// that our close never resets data the client has yet to read. At most
// limits.max_lingering_data_legs legs linger in the whole server (a client
// that never closes its data connections would otherwise hold a descriptor
// for each, issue 24 item 7); past that a leg is closed at once: what was
// sent still arrives, and only a client that sends more after it may meet
// a reset. It reports whether the close_notify was sent.
func (s *session) closeClientLeg(cd *clientData) bool {
	cd.tcp.SetWriteDeadline(time.Now().Add(s.cfg.Timeouts.DataStall))
	if cd.tls != nil {
		if err := cd.tls.CloseWrite(); err != nil {
			s.log.Info("close_notify to client failed", zap.Error(err))
			cd.tcp.Close()
			return false
		}
	}
	cd.tcp.CloseWrite()
	if !s.srv.startLinger(s.cfg.Limits.MaxLingeringDataLegs) {
		s.srv.metrics.lingerRefused.Inc()
		s.log.Debug("data connection closed without lingering: max_lingering_data_legs reached")
		cd.tcp.Close()
		return true
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.srv.lingering.Add(-1)
		lingerClose(cd, lingerTimeout)
	}()
	return true
}

// startLinger counts one more lingering data leg, unless limit linger
// already; it reports whether it counted it.
func (s *Server) startLinger(limit int) bool {
	for {
		n := s.lingering.Load()
		if n >= int64(limit) {
			return false
		}
		if s.lingering.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// lingerTimeout bounds how long a closed client leg waits for the client's
// own close.
const lingerTimeout = 10 * time.Second

// lingerClose drains a half-closed data connection until the client closes
// it (or the timeout), then closes it.
func lingerClose(cd *clientData, timeout time.Duration) {
	cd.tcp.SetReadDeadline(time.Now().Add(timeout))
	var buf [512]byte
	for {
		if _, err := cd.conn.Read(buf[:]); err != nil {
			break
		}
	}
	cd.tcp.Close()
}

// resetLeg closes a data leg with a TCP reset, so that the peer cannot take
// the end of the stream for the end of the file.
func resetLeg(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// ---- the relay ----

// relayBufferSize is the size of one read on a data leg.
const relayBufferSize = 64 << 10

var relayBuffers = sync.Pool{New: func() any { b := make([]byte, relayBufferSize); return &b }}

// sealedBufferSize holds the TLS records of one relayBufferSize chunk:
// the payload plus each record's header, nonce and tag (at most 29 bytes in
// TLS 1.2, 22 in 1.3; records are 16 KiB, smaller only in a connection's
// first 128 KiB, where crypto/tls sizes them to a TCP segment).
const sealedBufferSize = relayBufferSize + 4<<10

var sealedBuffers = sync.Pool{New: func() any { b := make([]byte, sealedBufferSize); return &b }}

// errClientLeg marks a relay error on the client's leg.
var errClientLeg = errors.New("client data leg")

// relay copies src to dst until src ends, and adds the bytes written to
// total. It fails when a leg makes no progress for stall: the raw
// connections under the legs measure it (eofConn.progress), so a slow
// reader or writer that keeps moving bytes is never cut, however long one
// TLS record or one chunk takes. It returns nil when src ended with io.EOF.
// An error on the client's leg (src when srcIsClient, else dst) is wrapped
// with errClientLeg. Each leg is an *eofConn, a *tls.Conn over one, or a
// plain connection (which the relay wraps).
func relay(dst, src net.Conn, srcIsClient bool, stall time.Duration, total *atomic.Int64) (int64, error) {
	dst, rawDst := rawLeg(dst)
	src, rawSrc := rawLeg(src)
	if rawDst == nil || rawSrc == nil {
		return 0, errors.New("relay: a TLS leg is not over an eofConn")
	}
	rawDst.progress(stall)
	defer rawDst.progress(0)
	rawSrc.progress(stall)
	defer rawSrc.progress(0)
	bp := relayBuffers.Get().(*[]byte)
	defer relayBuffers.Put(bp)
	buf := *bp
	// Toward a TLS peer, each chunk's records leave in one send.
	var sealed *eofConn
	if _, ok := dst.(*tls.Conn); ok {
		sealed = rawDst
		sp := sealedBuffers.Get().(*[]byte)
		defer sealedBuffers.Put(sp)
		defer sealed.flush()
		sealed.hold(*sp)
	}
	// From a TLS client, (*tls.Conn).Read returns one record (16 KiB) at
	// a time; the records it already holds are taken too, so that one
	// write carries up to a chunk.
	_, fromTLS := src.(*tls.Conn)
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if fromTLS {
			nr, rerr = readHeld(src, buf, nr, rerr)
		}
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if werr == nil && sealed != nil {
				if werr = sealed.send(); werr != nil {
					nw = 0 // gathered, never sent
				}
			}
			n += int64(nw)
			total.Add(int64(nw))
			if werr != nil {
				return n, legError(!srcIsClient, werr)
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, legError(srcIsClient, rerr)
		}
	}
}

// rawLeg returns the connection to relay on for c, and the eofConn under
// it (nil for a *tls.Conn over anything else). A plain connection is
// wrapped in one.
func rawLeg(c net.Conn) (net.Conn, *eofConn) {
	switch v := c.(type) {
	case *eofConn:
		return v, v
	case *tls.Conn:
		ec, _ := v.NetConn().(*eofConn)
		return v, ec
	}
	ec := &eofConn{Conn: c}
	return ec, ec
}

// maxRecord is the most plaintext one TLS record carries.
const maxRecord = 16 << 10

// readHeld adds to buf[:nr] the records a TLS connection holds already,
// read without waiting: with a deadline in the past, crypto/tls returns
// what it has decrypted or buffered and a timeout (which leaves the
// connection usable; only write timeouts break a TLS connection) as soon as
// it would need the socket. The read deadline is cleared again after.
func readHeld(src net.Conn, buf []byte, nr int, rerr error) (int, error) {
	if rerr != nil || len(buf)-nr < maxRecord {
		return nr, rerr
	}
	defer src.SetReadDeadline(time.Time{})
	for rerr == nil && len(buf)-nr >= maxRecord {
		src.SetReadDeadline(pastDeadline)
		m, err := src.Read(buf[nr:])
		nr += m
		if err != nil {
			if !isTimeout(err) {
				rerr = err
			}
			break
		}
	}
	return nr, rerr
}

var pastDeadline = time.Unix(1, 0)

// legError wraps err with errClientLeg when it happened on the client leg.
func legError(client bool, err error) error {
	if client {
		return fmt.Errorf("%w: %w", errClientLeg, err)
	}
	return err
}

// notResumedText is the reply to a transfer whose data connection was
// refused for not resuming the control connection's TLS session.
func notResumedText(e *errNotResumed) string {
	switch e.foreign {
	case ticketOfOtherAddress:
		return "Data connection refused: its TLS session belongs to a connection from another address."
	case ticketOfOtherUser:
		return "Data connection refused: its TLS session belongs to another user's connection."
	case ticketOfNoLogin:
		return "Data connection refused: its TLS session belongs to a connection that is not logged in; resume this connection's TLS session."
	}
	if e.idOnly {
		return "Data connection refused: TLS session reuse required, and your client offered no TLS 1.2 session ticket (this server cannot resume by session ID); allow TLS 1.3 (see ftpsgate's README)."
	}
	return "Data connection refused: TLS session reuse required; the data connection must resume the control connection's TLS session (see ftpsgate's README for your client)."
}

func shortErr(err error) string {
	if err == nil {
		return "unknown error"
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}
