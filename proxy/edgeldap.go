package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// An auth block's directory (its ldap block): the password is checked by
// a bind as the user, over a connection from the block's pool. The
// directory's answer is one of three: yes (and the group that decides),
// no (530, counted toward a ban), or none (it is down, slow, or refuses
// the service account: 421 and no login, never a fallback).

// Why the directory refused a login (the audit's reason), besides
// reasonUnknownUser and reasonWrongPassword.
const (
	reasonEmptyPassword      = "empty_password"      // refused before any bind: it would be an unauthenticated bind
	reasonInvalidCredentials = "invalid_credentials" // bind_dn_template: wrong password or no such user, the directory does not say which
	reasonAmbiguousUser      = "ambiguous_user"      // the user filter found more than one entry
	reasonNotInGroup         = "not_in_group"        // in none of the block's groups
	reasonLDAPUnavailable    = "ldap_unavailable"    // the directory did not answer: 421
)

// ldapNoSuchUser is the user name of the DN a bind is tried against when
// the name is unknown or refused by policy: the bind costs what a real
// one does, so that the reply's timing does not tell which names exist.
const ldapNoSuchUser = "ftpsgate-no-such-user"

// edgeLDAP checks password for l.user against the directory of e's auth
// block; refused: the answer is no whatever the directory says (a name
// the policy refuses), after the same work.
func (l *login) edgeLDAP(e *edgeLogin, password string, refused bool) edgeVerdict {
	s := l.s
	v := edgeVerdict{password: password}
	a := e.auth
	if password == "" {
		// RFC 4513 §5.1.2: a simple bind with a name and no password is
		// an unauthenticated bind, which a directory may answer with
		// success. It never reaches the directory.
		v.reason = reasonEmptyPassword
		return v
	}
	ans := s.srv.ldapPools.get(a.LDAP).check(a.LDAP, l.user, password, refused, s.log)
	if ans.err != nil {
		s.srv.metrics.ldapErrors.WithLabelValues(a.Name).Inc()
		s.log.Warn("the directory did not answer; the login is refused for now", zap.String("auth", a.Name),
			zap.String("url", a.LDAP.URL), zap.Error(ans.err))
		v.reason, v.err = reasonLDAPUnavailable, ans.err
		return v
	}
	v.reason = ans.reason
	if g := ans.group; g != nil && v.reason == "" {
		v.readOnly = g.ReadOnly
		if g.Route != "" {
			s.routeVerdict(g.Route, &v) // validate checked that the route exists
		}
		s.log.Debug("directory group", zap.String("group", g.DN), zap.Bool("read_only", g.ReadOnly), zap.String("route", g.Route))
	}
	return v
}

// ldapAnswer is the directory's answer about a login: a refusal's reason,
// or the group that decided (nil without groups); err is set when the
// directory gave no answer.
type ldapAnswer struct {
	reason string
	group  *config.LDAPGroup
	err    error
}

// check binds as user with password on a connection of the pool. A
// connection the pool had kept open that turns out dead (the directory
// closed it, or restarted) is replaced once by a new one.
func (p *ldapPool) check(cfg *config.LDAP, user, password string, refused bool, log *zap.Logger) ldapAnswer {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get()
		if err != nil {
			return ldapAnswer{err: err}
		}
		ans := ldapCheckOn(c, cfg, user, password, refused, log)
		dead := ans.err != nil && c.IsClosing()
		p.put(c, ans.err == nil)
		if dead && reused && attempt == 0 {
			continue
		}
		return ans
	}
}

// ldapCheckOn is check on the connection c.
func ldapCheckOn(c *ldap.Conn, cfg *config.LDAP, user, password string, refused bool, log *zap.Logger) ldapAnswer {
	var dn, noEntry string
	if cfg.BindDNTemplate != "" {
		dn = ldapBindDN(cfg, user)
		noEntry = reasonInvalidCredentials
	} else {
		if err := c.Bind(cfg.ServiceDN, cfg.ServicePassword); err != nil {
			return ldapAnswer{err: fmt.Errorf("bind as service_dn %q: %w", cfg.ServiceDN, err)}
		}
		filter := ldapUserFilter(cfg, user)
		res, err := c.Search(ldap.NewSearchRequest(cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			2, ldapSeconds(cfg.Timeout), false, filter, []string{"1.1"}, nil))
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || (err == nil && len(res.Entries) > 1):
			log.Warn("the user filter finds more than one entry; the login is refused", zap.String("filter", filter))
			noEntry = reasonAmbiguousUser
		case err != nil:
			return ldapAnswer{err: fmt.Errorf("search %q under %q: %w", filter, cfg.BaseDN, err)}
		case len(res.Entries) == 0:
			noEntry = reasonUnknownUser
		default:
			dn = res.Entries[0].DN
		}
	}
	if refused || dn == "" {
		dn = ldapDummyDN(cfg)
	}
	err := c.Bind(dn, password)
	switch {
	case err != nil && ldapRefusal(err):
		switch {
		case noEntry != "":
			return ldapAnswer{reason: noEntry}
		default:
			return ldapAnswer{reason: reasonWrongPassword}
		}
	case err != nil:
		return ldapAnswer{err: fmt.Errorf("bind as the user: %w", err)}
	case refused || dn == ldapDummyDN(cfg):
		// The dummy DN bound: whoever made that entry, it logs no one in.
		if noEntry == "" {
			noEntry = reasonUnknownUser
		}
		return ldapAnswer{reason: noEntry}
	}
	if len(cfg.Groups) == 0 {
		return ldapAnswer{}
	}
	if cfg.ServiceDN != "" {
		// Groups are read as the service account: a user may not be
		// allowed to read them.
		if err := c.Bind(cfg.ServiceDN, cfg.ServicePassword); err != nil {
			return ldapAnswer{err: fmt.Errorf("bind as service_dn %q: %w", cfg.ServiceDN, err)}
		}
	}
	filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(dn), "{user}", ldap.EscapeFilter(user)).Replace(cfg.GroupFilter)
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		res, err := c.Search(ldap.NewSearchRequest(g.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, ldapSeconds(cfg.Timeout), false, filter, []string{"1.1"}, nil))
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			log.Warn("a group of the ldap block is not in the directory", zap.String("group", g.DN))
		case err != nil:
			return ldapAnswer{err: fmt.Errorf("search group %q: %w", g.DN, err)}
		case len(res.Entries) > 0:
			return ldapAnswer{group: g}
		}
	}
	return ldapAnswer{reason: reasonNotInGroup}
}

// ldapBindDN is the DN of user by the block's bind_dn_template. The name
// is escaped as a DN value (RFC 4514): with ',', '+', '=' or a NUL it
// cannot name another entry, nor one under another branch.
func ldapBindDN(cfg *config.LDAP, user string) string {
	return strings.NewReplacer("{user}", ldap.EscapeDN(user)).Replace(cfg.BindDNTemplate)
}

// ldapUserFilter is the block's user_filter for user. The name is escaped
// as a filter value (RFC 4515): '*', '(', ')', '\' and NUL are matched as
// themselves, never as a wildcard or a filter of the client's own.
func ldapUserFilter(cfg *config.LDAP, user string) string {
	return strings.NewReplacer("{user}", ldap.EscapeFilter(user)).Replace(cfg.UserFilter)
}

// ldapRefusal reports whether err is the directory's refusal of a bind
// (a wrong password, a locked or disabled account), not a failure to
// answer.
func ldapRefusal(err error) bool {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return false
	}
	switch le.ResultCode {
	case ldap.LDAPResultInvalidCredentials, ldap.LDAPResultInsufficientAccessRights, ldap.LDAPResultUnwillingToPerform,
		ldap.LDAPResultConstraintViolation, ldap.LDAPResultInvalidDNSyntax:
		return true
	}
	return false
}

// ldapDummyDN is the DN a bind is tried against for a name that has
// none: in the same branch as real users.
func ldapDummyDN(cfg *config.LDAP) string {
	if cfg.BindDNTemplate != "" {
		return strings.NewReplacer("{user}", ldapNoSuchUser).Replace(cfg.BindDNTemplate)
	}
	return "uid=" + ldapNoSuchUser + "," + cfg.BaseDN
}

// ldapSeconds is d in whole seconds, at least 1: a search's time limit.
func ldapSeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

// ---- the connections to a directory ----

// errLDAPBusy: every connection the pool may open is in use, for longer
// than the block's timeout.
var errLDAPBusy = errors.New("every connection to the directory (max_connections) stayed busy for the timeout")

// ldapPool holds the connections to one ldap block's directory: at most
// MaxConnections open at once, in use or idle; an idle one is closed after
// IdleTimeout. A connection is bound as whoever last bound on it: every
// check binds first.
type ldapPool struct {
	cfg   *config.LDAP
	slots chan struct{} // one per connection open or being opened
	// mu guards the fields below.
	mu     sync.Mutex
	idle   []idleLDAP // oldest first
	expiry *time.Timer
	closed bool
}

type idleLDAP struct {
	c     *ldap.Conn
	since time.Time
}

func newLDAPPool(cfg *config.LDAP) *ldapPool {
	return &ldapPool{cfg: cfg, slots: make(chan struct{}, cfg.MaxConnections)}
}

// get returns a connection: an idle one (reused) or a new one. It waits
// up to the block's timeout for a slot. The caller gives it back with put.
func (p *ldapPool) get() (c *ldap.Conn, reused bool, err error) {
	t := time.NewTimer(p.cfg.Timeout)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
	case <-t.C:
		return nil, false, errLDAPBusy
	}
	var stale []*ldap.Conn
	p.mu.Lock()
	for len(p.idle) > 0 && c == nil {
		last := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if last.c.IsClosing() || time.Since(last.since) >= p.cfg.IdleTimeout {
			stale = append(stale, last.c)
			continue
		}
		c = last.c
	}
	p.mu.Unlock()
	closeLDAP(stale)
	if c != nil {
		return c, true, nil
	}
	c, err = p.dial()
	if err != nil {
		<-p.slots
		return nil, false, err
	}
	return c, false, nil
}

// put gives c back: kept idle when healthy, else closed.
func (p *ldapPool) put(c *ldap.Conn, healthy bool) {
	defer func() { <-p.slots }()
	p.mu.Lock()
	if !healthy || p.closed || c.IsClosing() {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, idleLDAP{c: c, since: time.Now()})
	if p.expiry == nil {
		p.expiry = time.AfterFunc(p.cfg.IdleTimeout, p.expire)
	}
	p.mu.Unlock()
}

// expire closes the connections idle for IdleTimeout, and runs again
// when the next one will be.
func (p *ldapPool) expire() {
	var stale []*ldap.Conn
	p.mu.Lock()
	p.expiry = nil
	now := time.Now()
	keep := p.idle[:0]
	for _, ic := range p.idle {
		if now.Sub(ic.since) >= p.cfg.IdleTimeout || ic.c.IsClosing() {
			stale = append(stale, ic.c)
		} else {
			keep = append(keep, ic)
		}
	}
	p.idle = keep
	if len(p.idle) > 0 && !p.closed {
		p.expiry = time.AfterFunc(p.idle[0].since.Add(p.cfg.IdleTimeout).Sub(now), p.expire)
	}
	p.mu.Unlock()
	closeLDAP(stale)
}

// close closes the idle connections; one in use is closed when it is put
// back. Safe to call twice.
func (p *ldapPool) close() {
	p.mu.Lock()
	p.closed = true
	if p.expiry != nil {
		p.expiry.Stop()
		p.expiry = nil
	}
	var idle []*ldap.Conn
	for _, ic := range p.idle {
		idle = append(idle, ic.c)
	}
	p.idle = nil
	p.mu.Unlock()
	closeLDAP(idle)
}

// idleCount is the number of idle connections (for tests).
func (p *ldapPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

func closeLDAP(cs []*ldap.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// dial opens a connection to the directory: TCP, then TLS (ldaps://) or
// StartTLS, the certificate verified against the block's CA for the URL's
// host; all of it within the block's timeout.
func (p *ldapPool) dial() (*ldap.Conn, error) {
	u, err := url.Parse(p.cfg.URL)
	if err != nil {
		return nil, err
	}
	ldaps := u.Scheme == "ldaps"
	addr := u.Host
	if u.Port() == "" {
		port := "389"
		if ldaps {
			port = "636"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	d := net.Dialer{Timeout: p.cfg.Timeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// The handshakes, TLS and StartTLS, within the timeout: go-ldap
	// bounds requests, not a TLS handshake.
	raw.SetDeadline(time.Now().Add(p.cfg.Timeout))
	var nc net.Conn = raw
	if ldaps {
		tc := tls.Client(raw, p.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		nc = tc
	}
	c := ldap.NewConn(nc, ldaps)
	c.Start()
	c.SetTimeout(p.cfg.Timeout)
	if p.cfg.StartTLS {
		if err := c.StartTLS(p.cfg.TLS); err != nil {
			c.Close()
			return nil, fmt.Errorf("StartTLS with %s: %w", addr, err)
		}
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// ldapPools are the servers' pools, one per ldap block of a configuration
// in force (by pointer: a reload makes new ones, and closes the old).
type ldapPools struct {
	mu    sync.Mutex
	pools map[*config.LDAP]*ldapPool
}

// get returns cfg's pool, made on first use.
func (ps *ldapPools) get(cfg *config.LDAP) *ldapPool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.pools[cfg]
	if p == nil {
		if ps.pools == nil {
			ps.pools = map[*config.LDAP]*ldapPool{}
		}
		p = newLDAPPool(cfg)
		ps.pools[cfg] = p
	}
	return p
}

// set closes the pools of ldap blocks that cfg does not have (a reload
// replaced them; a session of the old configuration still checking a
// password gets a new pool).
func (ps *ldapPools) set(cfg *config.Config) {
	keep := map[*config.LDAP]bool{}
	for _, a := range cfg.Auths {
		if a.LDAP != nil {
			keep[a.LDAP] = true
		}
	}
	ps.mu.Lock()
	var old []*ldapPool
	for k, p := range ps.pools {
		if !keep[k] {
			old = append(old, p)
			delete(ps.pools, k)
		}
	}
	ps.mu.Unlock()
	for _, p := range old {
		p.close()
	}
}

// close closes every pool.
func (ps *ldapPools) close() { ps.set(&config.Config{}) }
