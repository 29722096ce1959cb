package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/dataport"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// A session is one client control connection and everything it opens: the
// backend control connection, passive listeners and data transfers.
//
// Its life, in order: newSession (on accept) → run: implicit TLS handshake
// if the listener is implicit, the proxy's own 220, then one command at a
// time through the verb table until QUIT, an error or a timeout → close:
// every data leg, the backend and the client connection, then the
// session_end audit event.
//
// The session goroutine (run) owns the protocol state. A transfer runs in a
// goroutine of its own (transfer.go) so that the session can read ABOR while
// data flows; while it runs, the transfer owns the backend control
// connection and the session waits for it before any other command.
type session struct {
	srv *Server
	cfg *config.Config
	// The configuration snapshots the session lives by, taken when it
	// starts: a reload (SIGHUP) changes new sessions only.
	lcfg  *config.Listener
	ports *dataport.Pool
	id    string
	log   *zap.Logger // base, plus the user once known
	base  *zap.Logger // session, client, listener
	audit *audit.Session
	start time.Time

	raw    net.Conn    // the client's TCP connection, as accepted
	ctrl   net.Conn    // raw, or the *tls.Conn over it once TLS is up
	tls    *tls.Conn   // nil until TLS is up
	bind   *tlsBinding // ties data connections' TLS sessions to ctrl's
	r      *bufio.Reader
	client clientInfo
	// clientCounted: the session counts toward its client's sessions
	// (Server.admit), until untrack gives its place back.
	clientCounted bool

	wmu sync.Mutex // serialises writes to ctrl

	// Protocol state, owned by the session goroutine.
	pbsz     bool
	prot     byte   // 'C' (clear) until PROT P
	host     string // from HOST (RFC 7151), before USER
	login    login  // USER, PASS and their accounting (login.go)
	binary   bool   // TYPE I (or L 8) accepted by the backend; ASCII by default
	badLines int
	rest     int64       // the offset of the last REST, for the next transfer command
	cwd      workDir     // the backend's, for transfers' full paths
	data     dataChannel // what PASV, EPSV, PORT and EPRT set up
	// unaudited is a command relayed as it is whose audit event waits
	// until the backend has it (see dispatch); holding says it waits.
	unaudited rewrite.Command
	holding   bool
	// be is the backend's control connection, nil until the first USER.
	// While a transfer runs, the transfer uses it, and the session
	// goroutine waits for the transfer before it touches it again.
	be *backendConn

	// mu guards what other goroutines touch: the transfer's handing back
	// (xfer, fatal), the server's drain, kill and kick, and the control
	// read deadline they set (armReadDeadlineLocked).
	mu       sync.Mutex
	xfer     *transfer // transfer in progress, or nil
	draining bool      // the server is shutting down
	killed   bool      // the server closed the session
	banned   bool      // the client's address was banned before it logged in (kick)
	fatal    error     // set by a transfer that lost the backend
	// loggedIn is written under mu (kick reads it); the session
	// goroutine reads it freely.
	loggedIn bool

	// Safe from any goroutine.
	wg        sync.WaitGroup // transfer and data goroutines, and lingering data legs
	bytesDown atomic.Int64
	bytesUp   atomic.Int64
	// rates are the shared rate limits the session's transfers hold,
	// taken at the first limited transfer, given back at the end.
	rates sessionBuckets

	// For the status page, read by the admin listener: what is shown of
	// the session (replaced whole by the session goroutine), and when its
	// last command came (unix nanoseconds).
	view       atomic.Pointer[sessionView]
	lastActive atomic.Int64
}

// setView changes what the status page shows of the session; only the
// session goroutine calls it.
func (s *session) setView(change func(*sessionView)) {
	var v sessionView
	if old := s.view.Load(); old != nil {
		v = *old
	}
	change(&v)
	s.view.Store(&v)
}

// controlBufferSize is the read buffer of each control connection (the
// client's and the backend's). Longer lines are read in pieces
// (rewrite.ReadLine); it is small because every idle session holds two, and
// crypto/tls already holds a whole record.
const controlBufferSize = 512

// newSession makes the session of control connection c from client (the
// TCP peer, or the address a trusted PROXY header gave; then tcpPeer is the
// load balancer's, else zero).
func newSession(srv *Server, fl *frontListener, c net.Conn, client, tcpPeer netip.AddrPort) *session {
	s := &session{
		srv:    srv,
		cfg:    srv.config(),
		lcfg:   fl.config(),
		ports:  fl.ports.Load(),
		id:     newSessionID(),
		start:  time.Now(),
		raw:    c,
		ctrl:   c,
		prot:   'C',
		client: clientInfo{addr: client, tcpPeer: tcpPeer, local: addrPortOf(c.LocalAddr())},
	}
	s.login.s = s
	// Until a login's route decides, the listener's scan block: a login
	// path that forgot to set it still scans (fails closed).
	s.login.scan = s.lcfg.Scan
	s.client.key = policy.ClientKey(client.Addr(), s.cfg.Limits.IPv6Prefix)
	s.lastActive.Store(s.start.UnixNano())
	if pc, ok := c.(*proxyproto.Conn); ok {
		// Passive listeners bind the address this host was reached on,
		// not the one the header names (the balancer's public address).
		s.client.local = addrPortOf(pc.Raw().LocalAddr())
	}
	s.setHost("")
	s.audit = srv.audit.Session(s.id)
	s.r = bufio.NewReaderSize(c, controlBufferSize)
	s.bind = newTLSBinding(fl.tlsConf, s.lcfg, s.id, client.Addr(), srv.binding)
	return s
}

// clientInfo is who a session's client is, for what connects on its
// behalf: the backend's PROXY header and the checks of its data
// connections.
type clientInfo struct {
	addr netip.AddrPort // the client's address (a trusted PROXY header's, behind a balancer)
	// tcpPeer is the load balancer's address when a PROXY header named the
	// client; data connections may come from it too (zero otherwise).
	tcpPeer netip.AddrPort
	// key is the block of addresses the client counts in for per-address
	// limits and bans: its address, or its IPv6 prefix.
	key   netip.Prefix
	local netip.AddrPort // the address the client reached, on this host
}

// dialer is what connects the session to its backend and opens its
// transfers' backend legs, with what the session knows now.
func (s *session) dialer() *backendDialer {
	return &backendDialer{srv: s.srv, dial: s.srv.dial, metrics: s.srv.metrics, timeouts: s.cfg.Timeouts, log: s.log,
		denied: s.denied, client: s.client, session: s.id, host: s.host, tls: s.tls}
}

// Errors that end a session. They are mapped to replies in one place,
// endReply.
var (
	errQuit           = errors.New("client quit")
	errIdle           = errors.New("idle timeout")
	errLoginTimeout   = errors.New("login timeout")
	errDraining       = errors.New("server shutting down")
	errTooManyErrors  = errors.New("too many bad command lines")
	errInjection      = errors.New("plaintext pipelined after AUTH TLS")
	errBackendLost    = errors.New("backend connection lost")
	errBackendRefused = errors.New("backend unavailable")
	errBanned         = errors.New("address banned after failed logins")
	errClientHello    = errors.New("a TLS ClientHello on the plaintext port: an implicit-FTPS client on the explicit listener? It belongs on the implicit one (990)")
	// errHandshake: the client's TLS handshake failed. It may already
	// have sent or read TLS records, so no plaintext reply follows (a
	// TLS scanner reads one as a 4xx/5xx after STARTTLS).
	errHandshake = errors.New("TLS handshake failed")
)

// maxBadLines is how many malformed or over-long lines a client may send
// before the session is closed.
const maxBadLines = 3

// writeTimeout bounds every write of a reply to the client.
const writeTimeout = 30 * time.Second

// run is the session: greet, then read and dispatch commands until the end.
func (s *session) run() {
	how := "client closed"
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("session panic; closing it", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			s.send("", rewrite.NewReply(421, "Internal error; closing connection."))
			how = "panic"
		}
		s.close(how)
	}()
	var tcpPeer string
	if s.client.tcpPeer.IsValid() {
		tcpPeer = s.client.tcpPeer.String()
	}
	s.audit.Start(s.lcfg.Name, s.client.addr.String(), s.client.local.String(), tcpPeer)
	s.log.Debug("session started", zap.Stringer("local", s.client.local))
	d := policy.Address(s.lcfg.AllowCIDRs, s.lcfg.DenyCIDRs, s.client.addr.Addr())
	if d == nil {
		d = s.srv.admit(s)
	}
	if d != nil {
		// Refused before TLS. A client of an implicit listener expects a
		// TLS handshake and could not read a reply: it is just closed.
		s.log.Info("policy denied", zap.String("rule", d.Rule), zap.Int("code", d.Code))
		s.denied(d.Rule, "", d.Text)
		if s.lcfg.TLS == config.Explicit {
			s.send("", rewrite.NewReply(d.Code, d.Text))
		}
		how = "refused: " + d.Rule
		return
	}

	if s.lcfg.TLS == config.Implicit {
		if !s.hasCertificate() {
			// No reply can reach a client that expects a handshake.
			s.log.Warn("connection closed: the implicit listener's acme block has no certificate yet",
				zap.String("acme", s.lcfg.ACME.Name))
			s.denied(policy.RuleNoCertificate, "", "no certificate yet")
			how = "refused: " + policy.RuleNoCertificate
			return
		}
		if err := s.startTLS(); err != nil {
			how = s.end(err)
			return
		}
	}
	if err := s.send("", rewrite.NewReply(220, s.lcfg.Greeting)); err != nil {
		return
	}
	for {
		cmd, err := s.readCommand()
		if err == nil {
			err = s.dispatch(cmd)
		}
		if err != nil {
			how = s.end(err)
			return
		}
	}
}

// end answers the client for the error that ends the session and names
// how it ended, for the log and the audit stream.
func (s *session) end(err error) string {
	var rep *rewrite.Reply
	how := err.Error()
	switch {
	case errors.Is(err, errQuit):
		return "quit"
	case errors.Is(err, errIdle):
		rep = rewrite.NewReply(421, fmt.Sprintf("Idle timeout (%s); closing control connection.", s.cfg.Timeouts.Idle))
	case errors.Is(err, errLoginTimeout):
		rep = rewrite.NewReply(421, fmt.Sprintf("Login timeout (%s); closing control connection.", s.cfg.Timeouts.Login))
	case errors.Is(err, errDraining):
		rep = rewrite.NewReply(421, "Service shutting down; closing control connection.")
	case errors.Is(err, errTooManyErrors), errors.Is(err, rewrite.ErrLineFlood):
		rep = rewrite.NewReply(421, "Too many bad commands; closing control connection.")
	case errors.Is(err, errBanned):
		rep = rewrite.NewReply(421, "Too many failed logins from your address; try again later.")
	case errors.Is(err, errInjection):
		rep = rewrite.NewReply(421, "Data pipelined after AUTH TLS refused; closing control connection.")
	case errors.Is(err, errHandshake):
		return err.Error() // why, for the session's one closing log line
	case errors.Is(err, errClientHello):
		// A TLS client could not read a 421 in clear: it is closed, and
		// the session's one closing log line says why.
		s.denied(policy.RuleTLSOnPlaintextPort, "", err.Error())
		return err.Error()
	case errors.Is(err, errBackendRefused):
		be := &backendError{what: backendUnreachable}
		errors.As(err, &be)
		rep = rewrite.NewReply(421, be.reply())
		s.audit.BackendUnavailable(be.backend, be.what, err.Error())
	case errors.Is(err, errBackendLost) && isTimeout(err):
		rep = rewrite.NewReply(421, fmt.Sprintf("Service not available: the FTP server did not answer within %s.", s.cfg.Timeouts.BackendReply))
	case errors.Is(err, errBackendLost):
		rep = rewrite.NewReply(421, "Service not available: lost the connection to the FTP server.")
	case isClosed(err):
		return "client closed"
	default:
		s.log.Warn("session ended by error", zap.Error(err))
		rep = rewrite.NewReply(421, "Service not available; closing control connection.")
	}
	s.log.Info("closing session", zap.String("reason", how), zap.Int("code", rep.Code))
	s.send("", rep)
	return how
}

// ---- shutdown ----

// drain asks the session to end: at once if it is idle, after its transfer
// otherwise. Called by Server.Shutdown.
func (s *session) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	if s.xfer == nil {
		s.raw.SetReadDeadline(time.Now()) // wake readCommand
	}
}

// kick ends the session with 421 when it has not logged in: its client's
// address was just banned. Called by Server.banSessions.
func (s *session) kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loggedIn || s.killed {
		return
	}
	s.banned = true
	s.raw.SetReadDeadline(time.Now()) // wake readCommand
}

// kill closes the session's connections now. Called by Server.Shutdown when
// its deadline passes.
func (s *session) kill() {
	s.mu.Lock()
	s.killed = true
	x := s.xfer
	s.mu.Unlock()
	if x != nil {
		x.cancel()
	}
	s.raw.Close()
}

// close releases everything the session holds and records its end.
func (s *session) close(how string) {
	s.bind.release() // its tickets no longer resume on a sibling's data connections
	x := s.currentTransfer()
	if x != nil {
		if x.cleaning.Load() {
			x.wait()
		} else {
			x.cancel()
		}
	}
	// A scanned upload deletes its unjudged file with DELE on the
	// backend's control connection (scanner.go): it stays open until
	// the transfer ends, each of its waits bounded by backend_reply.
	scanned := x != nil && x.scan != nil && x.spool == nil // a spooled upload deletes nothing
	if s.be != nil && !scanned {
		s.be.close() // also ends a transfer's wait for its final reply
	}
	s.data.drop()
	s.wg.Wait()
	s.rates.releaseAll(&s.srv.buckets)
	if s.be != nil && scanned {
		s.be.close()
	}
	s.login.uncount()
	s.wmu.Lock()
	s.raw.SetWriteDeadline(time.Now().Add(time.Second))
	s.ctrl.Close() // with TLS, sends close_notify first
	s.wmu.Unlock()
	s.raw.Close()
	d := time.Since(s.start)
	s.log.Info("session closed", zap.String("reason", how), zap.Duration("duration", d),
		zap.Int64("bytes_down", s.bytesDown.Load()), zap.Int64("bytes_up", s.bytesUp.Load()))
	s.audit.End(s.login.user, d, how, s.bytesDown.Load(), s.bytesUp.Load())
}

// ---- small helpers ----

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// isClosed reports whether err means the client went away.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
