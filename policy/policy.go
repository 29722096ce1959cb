// Package policy decides what an FTP client may do, from plain values. It
// does no I/O: the proxy asks, applies the answer and logs it.
package policy

import (
	"fmt"
	"path"
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
}

// Default is the policy when the configuration says nothing: TLS and
// PROT P required, any user.
func Default() Rules {
	return Rules{RequireTLS: true, RequireProtP: true}
}

// Validate reports the first malformed pattern.
func (r *Rules) Validate() error {
	for _, p := range r.AllowUsers {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("allow_users: bad pattern %q: %w", p, err)
		}
	}
	return nil
}

// Rule names, as they appear in logs and audit events.
const (
	RuleRequireTLS   = "require_tls"
	RuleRequireProtP = "require_prot_p"
	RuleAllowUsers   = "allow_users"
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
	if len(r.AllowUsers) > 0 && !matchAny(r.AllowUsers, user) {
		// Same reply as a bad password, so a stranger learns nothing
		// about which names exist.
		return &Denial{RuleAllowUsers, 530, "Login incorrect."}
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
