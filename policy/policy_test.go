package policy

import (
	"net/netip"
	"testing"
)

func TestLogin(t *testing.T) {
	tests := []struct {
		name  string
		rules Rules
		user  string
		tls   bool
		rule  string // "" when allowed
		code  int
	}{
		{"default, TLS", Default(), "alice", true, "", 0},
		{"default, no TLS", Default(), "alice", false, RuleRequireTLS, 530},
		{"TLS not required", Rules{}, "alice", false, "", 0},
		{"allow-list hit", Rules{AllowUsers: []string{"bob", "alice"}}, "alice", true, "", 0},
		{"allow-list glob", Rules{AllowUsers: []string{"backup-*"}}, "backup-db1", true, "", 0},
		{"allow-list miss", Rules{AllowUsers: []string{"backup-*"}}, "alice", true, RuleAllowUsers, 530},
		{"allow-list ignores case by default", Rules{AllowUsers: []string{"alice"}}, "Alice", true, "", 0},
		{"allow-list exact", Rules{AllowUsers: []string{"alice"}, UserNames: Exact}, "Alice", true, RuleAllowUsers, 530},
		{"deny-list ignores case by default", Rules{DenyUsers: []string{"ftpuser"}}, "FTPUSER", true, RuleDenyUsers, 530},
		{"deny-list pattern ignores case", Rules{DenyUsers: []string{"Admin*"}}, "aDMINISTRATOR", true, RuleDenyUsers, 530},
		{"deny-list non-ASCII folds", Rules{DenyUsers: []string{"jürgen"}}, "JÜRGEN", true, RuleDenyUsers, 530},
		{"deny-list exact lets case through", Rules{DenyUsers: []string{"ftpuser"}, UserNames: Exact}, "FTPUSER", true, "", 0},
		{"TLS checked before the list", Rules{RequireTLS: true, AllowUsers: []string{"x"}}, "alice", false, RuleRequireTLS, 530},
		{"glob does not cross /", Rules{AllowUsers: []string{"*"}}, "a/b", true, RuleAllowUsers, 530},
		{"deny-list hit", Rules{DenyUsers: []string{"root", "admin*"}}, "administrator", true, RuleDenyUsers, 530},
		{"deny-list miss", Rules{DenyUsers: []string{"root"}}, "alice", true, "", 0},
		{"deny wins over allow", Rules{AllowUsers: []string{"*"}, DenyUsers: []string{"root"}}, "root", true, RuleDenyUsers, 530},
		{"deny checked before allow", Rules{AllowUsers: []string{"alice"}, DenyUsers: []string{"r*"}}, "root", true, RuleDenyUsers, 530},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.rules.Login(tc.user, tc.tls)
			if tc.rule == "" {
				if d != nil {
					t.Fatalf("denied: %v", d)
				}
				return
			}
			if d == nil || d.Rule != tc.rule || d.Code != tc.code {
				t.Fatalf("got %v, want rule %s code %d", d, tc.rule, tc.code)
			}
		})
	}
}

func TestProtAndData(t *testing.T) {
	strict, lax := Default(), Rules{}
	tests := []struct {
		name  string
		rules Rules
		level byte
		code  int // 0 when allowed
	}{
		{"P strict", strict, 'P', 0},
		{"C strict", strict, 'C', 534},
		{"C lax", lax, 'C', 0},
		{"S", lax, 'S', 536},
		{"E", strict, 'E', 536},
		{"unknown", lax, 'Z', 504},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.rules.Prot(tc.level)
			if (d == nil) != (tc.code == 0) || (d != nil && d.Code != tc.code) {
				t.Fatalf("got %v, want %d", d, tc.code)
			}
		})
	}
	if d := strict.Data('C'); d == nil || d.Code != 521 || d.Rule != RuleRequireProtP {
		t.Fatalf("data under PROT C, strict: %v", d)
	}
	if d := strict.Data('P'); d != nil {
		t.Fatalf("data under PROT P: %v", d)
	}
	if d := lax.Data('C'); d != nil {
		t.Fatalf("data under PROT C, lax: %v", d)
	}
}

func TestCommand(t *testing.T) {
	op := func(verb string, class Class, aliases ...string) Op {
		return Op{Verb: verb, Class: class, Aliases: aliases}
	}
	site := func(sub string, class Class, aliases ...string) Op {
		return Op{Verb: "SITE", Sub: sub, Class: class, Aliases: aliases}
	}
	mkd, xmkdAlias := op("MKD", Write, "XMKD"), op("MKD", Write, "XMKD")
	chmod := site("CHMOD", Write, "CHMOD") // SITE CHMOD, or pure-ftpd's bare CHMOD
	quit := Op{Verb: "QUIT", Class: Session, Essential: true}
	tests := []struct {
		name     string
		rules    Rules
		op       Op
		readOnly bool
		rule     string // "" when allowed
		code     int
	}{
		{"no rules", Rules{}, op("DELE", Write), false, "", 0},
		{"read-only may read", Rules{}, op("RETR", Read), true, "", 0},
		{"read-only may list", Rules{}, op("MLSD", List), true, "", 0},
		{"read-only may set up data", Rules{}, op("EPSV", Data), true, "", 0},
		{"read-only may set the session", Rules{}, op("TYPE", Session), true, "", 0},
		{"read-only may not write", Rules{}, op("STOR", Write), true, RuleReadOnly, 550},
		{"read-only may not make directories (X form)", Rules{}, xmkdAlias, true, RuleReadOnly, 550},
		{"read-only may not SITE CHMOD", Rules{}, chmod, true, RuleReadOnly, 550},
		{"read-only may SITE HELP", Rules{}, site("HELP", Session), true, "", 0},
		{"read-only extra by subcommand", Rules{ReadOnlyCommands: []string{"SITE UMASK"}}, site("UMASK", Write), true, "", 0},
		{"read-only extra does not widen SITE", Rules{ReadOnlyCommands: []string{"SITE UMASK"}}, chmod, true, RuleReadOnly, 550},
		{"deny list", Rules{DenyCommands: []string{"SITE", "DELE"}}, op("DELE", Write), false, RuleDenyCmds, 502},
		{"deny list miss", Rules{DenyCommands: []string{"SITE"}}, op("DELE", Write), false, "", 0},
		{"deny MKD covers XMKD", Rules{DenyCommands: []string{"MKD"}}, xmkdAlias, false, RuleDenyCmds, 502},
		{"deny XMKD covers MKD", Rules{DenyCommands: []string{"XMKD"}}, mkd, false, RuleDenyCmds, 502},
		{"deny SITE covers bare CHMOD", Rules{DenyCommands: []string{"SITE"}}, chmod, false, RuleDenyCmds, 502},
		{"deny SITE CHMOD covers bare CHMOD", Rules{DenyCommands: []string{"SITE CHMOD"}}, chmod, false, RuleDenyCmds, 502},
		{"deny CHMOD covers SITE CHMOD", Rules{DenyCommands: []string{"CHMOD"}}, chmod, false, RuleDenyCmds, 502},
		{"deny SITE CHMOD spares SITE HELP", Rules{DenyCommands: []string{"SITE CHMOD"}}, site("HELP", Session), false, "", 0},
		{"allow list hit", Rules{AllowCommands: []string{"RETR", "EPSV", "PASV"}}, op("RETR", Read), false, "", 0},
		{"allow list miss", Rules{AllowCommands: []string{"RETR"}}, op("STOR", Write), false, RuleAllowCmds, 502},
		{"allow list by alias", Rules{AllowCommands: []string{"XMKD"}}, mkd, false, "", 0},
		{"allow SITE CHMOD is not SITE UTIME", Rules{AllowCommands: []string{"SITE CHMOD"}}, site("UTIME", Write), false, RuleAllowCmds, 502},
		{"allow list keeps the essentials", Rules{AllowCommands: []string{"RETR"}}, quit, false, "", 0},
		{"deny wins over allow", Rules{AllowCommands: []string{"DELE"}, DenyCommands: []string{"DELE"}}, op("DELE", Write), false, RuleDenyCmds, 502},
		{"essentials never denied", Rules{DenyCommands: []string{"QUIT"}}, quit, false, "", 0},
		{"deny before read-only", Rules{DenyCommands: []string{"STOR"}}, op("STOR", Write), true, RuleDenyCmds, 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.rules.Command(tc.op, tc.readOnly)
			if tc.rule == "" {
				if d != nil {
					t.Fatalf("denied: %v", d)
				}
				return
			}
			if d == nil || d.Rule != tc.rule || d.Code != tc.code {
				t.Fatalf("got %v, want rule %s code %d", d, tc.rule, tc.code)
			}
		})
	}
}

func TestUserName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"john doe", true},
		{"jürgen", true},
		{"j\xfcrgen", true}, // Latin-1, not UTF-8
		{"", false},
		{" alice", false},
		{"alice ", false},
		{"alice\t", false},
		{"\u00a0alice", false}, // NO-BREAK SPACE: unicode.IsSpace
		{"ali\x00ce", false},
		{"ali\x7fce", false},
		{"ali\u0085ce", false}, // NEL, C1
		{"ali\x85ce", false},   // C1 in Latin-1
		{"ali\u2028ce", false},
	} {
		if d := UserName(tc.name); (d == nil) != tc.ok || (d != nil && (d.Code != 501 || d.Rule != RuleUserName)) {
			t.Errorf("UserName(%q) = %v, want ok=%v", tc.name, d, tc.ok)
		}
	}
}

func TestUnknown(t *testing.T) {
	if d := (&Rules{}).Unknown("XYZZY"); d == nil || d.Code != 502 || d.Rule != RuleUnknownCmds {
		t.Fatalf("unknown verb: %v", d)
	}
	if d := (&Rules{RelayUnknown: true}).Unknown("XYZZY"); d != nil {
		t.Fatalf("relayed unknown verb: %v", d)
	}
}

func TestValidCommandEntry(t *testing.T) {
	for _, tc := range []struct {
		e  string
		ok bool
	}{{"MKD", true}, {"SITE CHMOD", true}, {"SITE", true}, {"mkd", false}, {"RETR FILE", false}, {"SITE CH MOD", false},
		{"SITE ", false}, {"", false}, {"TOOLONGVERB", false}} {
		if err := ValidCommandEntry(tc.e); (err == nil) != tc.ok {
			t.Errorf("ValidCommandEntry(%q) = %v, want ok=%v", tc.e, err, tc.ok)
		}
	}
}

func TestSessions(t *testing.T) {
	for _, tc := range []struct {
		max, held int
		denied    bool
	}{{0, 1000, false}, {2, 0, false}, {2, 1, false}, {2, 2, true}, {1, 5, true}} {
		r := Rules{MaxSessionsPerUser: tc.max}
		if d := r.Sessions(tc.held); (d != nil) != tc.denied || (d != nil && (d.Rule != RuleMaxSessions || d.Code != 530)) {
			t.Errorf("max %d held %d: %v", tc.max, tc.held, d)
		}
	}
}

func TestAddress(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name        string
		allow, deny []netip.Prefix
		addr        string
		rule        string
	}{
		{"no lists", nil, nil, "203.0.113.9", ""},
		{"allowed", pfx("10.0.0.0/8"), nil, "10.1.2.3", ""},
		{"not allowed", pfx("10.0.0.0/8"), nil, "11.1.2.3", RuleAllowCIDRs},
		{"denied", nil, pfx("192.0.2.0/24"), "192.0.2.7", RuleDenyCIDRs},
		{"deny wins over allow", pfx("192.0.2.0/24"), pfx("192.0.2.7/32"), "192.0.2.7", RuleDenyCIDRs},
		{"mapped IPv4 judged as IPv4", nil, pfx("192.0.2.0/24"), "::ffff:192.0.2.7", RuleDenyCIDRs},
		{"IPv6 allowed", pfx("2001:db8::/32"), nil, "2001:db8::1", ""},
		{"IPv6 not in an IPv4 list", pfx("0.0.0.0/0"), nil, "2001:db8::1", RuleAllowCIDRs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Address(tc.allow, tc.deny, netip.MustParseAddr(tc.addr))
			if (tc.rule == "") != (d == nil) || (d != nil && (d.Rule != tc.rule || d.Code != 421)) {
				t.Fatalf("got %v, want %q", d, tc.rule)
			}
		})
	}
}

func TestChooseRoute(t *testing.T) {
	routes := []Route{
		{Name: "backup", Users: []string{"backup-*"}, Backend: "vault"},
		{Name: "partner-host", Hosts: []string{"partner.example.com", "*.partner.example.com"}, Backend: "partner"},
		{Name: "partner-sni", SNI: []string{"ftp.partner.example.com"}, Users: []string{"p-*"}, Backend: "partner"},
	}
	tests := []struct{ user, host, sni, want string }{
		{"backup-db1", "", "", "vault"},
		{"backup-db1", "partner.example.com", "", "vault"}, // first match wins
		{"alice", "Partner.Example.COM", "", "partner"},    // names compared in lower case
		{"alice", "eu.partner.example.com", "", "partner"},
		{"p-7", "", "ftp.partner.example.com", "partner"},
		{"alice", "", "ftp.partner.example.com", ""}, // both lists must match
		{"alice", "", "", ""},
		{"BACKUP-db1", "", "", "vault"}, // user names ignore case by default
	}
	r := Default()
	for _, tc := range tests {
		got := ""
		if rt := r.ChooseRoute(routes, tc.user, tc.host, tc.sni); rt != nil {
			got = rt.Backend
		}
		if got != tc.want {
			t.Errorf("user %q host %q sni %q: backend %q, want %q", tc.user, tc.host, tc.sni, got, tc.want)
		}
	}
	exact := Rules{UserNames: Exact}
	if rt := exact.ChooseRoute(routes, "BACKUP-db1", "", ""); rt != nil {
		t.Errorf("user_names = exact: BACKUP-db1 took route %s", rt.Name)
	}
	if routes[0].CatchAll() || !(&Route{Backend: "x"}).CatchAll() {
		t.Error("CatchAll")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules Rules
		ok    bool
	}{
		{"default", Default(), true},
		{"good patterns", Rules{AllowUsers: []string{"ok-*", "[a-z]"}}, true},
		{"bad allow pattern", Rules{AllowUsers: []string{"bad["}}, false},
		{"bad user pattern", Rules{DenyUsers: []string{"a["}}, false},
		{"empty pattern", Rules{ReadOnlyUsers: []string{""}}, false},
		{"lower-case verb", Rules{DenyCommands: []string{"dele"}}, false},
		{"SITE subcommand", Rules{DenyCommands: []string{"SITE CHMOD"}}, true},
		{"bad read-only extra", Rules{ReadOnlyCommands: []string{"site umask"}}, false},
		{"essential verb in allow list", Rules{AllowCommands: []string{"QUIT", "RETR"}}, true},
		{"negative session bound", Rules{MaxSessionsPerUser: -1}, false},
	} {
		if err := tc.rules.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
