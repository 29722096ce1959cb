package policy

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// BanRules say when an address is banned: Failures failed logins within
// Window ban it for Duration. Addresses in Safelist are never banned.
// Failures == 0 turns bans off.
type BanRules struct {
	Failures int
	Window   time.Duration
	Duration time.Duration
	Safelist []netip.Prefix
}

// RuleBanned is the rule name of a refusal by ban.
const RuleBanned = "banned"

// Bans is the in-memory ban list of one server. It does no I/O; the time
// comes from the caller, so that tests can drive it.
type Bans struct {
	rules BanRules

	mu       sync.Mutex
	failures map[netip.Addr][]time.Time // within the window, oldest first
	until    map[netip.Addr]time.Time
}

// maxTracked bounds the addresses the ban list remembers failures for, so
// that a flood of failures from many addresses cannot exhaust memory: past
// it, an arbitrary address's failures are forgotten (bans in force are
// kept). Whoever commands that many addresses is beyond a ban list anyway.
const maxTracked = 100000

// NewBans returns an empty ban list with rules r.
func NewBans(r BanRules) *Bans {
	return &Bans{rules: r, failures: make(map[netip.Addr][]time.Time), until: make(map[netip.Addr]time.Time)}
}

func (b *Bans) safe(a netip.Addr) bool {
	return slices.ContainsFunc(b.rules.Safelist, func(p netip.Prefix) bool { return p.Contains(a) })
}

// Check reports the ban on a, if one is in force at now.
func (b *Bans) Check(a netip.Addr, now time.Time) *Denial {
	a = a.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.until[a]
	if !ok {
		return nil
	}
	if !now.Before(until) {
		delete(b.until, a)
		return nil
	}
	return &Denial{RuleBanned, 421, "Too many failed logins from your address; try again later."}
}

// Failure records a failed login from a at now. It reports the end of the
// ban this failure started, or the zero time if it started none.
func (b *Bans) Failure(a netip.Addr, now time.Time) time.Time {
	a = a.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rules.Failures <= 0 || b.safe(a) {
		return time.Time{}
	}
	if until, ok := b.until[a]; ok && now.Before(until) {
		return time.Time{} // already banned
	}
	recent := b.failures[a]
	cut := 0
	for cut < len(recent) && now.Sub(recent[cut]) >= b.rules.Window {
		cut++
	}
	recent = append(recent[cut:], now)
	if len(recent) < b.rules.Failures {
		if _, known := b.failures[a]; !known && len(b.failures) >= maxTracked {
			for a := range b.failures { // Go's map order: arbitrary
				delete(b.failures, a)
				break
			}
		}
		b.failures[a] = recent
		return time.Time{}
	}
	delete(b.failures, a)
	until := now.Add(b.rules.Duration)
	b.until[a] = until
	return until
}

// SetRules replaces the rules (a reload); failures counted and bans in
// force are kept.
func (b *Bans) SetRules(r BanRules) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = r
}
