package proxy

import (
	"testing"

	"golang.org/x/time/rate"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// TestBucketsHeldBySessions: a shared bucket exists while a session holds
// it, is shared by sessions that name the same key, follows the rates of
// the latest hold, moves when a reload changes its key or drops the
// level, and is gone after the last session releases it.
func TestBucketsHeldBySessions(t *testing.T) {
	var bs bucketSet
	var a, b sessionBuckets
	user := func(key string, down config.Rate) (w [sharedLevels]levelRate) {
		w[levelUser] = levelRate{key, config.RatePair{Down: down}}
		return w
	}
	ha := a.hold(&bs, user("user:bob", 2<<20))
	hb := b.hold(&bs, user("user:bob", 2<<20))
	if ha[levelUser] == nil || ha[levelUser] != hb[levelUser] || bs.len() != 1 {
		t.Fatalf("two sessions of bob: %p %p, %d buckets", ha[levelUser], hb[levelUser], bs.len())
	}
	if ha[levelListener] != nil || ha[levelAddress] != nil {
		t.Fatal("a level without a rate got a bucket")
	}
	// A reload: the same key at a new rate, then another key.
	hb = b.hold(&bs, user("user:bob", 4<<20))
	if l := hb[levelUser].down.Limit(); l != rate.Limit(4<<20) || hb[levelUser].down.Burst() != burstFor(4<<20) {
		t.Fatalf("limit %v burst %d after the rate changed", l, hb[levelUser].down.Burst())
	}
	if hb[levelUser].up.Limit() != rate.Inf {
		t.Fatal("the unlimited direction is limited")
	}
	hb = b.hold(&bs, user("class:partners", 4<<20))
	if hb[levelUser] == ha[levelUser] || bs.len() != 2 {
		t.Fatalf("rekeyed: %d buckets", bs.len())
	}
	// The level off: the session lets it go.
	if hb = b.hold(&bs, user("", 0)); hb[levelUser] != nil || bs.len() != 1 {
		t.Fatalf("level off: %d buckets", bs.len())
	}
	a.releaseAll(&bs)
	b.releaseAll(&bs)
	if bs.len() != 0 {
		t.Fatalf("%d buckets after every session ended", bs.len())
	}
}

// TestFlowPassesMoreThanABurst: rate.Limiter refuses a wait for more
// than its burst at once; the flow waits in steps, so a chunk larger than
// every burst passes, and max_file_size lets exactly the bytes up to it
// through.
func TestFlowPassesMoreThanABurst(t *testing.T) {
	lim := newLimiter(config.MinRate * 100) // burst maxRecord; 64 KiB take half a second
	f := &flow{left: -1, applied: &config.Config{}, limiters: []levelLimiter{{lim, levelTransfer}}}
	f.s = &session{srv: &Server{}}
	f.s.srv.live.Store(f.applied)
	f.s.srv.metrics = newMetrics(f.s.srv)
	if lim.Burst() >= relayBufferSize {
		t.Fatalf("burst %d: the test needs one below a chunk", lim.Burst())
	}
	if n, err := f.pass(relayBufferSize); n != relayBufferSize || err != nil {
		t.Fatalf("pass(%d) = %d, %v", relayBufferSize, n, err)
	}
	f.left = 100
	if n, err := f.pass(60); n != 60 || err != nil {
		t.Fatalf("pass(60) = %d, %v", n, err)
	}
	if n, err := f.pass(60); n != 40 || err != errFileTooLarge {
		t.Fatalf("pass(60) past the bound = %d, %v", n, err)
	}
}

// BenchmarkFlowPass: what the relay's flow costs a 64 KiB chunk, with no
// limit, and with a limit at every level far above any link (the bench's
// "limits block present" row).
func BenchmarkFlowPass(b *testing.B) {
	far := config.RatePair{Down: 1 << 40, Up: 1 << 40}
	for _, bb := range []struct {
		name string
		cfg  *config.Config
	}{
		{"none", &config.Config{Listeners: []*config.Listener{{Name: "l"}}}},
		{"far above", &config.Config{Listeners: []*config.Listener{{Name: "l", RateDown: far.Down, RateUp: far.Up}},
			Rates: config.Rates{User: far, Address: far, Transfer: far}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			srv := &Server{}
			srv.live.Store(bb.cfg)
			srv.metrics = newMetrics(srv)
			s := &session{srv: srv, lcfg: bb.cfg.Listeners[0]}
			f := &flow{s: s, user: "bob", listener: "l", left: -1}
			b.SetBytes(relayBufferSize)
			for b.Loop() {
				f.chunk(relayBufferSize)
				if _, err := f.pass(relayBufferSize); err != nil {
					b.Fatal(err)
				}
			}
			if bb.name == "far above" && len(f.limiters) != 4 {
				b.Fatalf("%d limiters", len(f.limiters))
			}
			s.rates.releaseAll(&srv.buckets)
		})
	}
}
