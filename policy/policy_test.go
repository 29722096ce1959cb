package policy

import "testing"

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

func TestValidate(t *testing.T) {
	if err := (&Rules{AllowUsers: []string{"ok-*", "[a-z]"}}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (&Rules{AllowUsers: []string{"bad["}}).Validate(); err == nil {
		t.Fatal("bad pattern accepted")
	}
}
