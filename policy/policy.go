// Package policy decides what an FTP client may do, from plain values. It
// does no I/O: the proxy asks, applies the answer and logs it.
package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
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
	// WriteVerbs are refused.
	ReadOnlyUsers []string
	// AllowCommands, if not empty, lists the only verbs clients may send
	// (EssentialVerbs are always allowed). DenyCommands lists verbs
	// refused to everyone.
	AllowCommands []string
	DenyCommands  []string
	// MaxSessionsPerUser bounds the sessions one user name may hold at
	// once; 0 means no bound. Counted by the proxy, decided by Sessions.
	MaxSessionsPerUser int
}

// EssentialVerbs are the commands without which no session can work; no
// command rule applies to them.
var EssentialVerbs = []string{"AUTH", "PBSZ", "PROT", "USER", "PASS", "QUIT", "FEAT", "NOOP", "HOST", "ABOR"}

// WriteVerbs change something on the server; read-only users may not send
// them. SITE is among them: its subcommands (CHMOD, UTIME…) change files.
var WriteVerbs = []string{"STOR", "STOU", "APPE", "DELE", "RMD", "XRMD", "MKD", "XMKD", "RNFR", "RNTO",
	"SITE", "MFMT", "MFCT", "MFF"}

// Default is the policy when the configuration says nothing: TLS and
// PROT P required, any user.
func Default() Rules {
	return Rules{RequireTLS: true, RequireProtP: true}
}

// Validate reports the first malformed rule.
func (r *Rules) Validate() error {
	type named struct {
		name string
		list []string
	}
	for _, l := range []named{{"allow_users", r.AllowUsers}, {"deny_users", r.DenyUsers}, {"read_only_users", r.ReadOnlyUsers}} {
		if err := ValidPatterns(l.list); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	for _, l := range []named{{"allow_commands", r.AllowCommands}, {"deny_commands", r.DenyCommands}} {
		name := l.name
		for _, v := range l.list {
			if v == "" || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" || len(v) > 8 {
				return fmt.Errorf("%s: %q is not an FTP verb (upper-case letters)", name, v)
			}
			if name == "deny_commands" && slices.Contains(EssentialVerbs, v) {
				return fmt.Errorf("%s: %s cannot be denied: no session works without it", name, v)
			}
		}
	}
	if r.MaxSessionsPerUser < 0 {
		return fmt.Errorf("max_sessions_per_user must be 0 (no bound) or more")
	}
	return nil
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
	RuleReadOnly     = "read_only_users"
	RuleAllowCmds    = "allow_commands"
	RuleDenyCmds     = "deny_commands"
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

// Login decides whether a client may send USER (or PASS) for user, given
// whether its control connection is under TLS. A nil result allows it.
func (r *Rules) Login(user string, tls bool) *Denial {
	if r.RequireTLS && !tls {
		// RFC 4217 §11: 530 refuses the login; the text says how to fix it.
		return &Denial{RuleRequireTLS, 530, "TLS required: send AUTH TLS before USER"}
	}
	// Same reply as a bad password, so a stranger learns nothing about
	// which names exist.
	if matchAny(r.DenyUsers, user) {
		return &Denial{RuleDenyUsers, 530, "Login incorrect."}
	}
	if len(r.AllowUsers) > 0 && !matchAny(r.AllowUsers, user) {
		return &Denial{RuleAllowUsers, 530, "Login incorrect."}
	}
	return nil
}

// Command decides whether verb may be sent; readOnly is whether the
// session's user is read-only (ReadOnly, asked once per login).
func (r *Rules) Command(verb string, readOnly bool) *Denial {
	if slices.Contains(EssentialVerbs, verb) {
		return nil
	}
	if slices.Contains(r.DenyCommands, verb) ||
		(len(r.AllowCommands) > 0 && !slices.Contains(r.AllowCommands, verb)) {
		rule := RuleDenyCmds
		if !slices.Contains(r.DenyCommands, verb) {
			rule = RuleAllowCmds
		}
		// 502: clients treat the command as unsupported and do without
		// it (lftp falls back from MLSD to LIST, for one).
		return &Denial{rule, 502, verb + " is not allowed here."}
	}
	if readOnly && slices.Contains(WriteVerbs, verb) {
		return &Denial{RuleReadOnly, 550, "Permission denied: read-only access."}
	}
	return nil
}

// ReadOnly reports whether user may only read.
func (r *Rules) ReadOnly(user string) bool { return matchAny(r.ReadOnlyUsers, user) }

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
// must match (a session's user, HOST and TLS SNI, by glob pattern, names
// compared in lower case); an empty list matches anything.
type Route struct {
	Name    string
	Users   []string
	Hosts   []string
	SNI     []string
	Backend string
}

// CatchAll reports whether the route matches every session.
func (rt *Route) CatchAll() bool { return len(rt.Users) == 0 && len(rt.Hosts) == 0 && len(rt.SNI) == 0 }

// Matches reports whether the route takes a session.
func (rt *Route) Matches(user, host, sni string) bool {
	return (len(rt.Users) == 0 || matchAny(rt.Users, user)) &&
		(len(rt.Hosts) == 0 || matchAny(rt.Hosts, strings.ToLower(host))) &&
		(len(rt.SNI) == 0 || matchAny(rt.SNI, strings.ToLower(sni)))
}

// ChooseRoute returns the first route that takes the session, or nil: the
// listener's own backend then.
func ChooseRoute(routes []Route, user, host, sni string) *Route {
	for i := range routes {
		if routes[i].Matches(user, host, sni) {
			return &routes[i]
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

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
