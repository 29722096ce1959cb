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
	// IPv6Prefix is how many leading bits of an IPv6 client's address
	// make one client (ClientKey); 0 means DefaultIPv6Prefix.
	IPv6Prefix int
}

// DefaultIPv6Prefix is the IPv6 prefix one client is taken to hold: a /64
// is the smallest block an ISP hands out, and any host in it can take as
// many addresses as it likes, so a per-address count would give an
// attacker 2^64 tries.
const DefaultIPv6Prefix = 64

// ClientKey is the block of addresses counted as one client: the address
// itself for IPv4 (and IPv4-mapped IPv6), its first v6bits bits for IPv6
// (DefaultIPv6Prefix when v6bits is 0). Bans and per-address limits count
// by this key, so rotating addresses within a /64 gains nothing.
func ClientKey(a netip.Addr, v6bits int) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	if v6bits <= 0 || v6bits > 128 {
		v6bits = DefaultIPv6Prefix
	}
	p, _ := a.Prefix(v6bits)
	return p
}

// RuleBanned is the rule name of a refusal by ban.
const RuleBanned = "banned"

// Bans is the in-memory ban list of one server. It does no I/O; the time
// comes from the caller, so that tests can drive it.
type Bans struct {
	rules BanRules

	mu       sync.Mutex
	failures map[netip.Prefix][]time.Time // by ClientKey, within the window, oldest first
	until    map[netip.Prefix]time.Time
}

// maxTracked bounds the addresses the ban list remembers failures for, so
// that a flood of failures from many addresses cannot exhaust memory: past
// it, an arbitrary address's failures are forgotten (bans in force are
// kept). Whoever commands that many addresses is beyond a ban list anyway.
const maxTracked = 100000

// NewBans returns an empty ban list with rules r.
func NewBans(r BanRules) *Bans {
	return &Bans{rules: r, failures: make(map[netip.Prefix][]time.Time), until: make(map[netip.Prefix]time.Time)}
}

func (b *Bans) safe(a netip.Addr) bool {
	return slices.ContainsFunc(b.rules.Safelist, func(p netip.Prefix) bool { return p.Contains(a) })
}

// Key is the ban key of a: ClientKey under the current rules.
func (b *Bans) Key(a netip.Addr) netip.Prefix {
	b.mu.Lock()
	defer b.mu.Unlock()
	return ClientKey(a, b.rules.IPv6Prefix)
}

// Check reports the ban on a's key, if one is in force at now.
func (b *Bans) Check(a netip.Addr, now time.Time) *Denial {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := ClientKey(a, b.rules.IPv6Prefix)
	until, ok := b.until[k]
	if !ok {
		return nil
	}
	if !now.Before(until) {
		delete(b.until, k)
		return nil
	}
	return &Denial{RuleBanned, 421, "Too many failed logins from your address; try again later."}
}

// Failure records a failed login from a at now, counted against a's key.
// It reports the end of the ban this failure started, or the zero time if
// it started none.
func (b *Bans) Failure(a netip.Addr, now time.Time) time.Time {
	a = a.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rules.Failures <= 0 || b.safe(a) {
		return time.Time{}
	}
	k := ClientKey(a, b.rules.IPv6Prefix)
	if until, ok := b.until[k]; ok && now.Before(until) {
		return time.Time{} // already banned
	}
	recent := b.failures[k]
	cut := 0
	for cut < len(recent) && now.Sub(recent[cut]) >= b.rules.Window {
		cut++
	}
	recent = append(recent[cut:], now)
	if len(recent) < b.rules.Failures {
		if _, known := b.failures[k]; !known && len(b.failures) >= maxTracked {
			for k := range b.failures { // Go's map order: arbitrary
				delete(b.failures, k)
				break
			}
		}
		b.failures[k] = recent
		return time.Time{}
	}
	delete(b.failures, k)
	until := now.Add(b.rules.Duration)
	b.until[k] = until
	return until
}

// SetRules replaces the rules (a reload); failures counted and bans in
// force are kept.
func (b *Bans) SetRules(r BanRules) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = r
}

// Exempt reports whether failed logins from a count toward no ban: bans
// are off, or a is in the safelist.
func (b *Bans) Exempt(a netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rules.Failures <= 0 || b.safe(a.Unmap())
}

// Rules are the rules in force.
func (b *Bans) Rules() BanRules {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rules
}

// Ban bans key until then, as another instance decided (shared state),
// and reports whether that is news: a ban already in force that ends as
// late or later is kept.
func (b *Bans) Ban(key netip.Prefix, until time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur, ok := b.until[key]; ok && !cur.Before(until) {
		return false
	}
	delete(b.failures, key)
	b.until[key] = until
	return true
}

// InForce returns the bans in force at now, by key.
func (b *Bans) InForce(now time.Time) map[netip.Prefix]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[netip.Prefix]time.Time, len(b.until))
	for k, u := range b.until {
		if now.Before(u) {
			m[k] = u
		}
	}
	return m
}
