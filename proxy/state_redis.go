package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// redisState shares bans, failed logins and session counts through Redis.
//
// Keys, each under the configured prefix:
//   - ban:<client key>: a ban, holding its end (Unix ms), expiring with it;
//   - fail:<client key>: a sorted set of failed logins within the window;
//   - instances: a sorted set of live instances, scored by when each
//     stops counting (Unix ms): every instance refreshes its score at
//     each heartbeat and each count;
//   - sessions:<instance>: a hash of that instance's session counts,
//     expiring with it, so that a crashed instance's sessions stop
//     counting after stateInstanceTTL instead of leaking;
//   - quota:<direction>:<period, s>:<window start, Unix s>:<user or
//     class>: a quota count in bytes (quota.go), expiring at its
//     window's end;
//   - the channel bans: "<instance> <client key> <end, Unix ms>" for each
//     ban, so that every instance closes the banned client's sessions
//     that have not logged in, as the instance that banned it does.
//
// A count is the sum of the live instances' hashes, taken atomically by a
// script. The instances' clocks must agree to within a second or so
// (NTP): bans and liveness are written in Unix time.
//
// Every operation is bounded by stateOpTimeout. When one fails, the
// instance falls back to its own state (local, which mirrors every ban it
// learns): it logs the error once, counts the episode, and stops asking
// Redis until its heartbeat reaches Redis again; then it writes the bans
// it decided meanwhile back, and shares again. Every heartbeat rewrites
// the instance's counts from its own. A
// login thus waits for Redis at most once per episode, stateOpTimeout.
// Quota bytes counted locally meanwhile are added to Redis's counts by
// the first heartbeat that reaches it again.
type redisState struct {
	local  *memoryState
	rdb    *redis.Client
	prefix string
	id     string // this instance's name in Redis, random
	log    *zap.Logger
	m      *stateMetrics
	now    func() time.Time
	// onBan closes the sessions of a client another instance banned
	// (Server.banSessions).
	onBan func(key netip.Prefix)

	healthy atomic.Bool
	// subscribed: the ban channel is subscribed (subscribe). The health
	// gauge is up when both are.
	subscribed atomic.Bool
	// dirty: Redis may lack bans this instance decided (it was
	// unreachable, or an operation's outcome is unknown); the next
	// heartbeat that reaches it writes them.
	dirty atomic.Bool
	// failures counts failed operations, so that a heartbeat that
	// succeeded before an operation failed does not end the episode
	// that failure started (heartbeat).
	failures atomic.Uint64

	// pendingQuota are the quota bytes counted while falling back, by
	// key, for the next heartbeat that reaches Redis to add.
	quotaMu      sync.Mutex
	pendingQuota map[string]pendingQuota

	ctx    context.Context // ended by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

const (
	// stateOpTimeout bounds each Redis operation a session waits for: a
	// login is never held longer by a slow or dead Redis.
	stateOpTimeout = 200 * time.Millisecond
	// stateHeartbeat is how often an instance refreshes its liveness, or
	// probes Redis while falling back.
	stateHeartbeat = time.Second
	// stateInstanceTTL is how long an instance's session counts outlive
	// its last heartbeat.
	stateInstanceTTL = 10 * time.Second
)

// stateMetrics are the shared state's collectors.
type stateMetrics struct {
	up        prometheus.Gauge
	fallbacks prometheus.Counter
	errors    *prometheus.CounterVec
}

func newStateMetrics(reg prometheus.Registerer) *stateMetrics {
	m := &stateMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "ftpsgate", Name: "state_backend_up",
			Help: "1 while the state backend serves: always in memory; with Redis, while it answers and the ban channel is subscribed (0: this instance falls back to its own state)."}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ftpsgate", Name: "state_fallbacks_total",
			Help: "Episodes in which Redis could not be reached and this instance fell back to its own state."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ftpsgate", Name: "state_errors_total",
			Help: "Failed operations on the shared state's Redis, by operation."}, []string{"op"}),
	}
	reg.MustRegister(m.up, m.fallbacks, m.errors)
	return m
}

// redisOptions are the client options for rc: tight timeouts and no
// retries, since the caller falls back instead of waiting.
func redisOptions(rc *config.RedisState) (*redis.Options, error) {
	o := &redis.Options{
		Addr:                  rc.Address,
		Password:              rc.Password,
		DB:                    rc.DB,
		Protocol:              2,
		DialTimeout:           stateOpTimeout,
		ReadTimeout:           stateOpTimeout,
		WriteTimeout:          stateOpTimeout,
		PoolTimeout:           stateOpTimeout,
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	}
	if rc.TLS {
		host, _, _ := net.SplitHostPort(rc.Address)
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if rc.CAFile != "" {
			b, err := os.ReadFile(rc.CAFile)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("%s holds no PEM certificate", rc.CAFile)
			}
			o.TLSConfig.RootCAs = pool
		}
	}
	return o, nil
}

// newRedisState connects to the Redis of rc and starts the heartbeat and
// the ban subscriber. It does not fail when Redis is unreachable: the
// state then starts falling back, and shares once Redis answers.
//
// now is the clock (nil: time.Now); onBan closes the sessions of a client
// another instance banned.
func newRedisState(rc *config.RedisState, local *memoryState, log *zap.Logger, m *stateMetrics, now func() time.Time,
	onBan func(netip.Prefix)) (*redisState, error) {
	if now == nil {
		now = time.Now
	}
	o, err := redisOptions(rc)
	if err != nil {
		return nil, err
	}
	r := &redisState{local: local, rdb: redis.NewClient(o), prefix: rc.Prefix, id: newSessionID(),
		log: log.With(zap.String("redis", rc.Address)), m: m, now: now, onBan: onBan}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.healthy.Store(true)
	r.dirty.Store(true)
	r.gauge() // 0 until the ban channel is subscribed
	r.heartbeat()
	ps := r.rdb.Subscribe(r.ctx, r.key("bans"))
	r.wg.Add(3)
	go r.beat()
	go r.subscribe(ps)
	go r.closeOnStop(ps)
	return r, nil
}

func (r *redisState) key(parts ...string) string { return r.prefix + strings.Join(parts, ":") }

// do runs op on Redis within stateOpTimeout, unless the state is falling
// back; it reports whether op succeeded. A failure starts an episode of
// falling back.
func (r *redisState) do(name string, op func(ctx context.Context) error) bool {
	if !r.healthy.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(r.ctx, stateOpTimeout)
	defer cancel()
	if err := op(ctx); err != nil {
		r.m.errors.WithLabelValues(name).Inc()
		r.down(err)
		return false
	}
	return true
}

// down starts an episode of falling back, logged and counted once.
func (r *redisState) down(err error) {
	r.failures.Add(1)
	r.dirty.Store(true)
	if r.ctx.Err() != nil || !r.healthy.CompareAndSwap(true, false) {
		return
	}
	r.gauge()
	r.m.fallbacks.Inc()
	r.log.Warn("shared state unreachable: this instance falls back to its own bans and session counts until Redis answers",
		zap.Error(err))
}

// up ends an episode of falling back.
func (r *redisState) up() {
	if r.healthy.CompareAndSwap(false, true) {
		r.gauge()
		r.log.Info("shared state reachable again: bans and session counts are shared")
	}
}

// gauge sets the health gauge: 1 when Redis answers and the ban channel
// is subscribed.
func (r *redisState) gauge() {
	if r.healthy.Load() && r.subscribed.Load() {
		r.m.up.Set(1)
	} else {
		r.m.up.Set(0)
	}
}

// beat is the heartbeat goroutine: it keeps this instance's counts alive
// in Redis, and while falling back probes Redis once a stateHeartbeat.
func (r *redisState) beat() {
	defer r.wg.Done()
	t := time.NewTicker(stateHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.heartbeat()
		}
	}
}

// heartbeat keeps this instance alive in Redis and rewrites its session
// counts there from its own, so that whatever went astray (a count
// changed while Redis was away, or whose outcome a timeout hid) is right
// again within a heartbeat. After an episode of falling back (dirty) it
// also writes back the bans in force this instance knows.
func (r *redisState) heartbeat() {
	ctx, cancel := context.WithTimeout(r.ctx, stateOpTimeout)
	defer cancel()
	seen := r.failures.Load()
	now := r.now()
	alive := now.Add(stateInstanceTTL).UnixMilli()
	hash := r.key("sessions", r.id)
	var bans map[netip.Prefix]time.Time
	if r.dirty.Swap(false) {
		bans = r.local.bans.InForce(now)
	}
	counts := r.local.snapshot()
	quotas := r.takePendingQuota()
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, hash)
		for c, n := range counts {
			p.HSet(ctx, hash, string(c), n)
		}
		p.PExpire(ctx, hash, stateInstanceTTL)
		p.ZAdd(ctx, r.key("instances"), redis.Z{Score: float64(alive), Member: r.id})
		p.PExpire(ctx, r.key("instances"), stateInstanceTTL)
		for k, until := range bans {
			p.SetNX(ctx, r.key("ban", k.String()), until.UnixMilli(), until.Sub(now))
		}
		for k, q := range quotas {
			if q.end.After(now) && q.bytes != 0 {
				p.IncrBy(ctx, r.key("quota", k), q.bytes)
				p.PExpireAt(ctx, r.key("quota", k), q.end)
			}
		}
		return nil
	})
	if err != nil {
		r.addPendingQuota(quotas)
		r.m.errors.WithLabelValues("heartbeat").Inc()
		r.down(err)
		return
	}
	if r.failures.Load() != seen {
		// An operation failed while this heartbeat was under way: its
		// success may be older than that failure, and must not end the
		// episode the failure started; the next heartbeat decides.
		return
	}
	r.up()
}

// subscribe is the goroutine that receives the other instances' bans.
// go-redis reconnects and subscribes again after an error.
func (r *redisState) subscribe(ps *redis.PubSub) {
	defer r.wg.Done()
	for r.ctx.Err() == nil {
		msg, err := ps.Receive(r.ctx)
		if err != nil {
			r.subscribed.Store(false)
			r.gauge()
			select { // go-redis redials on the next Receive
			case <-r.ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.received(m.Payload)
		case *redis.Subscription:
			// (Re)subscribed: bans published while this instance was
			// not listening are in their keys.
			r.catchUp()
			r.subscribed.Store(true)
			r.gauge()
		}
	}
}

// closeOnStop is the goroutine that closes ps when the state is closed,
// which wakes subscribe's Receive.
func (r *redisState) closeOnStop(ps *redis.PubSub) {
	defer r.wg.Done()
	<-r.ctx.Done()
	ps.Close()
}

// received applies a ban published by an instance.
func (r *redisState) received(payload string) {
	f := strings.Fields(payload)
	if len(f) != 3 || f[0] == r.id {
		return
	}
	key, err1 := netip.ParsePrefix(f[1])
	ms, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		r.log.Warn("malformed ban message on the shared state's channel", zap.String("message", payload))
		return
	}
	r.learn(key, time.UnixMilli(ms))
}

// learn applies a ban another instance decided, however this one learnt
// it (the channel, a key read, the catch-up): the first time, it is
// mirrored and the client's sessions that have not logged in are closed.
func (r *redisState) learn(key netip.Prefix, until time.Time) {
	if !r.now().Before(until) || !r.local.bans.Ban(key, until) {
		return
	}
	banned := key.String() // as login.failed names it
	if key.IsSingleIP() {
		banned = key.Addr().String()
	}
	r.log.Info("address banned by another instance", zap.String("banned", banned), zap.Time("until", until))
	r.onBan(key)
}

// catchUp applies the bans in Redis this instance does not know: those
// published while it was not subscribed (Redis was away, or it started
// later).
func (r *redisState) catchUp() {
	ctx, cancel := context.WithTimeout(r.ctx, 5*stateOpTimeout)
	defer cancel()
	ban := r.key("ban", "")
	iter := r.rdb.Scan(ctx, 0, ban+"*", 100).Iterator()
	for iter.Next(ctx) {
		key, err := netip.ParsePrefix(strings.TrimPrefix(iter.Val(), ban))
		if err != nil {
			continue
		}
		ms, err := r.rdb.Get(ctx, iter.Val()).Int64()
		if err != nil {
			continue // expired meanwhile, or not ours
		}
		r.learn(key, time.UnixMilli(ms))
	}
	if err := iter.Err(); err != nil {
		r.m.errors.WithLabelValues("catch_up").Inc()
		r.log.Debug("shared state: catching up on bans failed", zap.Error(err))
	}
}

func (r *redisState) banned(a netip.Addr, now time.Time) *policy.Denial {
	if d := r.local.banned(a, now); d != nil {
		return d
	}
	k := r.local.banKey(a)
	var ms int64
	ok := r.do("ban_check", func(ctx context.Context) error {
		v, err := r.rdb.Get(ctx, r.key("ban", k.String())).Int64()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		ms = v
		return err
	})
	if !ok || ms <= now.UnixMilli() {
		return nil
	}
	// Learnt here before the channel's message arrives, the ban must
	// close the client's other sessions all the same.
	r.learn(k, time.UnixMilli(ms))
	return r.local.banned(a, now)
}

// failScript counts a failed login (KEYS[1], the failures; KEYS[2], the
// ban) at ARGV[1] (Unix ms) within ARGV[2] ms; at ARGV[3] failures it bans
// for ARGV[4] ms. It returns the new ban's end, or minus the end of a ban
// already in force, or 0. ARGV[5] makes the member unique.
var failScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local b = tonumber(redis.call('GET', KEYS[2]) or '0')
if b > now then return -b end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  local untilms = now + tonumber(ARGV[4])
  redis.call('SET', KEYS[2], untilms, 'PX', ARGV[4])
  return untilms
end
return 0`)

func (r *redisState) failure(a netip.Addr, now time.Time) time.Time {
	if r.local.bans.Exempt(a) {
		return time.Time{}
	}
	rules := r.local.bans.Rules()
	k := r.local.banKey(a)
	var res int64
	ok := r.do("failure", func(ctx context.Context) error {
		var err error
		res, err = failScript.Run(ctx, r.rdb, []string{r.key("fail", k.String()), r.key("ban", k.String())},
			now.UnixMilli(), max(rules.Window.Milliseconds(), 1), rules.Failures, max(rules.Duration.Milliseconds(), 1),
			r.id+"-"+newSessionID()).Int64()
		return err
	})
	switch {
	case !ok:
		return r.local.failure(a, now)
	case res < 0: // banned already, perhaps by another instance
		r.learn(k, time.UnixMilli(-res))
		return time.Time{}
	case res == 0:
		return time.Time{}
	}
	until := time.UnixMilli(res)
	r.local.bans.Ban(k, until)
	r.do("publish", func(ctx context.Context) error {
		return r.rdb.Publish(ctx, r.key("bans"), r.id+" "+k.String()+" "+strconv.FormatInt(res, 10)).Err()
	})
	return until
}

// countScript adds ARGV[4] to field ARGV[3] of this instance's hash
// (KEYS[2]), keeps this instance (ARGV[5]) alive in the instances set
// (KEYS[1]) for ARGV[2] ms from ARGV[1], and returns the field's sum over
// the live instances' hashes (named ARGV[6]..instance).
var countScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl)
local d = tonumber(ARGV[4])
if d ~= 0 then
  if redis.call('HINCRBY', KEYS[2], ARGV[3], d) <= 0 then redis.call('HDEL', KEYS[2], ARGV[3]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  total = total + tonumber(redis.call('HGET', ARGV[6] .. id, ARGV[3]) or '0')
end
return total`)

func (r *redisState) sessions(c counter, delta int) int {
	n := r.local.sessions(c, delta)
	var total int64
	ok := r.do("sessions", func(ctx context.Context) error {
		var err error
		total, err = countScript.Run(ctx, r.rdb, []string{r.key("instances"), r.key("sessions", r.id)},
			r.now().UnixMilli(), stateInstanceTTL.Milliseconds(), string(c), delta, r.id, r.key("sessions", "")).Int64()
		return err
	})
	if !ok {
		return n
	}
	return int(total)
}

// quotaScript adds up to ARGV[1] bytes to the quota count KEYS[1], so
// that it never passes ARGV[2] (0: no bound), and never goes below 0;
// the key expires at ARGV[3] (Unix ms), its window's end. It returns what
// it added and the count after. Amounts are small (a reservation,
// quotaBlock), so Lua's doubles hold them exactly.
var quotaScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 and limit > 0 then n = math.min(n, math.max(limit - cur, 0)) end
if n < -cur then n = -cur end
if n ~= 0 then
  cur = redis.call('INCRBY', KEYS[1], string.format('%d', n))
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return {n, cur}`)

// pendingQuota is what this instance counted on a quota while Redis was
// away, and the end of the count's window.
type pendingQuota struct {
	bytes int64
	end   time.Time
}

func (r *redisState) quota(k quotaKey, n, limit int64) (added, used int64) {
	var res []int64
	ok := r.do("quota", func(ctx context.Context) error {
		var err error
		res, err = quotaScript.Run(ctx, r.rdb, []string{r.key("quota", k.String())}, n, limit, k.end.UnixMilli()).Int64Slice()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("quota script returned %d values", len(res))
		}
		return err
	})
	if !ok {
		// Counted here on top of the last count Redis gave, and added
		// to Redis's once it answers again.
		added, used = r.local.quota(k, n, limit)
		r.addPendingQuota(map[string]pendingQuota{k.String(): {added, k.end}})
		return added, used
	}
	r.local.setQuota(k, res[1])
	return res[0], res[1]
}

func (r *redisState) quotaUsed(k quotaKey) int64 { return r.local.quotaUsed(k) }

// totpScript records a TOTP step unless the key has one at or after it:
// 1 when the step is new, 0 when it was used (here or on another
// instance).
var totpScript = redis.NewScript(`
local step = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if step <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1`)

// totpUse asks Redis, so that a code used on one instance is refused on
// every other; the local record is kept too, so that a code used here is
// refused here while Redis is away, and what was used during an outage
// (on this instance) is still refused here when it returns.
func (r *redisState) totpUse(key string, step uint64, until time.Time) bool {
	fresh := r.local.totpUse(key, step, until)
	var res int64
	ok := r.do("totp", func(ctx context.Context) error {
		var err error
		res, err = totpScript.Run(ctx, r.rdb, []string{r.key("totp", key)}, step, until.UnixMilli()).Int64()
		return err
	})
	if !ok {
		return fresh
	}
	return fresh && res == 1
}

// takePendingQuota takes the quota bytes counted while falling back.
func (r *redisState) takePendingQuota() map[string]pendingQuota {
	r.quotaMu.Lock()
	defer r.quotaMu.Unlock()
	p := r.pendingQuota
	r.pendingQuota = nil
	return p
}

// addPendingQuota adds bytes counted locally, for a later heartbeat.
func (r *redisState) addPendingQuota(p map[string]pendingQuota) {
	r.quotaMu.Lock()
	defer r.quotaMu.Unlock()
	for k, q := range p {
		if r.pendingQuota == nil {
			r.pendingQuota = make(map[string]pendingQuota)
		}
		cur := r.pendingQuota[k]
		r.pendingQuota[k] = pendingQuota{cur.bytes + q.bytes, q.end}
	}
}

func (r *redisState) banKey(a netip.Addr) netip.Prefix { return r.local.banKey(a) }
func (r *redisState) setRules(br policy.BanRules)      { r.local.setRules(br) }

// close stops the goroutines and removes this instance's counts from
// Redis (a clean stop: its sessions are over).
func (r *redisState) close() {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), stateOpTimeout)
		defer cancel()
		r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, r.key("sessions", r.id))
			p.ZRem(ctx, r.key("instances"), r.id)
			return nil
		})
		r.rdb.Close()
	})
}
