package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/userfile"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Edge authentication: with an auth block on the listener or the route,
// the proxy checks USER and PASS itself and connects to the backend only
// once it has accepted them. USER is answered 331 by the proxy for every
// name; PASS is checked against the user file (for an unknown name or a
// name the policy refuses, against a dummy hash as costly as a real one,
// so that the answer takes as long); a refusal is 530 "Login incorrect."
// and counts toward a ban, exactly as a backend's refusal does. Only then
// is a backend dialled, and logged in with the mapped account
// (backend_user and its password) or the client's own credentials. With
// a TOTP secrets file the password ends with the current code, checked
// after the password (for every failure alike), and refused once used.

// Why the proxy refused an edge login (the audit's reason).
const (
	reasonUnknownUser    = "unknown_user"
	reasonWrongPassword  = "wrong_password"
	reasonBackendRefused = "backend_refused" // the edge accepted; the backend refused the mapped login
	reasonTOTPMissing    = "totp_missing"    // the user has no TOTP secret
	reasonTOTPInvalid    = "totp_invalid"    // no code, or not the code of this time
	reasonTOTPReused     = "totp_reused"     // the code was already used
	// reasonNoBackendAccount: a certificate-only login has no backend
	// account to log in with (the client's password was not checked).
	reasonNoBackendAccount = "no_backend_account"
)

// methodBackend is the method of a login the backend checked (no auth
// block): the audit's and the metrics' name for it.
const methodBackend = "backend"

// edgeLogin is what an auth block decides about a session's login, set
// at USER when its route or listener has one.
type edgeLogin struct {
	auth    *config.Auth
	backend *config.Backend      // the backend USER's route chose
	mapped  *config.BackendLogin // the backend account, or nil: the client's own
}

// edgeFor returns the edge login of a session routed by route to b, or
// nil when no auth block covers it: the route's auth, else the
// listener's; the route's backend account, else the auth block's.
func (l *login) edgeFor(route string, b *config.Backend) *edgeLogin {
	s := l.s
	a := s.lcfg.Auth
	var mapped *config.BackendLogin
	if rl := s.cfg.RouteLogins[route]; route != "" && rl != nil {
		if rl.Auth != nil {
			a = rl.Auth
		}
		mapped = rl.Backend
	}
	if a == nil {
		return nil
	}
	if mapped == nil {
		mapped = a.Backend
	}
	return &edgeLogin{auth: a, backend: b, mapped: mapped}
}

// edgeUSER answers USER for a login an auth block checks: 331 for every
// name at once, known or not, refused by policy or not; no backend is
// contacted.
func (l *login) edgeUSER(cmd rewrite.Command, e *edgeLogin, d *policy.Denial, route string) error {
	s := l.s
	if d != nil {
		s.log.Info("policy denied", zap.String("rule", d.Rule), zap.String("verb", cmd.Verb), zap.String("user", cmd.Arg))
		s.denied(d.Rule, cmd.Verb, "user "+cmd.Arg+": answered as a wrong password")
	} else if d := s.cfg.Policy.Sessions(s.srv.userSessions(s.cfg.Policy.Key(cmd.Arg), 0)); d != nil {
		return s.deny(cmd, d)
	}
	if s.be != nil {
		// A first USER, on a route the backend checks, connected it.
		s.be.close()
		s.be = nil
	}
	l.uncount()
	l.user, l.readOnly, l.refused, l.route, l.edge, l.backendUser = cmd.Arg, false, d, route, e, ""
	l.scan = s.scanOf(route)
	s.log = s.base.With(zap.String("user", cmd.Arg))
	return s.reply(cmd, 331, textPasswordRequired)
}

// edgePASS checks the password against the auth block and, once it is
// accepted, connects the backend and logs in there.
func (l *login) edgePASS(cmd rewrite.Command) error {
	s := l.s
	e := l.edge
	refused := l.refused
	l.refused = nil
	if refused == nil {
		if d := s.cfg.Policy.Login(l.user, s.tls != nil); d != nil {
			return s.deny(cmd, d)
		}
	}
	v := l.edgeCheck(e, cmd.Arg, refused)
	if v.err != nil {
		return l.edgeUnavailable(cmd, v)
	}
	if v.reason != "" {
		return l.edgeRefuse(cmd, v)
	}
	// Accepted at the edge: only now is a backend connection opened.
	if d := s.cfg.Policy.Sessions(s.srv.userSessions(s.cfg.Policy.Key(l.user), 0)); d != nil {
		return s.deny(cmd, d)
	}
	return l.edgeBackendLogin(cmd, e, v)
}

// edgeVerdict is an auth block's answer about a login.
type edgeVerdict struct {
	// reason is why the login is refused (the audit's reason), or empty
	// when it is accepted.
	reason string
	// password is the client's password without a TOTP code: what the
	// backend gets when no backend account is mapped.
	password string
	// method is the audit's and the metrics' name of how the login was
	// checked: "file", "ldap", "hook", "cert", "cert+file", "…+totp".
	method string
	// err is set when the service that decides (a directory, a hook)
	// gave no answer: the client gets 421, no ban counts it, and no
	// backend connection is opened. reason is then set too.
	err error
	// readOnly: the source makes the login read-only (an ldap group, a
	// hook's read_only), on top of the policy's read_only_users.
	readOnly bool
	// backend, if not nil, is the backend the source chose (an ldap
	// group's route, a hook's "backend"), in place of the one USER's
	// route chose; route is the route's name when a route chose it (its
	// scan block then applies), else empty (the session's stays).
	backend *config.Backend
	route   string
	// mapped, if not nil, is the backend account the source chose (the
	// route's, a hook's backend_user), in place of the auth block's or
	// USER's route's. nil: unchanged.
	mapped *config.BackendLogin
}

// routeVerdict sends the login of v through the route block named name,
// as a source of the verdict chose it (an ldap group's route, a hook's
// "route"): the route's backend, its name (so its scan block applies) and
// its backend account, if it has one. false: no route block has that
// name, and v is unchanged.
func (s *session) routeVerdict(name string, v *edgeVerdict) bool {
	rt := s.routeNamed(name)
	if rt == nil || s.cfg.Backends[rt.Backend] == nil {
		return false
	}
	v.backend, v.route = s.cfg.Backends[rt.Backend], rt.Name
	if rl := s.cfg.RouteLogins[name]; rl != nil && rl.Backend != nil {
		v.mapped = rl.Backend
	}
	return true
}

// routeNamed is the route block named name in the session's
// configuration, or nil ("" names none).
func (s *session) routeNamed(name string) *policy.Route {
	if name == "" {
		return nil
	}
	for i := range s.cfg.Routes {
		if s.cfg.Routes[i].Name == name {
			return &s.cfg.Routes[i]
		}
	}
	return nil
}

// edgeCheck checks arg, the PASS argument, for l.user against e's auth
// block: the client certificate (cert block), then the password source
// (user file, directory or hook; none with cert mode "cert"), then the
// TOTP code. refused, if not nil, is the policy's refusal of the name at
// USER: the answer is then no, after the same work as for any other name
// (a user file's dummy hash, a bind to a DN that does not exist, the
// hook's round trip).
func (l *login) edgeCheck(e *edgeLogin, arg string, refused *policy.Denial) edgeVerdict {
	s := l.s
	a := e.auth
	password, code := arg, ""
	if a.TOTP != nil {
		password, code = userfile.SplitCode(arg)
	}
	v := edgeVerdict{password: password}
	if refused != nil {
		v.reason = refused.Rule
	}
	if a.Cert != nil && v.reason == "" {
		v.reason = l.certCheck(e)
	}
	switch {
	case a.Hook != nil:
		if v.reason == "" || refused != nil {
			l.hookCheck(e, password, &v)
		}
		if refused != nil && v.err == nil {
			// Asked all the same, its answer ignored: the reply takes
			// as long as for a name the policy lets through.
			v.reason, v.backend, v.route, v.mapped, v.readOnly = refused.Rule, nil, "", nil, false
		}
	case a.LDAP != nil:
		if v.reason == "" || refused != nil {
			reason := v.reason
			v = l.edgeLDAP(e, password, refused != nil)
			if reason != "" && v.err == nil {
				v.reason = reason
			}
		}
	case a.Users != nil && !a.CertOnly():
		known, ok := s.srv.verifyPassword(s.srv.userFile(a), l.user, password, refused != nil)
		switch {
		case v.reason != "":
		case !known:
			v.reason = reasonUnknownUser
		case !ok:
			v.reason = reasonWrongPassword
		}
	}
	v.method = a.Method()
	if a.TOTP != nil && v.err == nil {
		// Checked whatever the password's outcome: the same work, and
		// the same answer, for every failure.
		step, hasSecret, codeOK := a.TOTP.Check(l.user, code, time.Now())
		switch {
		case v.reason != "":
		case !hasSecret:
			v.reason = reasonTOTPMissing
		case !codeOK:
			v.reason = reasonTOTPInvalid
		case !s.srv.totpUse(a.Name, l.user, step):
			v.reason = reasonTOTPReused
		}
	}
	return v
}

// edgeUnavailable answers a login whose deciding service (a directory, a
// hook) gave no answer (v.err): 421, logged, audited, counted, and the
// session ends; no ban counts it, no backend is contacted, and nothing
// else is tried in its place. Not 530: the client did nothing wrong, and
// a 530 would tell its user the password is wrong, count toward a ban,
// and stop scripts that would retry a 421 later.
func (l *login) edgeUnavailable(cmd rewrite.Command, v edgeVerdict) error {
	s := l.s
	s.srv.metrics.logins.WithLabelValues(v.method, "unavailable").Inc()
	s.log.Info("login failed", zap.String("method", v.method), zap.String("reason", v.reason), zap.Int("code", 421))
	s.audit.Login(audit.Login{User: l.user, Host: s.host, Route: l.route, Code: 421, Reason: v.reason,
		Method: v.method, Client: s.client.addr.String(), CertSubject: s.clientCertSubject()})
	l.edge = nil
	s.reply(cmd, 421, "Service not available: the authentication service did not answer; try again later.")
	return fmt.Errorf("%w: %s", errQuit, v.reason)
}

// edgeRefuse answers a login the auth block refused for v.reason: 530,
// logged, audited, counted toward a ban.
func (l *login) edgeRefuse(cmd rewrite.Command, v edgeVerdict) error {
	s := l.s
	method, reason := v.method, v.reason
	s.srv.metrics.logins.WithLabelValues(method, "failure").Inc()
	s.log.Info("login failed", zap.String("method", method), zap.String("reason", reason), zap.Int("code", 530))
	s.audit.Login(audit.Login{User: l.user, Host: s.host, Route: l.route, Code: 530, Reason: reason,
		Method: method, Client: s.client.addr.String(), CertSubject: s.clientCertSubject()})
	if err := s.reply(cmd, 530, textLoginIncorrect); err != nil {
		return err
	}
	l.edge = nil
	return l.failed()
}

// edgeBackendLogin connects the backend of a login the edge accepted and
// logs in there with the mapped account, or the client's own name and
// password.
func (l *login) edgeBackendLogin(cmd rewrite.Command, e *edgeLogin, v edgeVerdict) error {
	s := l.s
	method := v.method
	b, mapped := e.backend, e.mapped
	if v.backend != nil {
		b = v.backend
		if v.route != "" {
			l.route, l.scan = v.route, s.scanOf(v.route)
		}
	}
	if v.mapped != nil {
		mapped = v.mapped
	}
	user, pass := l.user, v.password
	if mapped != nil {
		user, pass = mapped.User, mapped.Password
	} else if e.auth.CertOnly() {
		// No password was checked: the client's own must not log in
		// at the backend in its place.
		s.log.Warn("certificate login without a backend account (backend_user on the auth block, its route, or the hook's answer); refused",
			zap.String("auth", e.auth.Name))
		v.reason = reasonNoBackendAccount
		return l.edgeRefuse(cmd, v)
	}
	l.readOnly = v.readOnly // result adds the policy's read_only_users
	if ok, err := l.connect(cmd, b, l.user); !ok {
		return err
	}
	rep, err := s.be.roundTrip(rewrite.Command{Verb: "USER", Arg: user}, s.cfg.Timeouts.BackendReply)
	if err == nil && rep.Code == 331 {
		rep, err = s.be.roundTrip(rewrite.Command{Verb: "PASS", Arg: pass}, s.cfg.Timeouts.BackendReply)
	}
	if err != nil {
		return err
	}
	refusal := func(code int) {
		s.srv.metrics.logins.WithLabelValues(method, "failure").Inc()
		s.audit.Login(audit.Login{User: l.user, Host: s.host, Backend: b.Name, BackendAddress: s.be.remote.String(),
			Route: l.route, Code: code, Reason: reasonBackendRefused, Method: method, BackendUser: user, Client: s.client.addr.String(),
			CertSubject: s.clientCertSubject()})
	}
	if rep.Code >= 400 && rep.Code < 500 {
		// Busy (421), or a transient refusal: the client may try again.
		s.log.Warn("the backend refused a login the edge accepted, for now", zap.String("backend", b.Name),
			zap.String("reply", rep.String()))
		refusal(421)
		s.be.close()
		s.be = nil
		s.reply(cmd, 421, "Service not available: the FTP server refused the session; try again later.")
		return fmt.Errorf("%w: backend answered %d to a login the edge accepted", errQuit, rep.Code)
	}
	if rep.Code != 230 {
		// The proxy accepted the client: the backend's refusal is the
		// operator's to fix (the mapped account's password, or the
		// backend's own user database), not a guess to count.
		s.log.Warn("the backend refused a login the edge accepted", zap.String("method", method),
			zap.String("backend_user", user), zap.String("backend", b.Name), zap.String("reply", rep.String()),
			zap.Bool("mapped", mapped != nil))
		refusal(530)
		s.be.roundTrip(rewrite.Command{Verb: "QUIT"}, time.Second)
		s.be.close()
		s.be = nil
		l.edge = nil
		return s.reply(cmd, 530, textLoginIncorrect)
	}
	l.backendUser = user
	if handled, err := l.admit(cmd, rep); handled {
		return err
	}
	// The proxy's own text: a backend's 230 may name the mapped account.
	if err := s.reply(cmd, 230, "Login successful."); err != nil {
		return err
	}
	return l.result(rep)
}

// verifyPassword checks password against users under the server's hash
// slots, which bound the CPU and memory that password hashing takes at
// once (an argon2id check holds its m KiB for its duration). refused: the
// answer is already no (a name the policy refuses), but the check costs
// what a real one does.
func (s *Server) verifyPassword(users *userfile.File, user, password string, refused bool) (known, ok bool) {
	s.hashSlots <- struct{}{}
	defer func() { <-s.hashSlots }()
	if refused {
		users.VerifyNone(password)
		return false, false
	}
	return users.Verify(user, password)
}

// totpUse records that user of the auth block named auth used the TOTP
// code of step, and reports whether that code is new: a step at or
// before the last one used is refused (RFC 6238 §5.2), so a code seen by
// someone else is worthless once used, even within its window. With a
// state block's Redis, a code used on one instance is refused on all.
func (s *Server) totpUse(auth, user string, step uint64) bool {
	// The step is accepted until TOTPSkew steps after its own.
	until := time.Unix(int64(step+1+userfile.TOTPSkew)*int64(userfile.TOTPStep/time.Second), 0)
	return s.state.totpUse(auth+"\x00"+user, step, until)
}

// newHashSlots is the number of password checks that may run at once: one
// per core, at least two.
func newHashSlots() chan struct{} { return make(chan struct{}, max(2, runtime.GOMAXPROCS(0))) }

// ---- user files: the current content of each, reloaded on change ----

// userFileStore is one user file: its content as last loaded without a
// problem, and the size and time of the file when it was read.
type userFileStore struct {
	path string
	file atomic.Pointer[userfile.File]
	// mu guards stamp, and makes one reload at a time.
	mu    sync.Mutex
	stamp string
}

// userFiles holds a store per user file path, for the auth blocks of the
// configuration in force.
type userFiles struct {
	mu     sync.Mutex
	stores map[string]*userFileStore
}

// set makes the user files of cfg's auth blocks current, with the content
// Load read (a SIGHUP reload reads every file again).
func (u *userFiles) set(cfg *config.Config) {
	u.mu.Lock()
	defer u.mu.Unlock()
	stores := map[string]*userFileStore{}
	for _, a := range cfg.Auths {
		if a.Users == nil {
			continue
		}
		st := u.stores[a.UserFile]
		if st == nil {
			st = &userFileStore{path: a.UserFile}
		}
		st.mu.Lock()
		st.file.Store(a.Users)
		st.stamp = a.UserFileStamp
		st.mu.Unlock()
		stores[a.UserFile] = st
	}
	u.stores = stores
}

// userFile returns the current content of a's user file: the last that
// loaded, or, for an auth block of a configuration a reload replaced, the
// one Load read.
func (s *Server) userFile(a *config.Auth) *userfile.File {
	s.userFiles.mu.Lock()
	st := s.userFiles.stores[a.UserFile]
	s.userFiles.mu.Unlock()
	if st != nil {
		if f := st.file.Load(); f != nil {
			return f
		}
	}
	return a.Users
}

// watchUserFiles reloads a user file when it changes (size, time or mode),
// without a SIGHUP: a user added with ftpsgate passwd can log in within
// one check interval. A file that does not parse is logged with the line
// of each problem, and the current users are kept.
func (s *Server) watchUserFiles() {
	defer s.wg.Done()
	t := time.NewTicker(s.certEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.userFiles.mu.Lock()
		stores := make([]*userFileStore, 0, len(s.userFiles.stores))
		for _, st := range s.userFiles.stores {
			stores = append(stores, st)
		}
		s.userFiles.mu.Unlock()
		for _, st := range stores {
			s.reloadUserFile(st)
		}
	}
}

// reloadUserFile reads st's file again if it changed since it was read.
func (s *Server) reloadUserFile(st *userFileStore) {
	st.mu.Lock()
	defer st.mu.Unlock()
	stamp := config.FileStamp(st.path)
	if stamp == st.stamp {
		return
	}
	st.stamp = stamp
	f, err := config.ParseUserFile(st.path)
	if err != nil {
		s.log.Warn("user file changed but does not load; keeping the users it had", zap.String("user_file", st.path), zap.Error(err))
		s.metrics.userFileReloads.WithLabelValues("failure").Inc()
		return
	}
	st.file.Store(f)
	s.metrics.userFileReloads.WithLabelValues("success").Inc()
	s.log.Info("user file reloaded", zap.String("user_file", st.path), zap.Int("users", f.Len()))
}
