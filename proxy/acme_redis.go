package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// redisStorage is certmagic's Storage in the state block's Redis, for an
// acme block with storage_redis: instances behind one balancer share the
// account, the certificates, their keys, the challenge tokens and the
// locks, without a shared volume. It does not fall back to anything
// while Redis is away: certmagic's operations fail and are retried with
// backoff, and the certificates already in memory keep being served.
//
// Keys: PREFIX acme:v:KEY is a hash of the value (v) and its time (m);
// PREFIX acme:index is a sorted set of every KEY (score 0, ordered by
// name), for List and for directories; PREFIX acme:lock:NAME holds a lock's
// token, with an expiry that its holder refreshes.
type redisStorage struct {
	rdb    *redis.Client
	prefix string // the state block's prefix and "acme:"
	log    *zap.Logger
	// lockTTL is how long a lock outlives its holder's last refresh; the
	// holder refreshes it every lockTTL/3, so that a crashed instance's
	// lock frees itself and a live one's never does.
	lockTTL time.Duration
	// lockPoll is how often a waiting Lock tries again.
	lockPoll time.Duration
	// opTimeout bounds one Redis operation.
	opTimeout time.Duration

	// mu guards held.
	mu   sync.Mutex
	held map[string]*heldLock
}

// heldLock is a lock this process holds: its token and the refresher's
// stop.
type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

var _ certmagic.Storage = (*redisStorage)(nil)

// newRedisStorage connects (lazily) to rc's Redis.
func newRedisStorage(rc *config.RedisState, log *zap.Logger) (*redisStorage, error) {
	o, err := redisOptions(rc)
	if err != nil {
		return nil, err
	}
	// Certificates and keys are larger than the state's counters, and
	// certmagic retries a failure itself: a longer bound than the state's.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = 5*time.Second, 5*time.Second, 5*time.Second, 5*time.Second
	return &redisStorage{rdb: redis.NewClient(o), prefix: rc.Prefix + "acme:", log: log,
		lockTTL: 30 * time.Second, lockPoll: 500 * time.Millisecond, opTimeout: 5 * time.Second,
		held: map[string]*heldLock{}}, nil
}

func (r *redisStorage) String() string {
	return "redis storage " + r.rdb.Options().Addr + " " + r.prefix
}

// close releases the locks this process holds and the connections.
func (r *redisStorage) close() {
	r.mu.Lock()
	names := make([]string, 0, len(r.held))
	for n := range r.held {
		names = append(names, n)
	}
	r.mu.Unlock()
	for _, n := range names {
		r.Unlock(context.Background(), n)
	}
	r.rdb.Close()
}

func (r *redisStorage) vkey(key string) string { return r.prefix + "v:" + key }
func (r *redisStorage) index() string          { return r.prefix + "index" }
func (r *redisStorage) lkey(name string) string {
	return r.prefix + "lock:" + name
}

func (r *redisStorage) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opTimeout)
}

// Store puts value at key, with the time.
func (r *redisStorage) Store(ctx context.Context, key string, value []byte) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.vkey(key), "v", value, "m", strconv.FormatInt(time.Now().UnixNano(), 10))
		p.ZAdd(ctx, r.index(), redis.Z{Member: key})
		return nil
	})
	if err != nil {
		return fmt.Errorf("acme storage in redis: store %s: %w", key, err)
	}
	return nil
}

// Load is the value at key, or an error wrapping fs.ErrNotExist.
func (r *redisStorage) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	b, err := r.rdb.HGet(ctx, r.vkey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("acme storage in redis: %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("acme storage in redis: load %s: %w", key, err)
	}
	return b, nil
}

// under lists the keys of the index under dir ("dir/…"), all depths.
func (r *redisStorage) under(ctx context.Context, dir string) ([]string, error) {
	dir = strings.TrimSuffix(dir, "/")
	// "/" + 1 is "0": every key starting with dir + "/".
	return r.rdb.ZRangeByLex(ctx, r.index(), &redis.ZRangeBy{Min: "[" + dir + "/", Max: "(" + dir + "0"}).Result()
}

// Delete removes key, and every key under it as a directory.
func (r *redisStorage) Delete(ctx context.Context, key string) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	keys, err := r.under(ctx, key)
	if err != nil {
		return fmt.Errorf("acme storage in redis: delete %s: %w", key, err)
	}
	keys = append(keys, key)
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, r.vkey(k))
			p.ZRem(ctx, r.index(), k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("acme storage in redis: delete %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is a value or a directory of values.
func (r *redisStorage) Exists(ctx context.Context, key string) bool {
	_, err := r.Stat(ctx, key)
	return err == nil
}

// List lists the keys under path: every one if recursive, else the
// values and directories directly under it.
func (r *redisStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	keys, err := r.under(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("acme storage in redis: list %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("acme storage in redis: %s: %w", path, fs.ErrNotExist)
	}
	if recursive {
		return keys, nil
	}
	base := strings.TrimSuffix(path, "/") + "/"
	var out []string
	seen := map[string]bool{}
	for _, k := range keys {
		child, _, _ := strings.Cut(strings.TrimPrefix(k, base), "/")
		if !seen[child] {
			seen[child] = true
			out = append(out, base+child)
		}
	}
	return out, nil
}

// Stat describes key: a value, or a directory of values.
func (r *redisStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	vals, err := r.rdb.HMGet(ctx, r.vkey(key), "v", "m").Result()
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("acme storage in redis: stat %s: %w", key, err)
	}
	if v, ok := vals[0].(string); ok {
		m, _ := vals[1].(string)
		ns, _ := strconv.ParseInt(m, 10, 64)
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: int64(len(v)), IsTerminal: true}, nil
	}
	keys, err := r.under(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("acme storage in redis: stat %s: %w", key, err)
	}
	if len(keys) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("acme storage in redis: %s: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// refreshScript extends a lock's expiry if the token is still its own.
var refreshScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)

// unlockScript deletes a lock if the token is still its own.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1]) else return 0 end`)

// Lock takes the lock name, waiting while another holds it (until ctx
// ends); while held, a goroutine refreshes its expiry.
func (r *redisStorage) Lock(ctx context.Context, name string) error {
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	for {
		octx, cancel := r.op(ctx)
		ok, err := r.rdb.SetNX(octx, r.lkey(name), token, r.lockTTL).Result()
		cancel()
		if err != nil {
			return fmt.Errorf("acme storage in redis: lock %s: %w", name, err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.lockPoll):
		}
	}
	rctx, stop := context.WithCancel(context.Background())
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	r.mu.Lock()
	if old := r.held[name]; old != nil { // not ours any more: it expired
		old.stop()
	}
	r.held[name] = h
	r.mu.Unlock()
	go r.refresh(rctx, name, h)
	return nil
}

// refresh is a goroutine extending the lock name's expiry every third of
// lockTTL until stopped, or until the lock is no longer this holder's.
func (r *redisStorage) refresh(ctx context.Context, name string, h *heldLock) {
	defer close(h.done)
	t := time.NewTicker(r.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		octx, cancel := r.op(ctx)
		n, err := refreshScript.Run(octx, r.rdb, []string{r.lkey(name)}, h.token, r.lockTTL.Milliseconds()).Int()
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("acme storage in redis: a lock's refresh failed; it expires unless a later refresh succeeds",
				zap.String("lock", name), zap.Error(err))
		case err == nil && n == 0:
			r.log.Error("acme storage in redis: a lock held here expired and is another's now", zap.String("lock", name))
			return
		}
	}
}

// Unlock releases the lock name if this process still holds it.
func (r *redisStorage) Unlock(ctx context.Context, name string) error {
	r.mu.Lock()
	h := r.held[name]
	delete(r.held, name)
	r.mu.Unlock()
	if h == nil {
		return fmt.Errorf("acme storage in redis: unlock %s: not locked here", name)
	}
	h.stop()
	<-h.done
	ctx, cancel := r.op(context.WithoutCancel(ctx))
	defer cancel()
	if err := unlockScript.Run(ctx, r.rdb, []string{r.lkey(name)}, h.token).Err(); err != nil {
		return fmt.Errorf("acme storage in redis: unlock %s: %w", name, err)
	}
	return nil
}
