package policy

import "testing"

// TestProblems: each problem is reported at its attribute, unreachable
// rules apart from malformed ones, every one of them.
func TestProblems(t *testing.T) {
	type p struct {
		attr        string
		unreachable bool
	}
	tests := []struct {
		name  string
		rules Rules
		want  []p
	}{
		{"none", Default(), nil},
		{"bad patterns, one per list", Rules{AllowUsers: []string{"a[", "b["}, DenyUsers: []string{""}},
			[]p{{"allow_users", false}, {"deny_users", false}}},
		{"bad command entries, each", Rules{DenyCommands: []string{"dele", "SITE CH-MOD"}, ReadOnlyCommands: []string{"x y"}},
			[]p{{"deny_commands", false}, {"deny_commands", false}, {"read_only_commands", false}}},
		{"allowed and denied verb", Rules{AllowCommands: []string{"RETR", "DELE"}, DenyCommands: []string{"DELE"}},
			[]p{{"allow_commands", true}}},
		{"allowed user denied", Rules{AllowUsers: []string{"root", "alice"}, DenyUsers: []string{"ro*"}},
			[]p{{"allow_users", true}}},
		{"allowed pattern, not a name, not judged", Rules{AllowUsers: []string{"ro*"}, DenyUsers: []string{"root"}}, nil},
		{"negative session bound", Rules{MaxSessionsPerUser: -1}, []p{{"max_sessions_per_user", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.rules.Problems()
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, g := range got {
				if g.Attr != tt.want[i].attr || g.Unreachable != tt.want[i].unreachable || g.Detail == "" {
					t.Fatalf("problem %d: %+v, want %+v", i, g, tt.want[i])
				}
			}
			if (tt.rules.Validate() == nil) != (len(tt.want) == 0) {
				t.Fatalf("Validate = %v with problems %v", tt.rules.Validate(), got)
			}
		})
	}
}
