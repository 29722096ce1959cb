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
		{"allow-list is case-sensitive", Rules{AllowUsers: []string{"alice"}}, "Alice", true, RuleAllowUsers, 530},
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
	tests := []struct {
		name     string
		rules    Rules
		verb     string
		readOnly bool
		rule     string // "" when allowed
		code     int
	}{
		{"no rules", Rules{}, "DELE", false, "", 0},
		{"read-only may read", Rules{}, "RETR", true, "", 0},
		{"read-only may list", Rules{}, "MLSD", true, "", 0},
		{"read-only may not store", Rules{}, "STOR", true, RuleReadOnly, 550},
		{"read-only may not append", Rules{}, "APPE", true, RuleReadOnly, 550},
		{"read-only may not rename", Rules{}, "RNFR", true, RuleReadOnly, 550},
		{"read-only may not make directories (X form)", Rules{}, "XMKD", true, RuleReadOnly, 550},
		{"read-only may not SITE", Rules{}, "SITE", true, RuleReadOnly, 550},
		{"read-only may not set times", Rules{}, "MFMT", true, RuleReadOnly, 550},
		{"deny list", Rules{DenyCommands: []string{"SITE", "DELE"}}, "DELE", false, RuleDenyCmds, 502},
		{"deny list miss", Rules{DenyCommands: []string{"SITE"}}, "DELE", false, "", 0},
		{"allow list hit", Rules{AllowCommands: []string{"RETR", "EPSV", "PASV"}}, "RETR", false, "", 0},
		{"allow list miss", Rules{AllowCommands: []string{"RETR"}}, "STOR", false, RuleAllowCmds, 502},
		{"allow list keeps the essentials", Rules{AllowCommands: []string{"RETR"}}, "QUIT", false, "", 0},
		{"deny wins over allow", Rules{AllowCommands: []string{"DELE"}, DenyCommands: []string{"DELE"}}, "DELE", false, RuleDenyCmds, 502},
		{"essentials never denied", Rules{DenyCommands: []string{"AUTH"}}, "AUTH", false, "", 0},
		{"deny before read-only", Rules{DenyCommands: []string{"STOR"}}, "STOR", true, RuleDenyCmds, 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.rules.Command(tc.verb, tc.readOnly)
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
	r := Rules{ReadOnlyUsers: []string{"audit-*", "guest"}}
	for user, want := range map[string]bool{"audit-2026": true, "guest": true, "guests": false, "alice": false} {
		if r.ReadOnly(user) != want {
			t.Errorf("ReadOnly(%q) = %v", user, !want)
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
	}
	for _, tc := range tests {
		got := ""
		if rt := ChooseRoute(routes, tc.user, tc.host, tc.sni); rt != nil {
			got = rt.Backend
		}
		if got != tc.want {
			t.Errorf("user %q host %q sni %q: backend %q, want %q", tc.user, tc.host, tc.sni, got, tc.want)
		}
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
		{"essential verb denied", Rules{DenyCommands: []string{"QUIT"}}, false},
		{"essential verb in allow list", Rules{AllowCommands: []string{"QUIT", "RETR"}}, true},
		{"negative session bound", Rules{MaxSessionsPerUser: -1}, false},
	} {
		if err := tc.rules.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
