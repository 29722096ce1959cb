package policy

import (
	"net/netip"
	"testing"
	"time"
)

func TestBans(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	attacker, other, office := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("10.1.2.3")
	b := NewBans(BanRules{Failures: 3, Window: 60 * time.Second, Duration: 600 * time.Second,
		Safelist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if !b.Failure(attacker, at(0)).IsZero() || !b.Failure(attacker, at(30)).IsZero() {
		t.Fatal("banned too early")
	}
	if !b.Failure(attacker, at(90)).IsZero() { // 0 left the window: 30, 90
		t.Fatal("a failure outside the window counted")
	}
	if d := b.Check(attacker, at(91)); d != nil {
		t.Fatalf("banned at 91: %v", d)
	}
	if !b.Failure(attacker, at(91)).IsZero() { // 30 left the window too: 90, 91
		t.Fatal("banned at two failures in the window")
	}
	until := b.Failure(attacker, at(92)) // 90, 91, 92: three within 60 s
	if !until.Equal(at(692)) {
		t.Fatalf("ban until %v, want %v", until, at(692))
	}
	if d := b.Check(attacker, at(100)); d == nil || d.Rule != RuleBanned || d.Code != 421 {
		t.Fatalf("not banned at 100: %v", d)
	}
	if d := b.Check(netip.MustParseAddr("::ffff:203.0.113.9"), at(100)); d == nil {
		t.Fatal("the IPv4-mapped form escapes the ban")
	}
	if !b.Failure(attacker, at(200)).IsZero() {
		t.Fatal("a failure during a ban started another")
	}
	if d := b.Check(other, at(100)); d != nil {
		t.Fatal("another address was banned")
	}
	if d := b.Check(attacker, at(691)); d == nil {
		t.Fatal("the ban ended early")
	}
	if d := b.Check(attacker, at(692)); d != nil {
		t.Fatal("the ban outlived its duration")
	}
	for i := 0; i < 10; i++ {
		if !b.Failure(office, at(i)).IsZero() {
			t.Fatal("a safelisted address was banned")
		}
	}
	off := NewBans(BanRules{})
	for i := 0; i < 100; i++ {
		if !off.Failure(attacker, at(i)).IsZero() {
			t.Fatal("bans turned off still ban")
		}
	}
}

// TestBansBounded: failures from more addresses than the list tracks do not
// grow it without bound.
func TestBansBounded(t *testing.T) {
	b := NewBans(BanRules{Failures: 5, Window: time.Hour, Duration: time.Hour})
	now := time.Now()
	for i := 0; i < maxTracked+1000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.Failure(a, now.Add(time.Duration(i)))
	}
	if len(b.failures) > maxTracked {
		t.Fatalf("tracking %d addresses, bound %d", len(b.failures), maxTracked)
	}
}

// TestBansByIPv6Prefix: an IPv6 client is its /64 (by default), so
// failures from many addresses of one /64 add up to one ban, which then
// holds for every address in it; IPv4 stays per address.
func TestBansByIPv6Prefix(t *testing.T) {
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	b := NewBans(BanRules{Failures: 10, Window: time.Hour, Duration: time.Hour})
	var until time.Time
	for i := 0; i < 10; i++ {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, byte(i), 0, 0, 0, 0, 0, 0, byte(i * 7)})
		until = b.Failure(a, now)
	}
	if until.IsZero() {
		t.Fatal("10 failures from one /64 started no ban")
	}
	if d := b.Check(netip.MustParseAddr("2001:db8:1:2:ffff::1"), now); d == nil {
		t.Fatal("another address of the banned /64 is not banned")
	}
	if d := b.Check(netip.MustParseAddr("2001:db8:1:3::1"), now); d != nil {
		t.Fatal("the neighbouring /64 is banned")
	}
	per := NewBans(BanRules{Failures: 2, Window: time.Hour, Duration: time.Hour, IPv6Prefix: 128})
	per.Failure(netip.MustParseAddr("2001:db8::1"), now)
	if !per.Failure(netip.MustParseAddr("2001:db8::2"), now).IsZero() {
		t.Fatal("ipv6_prefix = 128 still groups addresses")
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		addr string
		bits int
		want string
	}{
		{"203.0.113.9", 0, "203.0.113.9/32"},
		{"::ffff:203.0.113.9", 0, "203.0.113.9/32"},
		{"2001:db8:1:2:3:4:5:6", 0, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"},
		{"::1", 0, "::/64"},
	} {
		if got := ClientKey(netip.MustParseAddr(tc.addr), tc.bits).String(); got != tc.want {
			t.Errorf("ClientKey(%s, %d) = %s, want %s", tc.addr, tc.bits, got, tc.want)
		}
	}
}

// TestBansShared: the methods a shared state uses. Ban keeps the later of
// two ends and reports news; InForce lists what holds; Exempt says whose
// failures count toward nothing.
func TestBansShared(t *testing.T) {
	now := time.Unix(1700000000, 0)
	k := netip.MustParsePrefix("192.0.2.1/32")
	b := NewBans(BanRules{Failures: 3, Window: time.Minute, Duration: time.Minute,
		Safelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	for i, step := range []struct {
		until time.Time
		news  bool
	}{
		{now.Add(time.Minute), true},
		{now.Add(time.Minute), false},    // the same ban, heard twice
		{now.Add(time.Second), false},    // an earlier end does not shorten it
		{now.Add(2 * time.Minute), true}, // a later one extends it
	} {
		if got := b.Ban(k, step.until); got != step.news {
			t.Fatalf("step %d: Ban reported %v", i, got)
		}
	}
	if b.Check(netip.MustParseAddr("192.0.2.1"), now.Add(90*time.Second)) == nil {
		t.Fatal("the extended ban does not hold")
	}
	if got := b.InForce(now); len(got) != 1 || !got[k].Equal(now.Add(2*time.Minute)) {
		t.Fatalf("InForce: %v", got)
	}
	if got := b.InForce(now.Add(2 * time.Minute)); len(got) != 0 {
		t.Fatalf("InForce after the end: %v", got)
	}
	for _, tc := range []struct {
		addr     string
		failures int
		exempt   bool
	}{
		{"192.0.2.1", 3, false},
		{"198.51.100.7", 3, true},
		{"::ffff:198.51.100.7", 3, true},
		{"192.0.2.1", 0, true}, // bans off
	} {
		b.SetRules(BanRules{Failures: tc.failures, Safelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		if got := b.Exempt(netip.MustParseAddr(tc.addr)); got != tc.exempt {
			t.Errorf("Exempt(%s) with failures %d = %v", tc.addr, tc.failures, got)
		}
	}
}
