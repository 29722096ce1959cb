package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
)

// Options are the seams of an Agent. The zero value is usable.
type Options struct {
	// Logger receives the agent's logs. If nil, nothing is logged.
	Logger *zap.Logger
	// DialEdge opens the TCP connection to the edge. If nil, a
	// net.Dialer is used.
	DialEdge func(ctx context.Context, network, address string) (net.Conn, error)
	// DialTarget opens the connections the edge asks for, once
	// allow_targets permitted them. If nil, a net.Dialer is used.
	DialTarget func(ctx context.Context, network, address string) (net.Conn, error)
	// MinBackoff and MaxBackoff bound the wait before reconnecting to the
	// edge: it starts at MinBackoff, doubles after each failure up to
	// MaxBackoff, and each wait is drawn at random from zero to that
	// (full jitter), so that agents that lost the edge together do not
	// come back together. Zero means 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
}

// Agent keeps cfg.Sessions connections to the edge and serves the streams
// the edge opens on them. Run it with Run; Close stops it; Reload changes
// its configuration while it runs.
type Agent struct {
	// cfg is the configuration now: each stream and each connection to
	// the edge reads it once, when it starts (Reload swaps it).
	cfg    atomic.Pointer[Config]
	slots  int    // cfg.Sessions at New: how many sessions Run keeps
	health string // cfg.HealthAddress at New, where the health listener stays
	opt    Options
	log    *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards sessions: those established now.
	mu       sync.Mutex
	sessions map[*yamux.Session]struct{}

	connected  atomic.Int64 // sessions established now
	reconnects atomic.Int64 // sessions established after the first attempt of each slot
	streams    atomic.Int64 // streams being served
	refused    atomic.Int64 // requests refused
}

// New returns an Agent for cfg; it connects when Run is called.
func New(cfg *Config, opt Options) *Agent {
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 500 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 30 * time.Second
	}
	d := &net.Dialer{}
	if opt.DialEdge == nil {
		opt.DialEdge = d.DialContext
	}
	if opt.DialTarget == nil {
		opt.DialTarget = d.DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{slots: cfg.Sessions, health: cfg.HealthAddress, opt: opt, log: opt.Logger, ctx: ctx, cancel: cancel, sessions: map[*yamux.Session]struct{}{}}
	a.cfg.Store(cfg)
	return a
}

// Reload makes cfg the agent's configuration, as SIGHUP does for
// ftpsgate agent. allow_targets and dial_timeout apply at once, to every
// stream the edge asks for next: a target removed is refused from then
// on, while the streams already open to it go on. edge, server_name,
// ca_file, cert_file, key_file and handshake_timeout apply to each
// session with the edge established from then on; those established keep
// the TLS session they have. sessions and health_address are read at
// start only: Reload returns the names of those in which cfg differs from
// the configuration the agent started with; they stay as they were until
// a restart.
func (a *Agent) Reload(cfg *Config) (startOnly []string) {
	if cfg.Sessions != a.slots {
		startOnly = append(startOnly, "sessions")
	}
	if cfg.HealthAddress != a.health {
		startOnly = append(startOnly, "health_address")
	}
	a.cfg.Store(cfg)
	return startOnly
}

// Stats are the agent's counters, for health checks and tests.
type Stats struct {
	Connected  int64 // sessions with the edge established now
	Reconnects int64 // sessions established again after one ended or failed
	Streams    int64 // streams being served now
	Refused    int64 // stream requests refused (outside allow_targets, or failed)
}

// Sessions is how many connections to the edge the agent keeps.
func (a *Agent) Sessions() int { return a.slots }

// Stats returns the agent's counters now.
func (a *Agent) Stats() Stats {
	return Stats{Connected: a.connected.Load(), Reconnects: a.reconnects.Load(), Streams: a.streams.Load(), Refused: a.refused.Load()}
}

// Run keeps the sessions with the edge until Close; it returns when every
// one of its goroutines has ended.
func (a *Agent) Run() {
	for i := range a.slots {
		a.wg.Add(1)
		go a.keepSession(i)
	}
	<-a.ctx.Done()
	a.mu.Lock()
	for s := range a.sessions {
		s.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// Close stops the agent: every session with the edge closes, and with
// them every stream. Safe to call more than once.
func (a *Agent) Close() { a.cancel() }

// keepSession is one slot of the pool: it connects to the edge, serves
// the session until it ends, and connects again after a backoff.
func (a *Agent) keepSession(slot int) {
	defer a.wg.Done()
	log := a.log.With(zap.Int("slot", slot))
	failures := 0
	for first := true; a.ctx.Err() == nil; {
		start := time.Now()
		sess, err := a.connect()
		retry := !first
		first = false
		if err != nil {
			failures++
			log.Warn("cannot connect to the edge", zap.String("edge", a.cfg.Load().Edge), zap.Error(err), zap.Int("failures", failures))
		} else {
			if retry {
				a.reconnects.Add(1)
			}
			log.Info("connected to the edge", zap.Stringer("edge", sess.RemoteAddr()), zap.Stringer("local", sess.LocalAddr()))
			a.serve(sess, log)
			if time.Since(start) > a.opt.MaxBackoff {
				failures = 0 // it held: the next try is quick
			} else {
				failures++
			}
			if a.ctx.Err() == nil {
				log.Warn("session with the edge ended; reconnecting")
			}
		}
		wait := backoff(a.opt.MinBackoff, a.opt.MaxBackoff, failures)
		select {
		case <-a.ctx.Done():
		case <-time.After(wait):
		}
	}
}

// backoff is the wait after failures failures in a row: a random
// duration up to min·2^(failures-1), at most max (full jitter); zero
// failures wait at least min/2.
func backoff(minWait, maxWait time.Duration, failures int) time.Duration {
	if failures <= 0 {
		return minWait/2 + rand.N(minWait/2+1)
	}
	d := maxWait
	if failures < 30 {
		d = min(minWait<<(failures-1), maxWait)
	}
	return minWait/2 + rand.N(d)
}

// yamuxConfig is the multiplexing of a session: keepalives so that a dead
// edge is noticed, bounded stream windows, no logging to stderr.
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.KeepAliveInterval = 15 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	c.LogOutput = io.Discard
	return c
}

// YamuxConfig is the multiplexing both ends use.
func YamuxConfig() *yamux.Config { return yamuxConfig() }

// connect dials the edge, runs the TLS handshake (the edge's certificate
// checked against ca_file and server_name, the agent's presented) and
// starts a yamux session on it, the agent as the side that accepts
// streams.
func (a *Agent) connect() (*yamux.Session, error) {
	cfg := a.cfg.Load()
	ctx, cancel := context.WithTimeout(a.ctx, cfg.HandshakeTimeout)
	defer cancel()
	raw, err := a.opt.DialEdge(ctx, "tcp", cfg.Edge)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with the edge: %w", err)
	}
	if tc.ConnectionState().NegotiatedProtocol != ALPN {
		raw.Close()
		return nil, errors.New("the edge does not speak " + ALPN)
	}
	sess, err := yamux.Server(tc, yamuxConfig())
	if err != nil {
		raw.Close()
		return nil, err
	}
	// Under TLS 1.3 the client's handshake ends before the edge has
	// checked the client certificate: an edge that refuses this agent's
	// says so only in its next record. One round trip to the edge's
	// yamux session settles it, before the session counts as connected.
	if _, err := sess.Ping(); err != nil {
		sess.Close()
		return nil, fmt.Errorf("the edge ended the session at once (does it allow this agent's certificate?): %w", err)
	}
	a.mu.Lock()
	if a.ctx.Err() != nil {
		a.mu.Unlock()
		sess.Close()
		return nil, a.ctx.Err()
	}
	a.sessions[sess] = struct{}{}
	a.mu.Unlock()
	return sess, nil
}

// serve accepts the edge's streams on sess until it ends.
func (a *Agent) serve(sess *yamux.Session, log *zap.Logger) {
	a.connected.Add(1)
	defer func() {
		a.connected.Add(-1)
		a.mu.Lock()
		delete(a.sessions, sess)
		a.mu.Unlock()
		sess.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		wg.Add(1)
		a.streams.Add(1)
		go func() {
			defer wg.Done()
			defer a.streams.Add(-1)
			a.handleStream(st, log)
		}()
	}
}

// requestTimeout bounds the edge's request line.
const requestTimeout = 10 * time.Second

// handleStream serves one stream: the edge's request, the check against
// allow_targets, the connection to the target, then the relay.
func (a *Agent) handleStream(st *yamux.Stream, log *zap.Logger) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReaderSize(st, 64<<10)
	target, err := ParseRequest(r)
	if err != nil {
		a.refused.Add(1)
		log.Warn("bad request from the edge; stream closed", zap.Error(err))
		fmt.Fprintf(st, "ERR bad request\n")
		return
	}
	log = log.With(zap.Stringer("target", target))
	cfg := a.cfg.Load()
	if !cfg.Permitted(target) {
		a.refused.Add(1)
		log.Warn("the edge asked for a target outside allow_targets; refused")
		fmt.Fprintf(st, "ERR %s is not in allow_targets\n", target)
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, cfg.DialTimeout)
	c, err := a.opt.DialTarget(ctx, "tcp", target.String())
	cancel()
	if err != nil {
		a.refused.Add(1)
		log.Warn("cannot connect to the target", zap.Error(err))
		fmt.Fprintf(st, "ERR %s\n", reason(err))
		return
	}
	defer c.Close()
	if _, err := io.WriteString(st, "OK\n"); err != nil {
		return
	}
	st.SetDeadline(time.Time{})
	log.Debug("stream opened")
	relayStream(newConn(st, r, nil), c, st.Session().CloseChan())
}

// reason is the refusal's text for the edge: the kind of failure, on one
// line, without the agent's internal details beyond it.
func reason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "connection timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return "connection failed"
}

// relayStream copies between the edge's stream s and the target's TCP
// connection c until both directions ended, carrying each end as it came:
// a FIN as 'F' and back, a reset or failure as 'R' and back.
//
// When the session with the edge ends (gone, or the agent closing), the
// target's connection is reset at once: nobody is left to carry it, and a
// server blocked writing to it must not hold the agent.
func relayStream(s *Conn, c net.Conn, sessionEnd <-chan struct{}) {
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-sessionEnd:
			resetTCP(c)
		case <-finished:
		}
	}()
	done := make(chan struct{}, 2)
	go func() { // the edge → the target
		defer func() { done <- struct{}{} }()
		_, err := io.Copy(c, s)
		if err == nil {
			if tc, ok := c.(interface{ CloseWrite() error }); ok {
				tc.CloseWrite()
				return
			}
		}
		resetTCP(c)
		s.Reset()
	}()
	go func() { // the target → the edge
		defer func() { done <- struct{}{} }()
		_, err := io.Copy(s, c)
		if err == nil {
			s.CloseWrite()
			return
		}
		s.Reset()
		resetTCP(c)
	}()
	<-done
	<-done
	s.Close()
}

// resetTCP closes c with a TCP reset.
func resetTCP(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Targets returns allow_targets, for the start-up log.
func (c *Config) Targets() []string {
	out := make([]string, len(c.AllowTargets))
	for i, t := range c.AllowTargets {
		out[i] = t.String()
	}
	return out
}
