package proxy

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// Rate limits and max_file_size: what a transfer's relay asks before each
// write (flow.pass). Limits are token buckets (golang.org/x/time/rate) at
// four levels: the listener's, the user's (or a shared class's), the
// client address's, and the transfer's own; a chunk passes when every
// level that limits it has the tokens, so a transfer runs at the
// smallest. The shared buckets (all but the transfer's) live in the
// server's bucketSet while a session holds them: a session takes a
// bucket at its first limited transfer and gives it back when it ends,
// so idle sessions of unlimited users hold nothing, and the set never
// outgrows the sessions. Each chunk reads the configuration in force
// (Server.live): a reload (SIGHUP) changes the rates of running
// transfers at their next chunk.

// rateLevel is a level of the rate limits.
type rateLevel uint8

const (
	levelListener rateLevel = iota
	levelUser
	levelAddress
	levelTransfer
	sharedLevels = levelTransfer // the levels kept in the bucketSet
)

func (l rateLevel) String() string {
	return [...]string{"listener", "user", "address", "transfer"}[l]
}

// burstFor is the burst of a bucket limited to r bytes a second: a tenth
// of a second's worth, so that the rate holds over short spans and a
// reload takes effect within one; at least maxRecord, so that a TLS
// record's worth passes in one step. The relay reads at most a burst at a
// time (flow.chunk) and waits for bigger chunks in steps (take): WaitN
// and ReserveN refuse more than a burst at once.
func burstFor(r config.Rate) int {
	if r <= 0 {
		return relayBufferSize
	}
	return max(int(r/10), maxRecord)
}

// newLimiter is a bucket for r (0: unlimited), full.
func newLimiter(r config.Rate) *rate.Limiter {
	l := rate.NewLimiter(rate.Inf, burstFor(r))
	setRate(l, r)
	return l
}

// setRate makes l limit to r (0: unlimited), unless it does already.
func setRate(l *rate.Limiter, r config.Rate) {
	want := rate.Inf
	if r > 0 {
		want = rate.Limit(r)
	}
	if l.Limit() != want {
		l.SetLimit(want)
	}
	if b := burstFor(r); l.Burst() != b {
		l.SetBurst(b)
	}
}

// bucketSet holds the shared buckets by key ("listener:ftps", "user:bob",
// "class:partners", "address:192.0.2.1/32"), each counted by the sessions
// that hold it and dropped with the last.
type bucketSet struct {
	mu sync.Mutex
	m  map[string]*bucket
}

// bucket is one shared limit, a limiter for each direction.
type bucket struct {
	key      string
	down, up *rate.Limiter
	refs     int // guarded by bucketSet.mu
}

func (b *bucket) limiter(up bool) *rate.Limiter {
	if up {
		return b.up
	}
	return b.down
}

// acquire counts one more holder of the bucket key, made if needed, and
// sets its rates to r.
func (bs *bucketSet) acquire(key string, r config.RatePair) *bucket {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.m[key]
	if b == nil {
		if bs.m == nil {
			bs.m = make(map[string]*bucket)
		}
		b = &bucket{key: key, down: newLimiter(r.Down), up: newLimiter(r.Up)}
		bs.m[key] = b
	}
	b.refs++
	setRate(b.down, r.Down)
	setRate(b.up, r.Up)
	return b
}

// release counts one holder less, and drops the bucket after the last.
func (bs *bucketSet) release(b *bucket) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b.refs--; b.refs <= 0 {
		delete(bs.m, b.key)
	}
}

// len is how many buckets are held.
func (bs *bucketSet) len() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return len(bs.m)
}

// sessionBuckets are the shared buckets a session holds, by level.
type sessionBuckets struct {
	mu   sync.Mutex
	held [sharedLevels]*bucket
}

// levelRate is what one level asks of a transfer: its bucket's key, and
// its rates (zero: that level does not limit).
type levelRate struct {
	key  string
	rate config.RatePair
}

// hold makes the session hold the buckets want names (releasing those it
// no longer needs) with want's rates, and returns them (nil where a level
// does not limit).
func (h *sessionBuckets) hold(bs *bucketSet, want [sharedLevels]levelRate) [sharedLevels]*bucket {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, w := range want {
		cur := h.held[i]
		if cur != nil && (w.rate.IsZero() || cur.key != w.key) {
			bs.release(cur)
			h.held[i], cur = nil, nil
		}
		if w.rate.IsZero() {
			continue
		}
		if cur != nil {
			setRate(cur.down, w.rate.Down)
			setRate(cur.up, w.rate.Up)
			continue
		}
		h.held[i] = bs.acquire(w.key, w.rate)
	}
	return h.held
}

// releaseAll gives every bucket back, at the session's end.
func (h *sessionBuckets) releaseAll(bs *bucketSet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, b := range h.held {
		if b != nil {
			bs.release(b)
			h.held[i] = nil
		}
	}
}

// errFileTooLarge: an upload crossed limits.max_file_size.
var errFileTooLarge = errors.New("upload exceeds max_file_size")

// errFlowStopped: the transfer was cancelled while it waited for tokens.
var errFlowStopped = errors.New("transfer cancelled while rate limited")

// flow is what a transfer's relay asks before each write: rate limits and
// max_file_size. Used by the transfer goroutine only.
type flow struct {
	s        *session
	up       bool
	listener string // the session's listener, by name
	user     string
	file     bool            // a file, not a listing: quotas count it
	stop     <-chan struct{} // the transfer's cancel

	// left is how many more bytes may pass (max_file_size), or -1.
	left int64
	// quota is the user's quota for this direction, nil without one
	// (quota.go).
	quota *quotaLease

	// applied is the configuration whose rates are in force; limiters
	// are the limits that apply (at most one per level).
	applied  *config.Config
	limiters []levelLimiter
	own      *rate.Limiter // the transfer's own bucket, once it has one
	timer    *time.Timer

	// What it measured: time spent waiting, and the smallest limit
	// that made it wait, and its level.
	waited      time.Duration
	slowest     rate.Limit
	slowestAt   rateLevel
	waitSeconds [levelTransfer + 1]prometheus.Counter
	waitBytes   [levelTransfer + 1]prometheus.Counter
}

type levelLimiter struct {
	lim   *rate.Limiter
	level rateLevel
}

// newFlow is the flow of transfer x; left is what max_file_size lets
// through (-1: no bound).
func newFlow(x *transfer, left int64) *flow {
	return &flow{s: x.s, up: x.direction == audit.Upload, listener: x.s.lcfg.Name, user: x.user, file: x.file, stop: x.stop, left: left}
}

// apply takes the rates of cfg, the configuration in force.
func (f *flow) apply(cfg *config.Config) {
	f.applied = cfg
	f.applyQuota(cfg)
	var want [sharedLevels]levelRate
	for _, l := range cfg.Listeners {
		if l.Name == f.listener {
			want[levelListener] = levelRate{"listener:" + l.Name, config.RatePair{Down: l.RateDown, Up: l.RateUp}}
		}
	}
	want[levelUser].key, want[levelUser].rate = cfg.Rates.ForUser(&cfg.Policy, f.user)
	want[levelAddress] = levelRate{"address:" + f.s.client.key.String(), cfg.Rates.Address}
	held := f.s.rates.hold(&f.s.srv.buckets, want)
	f.limiters = f.limiters[:0]
	for i, b := range held {
		if b == nil {
			continue
		}
		r := want[i].rate.Down
		if f.up {
			r = want[i].rate.Up
		}
		if r > 0 {
			f.limiters = append(f.limiters, levelLimiter{b.limiter(f.up), rateLevel(i)})
		}
	}
	r := cfg.Rates.Transfer.Down
	if f.up {
		r = cfg.Rates.Transfer.Up
	}
	if r > 0 {
		if f.own == nil {
			f.own = newLimiter(r)
		}
		setRate(f.own, r)
		f.limiters = append(f.limiters, levelLimiter{f.own, levelTransfer})
	}
}

// refresh applies the configuration in force if it changed.
func (f *flow) refresh() {
	if cfg := f.s.srv.live.Load(); cfg != f.applied {
		f.apply(cfg)
	}
}

// chunk is how much the relay reads at once, at most size: no more than
// the smallest burst, so that each write follows its own tokens.
func (f *flow) chunk(size int) int {
	f.refresh()
	for _, l := range f.limiters {
		size = min(size, l.lim.Burst())
	}
	return size
}

// pass waits until n bytes may be written, and returns how many may: n,
// or fewer with errFileTooLarge when they would cross max_file_size or
// errQuotaExceeded when they would cross the user's quota, or 0 with
// errFlowStopped when the transfer was cancelled meanwhile.
func (f *flow) pass(n int) (int, error) {
	var err error
	if f.left >= 0 && int64(n) > f.left {
		n, err = int(f.left), errFileTooLarge
	}
	f.refresh()
	var now time.Time
	if f.quota != nil {
		now = time.Now()
		if m := f.quota.take(n, now); m < n {
			n, err = m, errQuotaExceeded
		}
	}
	if len(f.limiters) > 0 {
		if now.IsZero() {
			now = time.Now() // one reading for every level: the clock costs more than a bucket
		}
		for _, l := range f.limiters {
			var werr error
			if now, werr = f.take(l, n, now); werr != nil {
				if f.quota != nil {
					f.quota.untake(n)
				}
				return 0, werr
			}
		}
	}
	if f.left >= 0 {
		f.left -= int64(n)
	}
	return n, err
}

// take waits for n tokens of l, a burst at a time, and returns the time
// after it (now, when it did not wait).
func (f *flow) take(l levelLimiter, n int, now time.Time) (time.Time, error) {
	for n > 0 {
		k := min(n, l.lim.Burst())
		if l.lim.AllowN(now, k) { // the usual case below the limit, without ReserveN's allocation
			n -= k
			continue
		}
		r := l.lim.ReserveN(now, k)
		if !r.OK() {
			continue // the burst shrank meanwhile (a reload): try with the new one
		}
		d := r.DelayFrom(now)
		if d > 0 {
			if f.timer == nil {
				f.timer = time.NewTimer(d)
			} else {
				f.timer.Reset(d)
			}
			select {
			case <-f.timer.C:
			case <-f.stop:
				f.timer.Stop()
				r.Cancel()
				return now, errFlowStopped
			}
			f.throttled(l, d, k)
			now = time.Now()
		}
		n -= k
	}
	return now, nil
}

// throttled records a wait of d for k bytes at level l.
func (f *flow) throttled(l levelLimiter, d time.Duration, k int) {
	f.waited += d
	if lim := l.lim.Limit(); f.slowest == 0 || lim < f.slowest {
		f.slowest, f.slowestAt = lim, l.level
	}
	m := f.s.srv.metrics
	dir := audit.Download
	if f.up {
		dir = audit.Upload
	}
	if f.waitSeconds[l.level] == nil {
		f.waitSeconds[l.level] = m.throttledSeconds.WithLabelValues(string(dir), l.level.String())
		f.waitBytes[l.level] = m.throttledBytes.WithLabelValues(string(dir), l.level.String())
	}
	f.waitSeconds[l.level].Add(d.Seconds())
	f.waitBytes[l.level].Add(float64(k))
}

// end gives back what the transfer reserved of its quota and did not
// relay.
func (f *flow) end() {
	if f.quota != nil {
		f.quota.release()
	}
}

// rateLimit describes the limit that throttled the transfer most, for the
// log: "2MiB/s (user)".
func (f *flow) rateLimit() string {
	if f.slowest == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%s)", config.Rate(f.slowest), f.slowestAt)
}
