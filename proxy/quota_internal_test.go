package proxy

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// testPeriod is a quota period whose window holding now ends at least
// five minutes from now, so that no count is dropped midway through a
// test (windows of 1, 7, 11 and 13 hours end together only at multiples
// of 1001 hours from the epoch).
func testPeriod(t *testing.T) time.Duration {
	t.Helper()
	for _, h := range []time.Duration{1, 7, 11, 13} {
		if _, end := (config.Quota{Period: h * time.Hour}).Window(time.Now()); time.Until(end) > 5*time.Minute {
			return h * time.Hour
		}
	}
	t.Fatal("every candidate quota period ends within five minutes")
	return 0
}

// testQuotaKey is the key of bob's upload quota in a window holding now
// that ends at least five minutes from now.
func testQuotaKey(t *testing.T) quotaKey {
	return newQuotaKey("user:bob", config.Quota{Up: 1, Period: testPeriod(t)}, true, time.Now())
}

// TestQuotaCounts: what a quota count takes, in memory and shared through
// Redis (miniredis), step by step: up to the limit and no further, nothing
// past it, gifts back down to zero and not below, no bound with limit 0.
func TestQuotaCounts(t *testing.T) {
	steps := []struct {
		n, limit, added, used int64
	}{
		{0, 100, 0, 0},       // a look
		{60, 100, 60, 60},    // within
		{60, 100, 40, 100},   // crosses: up to the limit
		{10, 100, 0, 100},    // past it: nothing
		{-30, 0, -30, 70},    // given back
		{10, 0, 10, 80},      // no bound
		{-500, 0, -80, 0},    // not below zero
		{200, 150, 150, 150}, // a raised limit
	}
	mr := miniredis.RunT(t)
	clock := newTestClock()
	k := testQuotaKey(t)
	for _, st := range []struct {
		name  string
		state sharedState
	}{
		{"memory", newMemoryState(banRules(3))},
		{"redis", newTestInstance(t, mr.Addr(), clock, banRules(3))},
	} {
		t.Run(st.name, func(t *testing.T) {
			for i, s := range steps {
				if added, used := st.state.quota(k, s.n, s.limit); added != s.added || used != s.used {
					t.Fatalf("step %d: quota(%d, limit %d) = %d, %d; want %d, %d", i, s.n, s.limit, added, used, s.added, s.used)
				}
			}
			if got := st.state.quotaUsed(k); got != 150 {
				t.Fatalf("quotaUsed = %d", got)
			}
			other := k
			other.up = false
			if _, used := st.state.quota(other, 0, 100); used != 0 {
				t.Fatalf("the download count holds %d", used)
			}
		})
	}
	// Redis keeps the count until the window's end, and no longer.
	key := "t:quota:" + k.String()
	if ttl := mr.TTL(key); ttl <= 0 || ttl > time.Until(k.end)+time.Second || ttl < time.Until(k.end)-time.Second {
		t.Fatalf("%s expires in %s, want at the window's end, in %s", key, ttl, time.Until(k.end))
	}
	mr.FastForward(time.Until(k.end) + time.Second)
	if mr.Exists(key) {
		t.Fatal("the count outlived its window")
	}
}

// TestSharedQuotaFallback: two instances count one quota together; while
// Redis is away an instance counts on from the last shared count it saw,
// and adds what it counted to Redis's count once Redis answers again.
func TestSharedQuotaFallback(t *testing.T) {
	mr := miniredis.RunT(t)
	clock := newTestClock()
	a := newTestInstance(t, mr.Addr(), clock, banRules(3))
	b := newTestInstance(t, mr.Addr(), clock, banRules(3))
	k := testQuotaKey(t)
	if added, used := a.quota(k, 200, 1000); added != 200 || used != 200 {
		t.Fatalf("a: %d, %d", added, used)
	}
	if added, used := b.quota(k, 900, 1000); added != 800 || used != 1000 {
		t.Fatalf("b, crossing the quota a used first: %d, %d", added, used)
	}
	if _, used := a.quota(k, -100, 0); used != 900 {
		t.Fatalf("a gives 100 back: %d", used)
	}

	mr.Close()
	if added, used := a.quota(k, 50, 1000); added != 50 || used != 950 {
		t.Fatalf("while Redis is away, from the last shared count: %d, %d", added, used)
	}
	if got := testutil.ToFloat64(a.m.fallbacks); got != 1 {
		t.Fatalf("fallbacks: %v", got)
	}
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "a to share again", func() bool { a.heartbeat(); return a.healthy.Load() })
	if _, used := b.quota(k, 0, 1000); used != 950 {
		t.Fatalf("after the episode b sees %d, want a's 50 added", used)
	}
	if ttl := mr.TTL("t:quota:" + k.String()); ttl <= 0 {
		t.Fatalf("the written-back count has no expiry: %s", ttl)
	}
}

// TestQuotaLease: a transfer's lease reserves a block at a time, lets
// exactly the quota pass, gives back what it did not use, and moves to
// the next window when one ends.
func TestQuotaLease(t *testing.T) {
	st := newMemoryState(banRules(3))
	q := config.Quota{Up: 1 << 20, Period: testPeriod(t)}
	now := time.Now()
	l := &quotaLease{st: st, key: newQuotaKey("user:bob", q, true, now), quota: q, limit: q.Up}
	passed := 0
	for i := 0; i < 100 && !l.exceeded; i++ {
		passed += l.take(100_000, now)
	}
	if passed != 1<<20 || !l.exceeded {
		t.Fatalf("passed %d bytes of a 1 MiB quota (exceeded %v)", passed, l.exceeded)
	}
	l.release()
	if used := st.quotaUsed(l.key); used != 1<<20 {
		t.Fatalf("count %d after the lease", used)
	}

	// A lease that passes little gives the rest of its block back.
	k := newQuotaKey("user:carol", q, true, now)
	l = &quotaLease{st: st, key: k, quota: q, limit: q.Up}
	if n := l.take(10, now); n != 10 || st.quotaUsed(k) != minQuotaBlock {
		t.Fatalf("take(10) = %d, count %d: want a block reserved", n, st.quotaUsed(k))
	}
	l.release()
	if used := st.quotaUsed(k); used != 10 {
		t.Fatalf("count %d after release, want 10", used)
	}

	// The window ends: the lease gives back the old window's block and
	// counts in the new one.
	l = &quotaLease{st: st, key: k, quota: q, limit: q.Up}
	l.take(10, now)
	next := k.end.Add(time.Second)
	if n := l.take(10, next); n != 10 || l.key.start != k.end {
		t.Fatalf("after the window: %d in the window from %s", n, l.key.start)
	}
	l.release()
	if st.quotaUsed(k) != 20 || st.quotaUsed(l.key) != 10 {
		t.Fatalf("counts %d and %d", st.quotaUsed(k), st.quotaUsed(l.key))
	}

	for _, tt := range []struct{ limit, block int64 }{
		{1 << 20, minQuotaBlock}, {64 << 20, 1 << 20}, {10 << 30, quotaBlock},
	} {
		if got := quotaBlockFor(tt.limit); got != tt.block {
			t.Errorf("quotaBlockFor(%d) = %d, want %d", tt.limit, got, tt.block)
		}
	}
}
