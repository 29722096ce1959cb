package proxy

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// The data commands: PASV, EPSV, PORT and EPRT set up the client's data
// connection for the next transfer; RETR, STOR, LIST and the other
// transfer commands start one (transfer.go); ABOR ends it.

// dataChannel is what the data commands set up for the next transfer;
// the session goroutine owns it.
type dataChannel struct {
	pending *pendingData   // the client data connection set up by PASV/EPSV
	active  netip.AddrPort // the address given by PORT/EPRT
	epsvAll bool           // EPSV ALL: only EPSV from now on (RFC 2428 §4)
	// told: a 227 or 229 of this session has been logged at info level;
	// the later ones are logged at debug level.
	told bool
}

// take hands the next transfer what was set up, and forgets it.
func (d *dataChannel) take() (*pendingData, netip.AddrPort) {
	p, active := d.pending, d.active
	d.pending, d.active = nil, netip.AddrPort{}
	return p, active
}

// drop abandons a data connection set up by PASV, EPSV, PORT or EPRT and
// not used by a transfer.
func (d *dataChannel) drop() {
	d.pending.close()
	d.pending = nil
	d.active = netip.AddrPort{}
}

// dataConnector is what sets up the session's client data connections,
// checked against the session as it is now (logged in); verb is the
// command that set the connection up (PASV, EPSV) or, in active mode, the
// transfer command that dials it: refusals are audited under it.
func (s *session) dataConnector(verb string) *dataConnector {
	return &dataConnector{client: s.client, timeouts: s.cfg.Timeouts, requireReuse: s.lcfg.RequireSessionReuse,
		bind: s.bind, log: s.log, denied: s.denied, wg: &s.wg, verb: verb}
}

// cmdPassive answers PASV and EPSV: it opens a listener on one of the
// proxy's passive ports and advertises it. The backend is asked for its own
// passive port only when the transfer command comes.
func (s *session) cmdPassive(cmd rewrite.Command) error {
	local := s.client.local.Addr()
	if cmd.Verb == "EPSV" && cmd.Arg != "" {
		switch {
		case strings.EqualFold(cmd.Arg, "ALL"):
			s.data.epsvAll = true // RFC 2428 §4: only EPSV from now on
			return s.reply(cmd, 200, "EPSV ALL ok.")
		case cmd.Arg == "1" && local.Is4(), cmd.Arg == "2" && local.Is6():
		case cmd.Arg == "1" || cmd.Arg == "2":
			return s.reply(cmd, 522, "Network protocol not supported, use ("+epsvProto(local)+")")
		default:
			return s.reply(cmd, 501, "EPSV argument must be 1, 2 or ALL.")
		}
	}
	if cmd.Verb == "PASV" && s.data.epsvAll {
		return s.reply(cmd, 503, "PASV refused after EPSV ALL.")
	}
	if refused, err := s.dataRefused(cmd); refused {
		return err
	}
	s.data.drop() // one pending data connection per session
	var advertise netip.Addr
	if cmd.Verb == "PASV" {
		// passive_address_overrides by the client's address, else
		// public_address, else the address the client reached.
		advertise = s.lcfg.PassiveAddress(s.client.addr.Addr())
		if !advertise.IsValid() {
			advertise = local
		}
		if !advertise.Is4() {
			return s.reply(cmd, 425, "PASV works over IPv4 only; use EPSV.")
		}
	}
	ln, err := s.ports.Listen(local)
	if err != nil {
		s.log.Warn("no passive port", zap.Error(err), zap.Int("in_use", s.ports.InUse()))
		return s.reply(cmd, 425, "No data port available; try again later.")
	}
	p := s.dataConnector(cmd.Verb).listenData(ln, s.prot == 'P')
	p.passive = passivePort{verb: cmd.Verb, advertised: advertise, port: ln.Port(), local: local}
	s.data.pending = p
	s.data.logPassive(s.log, p.passive)
	rep := rewrite.EPSVReply(ln.Port())
	if cmd.Verb == "PASV" {
		if rep, err = rewrite.PASVReply(netip.AddrPortFrom(advertise, ln.Port())); err != nil { // unreachable: advertise is IPv4
			return err
		}
	}
	return s.sendReply(cmd.Verb, rep)
}

// logPassive logs the address and port a 227 or 229 tells the client to
// connect to, and where the proxy listens for it: behind NAT or a firewall
// the two differ, and a client that never connects shows only as a 425
// (transfer.awaitClient logs the same fields then). The first of a session
// is logged at info level, the others at debug level.
func (d *dataChannel) logPassive(log *zap.Logger, pp passivePort) {
	level := zap.DebugLevel
	if !d.told {
		d.told, level = true, zap.InfoLevel
	}
	if ce := log.Check(level, "passive data port offered"); ce != nil {
		ce.Write(pp.fields()...)
	}
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

// cmdActive answers PORT and EPRT: the client listens and the proxy will
// connect to it for the next transfer (the backend leg keeps its own mode).
// policy.ActiveTarget says which targets are refused: another host (the
// FTP bounce attack, RFC 2577 §3), a privileged port, and, unless the
// listener has active_allow_local, the proxy's own host and its backends'.
func (s *session) cmdActive(cmd rewrite.Command) error {
	if s.data.epsvAll {
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
		if own, err = ownAddrs(s.client.local.Addr(), s.lcfg, s.cfg, s.be); err != nil {
			// Without the host's addresses, none can be told apart.
			s.log.Error("cannot list the host's addresses; active mode refused", zap.Error(err))
			s.denied(policy.RuleActiveAddress, cmd.Verb, "the host's addresses cannot be listed")
			return s.reply(cmd, 504, cmd.Verb+" refused: active mode is unavailable; use PASV or EPSV.")
		}
	}
	if d, why := policy.ActiveTarget(ap, s.client.addr.Addr(), own, s.lcfg.ActiveAllowLocal); d != nil {
		s.log.Warn("active-mode address refused", zap.String("verb", cmd.Verb), zap.Stringer("named", ap), zap.String("reason", why))
		s.denied(d.Rule, cmd.Verb, why)
		return s.reply(cmd, d.Code, cmd.Verb+" refused: "+d.Text)
	}
	s.data.drop()
	s.data.active = ap
	return s.reply(cmd, 200, cmd.Verb+" command successful.")
}

// ownAddrs are the addresses an active-mode data connection must not
// reach: every address of the proxy's host (its interfaces, the address
// the client reached, local, and the listener's public address) and its
// backends' (the one the session is connected to, be, and every server
// configured by address).
func ownAddrs(local netip.Addr, lc *config.Listener, cfg *config.Config, be *backendConn) ([]netip.Addr, error) {
	own := []netip.Addr{local}
	if lc.PublicAddress.IsValid() {
		own = append(own, lc.PublicAddress)
	}
	if be != nil {
		own = append(own, be.remote.Addr())
	}
	for _, b := range cfg.Backends {
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

// cmdTransfer runs a transfer command (transfer.go): backend data
// connection, command, preliminary reply; then the relay runs in its own
// goroutine while the session reads on (for ABOR). The client's data
// connection is already being accepted (passive mode) or is dialled once
// the backend said 150 (active mode).
func (s *session) cmdTransfer(cmd rewrite.Command) error {
	p, active := s.data.take()
	if d := s.cfg.Policy.Data(s.prot); d != nil {
		p.close()
		return s.deny(cmd, d)
	}
	if p == nil && !active.IsValid() {
		return s.reply(cmd, 425, "Use PASV, EPSV, PORT or EPRT first.")
	}
	v := lookupVerb(cmd.Verb)
	x := &transfer{verb: cmd.Verb, user: s.login.user, direction: v.data, file: v.xferlog, binary: s.binary, useTLS: s.prot == 'P',
		s: s, be: s.be, dialer: s.dialer(), client: p, log: s.log, timeouts: s.cfg.Timeouts, uploadEnd: s.lcfg.UploadCloseNotify,
		stop: make(chan struct{}), done: make(chan struct{})}
	if cmd.Verb == "RETR" || cmd.Verb == "STOR" {
		x.offset = s.rest // REST applies to these only (RFC 959 §4.1.3, RFC 3659 §5)
	}
	if refused, err := s.quotaRefused(cmd, x, p); refused {
		return err
	}
	if p != nil {
		if r, ok := p.earlyRefusal(s.cfg.Timeouts.TLSHandshake); ok {
			p.close()
			return x.refuseEarly(cmd, r)
		}
	}
	if v.xferlog && (cmd.Verb == "STOU" || !strings.HasPrefix(cmd.Arg, "/")) {
		if err := s.cwd.learn(s.be, s.cfg.Timeouts.BackendReply, s.log); err != nil { // for the transfer's full path
			p.close()
			return err
		}
	}
	if sc := s.login.scan; x.direction == audit.Upload && sc.Scans(cmd.Verb) {
		x.scanMode = sc.Mode.String()
		if sc.Mode == config.ScanSpool {
			return x.startSpooled(cmd, sc, active)
		}
		if ok, err := x.openScan(cmd, sc); !ok {
			return err
		}
	}
	if ok, err := x.begin(cmd, active); !ok {
		if x.scan != nil {
			x.scan.abandon()
		}
		return err
	}
	s.mu.Lock()
	s.xfer = x
	s.mu.Unlock()
	s.wg.Add(1)
	go x.run()
	return nil
}

// begin prepares the backend leg, sends the transfer command (after the
// held REST) and reads the backend's first reply; after a 150, in active
// mode, it starts connecting to the client's address active. It reports whether the
// transfer goes on: after a 150 relayed to the client, when the relay is
// the transfer goroutine's to run. Otherwise the command has had its
// answer (or the session ends with the error), and both legs are closed.
func (x *transfer) begin(cmd rewrite.Command, active netip.AddrPort) (bool, error) {
	abandon := func() {
		x.client.close()
		if x.backend != nil {
			x.backend.close()
		}
	}
	var err error
	x.backend, err = x.dialer.openData(x.be)
	if err != nil {
		abandon()
		if errors.Is(err, errBackendLost) {
			return false, err
		}
		x.log.Warn("backend data connection failed", zap.String("verb", cmd.Verb), zap.Error(err))
		return false, x.s.reply(cmd, 425, "Cannot open data connection to the FTP server.")
	}
	first, refused, err := x.sendCommand(cmd)
	if err != nil {
		abandon()
		return false, err
	}
	if refused {
		abandon()
		return false, x.s.sendReply(cmd.Verb, first)
	}
	if active.IsValid() {
		x.client = x.s.dataConnector(x.verb).dialData(active, x.useTLS)
	}
	if err := x.s.sendReply(cmd.Verb, first); err != nil {
		abandon()
		return false, err
	}
	x.path = transferPath(cmd, first)
	x.target = x.path
	if _, named := rewrite.STOUName(first); cmd.Verb == "STOU" && !named {
		x.target = ""
	}
	if x.file {
		x.path = x.s.cwd.fullPath(x.path)
	}
	x.start = time.Now()
	x.announced, x.sized = rewrite.AnnouncedSize(first)
	x.addLeg(x.backend.close)
	return true, nil
}

// sendCommand sends the transfer command cmd to the backend, after REST
// when the transfer has a restart offset, and reads the backend's first
// reply: a preliminary one (150), or, when refused reports true, the one
// that ends the transfer there (REST refused, the command refused or done
// without data). err is a failure of the backend's control connection.
func (x *transfer) sendCommand(cmd rewrite.Command) (first *rewrite.Reply, refused bool, err error) {
	if x.offset > 0 {
		rep, err := x.be.roundTrip(rewrite.Command{Verb: "REST", Arg: strconv.FormatInt(x.offset, 10)}, x.timeouts.BackendReply)
		if err != nil {
			return nil, false, err
		}
		if rep.Code != 350 {
			x.log.Info("backend refused REST", zap.Int64("offset", x.offset), zap.String("reply", rep.String()))
			return rep, true, nil
		}
	}
	if err := x.be.send(cmd); err != nil {
		return nil, false, err
	}
	first, err = x.be.read(x.timeouts.BackendReply)
	if err != nil {
		return nil, false, err
	}
	// A final reply: refused (550…), or done without data. vsftpd,
	// pure-ftpd and ProFTPD forget a REST when they refuse its command
	// (TestRESTHeldUntilItsTransfer).
	return first, first.Final(), nil
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

// refuseEarly answers a transfer command whose data connection was
// already refused for its TLS session (earlyRefusal) with 522, without the
// backend: it never sees the command, so no empty file is left behind an
// upload. The data connection ends with close_notify.
func (x *transfer) refuseEarly(cmd rewrite.Command, r dataResult) error {
	var nr *errNotResumed
	errors.As(r.err, &nr)
	x.closeClientLeg(r.refused)
	s := x.s
	x.log.Info("client data connection failed", zap.String("verb", cmd.Verb), zap.Error(r.err))
	s.audit.Transfer(audit.Transfer{
		Verb: cmd.Verb, Direction: x.direction, Path: cmd.Arg, Result: audit.Failed, Announced: -1, Code: 522,
		Client: s.client.addr.Addr().String(), User: s.login.user, Binary: x.binary, File: x.file,
	})
	s.srv.metrics.transfer(x.direction, audit.Failed, 0, 0)
	return s.reply(cmd, 522, notResumedText(nr))
}

// currentTransfer is the transfer in progress, or nil.
func (s *session) currentTransfer() *transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xfer
}

// transferEnded hands the session back from the transfer goroutine, after
// its last reply. lost, if not nil, is why the transfer lost the backend's
// control connection: the session cannot go on, and ends with it.
func (s *session) transferEnded(lost error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.xfer = nil
	if lost != nil {
		s.fatal = lost
	}
	if s.draining || s.fatal != nil || s.killed {
		s.raw.SetReadDeadline(time.Now()) // let the session end now
	} else {
		// The transfer was activity: the idle time counts from its end.
		s.raw.SetReadDeadline(time.Now().Add(s.cfg.Timeouts.Idle))
	}
}

// cmdABOR with no transfer running: forwarded, or answered locally before
// login.
func (s *session) cmdABOR(cmd rewrite.Command) error {
	if s.be == nil {
		return s.reply(cmd, 225, "No transfer to abort.")
	}
	s.data.drop()
	s.rest = 0
	_, err := s.forward(cmd)
	return err
}
