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
	"path"
	"runtime/debug"
	"strconv"
	"strings"
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

	wmu sync.Mutex // serialises writes to ctrl

	// Protocol state, owned by the session goroutine.
	pbsz bool
	prot byte // 'C' (clear) until PROT P
	user string
	host string // from HOST (RFC 7151), before USER
	// refused is the policy's refusal of user, answered as a wrong
	// password would be (login.go); refusedBackend is the backend whose
	// delays that answer mimics.
	refused        *policy.Denial
	refusedBackend string
	loggedIn       bool   // written under mu (kick reads it), read freely
	readOnly       bool   // the logged-in user may not change files
	binary         bool   // TYPE I (or L 8) accepted by the backend; ASCII by default
	counted        string // the user key (policy.Rules.Key) counted toward max_sessions_per_user
	route          string // the route that chose the backend, if any
	badLines       int
	rest           int64       // the offset of the last REST, for the next transfer command
	cwd            workDir     // the backend's, for transfers' full paths
	data           dataChannel // what PASV, EPSV, PORT and EPRT set up
	// unaudited is a command relayed as it is whose audit event waits
	// until the backend has it (see dispatch); holding says it waits.
	unaudited rewrite.Command
	holding   bool
	be        *backendConn // nil until the first USER

	// mu guards the fields below it; drain and kill run on other
	// goroutines.
	mu       sync.Mutex
	xfer     *transfer // transfer in progress, or nil
	draining bool      // the server is shutting down
	killed   bool      // the server closed the session
	banned   bool      // the client's address was banned before it logged in (kick)
	fatal    error     // set by a transfer that lost the backend

	wg        sync.WaitGroup // transfer and data goroutines
	bytesDown atomic.Int64
	bytesUp   atomic.Int64

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

// newSession makes the session of control connection c from client (the
// TCP peer, or the address a trusted PROXY header gave; then tcpPeer is the
// load balancer's, else zero).
// controlBufferSize is the read buffer of each control connection (the
// client's and the backend's). Longer lines are read in pieces
// (rewrite.ReadLine); it is small because every idle session holds two, and
// crypto/tls already holds a whole record.
const controlBufferSize = 512

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
	s.bind = newTLSBinding(fl.tlsConf, s.lcfg, s.id, srv.binding)
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
		s.denied("tls_on_plaintext_port", "", err.Error())
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

// readCommand reads and parses the next command line. Malformed lines are
// answered here and reading goes on, up to maxBadLines of them.
func (s *session) readCommand() (rewrite.Command, error) {
	for {
		if err := s.armReadDeadline(); err != nil {
			return rewrite.Command{}, err
		}
		if s.tls == nil {
			// A TLS client on the plaintext port (an implicit-FTPS client
			// on the explicit listener) sends a ClientHello: no line of
			// it is a command, and it waits for a ServerHello forever.
			if b, err := s.r.Peek(1); err == nil && b[0] == tlsRecordHandshake {
				return rewrite.Command{}, errClientHello
			}
		}
		line, err := rewrite.ReadLine(s.r, s.cfg.Limits.MaxLine)
		s.lastActive.Store(time.Now().UnixNano())
		var cmd rewrite.Command
		if err == nil {
			cmd, err = rewrite.ParseCommand(line)
		}
		switch {
		case err == nil:
			return cmd, nil
		case isTimeout(err):
			if err := s.timeoutReason(); err != nil {
				return rewrite.Command{}, err
			}
			continue // a transfer is running: the control channel may rest
		case errors.Is(err, rewrite.ErrLineTooLong), errors.Is(err, rewrite.ErrBareCR),
			errors.Is(err, rewrite.ErrNUL), errors.Is(err, rewrite.ErrSyntax):
			s.badLines++
			s.log.Info("bad command line", zap.Error(err), zap.Int("count", s.badLines))
			if s.badLines >= maxBadLines {
				return rewrite.Command{}, errTooManyErrors
			}
			text := "Syntax error, command unrecognized."
			if errors.Is(err, rewrite.ErrLineTooLong) {
				text = fmt.Sprintf("Command line too long (limit %d bytes).", s.cfg.Limits.MaxLine)
			}
			if err := s.send("", rewrite.NewReply(500, text)); err != nil {
				return rewrite.Command{}, err
			}
		default:
			return rewrite.Command{}, err
		}
	}
}

// armReadDeadline sets the control read deadline: the idle timeout, or
// the rest of the login timeout before login. Under mu, so that drain's
// deadline is never overwritten.
func (s *session) armReadDeadline() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.armReadDeadlineLocked()
}

// armReadDeadlineLocked is armReadDeadline under mu.
func (s *session) armReadDeadlineLocked() error {
	if s.killed {
		return net.ErrClosed
	}
	if s.fatal != nil {
		return s.fatal
	}
	if s.banned {
		return errBanned
	}
	if s.draining && s.xfer == nil {
		return errDraining
	}
	d := time.Now().Add(s.cfg.Timeouts.Idle)
	if !s.loggedIn {
		if ld := s.start.Add(s.cfg.Timeouts.Login); ld.Before(d) {
			d = ld
		}
	}
	return s.raw.SetReadDeadline(d)
}

// timeoutReason says why a control read timed out, or nil when the session
// should read on (a transfer is running).
func (s *session) timeoutReason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fatal != nil:
		return s.fatal
	case s.banned:
		return errBanned
	case s.xfer != nil:
		return nil
	case s.draining:
		return errDraining
	case !s.loggedIn && !time.Now().Before(s.start.Add(s.cfg.Timeouts.Login)):
		return errLoginTimeout
	}
	return errIdle
}

// dispatchHook, when set (by tests only, see export_test.go), sees every
// command before it is handled: the tests make it panic to prove that a
// session's panic is contained.
var dispatchHook atomic.Pointer[func(rewrite.Command)]

// dispatch handles one command, as the verb table (verbs.go) says. A
// returned error ends the session.
func (s *session) dispatch(cmd rewrite.Command) error {
	v := lookupVerb(cmd.Verb)
	var op policy.Op
	if v != nil {
		op = v.op(cmd.Arg)
	} else {
		op = unknownOp(cmd.Verb)
	}
	relayed := v == nil || v.handle == nil
	// Every command is audited before its reply. A command relayed as it
	// is (the common case once logged in: PWD, CWD, SIZE…) is audited
	// once the backend has it, while the backend works, so that the write
	// is not part of the round trip (forwardChecked); any other is
	// audited now. Holding needs nothing between here and the backend to
	// block or to write another event: no transfer to wait for or to
	// answer during, no 530, no policy denial.
	if relayed && s.be != nil && s.currentTransfer() == nil && (v != nil || s.cfg.Policy.Unknown(cmd.Verb) == nil) &&
		s.cfg.Policy.Command(op, s.readOnly) == nil {
		s.unaudited, s.holding = cmd, true
		defer s.auditHeld() // if it never reached the backend
	} else {
		s.audit.Command(cmd)
	}
	s.srv.metrics.commands.WithLabelValues(metricLabel(v)).Inc()
	if hook := dispatchHook.Load(); hook != nil {
		(*hook)(cmd)
	}
	x := s.currentTransfer()
	if v != nil && v.name == "ABOR" && x.abort() {
		return nil
	}
	if v != nil && v.duringTransfer {
		if rep := x.during(cmd); rep != nil {
			return s.sendReply(cmd.Verb, rep)
		}
	}
	x.wait() // RFC 959: commands after a transfer command wait for it
	if v == nil {
		if d := s.cfg.Policy.Unknown(cmd.Verb); d != nil {
			return s.deny(cmd, d)
		}
	}
	if (v == nil || !v.preLogin) && s.be == nil {
		return s.reply(cmd, 530, "Please login with USER and PASS.")
	}
	if v != nil && v.data != "" {
		// A transfer command takes the REST before it, whether it runs
		// or is refused (cmdREST).
		defer func() { s.rest = 0 }()
	}
	if d := s.cfg.Policy.Command(op, s.readOnly); d != nil {
		return s.deny(cmd, d)
	}
	if relayed {
		rep, err := s.forward(cmd)
		if err == nil && v != nil && v.after != nil {
			v.after(&s.cwd, rep)
		}
		return err
	}
	return v.handle(s, cmd)
}

// auditHeld writes the audit event of the command dispatch held back.
func (s *session) auditHeld() {
	if s.holding {
		s.audit.Command(s.unaudited)
		s.holding, s.unaudited = false, rewrite.Command{}
	}
}

func refuse(code int, text string) func(*session, rewrite.Command) error {
	return func(s *session, cmd rewrite.Command) error {
		s.log.Info("command refused", zap.String("verb", cmd.Verb), zap.Int("code", code))
		return s.reply(cmd, code, text)
	}
}

// denied records a refusal by rule in the audit stream and the metrics.
func (s *session) denied(rule, verb, reason string) {
	s.audit.PolicyDenied(rule, verb, reason)
	s.srv.metrics.denials.WithLabelValues(rule).Inc()
}

// deny answers a policy refusal, logs it and records it in the audit.
func (s *session) deny(cmd rewrite.Command, d *policy.Denial) error {
	s.log.Info("policy denied", zap.String("rule", d.Rule), zap.String("verb", cmd.Verb), zap.Int("code", d.Code))
	s.denied(d.Rule, cmd.Verb, d.Text)
	// A name refused by allow_users or deny_users never comes here: it is
	// answered as a wrong password, and counted at PASS (login.go).
	return s.reply(cmd, d.Code, d.Text)
}

// ---- commands the proxy answers itself ----

// cmdAUTH upgrades the control connection to TLS (RFC 4217 §4).
func (s *session) cmdAUTH(cmd rewrite.Command) error {
	if s.tls != nil {
		return s.reply(cmd, 503, "TLS is already active.")
	}
	switch strings.ToUpper(cmd.Arg) {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		return s.reply(cmd, 504, "AUTH mechanism not supported; use AUTH TLS.")
	}
	// Anything the client sent after AUTH, before seeing our 234, would
	// be read as if it came under TLS: the STARTTLS injection class
	// (CVE-2011-0411, CVE-2011-1575). Refuse it, never execute it.
	if s.r.Buffered() > 0 {
		s.log.Warn("plaintext pipelined after AUTH TLS; closing", zap.Int("bytes", s.r.Buffered()))
		s.denied("starttls_injection", cmd.Verb, "data pipelined after AUTH")
		return errInjection
	}
	if err := s.reply(cmd, 234, "AUTH TLS successful; start the TLS handshake."); err != nil {
		return err
	}
	return s.startTLS()
}

// startTLS runs the server TLS handshake on the control connection.
func (s *session) startTLS() error {
	conf := s.bind.control()
	var hello *tls.ClientHelloInfo
	conf.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = h
		return nil, nil
	}
	first := &firstByte{Conn: s.raw}
	tc := tls.Server(first, conf)
	s.raw.SetDeadline(time.Now().Add(s.cfg.Timeouts.TLSHandshake))
	err := tc.Handshake()
	s.raw.SetDeadline(time.Time{})
	if err != nil {
		why := handshakeDiagnosis(err, first, hello, s.lcfg.TLS, s.cfg.Timeouts.TLSHandshake)
		s.denied("tls_handshake", "AUTH", why+": "+err.Error())
		s.srv.metrics.tlsFailures.Inc()
		return fmt.Errorf("%w: %s (%w)", errHandshake, why, err)
	}
	cs := tc.ConnectionState()
	s.tls, s.ctrl, s.r = tc, tc, bufio.NewReaderSize(tc, controlBufferSize)
	if s.host != "" && !strings.EqualFold(s.host, cs.ServerName) {
		// A HOST sent in clear may have come from anyone on the path
		// (the STARTTLS injection class): it would choose the backend
		// the password goes to. Only what the client says under TLS
		// counts; it may send HOST again.
		s.log.Info("HOST sent before AUTH TLS forgotten at the handshake", zap.String("host", s.host),
			zap.String("sni", cs.ServerName))
		s.audit.HostDropped(s.host, cs.ServerName)
		s.setHost("")
	}
	s.log.Debug("TLS established", zap.String("version", tls.VersionName(cs.Version)),
		zap.String("cipher", tls.CipherSuiteName(cs.CipherSuite)), zap.String("sni", cs.ServerName))
	s.srv.metrics.tlsHandshakes.WithLabelValues(tls.VersionName(cs.Version)).Inc()
	s.audit.TLS(tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.ServerName, cs.NegotiatedProtocol)
	s.setView(func(v *sessionView) { v.TLS = tls.VersionName(cs.Version) })
	return nil
}

// firstByte records the first byte a connection read (under a TLS
// server: what the client sent first).
type firstByte struct {
	net.Conn
	b    byte
	seen bool
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if n > 0 && !f.seen {
		f.b, f.seen = p[0], true
	}
	return n, err
}

// tlsRecordHandshake is the first byte of a TLS handshake record, and so of
// every ClientHello.
const tlsRecordHandshake = 0x16

// handshakeDiagnosis says, for an operator, why a client's TLS handshake
// failed, from what the client sent (its first byte, its ClientHello) and
// the error: crypto/tls's own words name the symptom, not the cause.
func handshakeDiagnosis(err error, first *firstByte, hello *tls.ClientHelloInfo, mode config.TLSMode, timeout time.Duration) string {
	switch {
	case !first.seen && isTimeout(err) && mode == config.Implicit:
		return fmt.Sprintf("the client sent nothing within %s: an explicit-FTPS (or plain FTP) client waiting for a 220 on the implicit-TLS listener?", timeout)
	case !first.seen:
		return "the client closed or sent nothing before the handshake"
	case first.b != tlsRecordHandshake:
		return fmt.Sprintf("the client sent plaintext (first byte %q), not a TLS ClientHello: an explicit-FTPS or plain FTP client on the implicit-TLS listener?", first.b)
	case hello == nil:
		return "the ClientHello was malformed or cut short"
	}
	var offered []string
	modern := false
	for _, v := range hello.SupportedVersions {
		offered = append(offered, tls.VersionName(v))
		modern = modern || v >= tls.VersionTLS12
	}
	if !modern {
		return "the client offers only " + strings.Join(offered, ", ") + ", older than the listener's minimum (tls_min_version)"
	}
	// crypto/tls exposes no typed value for the alerts a peer sends, so
	// its words are read here, for the log's explanation only.
	switch e := err.Error(); {
	case strings.Contains(e, "bad certificate"), strings.Contains(e, "unknown certificate authority"),
		strings.Contains(e, "certificate expired"), strings.Contains(e, "certificate unknown"),
		strings.Contains(e, "bad record MAC"):
		// Under TLS 1.3 an OpenSSL client that rejects the certificate
		// sends its alert under keys the server has moved past: Go
		// reports a bad record MAC.
		return "the client does not trust the certificate (its CA, name or dates): give the client the CA, or use a certificate for the name it connects to"
	case strings.Contains(e, "no cipher suite supported"), strings.Contains(e, "handshake failure"):
		return "no cipher suite in common: the client may need one outside the intermediate profile (tls_cipher_suites)"
	case strings.Contains(e, "no application protocol"):
		return "the client offered ALPN protocols but not \"ftp\" (a browser or another protocol sent to the FTP port: ALPACA)"
	}
	return "the handshake failed"
}

// cmdPBSZ: with TLS the buffer size is always 0 (RFC 4217 §8).
func (s *session) cmdPBSZ(cmd rewrite.Command) error {
	if s.tls == nil {
		return s.reply(cmd, 503, "PBSZ requires AUTH TLS first.")
	}
	if cmd.Arg == "" || strings.Trim(cmd.Arg, "0123456789") != "" {
		return s.reply(cmd, 501, "PBSZ needs a number.")
	}
	s.pbsz = true
	return s.reply(cmd, 200, "PBSZ=0")
}

// cmdPROT sets the data channel protection (RFC 4217 §9).
func (s *session) cmdPROT(cmd rewrite.Command) error {
	if s.tls == nil {
		return s.reply(cmd, 503, "PROT requires AUTH TLS first.")
	}
	if !s.pbsz {
		return s.reply(cmd, 503, "PBSZ must come before PROT.")
	}
	if len(cmd.Arg) != 1 {
		return s.reply(cmd, 501, "PROT needs one of C, S, E, P.")
	}
	level := strings.ToUpper(cmd.Arg)[0]
	if d := s.cfg.Policy.Prot(level); d != nil {
		return s.deny(cmd, d)
	}
	s.prot = level
	if level == 'P' {
		return s.reply(cmd, 200, "Protection level set to Private.")
	}
	return s.reply(cmd, 200, "Protection level set to Clear.")
}

// proxyFeatures are the features the proxy itself implements; backend
// features of the same names are replaced by these.
var proxyFeatures = []string{"AUTH TLS", "PBSZ", "PROT", "EPSV", "EPRT", "HOST"}

// droppedFeature reports whether a backend feature stays out of the FEAT
// the client sees: the proxy owns it (AUTH, PBSZ, PROT) or refuses it
// (CCC, ADAT, REIN; SSCN and CPSV, which are not in the verb table), or it
// names a verb the policy refuses this session (deny_commands, a
// read-only user's MFMT): clients need not try what will fail.
func (s *session) droppedFeature(name string) bool {
	switch name {
	case "AUTH", "PBSZ", "PROT", "CCC", "ADAT", "SSCN", "CPSV", "REIN":
		return true
	}
	v := lookupVerb(name)
	return v != nil && s.cfg.Policy.Command(v.op(""), s.readOnly) != nil
}

// cmdFEAT lists the proxy's features, merged with the backend's once it is
// connected (RFC 2389).
func (s *session) cmdFEAT(cmd rewrite.Command) error {
	var backend rewrite.Features
	if s.be != nil {
		rep, err := s.be.roundTrip(cmd, s.cfg.Timeouts.BackendReply)
		if err != nil {
			return err
		}
		backend = rewrite.ParseFEAT(rep)
	}
	return s.sendReply(cmd.Verb, backend.Merge(proxyFeatures, s.droppedFeature).Reply())
}

// cmdHOST records the virtual host the client asks for (RFC 7151). It must
// come before USER; the backend receives it only if its send_host is set.
func (s *session) cmdHOST(cmd rewrite.Command) error {
	if s.be != nil {
		return s.reply(cmd, 503, "HOST must come before USER.")
	}
	host, err := rewrite.ParseHOST(cmd.Arg)
	if err != nil {
		s.log.Info("bad HOST argument", zap.Error(err))
		return s.reply(cmd, 501, "HOST needs a host name or an [address].")
	}
	s.setHost(host)
	return s.reply(cmd, 220, "HOST "+host+" accepted.")
}

// setHost records the session's HOST ("" for none) and the loggers' field
// for it.
func (s *session) setHost(host string) {
	s.host = host
	s.base = s.srv.log.With(zap.String("session", s.id), zap.Stringer("client", s.client.addr),
		zap.String("listener", s.lcfg.Name))
	if host != "" {
		s.base = s.base.With(zap.String("host", host))
	}
	s.log = s.base
}

// cmdQUIT ends the session; the backend is told QUIT too (best effort).
func (s *session) cmdQUIT(cmd rewrite.Command) error {
	if s.be != nil {
		if rep, err := s.be.roundTrip(cmd, 5*time.Second); err != nil {
			s.log.Debug("backend QUIT failed", zap.Error(err))
		} else {
			s.log.Debug("backend QUIT", zap.Int("code", rep.Code))
		}
	}
	s.reply(cmd, 221, "Goodbye.")
	return errQuit
}

// cmdREST checks the restart offset (a non-negative decimal that fits in
// 63 bits: a negative, huge or non-numeric one gets 501; REST STREAM's
// offsets are byte counts, RFC 3659 §5) and holds it. The backend gets it
// right before the RETR or STOR it belongs to (cmdTransfer): forwarded at
// once, it would outlive a transfer command the proxy refuses (no PASV,
// read-only, PROT), which the backend never sees, and shift the next
// transfer. The next transfer command takes it, used or refused.
func (s *session) cmdREST(cmd rewrite.Command) error {
	// Digits only: ParseInt alone would take a sign.
	n, err := strconv.ParseInt(cmd.Arg, 10, 64)
	if err != nil || strings.Trim(cmd.Arg, "0123456789") != "" {
		return s.reply(cmd, 501, "REST needs a byte offset: a number from 0.")
	}
	s.rest = n
	return s.reply(cmd, 350, fmt.Sprintf("Restart position accepted (%d); send RETR or STOR.", n))
}

// workDir is the backend's working directory as far as the session
// knows it: from its last 257 reply to PWD, or "" when not known (before
// one, and after a CWD). Transfers are recorded by full path (fullPath).
type workDir struct{ dir string }

// notePWD takes the working directory from a 257 reply to PWD.
func (w *workDir) notePWD(rep *rewrite.Reply) {
	if dir, err := rewrite.ParsePWD(rep); err == nil && dir != "" {
		w.dir = dir
	}
}

// noteCWD forgets the working directory once CWD or CDUP moved it: the
// server resolves the path (symbolic links, its chroot) and the next
// PWD says where it went.
func (w *workDir) noteCWD(rep *rewrite.Reply) {
	if rep.Positive() {
		w.dir = ""
	}
}

// learn asks the backend be for its working directory when it is not
// known, so that a transfer can be recorded by its full path (fullPath):
// one round trip at the first file transfer of a session and after each
// CWD. It must run before the transfer command (the backend's control
// connection is the transfer's after it); a failure leaves it unknown.
func (w *workDir) learn(be *backendConn, timeout time.Duration, log *zap.Logger) error {
	if w.dir != "" {
		return nil
	}
	rep, err := be.roundTrip(rewrite.Command{Verb: "PWD"}, timeout)
	if err != nil {
		return err
	}
	w.notePWD(rep)
	if w.dir == "" {
		log.Debug("no working directory from the backend; transfers keep their relative names", zap.String("reply", rep.String()))
	}
	return nil
}

// fullPath is name (a transfer's argument, or STOU's chosen name) as a
// full path on the backend, as vsftpd logs it: joined to the working
// directory when relative and that is known.
func (w *workDir) fullPath(name string) string {
	if name == "" || strings.HasPrefix(name, "/") || w.dir == "" {
		return name
	}
	return path.Join(w.dir, name)
}

// cmdTYPE forwards TYPE and notes whether transfers are now binary.
func (s *session) cmdTYPE(cmd rewrite.Command) error {
	rep, err := s.forward(cmd)
	if err == nil && rep.Positive() {
		t := strings.ToUpper(strings.TrimSpace(cmd.Arg))
		s.binary = strings.HasPrefix(t, "I") || strings.HasPrefix(t, "L")
	}
	return err
}

// cmdNOOP keeps the backend connection alive once there is one.
func (s *session) cmdNOOP(cmd rewrite.Command) error {
	if s.be == nil {
		return s.reply(cmd, 200, "NOOP ok.")
	}
	return s.cmdForward(cmd)
}

// ---- everything else goes to the backend ----

// cmdForward sends a command to the backend and relays its replies.
func (s *session) cmdForward(cmd rewrite.Command) error {
	_, err := s.forward(cmd)
	return err
}

// forward sends cmd to the backend and relays every reply up to the final
// one, which it returns. A 421 from the backend ends the session after it
// is relayed.
func (s *session) forward(cmd rewrite.Command) (*rewrite.Reply, error) {
	return s.forwardChecked(cmd, nil)
}

// forwardChecked is forward with check looking at each reply before it is
// relayed; when check reports the reply handled, forwarding stops and
// forwardChecked returns a nil reply and check's error.
func (s *session) forwardChecked(cmd rewrite.Command, check func(rewrite.Command, *rewrite.Reply) (bool, error)) (*rewrite.Reply, error) {
	err := s.be.send(cmd)
	s.auditHeld()
	if err != nil {
		return nil, err
	}
	for {
		rep, err := s.be.read(s.cfg.Timeouts.BackendReply)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if handled, err := check(cmd, rep); handled {
				return nil, err
			}
		}
		if err := s.sendReply(cmd.Verb, rep); err != nil {
			return nil, err
		}
		if rep.Code == 421 {
			s.log.Info("backend closed the session", zap.String("reply", rep.String()))
			return nil, fmt.Errorf("%w: backend sent 421", errQuit)
		}
		if rep.Final() {
			return rep, nil
		}
	}
}

// ---- replies to the client ----

// reply sends a one-line reply of the proxy's own to cmd.
func (s *session) reply(cmd rewrite.Command, code int, text string) error {
	return s.sendReply(cmd.Verb, rewrite.NewReply(code, text))
}

// sendReply sends rep as the answer to verb and records it, after the
// client has it: the audit write is not part of the round trip.
func (s *session) sendReply(verb string, rep *rewrite.Reply) error {
	err := s.send(verb, rep)
	if rep.Final() {
		s.audit.Reply(verb, rep.Code)
	}
	return err
}

// send writes rep to the client. It is safe to call from the transfer
// goroutine.
func (s *session) send(verb string, rep *rewrite.Reply) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.ctrl.Write(rep.Wire())
	if err != nil {
		s.log.Debug("reply not delivered", zap.String("verb", verb), zap.Int("code", rep.Code), zap.Error(err))
	}
	return err
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
	if x := s.currentTransfer(); x != nil {
		x.cancel()
	}
	if s.be != nil {
		s.be.close() // also ends a transfer's wait for its final reply
	}
	s.data.drop()
	s.wg.Wait()
	s.uncount()
	s.wmu.Lock()
	s.raw.SetWriteDeadline(time.Now().Add(time.Second))
	s.ctrl.Close() // with TLS, sends close_notify first
	s.wmu.Unlock()
	s.raw.Close()
	d := time.Since(s.start)
	s.log.Info("session closed", zap.String("reason", how), zap.Duration("duration", d),
		zap.Int64("bytes_down", s.bytesDown.Load()), zap.Int64("bytes_up", s.bytesUp.Load()))
	s.audit.End(s.user, d, how, s.bytesDown.Load(), s.bytesUp.Load())
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
