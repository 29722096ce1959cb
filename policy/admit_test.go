package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAdmit(t *testing.T) {
	tests := []struct {
		name string
		a    Admission
		rule string // "" when admitted
	}{
		{"no bounds", Admission{Sessions: 5000, FromClient: 5000}, ""},
		{"within both", Admission{Sessions: 10, MaxSessions: 10, FromClient: 3, MaxPerClient: 3}, ""},
		{"server full", Admission{Sessions: 11, MaxSessions: 10, FromClient: 1, MaxPerClient: 3}, RuleServerSessions},
		{"client full", Admission{Sessions: 4, MaxSessions: 10, FromClient: 4, MaxPerClient: 3}, RuleClientSessions},
		{"both full: the server's first", Admission{Sessions: 11, MaxSessions: 10, FromClient: 4, MaxPerClient: 3}, RuleServerSessions},
		{"audit refuses before any bound", Admission{Sessions: 11, MaxSessions: 10, AuditRefuses: true}, RuleAuditUnavailable},
		{"audit refuses an empty server", Admission{Sessions: 1, AuditRefuses: true}, RuleAuditUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Admit(tt.a)
			switch {
			case tt.rule == "" && d != nil:
				t.Fatalf("refused: %v", d)
			case tt.rule != "" && (d == nil || d.Rule != tt.rule || d.Code != 421):
				t.Fatalf("got %v, want rule %s with 421", d, tt.rule)
			}
		})
	}
}

func TestDataPeer(t *testing.T) {
	a := netip.MustParseAddr
	v6key := netip.MustParsePrefix("2001:db8:1:2::/64")
	tests := []struct {
		name           string
		peer, client   netip.Addr
		balancer       netip.Addr
		key            netip.Prefix
		refused        bool
		reasonContains string
	}{
		{"the client", a("203.0.113.5"), a("203.0.113.5"), netip.Addr{}, netip.MustParsePrefix("203.0.113.5/32"), false, ""},
		{"a stranger", a("203.0.113.6"), a("203.0.113.5"), netip.Addr{}, netip.MustParsePrefix("203.0.113.5/32"), true, "data connection from 203.0.113.6"},
		{"the balancer", a("10.0.0.1"), a("203.0.113.5"), a("10.0.0.1"), netip.MustParsePrefix("203.0.113.5/32"), false, ""},
		{"not the balancer", a("10.0.0.2"), a("203.0.113.5"), a("10.0.0.1"), netip.MustParsePrefix("203.0.113.5/32"), true, "10.0.0.2"},
		{"a neighbour in the client's /64", a("2001:db8:1:2::9"), a("2001:db8:1:2::5"), netip.Addr{}, v6key, true, "within the client's 2001:db8:1:2::/64 but not its address"},
		{"outside the client's /64", a("2001:db8:1:3::5"), a("2001:db8:1:2::5"), netip.Addr{}, v6key, true, "data connection from 2001:db8:1:3::5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused, why := DataPeer(tt.peer, tt.client, tt.balancer, tt.key)
			if refused != tt.refused || (tt.refused && !strings.Contains(why, tt.reasonContains)) || (!tt.refused && why != "") {
				t.Fatalf("DataPeer = %v, %q; want %v, containing %q", refused, why, tt.refused, tt.reasonContains)
			}
		})
	}
}
