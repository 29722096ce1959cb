package proxy

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Login: USER and PASS, the policy on names, the backend's answer, the
// accounting of sessions per user and of failed logins (bans).
//
// A name the policy refuses (deny_users, allow_users) is answered as a
// wrong password is: 331 at USER, 530 at PASS, with the same texts and,
// as near as the proxy can tell, the same delays, so a stranger cannot
// tell a refused name from a wrong password. No backend sees the name.
// The audit keeps the real reason.

// The replies to a login, the same whoever answers: the backend's own
// texts (pure-ftpd's 331 names the user, vsftpd's does not) would tell a
// name the backend saw from one the proxy refused.
const (
	textPasswordRequired = "Password required."
	textLoginIncorrect   = "Login incorrect."
)

// A login is the session's USER and PASS and their accounting: the name
// the client gave, the route that chose its backend, its place under
// max_sessions_per_user, and the policy's refusal of its name. The
// session goroutine owns it; whether the session has logged in, which
// other goroutines read, is the session's (loggedIn, under its mu).
type login struct {
	s     *session
	user  string
	route string // the route that chose the backend, if any
	// scan is the scan block the session's uploads go through (the
	// route's or the listener's), nil for none.
	scan     *config.Scan
	readOnly bool // the logged-in user may not change files
	// counted is the user key (policy.Rules.Key) counted toward
	// max_sessions_per_user.
	counted string
	// refused is the policy's refusal of user, answered as a wrong
	// password would be; refusedBackend is the backend whose delays that
	// answer mimics.
	refused        *policy.Denial
	refusedBackend string
	// edge is set at USER when an auth block checks this login
	// (edgeauth.go); backendUser is the name the backend logged in.
	edge        *edgeLogin
	backendUser string
}

// cmdUSER and cmdPASS are the verb table's handlers of USER and PASS.
func cmdUSER(s *session, cmd rewrite.Command) error { return s.login.handleUSER(cmd) }
func cmdPASS(s *session, cmd rewrite.Command) error { return s.login.handlePASS(cmd) }

// handleUSER applies the login policy, connects the backend on the first
// USER, and forwards the command.
func (l *login) handleUSER(cmd rewrite.Command) error {
	s := l.s
	start := time.Now()
	if d := policy.UserName(cmd.Arg); d != nil {
		return s.deny(cmd, d)
	}
	if s.loggedIn {
		// The policy, the route and the session count all belong to the
		// user who logged in; a new user needs a new session.
		return s.reply(cmd, 503, "Already logged in; reconnect to log in as another user.")
	}
	l.refused = nil
	d := s.cfg.Policy.Login(cmd.Arg, s.tls != nil)
	if d != nil && d.Rule == policy.RuleRequireTLS {
		return s.deny(cmd, d)
	}
	b, route := l.chooseBackend(cmd.Arg)
	l.edge = nil
	if e := l.edgeFor(route, b); e != nil {
		return l.edgeUSER(cmd, e, d, route)
	}
	if d != nil {
		return l.refuseName(cmd, d, b, start)
	}
	key := s.cfg.Policy.Key(cmd.Arg)
	// Checked again, and counted, at the backend's 230; this early check
	// spares the backend a password when the user is already at its bound.
	if d := s.cfg.Policy.Sessions(s.srv.userSessions(key, 0)); d != nil && l.counted != key {
		return s.deny(cmd, d)
	}
	if s.be != nil && s.be.cfg != b {
		// A second USER whose route leads elsewhere: the first backend
		// is left behind.
		s.log.Info("user routed to another backend; reconnecting", zap.String("backend", b.Name))
		s.be.close()
		s.be = nil
	}
	connected := s.be == nil
	if s.be == nil {
		if ok, err := l.connect(cmd, b, cmd.Arg); !ok {
			return err
		}
	}
	l.route, l.scan = route, s.scanOf(route)
	l.uncount()
	l.user, l.readOnly = cmd.Arg, false
	s.log = s.base.With(zap.String("user", cmd.Arg))
	rep, err := s.forwardChecked(cmd, func(cmd rewrite.Command, rep *rewrite.Reply) (bool, error) {
		if rep.Code == 331 {
			s.srv.loginDelays.add(b.Name, delayUser(connected), time.Since(start))
			return true, s.reply(cmd, 331, textPasswordRequired)
		}
		return l.admit(cmd, rep) // 230: logged in without a password
	})
	if err != nil || rep == nil {
		return err
	}
	return l.result(rep)
}

// refuseName answers USER for a name the policy refuses as the backend b
// would answer a name it knows: 331 after about as long as b takes. PASS
// then gets 530 (handlePASS).
func (l *login) refuseName(cmd rewrite.Command, d *policy.Denial, b *config.Backend, start time.Time) error {
	s := l.s
	s.log.Info("policy denied", zap.String("rule", d.Rule), zap.String("verb", cmd.Verb), zap.String("user", cmd.Arg))
	s.denied(d.Rule, cmd.Verb, "user "+cmd.Arg+": answered as a wrong password")
	l.uncount()
	l.user, l.readOnly, l.refused, l.refusedBackend = cmd.Arg, false, d, b.Name
	s.srv.loginDelays.wait(b.Name, delayUser(s.be == nil), start)
	return s.reply(cmd, 331, textPasswordRequired)
}

// chooseBackend applies the route blocks to the session (user, HOST, TLS
// SNI); without a match the listener's backend serves it.
func (l *login) chooseBackend(user string) (*config.Backend, string) {
	s := l.s
	var sni string
	if s.tls != nil {
		sni = s.tls.ConnectionState().ServerName
	}
	if rt := s.cfg.Policy.ChooseRoute(s.cfg.Routes, user, s.host, sni); rt != nil {
		return s.cfg.Backends[rt.Backend], rt.Name
	}
	return s.lcfg.Backend, ""
}

// method is how this login is checked: the auth block's method, or
// methodBackend.
func (l *login) method() string {
	if l.edge != nil {
		return l.edge.auth.Method()
	}
	return methodBackend
}

// uncount gives back the session's place under max_sessions_per_user.
func (l *login) uncount() {
	s := l.s
	if l.counted != "" {
		s.srv.userSessions(l.counted, -1)
		l.counted = ""
	}
}

// handlePASS forwards the password; the audit stream never sees it. After a
// name the policy refused, it answers 530 itself, as late as the backend
// answers a wrong password.
func (l *login) handlePASS(cmd rewrite.Command) error {
	s := l.s
	start := time.Now()
	if l.edge != nil {
		if s.loggedIn {
			// Relayed, it would hand the client's password to a backend
			// that may know the client under another name.
			return s.reply(cmd, 503, "Already logged in.")
		}
		return l.edgePASS(cmd)
	}
	if d := l.refused; d != nil {
		l.refused = nil
		s.srv.loginDelays.wait(l.refusedBackend, delayPass, start)
		s.srv.metrics.logins.WithLabelValues(methodBackend, "failure").Inc()
		s.log.Info("login failed", zap.String("rule", d.Rule), zap.Int("code", 530))
		s.audit.Login(audit.Login{User: l.user, Host: s.host, Code: 530, Reason: d.Rule, Method: methodBackend, Client: s.client.addr.String()})
		if err := s.reply(cmd, 530, textLoginIncorrect); err != nil {
			return err
		}
		return l.failed()
	}
	if s.be == nil || l.user == "" {
		return s.reply(cmd, 503, "Login with USER first.")
	}
	if d := s.cfg.Policy.Login(l.user, s.tls != nil); d != nil {
		return s.deny(cmd, d)
	}
	backend := s.be.cfg.Name
	rep, err := s.forwardChecked(cmd, func(cmd rewrite.Command, rep *rewrite.Reply) (bool, error) {
		if rep.Code == 530 {
			s.srv.loginDelays.add(backend, delayPass, time.Since(start))
			s.log.Info("backend refused the login", zap.String("reply", rep.String()))
			if err := s.reply(cmd, 530, textLoginIncorrect); err != nil {
				return true, err
			}
			return true, l.result(rep)
		}
		return l.admit(cmd, rep)
	})
	if err != nil || rep == nil {
		return err
	}
	return l.result(rep)
}

// admit counts a backend's 230 toward max_sessions_per_user before it
// is relayed. Over the bound (two logins raced past USER) the backend
// session is ended and the client gets 530 instead: the reply is handled.
func (l *login) admit(cmd rewrite.Command, rep *rewrite.Reply) (bool, error) {
	s := l.s
	if rep.Code != 230 || l.counted != "" {
		return false, nil
	}
	key := s.cfg.Policy.Key(l.user)
	held := s.srv.userSessions(key, +1)
	if d := s.cfg.Policy.Sessions(held - 1); d != nil {
		s.srv.userSessions(key, -1)
		s.be.roundTrip(rewrite.Command{Verb: "QUIT"}, 5*time.Second)
		s.be.close()
		s.be = nil
		s.audit.Login(audit.Login{User: l.user, Host: s.host, Route: l.route, Code: d.Code, Reason: d.Rule, Method: l.method(),
			BackendUser: l.backendUser, Client: s.client.addr.String()})
		return true, s.deny(cmd, d)
	}
	l.counted = key
	return false, nil
}

// result records the backend's answer to USER or PASS. A failure
// counts toward a ban of the client's address (failed).
func (l *login) result(rep *rewrite.Reply) error {
	s := l.s
	switch {
	case rep.Code == 230:
		s.srv.metrics.logins.WithLabelValues(l.method(), "success").Inc()
		s.mu.Lock()
		s.loggedIn = true
		s.mu.Unlock()
		s.bind.login(bindOwner{client: s.client.addr.Addr(), user: s.cfg.Policy.Key(l.user), backend: s.be.cfg.Name})
		l.readOnly = l.readOnly || s.cfg.Policy.ReadOnly(l.user) // an auth block's group may have set it
		s.setView(func(v *sessionView) { v.User = l.user })
		agentName, agentAddr := s.be.agent()
		fields := []zap.Field{zap.String("backend", s.be.cfg.Name), zap.Stringer("backend_address", s.be.remote),
			zap.String("route", l.route), zap.Bool("read_only", l.readOnly), zap.String("method", l.method()),
			zap.String("backend_user", l.backendUser)}
		if agentName != "" {
			fields = append(fields, zap.String("agent", agentName), zap.String("agent_address", agentAddr))
		}
		s.log.Info("login", fields...)
		s.audit.Login(audit.Login{User: l.user, Host: s.host, OK: true, Backend: s.be.cfg.Name,
			BackendAddress: s.be.remote.String(), Route: l.route, ReadOnly: l.readOnly, Code: rep.Code,
			Method: l.method(), BackendUser: l.backendUser, Client: s.client.addr.String(),
			Agent: agentName, AgentAddress: agentAddr, CertSubject: s.clientCertSubject()})
	case rep.Code >= 400:
		s.srv.metrics.logins.WithLabelValues(l.method(), "failure").Inc()
		l.uncount()
		agentName, agentAddr := s.be.agent()
		s.audit.Login(audit.Login{User: l.user, Host: s.host, Backend: s.be.cfg.Name,
			BackendAddress: s.be.remote.String(), Route: l.route, Code: rep.Code, Method: l.method(), Client: s.client.addr.String(),
			Agent: agentName, AgentAddress: agentAddr})
		if hint := misconfiguration(rep); hint != "" {
			// The backend refuses every login this way: no guess was
			// wrong, so no ban counts it; the operator must act.
			s.log.Warn("login refused by the backend's configuration, not a wrong password", zap.Int("code", rep.Code),
				zap.String("reply", rep.String()), zap.String("backend", s.be.cfg.Name), zap.String("hint", hint))
			return nil
		}
		s.log.Info("login failed", zap.Int("code", rep.Code), zap.String("reply", rep.String()))
		return l.failed()
	}
	return nil
}

// failed counts a failed login from the client's address, and bans
// the address (its IPv6 prefix) when the count reaches the bans block's
// bound. The failure that starts a ban ends this session and every other
// session from the address that has not logged in (errBanned, 421); so
// does a failure from an address already banned, whose session was opened
// before the ban.
func (l *login) failed() error {
	s := l.s
	now := time.Now()
	until := s.srv.state.failure(s.client.addr.Addr(), now)
	if until.IsZero() {
		if s.srv.state.banned(s.client.addr.Addr(), now) != nil {
			s.log.Info("login failed from a banned address; closing")
			return errBanned
		}
		return nil
	}
	key := s.srv.state.banKey(s.client.addr.Addr())
	banned := key.String() // an IPv6 prefix, as 2001:db8:1:2::/64
	if key.IsSingleIP() {
		banned = key.Addr().String()
	}
	s.log.Warn("address banned after failed logins", zap.Stringer("address", s.client.addr.Addr()),
		zap.String("banned", banned), zap.Time("until", until), zap.Int("failures", s.cfg.Bans.Failures))
	s.audit.Ban(banned, until, s.cfg.Bans.Failures)
	s.srv.metrics.bans.Inc()
	s.srv.banSessions(key, s)
	return errBanned
}

// misconfiguration recognises a backend's refusal of every login, which
// says the proxy and the backend disagree rather than that a password was
// wrong, and returns what to change; "" for anything else. Servers word
// these differently and give them no code of their own, so their texts
// are read (vsftpd: "Non-anonymous sessions must use encryption.", "This
// FTP server is anonymous only."; ProFTPD: "SSL/TLS required on the
// control channel"; pure-ftpd: "cleartext sessions … are not accepted").
func misconfiguration(rep *rewrite.Reply) string {
	text := strings.ToLower(rep.String())
	switch {
	case strings.Contains(text, "encryption"), strings.Contains(text, "ssl/tls required"),
		strings.Contains(text, "tls required"), strings.Contains(text, "cleartext"):
		return "the backend requires TLS: set the backend block's tls to \"explicit\" (or \"implicit\"), or turn TLS off on the backend"
	case strings.Contains(text, "anonymous only"):
		return "the backend takes anonymous logins only: enable local users on it"
	}
	return ""
}

// ---- mimicking the backend's delays ----

// delayKind names what a login delay measures.
type delayKind int

const (
	delayUserConnect delayKind = iota // USER that also connected the backend
	delayUserOnly                     // USER on a connected backend
	delayPass                         // PASS refused with 530
	numDelayKinds
)

func delayUser(connected bool) delayKind {
	if connected {
		return delayUserConnect
	}
	return delayUserOnly
}

// defaultDelays stand in until a backend has answered a few logins: what
// a local backend takes to connect and answer USER, and vsftpd's delay
// before a failed login's 530 (delay_failed_login, 1 s by default).
var defaultDelays = [numDelayKinds]time.Duration{5 * time.Millisecond, time.Millisecond, time.Second}

// maxDelay bounds any mimicked delay.
const maxDelay = 5 * time.Second

// loginDelays remembers how long each backend took to answer logins, so
// that a refused name can be answered after a delay drawn from the same
// distribution (a random one of the last delaySamples).
type loginDelays struct {
	mu      sync.Mutex
	samples map[string]*[numDelayKinds]delayRing // by backend name
}

const delaySamples = 32

type delayRing struct {
	d [delaySamples]time.Duration
	n int // samples recorded, all time
}

func (l *loginDelays) add(backend string, k delayKind, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.samples == nil {
		l.samples = map[string]*[numDelayKinds]delayRing{}
	}
	r := l.samples[backend]
	if r == nil {
		r = new([numDelayKinds]delayRing)
		l.samples[backend] = r
	}
	r[k].d[r[k].n%delaySamples] = d
	r[k].n++
}

// delay draws a delay for backend's answers of kind k.
func (l *loginDelays) delay(backend string, k delayKind) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := defaultDelays[k]
	if r := l.samples[backend]; r != nil && r[k].n > 0 {
		d = r[k].d[rand.IntN(min(r[k].n, delaySamples))]
	}
	return min(d, maxDelay)
}

// wait sleeps until a delay drawn for backend's answers of kind k has
// passed since start.
func (l *loginDelays) wait(backend string, k delayKind, start time.Time) {
	time.Sleep(time.Until(start.Add(l.delay(backend, k))))
}

// connect connects the session to backend b for user's login (the queue,
// the dial, the greeting: dialer.go). A QUIT read while the login waited
// in the queue ends it: cmd gets its 530 (every command gets its reply, in
// order: this one, then the QUIT that readCommand reads next). ok is false
// when the session has no backend: err is then the reply's error or the
// connection's.
func (l *login) connect(cmd rewrite.Command, b *config.Backend, user string) (ok bool, err error) {
	s := l.s
	be, err := s.dialer().connect(b, user, s)
	if errors.Is(err, errQueueQuit) {
		return false, s.reply(cmd, 530, "Login abandoned: QUIT received while waiting for the FTP server.")
	}
	if err != nil {
		return false, err
	}
	s.be = be
	s.watchAgent(be)
	s.setView(func(v *sessionView) { v.Backend, v.Server = b.Name, be.server.addr })
	return true, nil
}
