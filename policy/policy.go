// Package policy decides what an FTP client may do, from plain values. It
// does no I/O: the proxy asks, applies the answer and logs it.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// Rules is the policy of one configuration snapshot. The zero value allows
// everything; Default is the secure starting point.
type Rules struct {
	// RequireTLS refuses USER and PASS on a control connection that is
	// not under TLS, so no password ever crosses the network in clear.
	RequireTLS bool
	// RequireProtP refuses PROT C and any data transfer before PROT P, so
	// no file crosses the network in clear.
	RequireProtP bool
	// AllowUsers lists the user names that may log in, as path.Match
	// patterns ("backup-*"). Empty: anyone the backend accepts. Checked
	// before the backend sees the user, let alone the password.
	AllowUsers []string
	// DenyUsers lists user names that may never log in, as patterns. It
	// wins over AllowUsers.
	DenyUsers []string
	// ReadOnlyUsers may log in but not change anything on the server:
	// they may send only commands of the classes ReadOnlyClasses lists,
	// and those ReadOnlyCommands names.
	ReadOnlyUsers []string
	// ReadOnlyCommands are commands read-only users may send although
	// their class is Write ("SITE UMASK"), as Op.Matches takes them.
	ReadOnlyCommands []string
	// UserNames says how user names are compared with every list above
	// and with routes. The zero value, CaseInsensitive, is the safe one:
	// a backend whose logins ignore case (LDAP, SQL "_ci" collations,
	// Windows servers) would otherwise let "Alice" past a rule on "alice".
	UserNames UserNames
	// AllowCommands, if not empty, lists the only commands clients may
	// send (essential ones are always allowed). DenyCommands lists
	// commands refused to everyone. Entries are verbs ("MKD", which also
	// covers its alias XMKD) or SITE subcommands ("SITE CHMOD", which
	// also covers pure-ftpd's bare CHMOD); see Op.Matches.
	AllowCommands []string
	DenyCommands  []string
	// RelayUnknown relays verbs the proxy's verb table does not know to
	// the backend, classed Write. False (the default) answers them 502:
	// an unknown verb is an unknown effect.
	RelayUnknown bool
	// MaxSessionsPerUser bounds the sessions one user name may hold at
	// once; 0 means no bound. Counted by the proxy, decided by Sessions.
	MaxSessionsPerUser int
}

// UserNames is how user names are compared with policy lists and routes.
type UserNames int

const (
	// CaseInsensitive compares names in lower case (Unicode simple
	// folding): "Alice" matches a rule on "alice".
	CaseInsensitive UserNames = iota
	// Exact compares the bytes as sent.
	Exact
)

func (u UserNames) String() string {
	if u == Exact {
		return "exact"
	}
	return "case_insensitive"
}

// Key is user as the policy compares it: lower case unless Exact. The
// proxy counts sessions per user by this key too.
func (r *Rules) Key(user string) string {
	if r.UserNames == Exact {
		return user
	}
	return strings.ToLower(user)
}

// Class is what a command does, as far as the policy cares.
type Class int

const (
	// Session commands manage the session itself (login, QUIT, TYPE,
	// OPTS, FEAT…): they touch no file.
	Session Class = iota
	// Security commands set up TLS (AUTH, PBSZ, PROT…).
	Security
	// Data commands set up or control a data connection (PASV, EPSV,
	// PORT, EPRT, REST, ABOR): the transfer command decides the effect.
	Data
	// Read commands read files or walk directories (RETR, SIZE, CWD…).
	Read
	// List commands list directories (LIST, NLST, MLSD, STAT with a path).
	List
	// Write commands change something on the server, and so does every
	// command whose effect the proxy cannot vouch for (an unknown SITE
	// subcommand, an unknown verb relayed by RelayUnknown).
	Write
)

var classNames = [...]string{"session", "security", "data", "read", "list", "write"}

func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ReadOnlyClasses are the classes read-only users may send: everything
// but Write. Together with the verb table's "unknown is Write", this is an
// allow-list.
var ReadOnlyClasses = []Class{Session, Security, Data, Read, List}

// Op is one command as the policy sees it, classified by the proxy's verb
// table (which knows each verb's aliases, and classifies MDTM and SITE by
// their arguments).
type Op struct {
	// Verb is the canonical verb: "MKD" for XMKD, "SITE" for SITE CHMOD
	// and for pure-ftpd's bare CHMOD.
	Verb string
	// Sub is the SITE subcommand, upper-cased ("CHMOD"), or "".
	Sub string
	// Aliases are the other names of the same operation: "XMKD" for MKD,
	// "CHMOD" for SITE CHMOD.
	Aliases []string
	Class   Class
	// Essential: no session works without it (AUTH, USER, QUIT…); no
	// command rule applies to it.
	Essential bool
}

// Name is the canonical name: "MKD", or "SITE CHMOD".
func (o Op) Name() string {
	if o.Sub != "" {
		return o.Verb + " " + o.Sub
	}
	return o.Verb
}

// Matches reports whether the command rule entry (as configured, upper
// case: "MKD", "XMKD", "SITE", "SITE CHMOD", "CHMOD") names o. A verb
// names every spelling of its operation, and SITE names every SITE
// subcommand, so no alias slips past a rule.
func (o Op) Matches(entry string) bool {
	return entry == o.Verb || entry == o.Name() || slices.Contains(o.Aliases, entry)
}

func (o Op) matchesAny(entries []string) bool {
	return slices.ContainsFunc(entries, o.Matches)
}

// Default is the policy when the configuration says nothing: TLS and
// PROT P required, any user, names compared case-insensitively, unknown
// verbs refused.
func Default() Rules {
	return Rules{RequireTLS: true, RequireProtP: true}
}

// ValidCommandEntry reports whether e has the shape of a command rule
// entry: a verb (letters), or SITE and a subcommand. Whether the verb is
// known is the verb table's question.
func ValidCommandEntry(e string) error {
	verb, sub, hasSub := strings.Cut(e, " ")
	if !isVerb(verb) || (hasSub && (verb != "SITE" || !isVerb(sub))) {
		return fmt.Errorf("%q is not a command: want a verb (upper-case letters) or \"SITE\" and a subcommand", e)
	}
	return nil
}

func isVerb(v string) bool {
	return v != "" && len(v) <= 8 && strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
}

// A Problem is a rule of Rules that is malformed, or that another rule
// always overrides (Unreachable).
type Problem struct {
	// Attr is the rule's attribute in the policy block: allow_users,
	// deny_commands, max_sessions_per_user…
	Attr        string
	Unreachable bool
	// Detail says what is wrong, in a sentence for the operator.
	Detail string
}

func (p Problem) Error() string { return p.Detail }

// Problems lists every problem of the rules, in the order of the policy
// block's attributes: malformed user patterns (the first of each list),
// malformed command entries (each), a verb both allowed and denied, an
// allowed user name that deny_users refuses, and a negative session bound.
// The configuration reports each at its attribute; no other place judges
// the rules.
func (r *Rules) Problems() []Problem {
	type named struct {
		name string
		list []string
	}
	var out []Problem
	for _, l := range []named{{"allow_users", r.AllowUsers}, {"deny_users", r.DenyUsers}, {"read_only_users", r.ReadOnlyUsers}} {
		if err := ValidPatterns(l.list); err != nil {
			out = append(out, Problem{Attr: l.name, Detail: l.name + ": " + err.Error()})
		}
	}
	for _, l := range []named{{"allow_commands", r.AllowCommands}, {"deny_commands", r.DenyCommands}, {"read_only_commands", r.ReadOnlyCommands}} {
		for _, v := range l.list {
			if err := ValidCommandEntry(v); err != nil {
				out = append(out, Problem{Attr: l.name, Detail: l.name + ": " + err.Error()})
			}
		}
	}
	for _, v := range r.AllowCommands {
		if slices.Contains(r.DenyCommands, v) {
			out = append(out, Problem{Attr: "allow_commands", Unreachable: true,
				Detail: fmt.Sprintf("%s is in both allow_commands and deny_commands; deny_commands wins.", v)})
		}
	}
	for _, u := range r.AllowUsers {
		if ok, _ := path.Match(u, u); ok && slices.ContainsFunc(r.DenyUsers, func(d string) bool { m, _ := path.Match(d, u); return m }) {
			out = append(out, Problem{Attr: "allow_users", Unreachable: true,
				Detail: fmt.Sprintf("allow_users names %q, which deny_users refuses; deny_users wins.", u)})
		}
	}
	if r.MaxSessionsPerUser < 0 {
		out = append(out, Problem{Attr: "max_sessions_per_user", Detail: "max_sessions_per_user must be 0 (no bound) or more."})
	}
	return out
}

// Validate reports every problem of the rules (Problems), joined, or nil.
func (r *Rules) Validate() error {
	var errs []error
	for _, p := range r.Problems() {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// ValidPatterns reports the first malformed glob pattern of list.
func ValidPatterns(list []string) error {
	for _, p := range list {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return fmt.Errorf("bad pattern %q", p)
		}
	}
	return nil
}

// Rule names, as they appear in logs and audit events.
const (
	RuleRequireTLS   = "require_tls"
	RuleRequireProtP = "require_prot_p"
	RuleAllowUsers   = "allow_users"
	RuleDenyUsers    = "deny_users"
	RuleUserName     = "user_name"
	RuleReadOnly     = "read_only_users"
	RuleAllowCmds    = "allow_commands"
	RuleDenyCmds     = "deny_commands"
	RuleUnknownCmds  = "unknown_commands"
	RuleMaxSessions  = "max_sessions_per_user"
	RuleAllowCIDRs   = "allow_cidrs"
	RuleDenyCIDRs    = "deny_cidrs"
)

// Denial is a refusal: the rule that matched and the reply the client gets.
type Denial struct {
	Rule string
	Code int
	Text string
}

func (d *Denial) Error() string { return fmt.Sprintf("%s: %d %s", d.Rule, d.Code, d.Text) }

// UserName decides whether name, the argument of USER, is a user name at
// all: it may not start or end with white space, nor hold control
// characters (C0, DEL, C1). A backend that trims or folds such a name
// would log in a user the policy never judged ("USER  root", "USER
// root "); 501 refuses the syntax before any list is consulted.
func UserName(name string) *Denial {
	bad := name == "" || strings.TrimSpace(name) != name
	for i := 0; i < len(name) && !bad; {
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError && size == 1 {
			// Not UTF-8 (a legacy Latin-1 name, say): a byte that is a
			// C1 control in ISO 8859-1 is refused as well.
			r = rune(name[i])
		}
		bad = r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029'
		i += size
	}
	if bad {
		return &Denial{RuleUserName, 501, "Invalid user name."}
	}
	return nil
}

// Login decides whether a client may send USER (or PASS) for user, given
// whether its control connection is under TLS. A nil result allows it.
func (r *Rules) Login(user string, tls bool) *Denial {
	if r.RequireTLS && !tls {
		// RFC 4217 §11: 530 refuses the login; the text says how to fix it.
		return &Denial{RuleRequireTLS, 530, "TLS required: send AUTH TLS before USER"}
	}
	// The proxy answers a refused name as it answers a wrong password
	// (331, then 530 at PASS), so a stranger learns nothing about which
	// names exist; this text is what it says at PASS.
	if r.matchUser(r.DenyUsers, user) {
		return &Denial{RuleDenyUsers, 530, "Login incorrect."}
	}
	if len(r.AllowUsers) > 0 && !r.matchUser(r.AllowUsers, user) {
		return &Denial{RuleAllowUsers, 530, "Login incorrect."}
	}
	return nil
}

// Command decides whether op may be sent; readOnly is whether the
// session's user is read-only (ReadOnly, asked once per login).
func (r *Rules) Command(op Op, readOnly bool) *Denial {
	if op.Essential {
		return nil
	}
	if denied, allowList := op.matchesAny(r.DenyCommands), len(r.AllowCommands) > 0; denied || (allowList && !op.matchesAny(r.AllowCommands)) {
		rule := RuleDenyCmds
		if !denied {
			rule = RuleAllowCmds
		}
		// 502: clients treat the command as unsupported and do without
		// it (lftp falls back from MLSD to LIST, for one).
		return &Denial{rule, 502, op.Name() + " is not allowed here."}
	}
	if readOnly && !slices.Contains(ReadOnlyClasses, op.Class) && !op.matchesAny(r.ReadOnlyCommands) {
		return &Denial{RuleReadOnly, 550, "Permission denied: read-only access."}
	}
	return nil
}

// Unknown decides on a verb the proxy's verb table does not know.
func (r *Rules) Unknown(verb string) *Denial {
	if r.RelayUnknown {
		return nil
	}
	return &Denial{RuleUnknownCmds, 502, verb + " not implemented."}
}

// ReadOnly reports whether user may only read.
func (r *Rules) ReadOnly(user string) bool { return r.matchUser(r.ReadOnlyUsers, user) }

// Sessions decides whether user may open one more session while holding
// held already.
func (r *Rules) Sessions(held int) *Denial {
	if r.MaxSessionsPerUser > 0 && held >= r.MaxSessionsPerUser {
		return &Denial{RuleMaxSessions, 530, fmt.Sprintf("Too many sessions for this user (at most %d).", r.MaxSessionsPerUser)}
	}
	return nil
}

// Address decides whether a client at a may connect to a listener with the
// given allow and deny lists: deny_cidrs first, then, if allow_cidrs is not
// empty, the address must be in it. IPv4-mapped IPv6 addresses are judged
// as the IPv4 addresses they are.
func Address(allow, deny []netip.Prefix, a netip.Addr) *Denial {
	a = a.Unmap()
	for _, p := range deny {
		if p.Contains(a) {
			return &Denial{RuleDenyCIDRs, 421, "Service not available for your address."}
		}
	}
	if len(allow) == 0 {
		return nil
	}
	for _, p := range allow {
		if p.Contains(a) {
			return nil
		}
	}
	return &Denial{RuleAllowCIDRs, 421, "Service not available for your address."}
}

// Route sends the sessions that match it to a backend. Each non-empty list
// must match (a session's user, HOST and TLS SNI, by glob pattern; host
// names compared in lower case, user names as Rules.UserNames says); an
// empty list matches anything.
type Route struct {
	Name    string
	Users   []string
	Hosts   []string
	SNI     []string
	Backend string
	// Scan names the scan block the uploads of the route's sessions go
	// through, in place of their listener's; "" keeps the listener's.
	Scan string
}

// CatchAll reports whether the route matches every session.
func (rt *Route) CatchAll() bool { return len(rt.Users) == 0 && len(rt.Hosts) == 0 && len(rt.SNI) == 0 }

// ChooseRoute returns the first route that takes the session, or nil: the
// listener's own backend then.
func (r *Rules) ChooseRoute(routes []Route, user, host, sni string) *Route {
	for i := range routes {
		rt := &routes[i]
		if (len(rt.Users) == 0 || r.matchUser(rt.Users, user)) &&
			(len(rt.Hosts) == 0 || matchAny(rt.Hosts, strings.ToLower(host), true)) &&
			(len(rt.SNI) == 0 || matchAny(rt.SNI, strings.ToLower(sni), true)) {
			return rt
		}
	}
	return nil
}

// Prot decides whether the client may set protection level level ('C',
// 'S', 'E' or 'P', upper-cased by the caller).
func (r *Rules) Prot(level byte) *Denial {
	switch level {
	case 'P':
		return nil
	case 'C':
		if r.RequireProtP {
			// RFC 4217 §9: 534, request denied for policy reasons.
			return &Denial{RuleRequireProtP, 534, "PROT C refused: data connections must be protected (PROT P)"}
		}
		return nil
	case 'S', 'E':
		// RFC 2228: 536, level not supported by the security mechanism.
		return &Denial{"prot_level", 536, fmt.Sprintf("PROT %c not supported with TLS; use PROT P", level)}
	default:
		return &Denial{"prot_level", 504, "Unknown protection level"}
	}
}

// Data decides whether a data connection may be opened while the
// protection level is prot ('C' until the client sends PROT P).
func (r *Rules) Data(prot byte) *Denial {
	if r.RequireProtP && prot != 'P' {
		// RFC 4217 §9: 521, data connection cannot be opened with this
		// PROT setting.
		return &Denial{RuleRequireProtP, 521, "Data connections must be protected: send PBSZ 0 and PROT P first"}
	}
	return nil
}

// matchUser matches a user name against patterns as UserNames says.
func (r *Rules) matchUser(patterns []string, user string) bool {
	return matchAny(patterns, user, r.UserNames != Exact)
}

// matchAny reports whether s matches one of patterns; fold compares both
// in lower case.
func matchAny(patterns []string, s string, fold bool) bool {
	if fold {
		s = strings.ToLower(s)
	}
	for _, p := range patterns {
		if fold {
			p = strings.ToLower(p)
		}
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
