package proxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// The state instances behind one balancer may share: bans, the failed
// logins that lead to them, the session counts behind
// max_sessions_per_user and max_sessions_per_ip, and the quota counts
// (quota.go) (issue 19). Rate limits
// are not in it: they stay per instance (ratelimit.go).
//
// memoryState keeps it in this process, as a single instance needs.
// redisState shares it through Redis (the state block) and keeps a
// memoryState of its own: a mirror of what it learns, and what it falls
// back to while Redis cannot be reached (state_redis.go).

// sharedState is where a server keeps its bans and session counts. Its
// methods are safe for concurrent use and never block longer than
// stateOpTimeout.
type sharedState interface {
	// banned reports the ban in force on a's client key at now, if any.
	banned(a netip.Addr, now time.Time) *policy.Denial
	// failure counts a failed login from a at now. It reports the end of
	// the ban this failure started, or the zero time if it started none.
	failure(a netip.Addr, now time.Time) time.Time
	// banKey is a's client key under the ban rules in force.
	banKey(a netip.Addr) netip.Prefix
	// sessions adds delta to the sessions of c and returns their count
	// across every instance sharing the state.
	sessions(c counter, delta int) int
	// quota adds up to n bytes to the quota count k and returns how
	// many it added and the count after. With limit > 0 the count never
	// passes limit: it adds less, down to 0, when n would pass it. A
	// negative n gives bytes back (at most the count).
	quota(k quotaKey, n, limit int64) (added, used int64)
	// quotaUsed is the count of k as this instance knows it, without
	// asking anyone (the status page and STAT).
	quotaUsed(k quotaKey) int64
	// totpUse records that the TOTP code of step was used for key (an
	// auth block and a user) and reports whether it was new: a step at
	// or before the last one used, on any instance sharing the state, is
	// refused (RFC 6238 §5.2). The record may be forgotten after until,
	// when the step can no longer be accepted anyway.
	totpUse(key string, step uint64, until time.Time) bool
	// setRules replaces the ban rules (a reload).
	setRules(policy.BanRules)
	// close stops the state's goroutines; safe to call twice.
	close()
}

// A counter names a count of sessions: a user's logged-in sessions, or a
// client's (policy.ClientKey) sessions.
type counter string

func userCounter(user string) counter        { return counter("u:" + user) }
func clientCounter(key netip.Prefix) counter { return counter("a:" + key.String()) }

var (
	_ sharedState = (*memoryState)(nil)
	_ sharedState = (*redisState)(nil)
)

// memoryState is the state of one instance, in its memory.
type memoryState struct {
	bans *policy.Bans

	mu     sync.Mutex
	counts map[counter]int // > 0
	// quotas are the quota counts by quotaKey.String(), each dropped
	// after its window's end (swept at most once a quotaSweep).
	quotas map[string]*quotaCount
	swept  time.Time
	// totp are the last TOTP steps used, by key, each with the time
	// after which it can be forgotten (swept with the quotas).
	totp map[string]totpUsed
}

// totpUsed is the last TOTP step a key used, and when it may be dropped.
type totpUsed struct {
	step  uint64
	until time.Time
}

// quotaCount is one quota count and the end of its window.
type quotaCount struct {
	used int64
	end  time.Time
}

// quotaSweep is how often the memory state drops the quota counts of
// windows that ended.
const quotaSweep = time.Minute

func newMemoryState(r policy.BanRules) *memoryState {
	return &memoryState{bans: policy.NewBans(r), counts: make(map[counter]int), quotas: make(map[string]*quotaCount)}
}

// sweep drops the quota counts of windows that ended and the TOTP steps
// past their use, at most once a quotaSweep. m.mu is held.
func (m *memoryState) sweep(now time.Time) {
	if now.Sub(m.swept) < quotaSweep {
		return
	}
	m.swept = now
	for key, c := range m.quotas {
		if !now.Before(c.end) {
			delete(m.quotas, key)
		}
	}
	for key, u := range m.totp {
		if !now.Before(u.until) {
			delete(m.totp, key)
		}
	}
}

func (m *memoryState) totpUse(key string, step uint64, until time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.sweep(now)
	if u, ok := m.totp[key]; ok && step <= u.step && now.Before(u.until) {
		return false
	}
	if m.totp == nil {
		m.totp = make(map[string]totpUsed)
	}
	m.totp[key] = totpUsed{step, until}
	return true
}

func (m *memoryState) quota(k quotaKey, n, limit int64) (added, used int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.sweep(now)
	c := m.quotas[k.String()]
	if c == nil {
		if n <= 0 || !now.Before(k.end) {
			return 0, 0
		}
		c = &quotaCount{end: k.end}
		m.quotas[k.String()] = c
	}
	added = clampQuota(n, limit, c.used)
	c.used += added
	return added, c.used
}

// clampQuota is what of n may be added to a count at used under limit
// (0: none): n, less when it would pass limit, and no less than -used.
func clampQuota(n, limit, used int64) int64 {
	if n > 0 && limit > 0 {
		n = min(n, max(limit-used, 0))
	}
	return max(n, -used)
}

// setQuota makes the count of k used (a mirror of the shared count).
func (m *memoryState) setQuota(k quotaKey, used int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.quotas[k.String()]; c != nil {
		c.used = used
	} else if used > 0 {
		m.quotas[k.String()] = &quotaCount{used: used, end: k.end}
	}
}

func (m *memoryState) quotaUsed(k quotaKey) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.quotas[k.String()]; c != nil {
		return c.used
	}
	return 0
}

func (m *memoryState) banned(a netip.Addr, now time.Time) *policy.Denial { return m.bans.Check(a, now) }
func (m *memoryState) failure(a netip.Addr, now time.Time) time.Time {
	return m.bans.Failure(a, now)
}
func (m *memoryState) banKey(a netip.Addr) netip.Prefix { return m.bans.Key(a) }
func (m *memoryState) setRules(r policy.BanRules)       { m.bans.SetRules(r) }
func (m *memoryState) close()                           {}

func (m *memoryState) sessions(c counter, delta int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.counts[c] + delta
	if n <= 0 {
		delete(m.counts, c)
		return 0
	}
	m.counts[c] = n
	return n
}

// snapshot copies the session counts.
func (m *memoryState) snapshot() map[counter]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(map[counter]int, len(m.counts))
	for k, v := range m.counts {
		c[k] = v
	}
	return c
}

// sameRedis reports whether a and b name the same shared state.
func sameRedis(a, b *config.RedisState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
