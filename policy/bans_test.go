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
