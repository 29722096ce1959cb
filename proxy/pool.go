package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"hash/fnv"
	"net"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// A pool is the live state of one backend's servers: which are up, how
// many sessions each holds, whose turn it is. One pool exists per
// *config.Backend of the configuration in force; a reload builds new ones
// and stops the old ones' health checks (sessions that chose a server keep
// it).
type pool struct {
	b       *config.Backend
	servers []*poolServer
	next    atomic.Uint64 // round-robin turn
	log     *zap.Logger
	m       *metrics
	stop    chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex // orders state changes with close
	stopped  bool
	stopOnce sync.Once
}

type poolServer struct {
	addr     string
	up       atomic.Bool
	sessions atomic.Int64
	// retryAt: without active checks, a server that refused a
	// connection is skipped until then (unix nanoseconds).
	retryAt atomic.Int64
}

// passiveRetry is how long a server that failed a session's connection is
// passed over when no health check will tell when it is back.
const passiveRetry = 10 * time.Second

// newPool makes b's pool. A server that prev (the pools being replaced,
// by backend name and address) already knows carries on with its state:
// up or down, and the sessions it holds, which least_conn counts.
func newPool(b *config.Backend, log *zap.Logger, m *metrics, prev map[[2]string]*poolServer) *pool {
	p := &pool{b: b, log: log.With(zap.String("backend", b.Name)), m: m, stop: make(chan struct{})}
	for _, a := range b.Servers {
		ps := prev[[2]string{b.Name, a}]
		if ps == nil {
			ps = &poolServer{addr: a}
			ps.up.Store(true) // until a check or a connection says otherwise
		}
		p.servers = append(p.servers, ps)
		v := 0.0
		if ps.up.Load() {
			v = 1
		}
		m.backendUp.WithLabelValues(b.Name, a).Set(v)
	}
	return p
}

// usable reports whether ps may be offered to a session now: it is up,
// or, without health checks, its time out after a failure is over.
func (p *pool) usable(ps *poolServer, now time.Time) bool {
	return ps.up.Load() || (p.b.HealthCheck == nil && now.UnixNano() >= ps.retryAt.Load())
}

// order is the sequence in which a session tries the servers: the
// balance's choice among the usable ones first, the other usable ones
// after it, and the unusable ones last (a stale mark is better tried than
// a session refused).
func (p *pool) order(user string) []*poolServer {
	now := time.Now()
	var usable, rest []*poolServer
	for _, ps := range p.servers {
		if p.usable(ps, now) {
			usable = append(usable, ps)
		} else {
			rest = append(rest, ps)
		}
	}
	if len(usable) > 1 {
		first := 0
		switch p.b.Balance {
		case config.LeastConn:
			// Fewest sessions; ties go round-robin.
			start := int(p.next.Add(1) % uint64(len(usable)))
			for i := range usable {
				j := (start + i) % len(usable)
				if usable[j].sessions.Load() < usable[first].sessions.Load() || i == 0 {
					first = j
				}
			}
		case config.StickyUser:
			first = stickyIndex(user, usable)
		default:
			first = int(p.next.Add(1) % uint64(len(usable)))
		}
		usable = append(usable[first:], usable[:first]...)
	}
	return append(usable, rest...)
}

// stickyIndex picks the server for user by rendezvous hashing: the
// highest hash of (user, server) wins, so a server leaving or coming back
// moves only its own users.
func stickyIndex(user string, servers []*poolServer) int {
	best, bestHash := 0, uint64(0)
	for i, ps := range servers {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s\x00%s", user, ps.addr)
		if v := h.Sum64(); i == 0 || v > bestHash {
			best, bestHash = i, v
		}
	}
	return best
}

// failed marks ps down after a session could not use it. With health
// checks, they decide when it is back; without, it is passed over for
// passiveRetry, then offered again, and a session's success marks it up.
func (p *pool) failed(ps *poolServer, err error) {
	if p.b.HealthCheck == nil {
		ps.retryAt.Store(time.Now().Add(passiveRetry).UnixNano())
	}
	p.setUp(ps, false, err)
}

// served marks ps up again after a session's connection, when no health
// check does.
func (p *pool) served(ps *poolServer) {
	if p.b.HealthCheck == nil && !ps.up.Load() {
		p.setUp(ps, true, nil)
	}
}

func (p *pool) setUp(ps *poolServer, up bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || ps.up.Swap(up) == up {
		return // a replaced pool no longer speaks for its servers
	}
	v := 0.0
	if up {
		v = 1
		p.log.Info("backend server up", zap.String("server", ps.addr))
	} else {
		p.log.Warn("backend server down", zap.String("server", ps.addr), zap.Error(err))
	}
	p.m.backendUp.WithLabelValues(p.b.Name, ps.addr).Set(v)
}

// start runs the health checks, one goroutine per server.
func (p *pool) start(dial dialFunc) {
	hc := p.b.HealthCheck
	if hc == nil {
		return
	}
	for _, ps := range p.servers {
		p.wg.Add(1)
		go p.healthCheck(dial, ps)
	}
}

// healthCheck is the goroutine that checks ps every interval until the
// pool closes: rise successes in a row mark it up, fall failures down.
func (p *pool) healthCheck(dial dialFunc, ps *poolServer) {
	defer p.wg.Done()
	hc := p.b.HealthCheck
	ok, bad := 0, 0
	t := time.NewTicker(hc.Interval)
	defer t.Stop()
	for {
		err := p.check(dial, ps.addr)
		if err == nil {
			ok, bad = ok+1, 0
			if ok >= hc.Rise {
				p.setUp(ps, true, nil)
			}
		} else {
			ok, bad = 0, bad+1
			if bad >= hc.Fall {
				p.setUp(ps, false, err)
			}
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// close stops the health checks and waits for them.
func (p *pool) close() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.stopOnce.Do(func() { close(p.stop) })
	p.wg.Wait()
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// check connects to addr as a session would (PROXY header, as LOCAL: no
// client; TLS first for an implicit backend), reads the greeting, which
// must be 220, and says QUIT.
func (p *pool) check(dial dialFunc, addr string) error {
	hc := p.b.HealthCheck
	ctx, cancel := context.WithTimeout(context.Background(), hc.Timeout)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hc.Timeout))
	if v := p.b.ProxyProtocol; v != config.NoProxyProtocol {
		h := &proxyproto.Header{Version: byte(v), Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		if _, err := h.WriteTo(c); err != nil {
			return fmt.Errorf("PROXY header: %w", err)
		}
	}
	var conn net.Conn = c
	if p.b.TLS == config.BackendImplicit {
		tc := tls.Client(c, serverTLS(p.b, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	rep, err := rewrite.ReadReply(bufio.NewReaderSize(conn, controlBufferSize), backendLimits)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if rep.Code != 220 {
		return fmt.Errorf("greeting %q", rep.String())
	}
	fmt.Fprintf(conn, "QUIT\r\n")
	return nil
}

// serverTLS is the backend's TLS client configuration for one of its
// servers: verified under that server's host unless server_name is set.
func serverTLS(b *config.Backend, addr string) *tls.Config {
	conf := b.TLSConfig.Clone()
	if b.ServerNameFromAddress {
		conf.ServerName, _, _ = net.SplitHostPort(addr)
	}
	return conf
}

// ---- the pools of the configuration in force ----

// setPools gives cfg's backends their pools and starts their health
// checks. A server the previous pools knew (same backend name and address)
// keeps its state. The previous pools stop speaking for their servers at
// once; their checks end in the background (one may be waiting for its
// timeout), and the gauges of servers no longer configured go with them.
// Sessions that chose a server of an old pool keep it.
func (s *Server) setPools(cfg *config.Config) {
	pools := make(map[*config.Backend]*pool, len(cfg.Backends))
	current := map[[2]string]bool{}
	for _, b := range cfg.Backends {
		for _, a := range b.Servers {
			current[[2]string{b.Name, a}] = true
		}
	}
	s.poolMu.Lock()
	old := s.pools
	prev := map[[2]string]*poolServer{}
	for _, p := range old {
		p.mu.Lock()
		p.stopped = true // no gauge writes from here on
		p.mu.Unlock()
		for _, ps := range p.servers {
			prev[[2]string{p.b.Name, ps.addr}] = ps
		}
	}
	for _, b := range cfg.Backends {
		p := newPool(b, s.log, s.metrics, prev)
		p.start(s.dialFor(b))
		pools[b] = p
	}
	s.pools = pools
	s.poolMu.Unlock()
	if len(old) > 0 {
		s.wg.Add(1)
		go s.retirePools(old, current)
	}
}

// retirePools is the goroutine that stops the health checks of replaced
// pools (one may be waiting for its timeout) and drops the gauges of
// servers no longer configured (current: by backend name and address).
func (s *Server) retirePools(old map[*config.Backend]*pool, current map[[2]string]bool) {
	defer s.wg.Done()
	for _, p := range old {
		p.close()
		for _, ps := range p.servers {
			if !current[[2]string{p.b.Name, ps.addr}] {
				s.metrics.backendUp.DeleteLabelValues(p.b.Name, ps.addr)
			}
		}
	}
}

// poolFor is b's pool, or nil when b belongs to a replaced configuration.
func (s *Server) poolFor(b *config.Backend) *pool {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	return s.pools[b]
}

// queueFor is the queue of the backend named name, made on first use.
func (s *Server) queueFor(name string) *backendQueue {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	q := s.queues[name]
	if q == nil {
		if s.queues == nil {
			s.queues = map[string]*backendQueue{}
		}
		q = newBackendQueue(name)
		s.queues[name] = q
	}
	return q
}

// closePools stops every health check.
func (s *Server) closePools() {
	s.poolMu.Lock()
	old := s.pools
	s.pools = nil
	s.poolMu.Unlock()
	for _, p := range old {
		p.close()
	}
}
