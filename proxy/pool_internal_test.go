package proxy

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

func testPool(t *testing.T, balance config.Balance, hc *config.HealthCheck, servers ...string) *pool {
	s := New(&config.Config{}, Options{})
	p := newPool(&config.Backend{Name: "b", Servers: servers, Balance: balance, HealthCheck: hc}, zap.NewNop(), s.metrics, nil)
	t.Cleanup(p.close)
	return p
}

func addrs(order []*poolServer) string {
	var out []string
	for _, ps := range order {
		out = append(out, ps.addr)
	}
	return fmt.Sprint(out)
}

// TestPoolOrder: round-robin takes turns; least_conn the server with
// fewest sessions; a server that failed goes last, and without health
// checks comes back after passiveRetry or a success; every order holds
// every server, so a session tries them all before 421.
func TestPoolOrder(t *testing.T) {
	p := testPool(t, config.RoundRobin, nil, "a:21", "b:21", "c:21")
	var firsts []string
	for range 6 {
		o := p.order("u")
		if len(o) != 3 {
			t.Fatalf("order %s misses servers", addrs(o))
		}
		firsts = append(firsts, o[0].addr)
	}
	if fmt.Sprint(firsts) != "[b:21 c:21 a:21 b:21 c:21 a:21]" {
		t.Fatalf("round-robin firsts %v", firsts)
	}

	p.failed(p.servers[1], errors.New("refused"))
	for range 4 {
		if o := p.order("u"); o[2].addr != "b:21" || o[0].addr == "b:21" {
			t.Fatalf("a failed server is not last: %s", addrs(o))
		}
	}
	p.servers[1].retryAt.Store(time.Now().Add(-time.Second).UnixNano()) // its time out is over
	seen := map[string]bool{}
	for range 3 {
		seen[p.order("u")[0].addr] = true
	}
	if !seen["b:21"] {
		t.Fatal("a server is not offered again after its time out")
	}
	p.served(p.servers[1])
	if !p.servers[1].up.Load() {
		t.Fatal("a success did not mark the server up")
	}

	lc := testPool(t, config.LeastConn, nil, "a:21", "b:21", "c:21")
	lc.servers[0].sessions.Store(2)
	lc.servers[1].sessions.Store(0)
	lc.servers[2].sessions.Store(1)
	for range 4 {
		if first := lc.order("u")[0].addr; first != "b:21" {
			t.Fatalf("least_conn chose %s", first)
		}
	}

	// With health checks, a failure marks the server down until they
	// say otherwise; no time out brings it back.
	hc := testPool(t, config.RoundRobin, &config.HealthCheck{Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1}, "a:21", "b:21")
	hc.failed(hc.servers[0], errors.New("refused"))
	hc.servers[0].retryAt.Store(0)
	for range 4 {
		if o := hc.order("u"); o[0].addr != "b:21" {
			t.Fatalf("a server marked down by a session was offered first: %s", addrs(o))
		}
	}
}

// TestStickyUser: a user always starts on the same server; when one
// server is down, only its users move, and they come back with it.
func TestStickyUser(t *testing.T) {
	p := testPool(t, config.StickyUser, nil, "a:21", "b:21", "c:21", "d:21")
	home := map[string]string{}
	count := map[string]int{}
	for i := range 200 {
		u := fmt.Sprintf("user%d", i)
		home[u] = p.order(u)[0].addr
		count[home[u]]++
		if again := p.order(u)[0].addr; again != home[u] {
			t.Fatalf("%s moved from %s to %s", u, home[u], again)
		}
	}
	for _, ps := range p.servers {
		if count[ps.addr] < 20 {
			t.Fatalf("uneven spread %v", count)
		}
	}
	p.failed(p.servers[2], errors.New("down"))
	for u, h := range home {
		now := p.order(u)[0].addr
		if h != "c:21" && now != h {
			t.Fatalf("%s moved from %s to %s although only c:21 went down", u, h, now)
		}
		if h == "c:21" && now == "c:21" {
			t.Fatalf("%s still starts on the failed server", u)
		}
	}
	p.served(p.servers[2])
	for u, h := range home {
		if now := p.order(u)[0].addr; now != h {
			t.Fatalf("%s did not come back to %s", u, h)
		}
	}
}

// TestPoolsAcrossReload: a server the new configuration keeps (same
// backend, same address) keeps its state, down or up, and its sessions;
// a new one starts up.
func TestPoolsAcrossReload(t *testing.T) {
	s := New(&config.Config{}, Options{})
	defer s.closePools()
	backend := func(servers ...string) *config.Config {
		return &config.Config{Backends: map[string]*config.Backend{"b": {Name: "b", Servers: servers, Balance: config.LeastConn}}}
	}
	first := backend("a:21", "b:21")
	s.setPools(first)
	p := s.poolFor(first.Backends["b"])
	p.failed(p.servers[0], errors.New("refused"))
	p.servers[1].sessions.Store(3)

	second := backend("a:21", "b:21", "c:21")
	s.setPools(second)
	if s.poolFor(first.Backends["b"]) != nil {
		t.Fatal("the replaced configuration's pool is still served")
	}
	q := s.poolFor(second.Backends["b"])
	if q.servers[0].up.Load() || q.servers[1].sessions.Load() != 3 || !q.servers[2].up.Load() {
		t.Fatalf("states after the reload: a up=%v, b sessions=%d, c up=%v",
			q.servers[0].up.Load(), q.servers[1].sessions.Load(), q.servers[2].up.Load())
	}
	if first := q.order("u")[0].addr; first != "c:21" {
		t.Fatalf("least_conn after the reload chose %s, not the new empty server", first)
	}
	s.wg.Wait() // the old pool's closing
}
