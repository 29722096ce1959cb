package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// testClock is a clock the tests move by hand.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func banRules(failures int) policy.BanRules {
	return policy.BanRules{Failures: failures, Window: time.Minute, Duration: 10 * time.Minute}
}

// testInstance is one instance's state on the Redis at addr.
type testInstance struct {
	*redisState
	m      *stateMetrics
	mu     sync.Mutex
	kicked []netip.Prefix
}

func newTestInstance(t *testing.T, addr string, clock *testClock, rules policy.BanRules) *testInstance {
	t.Helper()
	in := &testInstance{m: newStateMetrics(prometheus.NewRegistry())}
	r, err := newRedisState(&config.RedisState{Address: addr, Prefix: "t:"}, newMemoryState(rules), zap.NewNop(), in.m,
		clock.now, func(k netip.Prefix) { in.mu.Lock(); in.kicked = append(in.kicked, k); in.mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	in.redisState = r
	t.Cleanup(r.close)
	return in
}

func (in *testInstance) kicks() []netip.Prefix {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]netip.Prefix(nil), in.kicked...)
}

// waitCond polls cond for up to 10 s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSharedSessionCounts: counts are the sum over live instances; a
// crashed instance (no heartbeat, no clean close) stops counting once its
// TTL has passed; a clean close removes its counts at once.
func TestSharedSessionCounts(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := newTestClock()
	a := newTestInstance(t, mr.Addr(), clock, banRules(3))
	b := newTestInstance(t, mr.Addr(), clock, banRules(3))
	bob := userCounter("bob")
	for _, step := range []struct {
		in    *testInstance
		delta int
		want  int
	}{
		{a, +1, 1}, {b, +1, 2}, {a, +1, 3}, {b, 0, 3}, {a, -1, 2}, {b, -1, 1}, {b, -1, 1}, // below zero stays zero
	} {
		if got := step.in.sessions(bob, step.delta); got != step.want {
			t.Fatalf("sessions(%+d) = %d, want %d", step.delta, got, step.want)
		}
	}
	if got := a.sessions(clientCounter(netip.MustParsePrefix("192.0.2.1/32")), 0); got != 0 {
		t.Fatalf("another counter: %d", got)
	}

	// A count astray in Redis (changed while Redis was away, or by an
	// operation whose outcome a timeout hid) is right again after a
	// heartbeat.
	mr.HSet("t:sessions:"+a.id, string(bob), "7")
	if got := b.sessions(bob, 0); got != 7 {
		t.Fatalf("astray: %d", got)
	}
	a.heartbeat()
	if got := b.sessions(bob, 0); got != 1 {
		t.Fatalf("a count astray stays after a heartbeat: %d", got)
	}

	// a crashes: its goroutines stop, it says nothing to Redis.
	a.cancel()
	a.wg.Wait()
	if got := b.sessions(bob, 0); got != 1 {
		t.Fatalf("just after the crash: %d", got)
	}
	for i := 0; i <= int(stateInstanceTTL/stateHeartbeat); i++ { // b lives on, beating
		clock.add(stateHeartbeat)
		mr.FastForward(stateHeartbeat)
		b.heartbeat()
	}
	if got := b.sessions(bob, 0); got != 0 {
		t.Fatalf("a crashed instance's sessions still count after its TTL: %d", got)
	}

	// A clean close takes an instance's counts away at once.
	c := newTestInstance(t, mr.Addr(), clock, banRules(3))
	c.sessions(bob, +1)
	if got := b.sessions(bob, 0); got != 1 {
		t.Fatalf("before close: %d", got)
	}
	c.close()
	if got := b.sessions(bob, 0); got != 0 {
		t.Fatalf("after a clean close: %d", got)
	}
}

// TestSharedBans: failures on two instances count together; the ban
// holds on both, and the other instance is told at once (its sessions
// kicked); an instance started later learns the ban from Redis.
func TestSharedBans(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := newTestClock()
	a := newTestInstance(t, mr.Addr(), clock, banRules(3))
	b := newTestInstance(t, mr.Addr(), clock, banRules(3))
	waitCond(t, "subscriptions", func() bool { return a.subscribed.Load() && b.subscribed.Load() })
	ip := netip.MustParseAddr("192.0.2.7")
	now := clock.now()
	if !a.failure(ip, now).IsZero() || !b.failure(ip, now).IsZero() {
		t.Fatal("banned before the third failure")
	}
	until := a.failure(ip, now)
	if until.IsZero() {
		t.Fatal("the third failure, across two instances, banned nobody")
	}
	if a.banned(ip, now) == nil || b.banned(ip, now) == nil {
		t.Fatal("the ban does not hold on both")
	}
	waitCond(t, "b to close the banned client's sessions", func() bool { return len(b.kicks()) == 1 })
	if len(a.kicks()) != 0 {
		t.Fatal("a kicked on its own message; login.failed does that")
	}
	if !b.failure(ip, now).IsZero() {
		t.Fatal("a failure of a banned client started another ban")
	}
	c := newTestInstance(t, mr.Addr(), clock, banRules(3))
	if c.banned(ip, now) == nil {
		t.Fatal("an instance started after the ban does not see it")
	}
	// A ban read from its key before its message arrives (here: with no
	// message at all) closes the client's sessions too.
	other := netip.MustParseAddr("192.0.2.11")
	mr.Set("t:ban:192.0.2.11/32", strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10))
	if b.banned(other, now) == nil {
		t.Fatal("a ban in Redis does not hold")
	}
	if k := b.kicks(); len(k) != 2 || k[1] != netip.PrefixFrom(other, 32) {
		t.Fatalf("a ban read from Redis closed no session: kicks %v", k)
	}
	if a.banned(netip.MustParseAddr("192.0.2.8"), now) != nil {
		t.Fatal("another address is banned")
	}
	// Safelisted addresses and bans off count nothing, in Redis either.
	s := newTestInstance(t, mr.Addr(), clock, policy.BanRules{Failures: 1, Window: time.Minute, Duration: time.Minute,
		Safelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	if !s.failure(netip.MustParseAddr("198.51.100.1"), now).IsZero() {
		t.Fatal("a safelisted address was banned")
	}
	if until := s.failure(netip.MustParseAddr("203.0.113.1"), now); until.IsZero() || !until.Equal(now.Add(time.Minute).Truncate(time.Millisecond)) {
		t.Fatalf("failures = 1: ban until %v", until)
	}
	clock.add(time.Minute)
	mr.FastForward(time.Minute)
	if s.banned(netip.MustParseAddr("203.0.113.1"), clock.now()) != nil {
		t.Fatal("a ban outlived its duration")
	}
}

// TestSharedStateFallback: while Redis is away every operation is local,
// the episode is counted once, and Redis is not asked again until the
// heartbeat reaches it; then this instance's counts and the bans it
// decided meanwhile are written back.
func TestSharedStateFallback(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := newTestClock()
	a := newTestInstance(t, mr.Addr(), clock, banRules(1))
	b := newTestInstance(t, mr.Addr(), clock, banRules(1))
	bob := userCounter("bob")
	a.sessions(bob, +1)
	waitCond(t, "the gauge", func() bool { return testutil.ToFloat64(a.m.up) == 1 })

	mr.Close()
	if got := a.sessions(bob, +1); got != 2 {
		t.Fatalf("local count while Redis is away: %d", got)
	}
	ip := netip.MustParseAddr("192.0.2.9")
	if a.failure(ip, clock.now()).IsZero() {
		t.Fatal("no local ban while Redis is away")
	}
	a.sessions(bob, 0)
	if got := testutil.ToFloat64(a.m.fallbacks); got != 1 {
		t.Fatalf("fallbacks: %v, want 1 per episode", got)
	}
	if got := testutil.ToFloat64(a.m.up); got != 0 {
		t.Fatalf("state_backend_up: %v", got)
	}
	// The heartbeat may have met the closed Redis first; either way, once
	// one operation failed, the others do not ask Redis.
	asked := 0.0
	for _, op := range []string{"sessions", "failure", "ban_check", "publish"} {
		asked += testutil.ToFloat64(a.m.errors.WithLabelValues(op))
	}
	if asked > 1 {
		t.Fatalf("%v operations failed against the closed Redis: only the first of an episode may ask it", asked)
	}

	if err := mr.Restart(); err != nil { // empty, as after a crash without persistence
		t.Fatal(err)
	}
	mr.FlushAll()
	a.heartbeat()
	b.heartbeat()
	if got := testutil.ToFloat64(a.m.up); got != 1 {
		waitCond(t, "the gauge after the restart", func() bool { return testutil.ToFloat64(a.m.up) == 1 })
	}
	if got := b.sessions(bob, 0); got != 2 {
		t.Fatalf("a's counts were not written back: b sees %d", got)
	}
	if b.banned(ip, clock.now()) == nil {
		t.Fatal("a's ban from the episode was not written back")
	}
}

// TestSharedStateSlowRedis: a Redis that accepts and never answers holds
// an operation no longer than stateOpTimeout (and a bit), and the next
// ones not at all.
func TestSharedStateSlowRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	conns.Add(1)
	go func() { // accepts, reads nothing, answers nothing
		defer conns.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	clock := newTestClock()
	start := time.Now()
	a := newTestInstance(t, ln.Addr().String(), clock, banRules(3))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("starting against a silent Redis took %s", d)
	}
	ip := netip.MustParseAddr("192.0.2.10")
	for i := 0; i < 3; i++ {
		start := time.Now()
		if a.banned(ip, clock.now()) != nil {
			t.Fatal("banned")
		}
		a.sessions(userCounter("bob"), +1)
		if d := time.Since(start); d > stateOpTimeout+time.Second {
			t.Fatalf("a login's checks took %s against a silent Redis", d)
		}
	}
	if got := a.sessions(userCounter("bob"), 0); got != 3 {
		t.Fatalf("local count: %d", got)
	}
}

// TestTOTPUse: a TOTP step is taken once per key, an earlier step is
// refused after a later one, and a record past its until is forgotten. On
// Redis, a step used on one instance is refused on the other; while Redis
// is away each instance refuses what it saw used itself.
func TestTOTPUse(t *testing.T) {
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	m := newMemoryState(banRules(3))
	for i, tc := range []struct {
		key   string
		step  uint64
		until time.Time
		fresh bool
	}{
		{"k", 10, future, true}, {"k", 10, future, false}, {"k", 9, future, false}, {"k", 11, future, true},
		{"other", 10, future, true},                    // per key
		{"old", 5, past, true}, {"old", 5, past, true}, // a record past its until is gone
	} {
		if got := m.totpUse(tc.key, tc.step, tc.until); got != tc.fresh {
			t.Fatalf("%d: totpUse(%q, %d) = %v, want %v", i, tc.key, tc.step, got, tc.fresh)
		}
	}

	mr := miniredis.RunT(t)
	clock := newTestClock()
	a := newTestInstance(t, mr.Addr(), clock, banRules(3))
	b := newTestInstance(t, mr.Addr(), clock, banRules(3))
	for i, tc := range []struct {
		on    *testInstance
		step  uint64
		fresh bool
	}{{a, 100, true}, {b, 100, false}, {b, 99, false}, {b, 101, true}, {a, 101, false}} {
		if got := tc.on.totpUse("auth\x00alice", tc.step, future); got != tc.fresh {
			t.Fatalf("%d: step %d = %v, want %v", i, tc.step, got, tc.fresh)
		}
	}
	if ttl := mr.TTL("t:totp:auth\x00alice"); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("the step's key expires in %v; want about an hour", ttl)
	}
	mr.Close()
	if !a.totpUse("auth\x00bob", 7, future) || a.totpUse("auth\x00bob", 7, future) {
		t.Fatal("while Redis is away, the instance that saw a step used must refuse it")
	}
	if got := testutil.ToFloat64(a.m.fallbacks); got != 1 {
		t.Fatalf("fallbacks: %v", got)
	}
}
