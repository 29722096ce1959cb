// Package proxy is the running ftpsgate: it accepts FTP and FTPS clients,
// terminates their TLS, speaks FTP to the backends and relays every data
// transfer through its own passive ports. One session's life, from accept
// to close, reads top to bottom in session.go.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/dataport"
)

// Options are the seams of a Server. The zero value is usable.
type Options struct {
	// Logger receives diagnostic logs. If nil, nothing is logged.
	Logger *zap.Logger
	// Audit receives audit events. If nil, they are discarded.
	Audit *audit.Logger
	// DialBackend opens connections to backends, control and data. If
	// nil, a net.Dialer is used.
	DialBackend func(ctx context.Context, network, address string) (net.Conn, error)
}

// Server runs the listeners of one configuration and their sessions.
type Server struct {
	cfg   *config.Config
	log   *zap.Logger
	audit *audit.Logger
	dial  func(ctx context.Context, network, address string) (net.Conn, error)

	// mu guards the fields below it.
	mu        sync.Mutex
	listeners []*frontListener
	sessions  map[*session]struct{}
	perIP     map[netip.Addr]int // sessions by client address
	users     map[string]int     // logged-in sessions by user name
	draining  bool               // Shutdown or Close was called

	bans    *policy.Bans
	metrics *metrics

	wg sync.WaitGroup // accept loops and sessions
}

// frontListener is one configured listener, bound.
type frontListener struct {
	cfg     *config.Listener
	ln      net.Listener
	tlsConf *tls.Config
	ports   *dataport.Pool
}

// New returns a Server for cfg. It does not listen until Start.
func New(cfg *config.Config, opt Options) *Server {
	s := &Server{
		cfg:      cfg,
		log:      opt.Logger,
		audit:    opt.Audit,
		dial:     opt.DialBackend,
		sessions: make(map[*session]struct{}),
		users:    make(map[string]int),
		perIP:    make(map[netip.Addr]int),
		bans:     policy.NewBans(cfg.Bans),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.metrics = newMetrics(s)
	if s.dial == nil {
		d := &net.Dialer{}
		s.dial = d.DialContext
	}
	return s
}

// Start binds every listener and starts accepting. If one cannot be bound,
// none stays open and the error names it.
func (s *Server) Start() error {
	var fls []*frontListener
	for _, lc := range s.cfg.Listeners {
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			for _, fl := range fls {
				fl.ln.Close()
			}
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		if pp := lc.ProxyProtocol; pp != nil {
			ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: pp.HeaderTimeout, ConnPolicy: proxyPolicy(pp)}
		}
		fls = append(fls, &frontListener{
			cfg:     lc,
			ln:      ln,
			tlsConf: frontTLSConfig(lc),
			ports:   dataport.New(lc.PassivePorts.First, lc.PassivePorts.Last),
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		for _, fl := range fls {
			fl.ln.Close()
		}
		return errors.New("server is shut down")
	}
	s.listeners = fls
	for _, b := range s.cfg.Backends {
		if b.InsecureSkipVerify {
			s.log.Warn("backend certificate not verified (insecure_skip_verify)", zap.String("backend", b.Name),
				zap.String("address", b.Address))
		}
	}
	for _, fl := range fls {
		s.log.Info("listening", zap.String("listener", fl.cfg.Name), zap.Stringer("address", fl.ln.Addr()),
			zap.Stringer("tls", fl.cfg.TLS), zap.Stringer("passive_ports", fl.cfg.PassivePorts),
			zap.String("backend", fl.cfg.Backend.Name))
		s.wg.Add(1)
		go s.acceptLoop(fl)
	}
	return nil
}

// Addr is the bound address of the named listener, or nil.
func (s *Server) Addr(listener string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fl := range s.listeners {
		if fl.cfg.Name == listener {
			return fl.ln.Addr()
		}
	}
	return nil
}

// userSessions adds delta to the count of user's logged-in sessions and
// returns the new count.
func (s *Server) userSessions(user string, delta int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.users[user] + delta
	if n <= 0 {
		delete(s.users, user)
		return 0
	}
	s.users[user] = n
	return n
}

// PassivePortsInUse is how many of the named listener's passive ports are
// held (listening, or with a data connection), or -1 if there is no such
// listener.
func (s *Server) PassivePortsInUse(listener string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fl := range s.listeners {
		if fl.cfg.Name == listener {
			return fl.ports.InUse()
		}
	}
	return -1
}

// acceptLoop accepts control connections until the listener closes. A
// temporary accept error (out of file descriptors) backs off instead of
// spinning.
func (s *Server) acceptLoop(fl *frontListener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := fl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; backing off", zap.String("listener", fl.cfg.Name),
				zap.Error(err), zap.Duration("backoff", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1) // safe: this loop's own count is held
		go s.serve(fl, c)
	}
}

// serve runs one control connection: its PROXY header first, when the
// listener takes them (read here, not in the accept loop, so that a slow
// load balancer cannot stall the loop), then the session.
func (s *Server) serve(fl *frontListener, c net.Conn) {
	defer s.wg.Done()
	peer := addrPortOf(c.RemoteAddr()) // with a PROXY header, this reads it
	var tcpPeer netip.AddrPort
	if fl.cfg.ProxyProtocol != nil {
		// A connection the policy SKIPs comes unwrapped.
		pc, _ := c.(*proxyproto.Conn)
		raw := c
		if pc != nil {
			raw = pc.Raw()
		}
		from := addrPortOf(raw.RemoteAddr())
		if err := s.checkProxyHeader(fl, pc, from); err != nil {
			s.log.Warn("connection refused: PROXY protocol", zap.String("listener", fl.cfg.Name),
				zap.Stringer("from", from), zap.Error(err))
			c.Close()
			return
		}
		if pc != nil && trusted(fl.cfg.ProxyProtocol, from.Addr()) {
			peer, tcpPeer = addrPortOf(pc.RemoteAddr()), from
		} else {
			peer = from
		}
	}
	sess := newSession(s, fl, c, peer, tcpPeer)
	if !s.track(sess) {
		c.Close()
		return
	}
	defer s.untrack(sess)
	active := s.metrics.sessionsActive.WithLabelValues(fl.cfg.Name)
	active.Inc()
	defer active.Dec()
	s.metrics.sessionsTotal.WithLabelValues(fl.cfg.Name).Inc()
	sess.run()
}

// proxyPolicy is the PROXY protocol policy of a listener: a trusted load
// balancer must send a header; anyone else is left alone (SKIP: no header
// is waited for, as FTP's server speaks first) and then served directly or
// closed by checkProxyHeader.
func proxyPolicy(pp *config.ProxyProtocol) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if trusted(pp, addrPortOf(o.Upstream).Addr()) {
			return proxyproto.REQUIRE, nil
		}
		return proxyproto.SKIP, nil
	}
}

func trusted(pp *config.ProxyProtocol, a netip.Addr) bool {
	for _, p := range pp.Trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// checkProxyHeader decides on a connection of a PROXY-protocol listener:
// from a trusted balancer it must have sent a valid header (read within the
// header timeout); from elsewhere it is served only with allow_direct.
func (s *Server) checkProxyHeader(fl *frontListener, pc *proxyproto.Conn, tcpPeer netip.AddrPort) error {
	pp := fl.cfg.ProxyProtocol
	if !trusted(pp, tcpPeer.Addr()) {
		if pp.AllowDirect {
			return nil
		}
		return errors.New("not from a trusted load balancer (proxy_protocol.trusted_cidrs), and allow_direct is off")
	}
	if pc == nil {
		return errors.New("no PROXY header")
	}
	pc.SetReadDeadline(time.Now().Add(pp.HeaderTimeout))
	_, err := pc.Read(nil) // reads and checks the header, nothing more
	pc.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("no valid PROXY header: %w", err)
	}
	if h := pc.ProxyHeader(); h == nil || h.Command.IsLocal() {
		return errors.New("no client address in the PROXY header (LOCAL command)")
	}
	return nil
}

// track registers a session; it reports false once the server is
// draining.
func (s *Server) track(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.sessions[sess] = struct{}{}
	s.perIP[sess.client.Addr()]++
	return true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	a := sess.client.Addr()
	if s.perIP[a]--; s.perIP[a] <= 0 {
		delete(s.perIP, a)
	}
	s.mu.Unlock()
}

// admit decides whether a tracked session may go on: its address is not
// banned, and the server and the address are within their session limits.
func (s *Server) admit(a netip.Addr) *policy.Denial {
	if d := s.bans.Check(a, time.Now()); d != nil {
		return d
	}
	l := s.cfg.Limits
	s.mu.Lock()
	total, fromA := len(s.sessions), s.perIP[a]
	s.mu.Unlock()
	if l.MaxSessions > 0 && total > l.MaxSessions {
		return &policy.Denial{Rule: "max_sessions", Code: 421, Text: "Too many users connected; try again later."}
	}
	if l.MaxSessionsPerIP > 0 && fromA > l.MaxSessionsPerIP {
		return &policy.Denial{Rule: "max_sessions_per_ip", Code: 421, Text: "Too many connections from your address."}
	}
	return nil
}

// Shutdown stops accepting, answers idle sessions 421 and closes them, and
// lets transfers in progress finish. When ctx ends first, it closes every
// remaining session and returns ctx's error. Shutdown returns after every
// goroutine of the server has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for _, fl := range s.listeners {
		fl.ln.Close()
	}
	for sess := range s.sessions {
		sess.drain()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for sess := range s.sessions {
		sess.kill()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Close closes every listener and session at once. It is safe to call more
// than once and after Shutdown.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// newSessionID returns 16 hex digits from crypto/rand.
func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
