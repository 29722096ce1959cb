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
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/dataport"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Options are the seams of a Server. The zero value is usable.
type Options struct {
	// Logger receives diagnostic logs. If nil, nothing is logged.
	Logger *zap.Logger
	// Audit receives audit events. If nil, they are discarded.
	Audit *audit.Logger
	// CertCheckInterval is how often the listeners' certificate and key
	// files are checked for changes (reloaded when both parse). Zero means
	// 10 seconds.
	CertCheckInterval time.Duration
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
	perIP     map[netip.Prefix]int // sessions by client (policy.ClientKey)
	users     map[string]int       // logged-in sessions by user name
	// bindings: the TLS binding of each session, by binding id, for
	// data connections that resume a sibling session's ticket (tls.go).
	bindings map[string]*tlsBinding
	draining bool // Shutdown or Close was called

	bans    *policy.Bans
	metrics *metrics
	// loginDelays: how long backends take to answer logins, mimicked
	// for names the policy refuses (login.go).
	loginDelays loginDelays
	// lingering counts the client data legs lingering after a transfer
	// (closeClientLeg), bounded by limits.max_lingering_data_legs.
	lingering atomic.Int64

	// poolMu guards pools: the live state of each backend of the
	// configuration in force; and queues: each backend's queue, by name,
	// kept across reloads (queue.go).
	poolMu sync.Mutex
	pools  map[*config.Backend]*pool
	queues map[string]*backendQueue

	// dispatchHook, when set (by tests only, see export_test.go), sees
	// every command before it is handled: the tests make it panic to
	// prove that a session's panic is contained.
	dispatchHook atomic.Pointer[func(rewrite.Command)]

	certEvery time.Duration
	stop      chan struct{} // closed by Shutdown
	stopOnce  sync.Once

	wg sync.WaitGroup // accept loops and sessions
}

// frontListener is one configured listener, bound. Its configuration,
// certificate and passive port pool may be replaced by a reload; its TLS
// configuration is built once, so that its session-ticket keys outlive
// reloads (a session opened before one still binds its data connections
// after it).
type frontListener struct {
	cur  atomic.Pointer[config.Listener]
	cert atomic.Pointer[tls.Certificate]
	// certStamp is the size and time of the certificate files when the
	// certificate was last loaded; the watcher compares against it.
	certStamp atomic.Pointer[string]
	ports     atomic.Pointer[dataport.Pool]
	ln        net.Listener
	tlsConf   *tls.Config
}

// config is the listener's current configuration.
func (fl *frontListener) config() *config.Listener { return fl.cur.Load() }

// update installs a reloaded configuration for the same address.
func (fl *frontListener) update(lc *config.Listener) {
	old := fl.config()
	fl.cur.Store(lc)
	fl.cert.Store(lc.Certificate)
	fl.stampCert()
	if old.PassivePorts != lc.PassivePorts {
		fl.ports.Store(dataport.New(lc.PassivePorts.First, lc.PassivePorts.Last))
	}
}

// certFilesStamp describes the certificate files of lc: path, size and
// modification time of each.
func certFilesStamp(lc *config.Listener) string {
	var st string
	for _, p := range []string{lc.CertFile, lc.KeyFile} {
		if fi, err := os.Stat(p); err == nil {
			st += fmt.Sprintf("%s|%d|%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return st
}

// stampCert records the certificate files as they are now.
func (fl *frontListener) stampCert() {
	st := certFilesStamp(fl.config())
	fl.certStamp.Store(&st)
}

// bind opens the socket of lc.
func bind(lc *config.Listener) (*frontListener, error) {
	ln, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	fl := &frontListener{ln: ln}
	fl.cur.Store(lc)
	fl.cert.Store(lc.Certificate)
	fl.stampCert()
	fl.ports.Store(dataport.New(lc.PassivePorts.First, lc.PassivePorts.Last))
	fl.tlsConf = frontTLSConfig(fl.cert.Load)
	// Always wrapped, so that a reload can turn the PROXY protocol on or
	// off without a new socket: proxyPolicy reads the listener's current
	// configuration, and skips connections (no header read) while it has
	// no proxy_protocol block. The header timeout is checkProxyHeader's,
	// from the current configuration too.
	fl.ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: -1, ConnPolicy: proxyPolicy(fl)}
	return fl, nil
}

// New returns a Server for cfg. It does not listen until Start.
func New(cfg *config.Config, opt Options) *Server {
	s := &Server{
		cfg:      cfg,
		log:      opt.Logger,
		audit:    opt.Audit,
		dial:     opt.DialBackend,
		sessions: make(map[*session]struct{}),
		bindings: make(map[string]*tlsBinding),
		users:    make(map[string]int),
		perIP:    make(map[netip.Prefix]int),
		bans:     policy.NewBans(cfg.Bans),
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.metrics = newMetrics(s)
	s.stop = make(chan struct{})
	s.certEvery = opt.CertCheckInterval
	if s.certEvery <= 0 {
		s.certEvery = 10 * time.Second
	}
	if s.dial == nil {
		d := &net.Dialer{}
		s.dial = d.DialContext
	}
	return s
}

// Start binds every listener and starts accepting. If one cannot be bound,
// none stays open and the error names it.
func (s *Server) Start() error {
	if err := s.checkConfig(s.config()); err != nil {
		return err
	}
	var fls []*frontListener
	for _, lc := range s.config().Listeners {
		fl, err := bind(lc)
		if err != nil {
			for _, fl := range fls {
				fl.ln.Close()
			}
			return err
		}
		fls = append(fls, fl)
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
	s.warnInsecure(s.cfg)
	s.setPools(s.cfg)
	for _, fl := range fls {
		s.startListener(fl)
	}
	s.wg.Add(1)
	go s.watchCertificates()
	return nil
}

// watchCertificates reloads a listener's certificate when its files change
// (a renewal by certbot or cert-manager), without a SIGHUP. A pair that
// does not load is logged and the current one kept. New handshakes get the
// new certificate; open sessions are unaffected.
func (s *Server) watchCertificates() {
	defer s.wg.Done()
	t := time.NewTicker(s.certEvery)
	defer t.Stop()
	for {
		s.mu.Lock()
		fls := append([]*frontListener(nil), s.listeners...)
		s.mu.Unlock()
		for _, fl := range fls {
			lc := fl.config()
			st := certFilesStamp(lc)
			if st == *fl.certStamp.Load() {
				continue
			}
			fl.certStamp.Store(&st)
			cert, err := config.LoadKeyPair(lc.CertFile, lc.KeyFile)
			if err != nil {
				s.log.Warn("certificate files changed but do not load; keeping the current certificate",
					zap.String("listener", lc.Name), zap.Error(err))
				continue
			}
			fl.cert.Store(&cert)
			s.log.Info("certificate reloaded", zap.String("listener", lc.Name), zap.String("cert_file", lc.CertFile))
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// checkConfig checks cfg against the verb table (CheckConfig): errors are
// returned, warnings logged.
func (s *Server) checkConfig(cfg *config.Config) error {
	warnings, err := CheckConfig(cfg)
	for _, w := range warnings {
		s.log.Warn("configuration warning", zap.String("warning", w))
	}
	return err
}

// warnInsecure logs each backend whose certificate is not verified.
func (s *Server) warnInsecure(cfg *config.Config) {
	for _, b := range cfg.Backends {
		if b.InsecureSkipVerify {
			s.log.Warn("backend certificate not verified (insecure_skip_verify)", zap.String("backend", b.Name),
				zap.String("address", b.Address))
		}
	}
}

// startListener logs the listener and starts its accept loop; under mu.
func (s *Server) startListener(fl *frontListener) {
	lc := fl.config()
	s.log.Info("listening", zap.String("listener", lc.Name), zap.Stringer("address", fl.ln.Addr()),
		zap.Stringer("tls", lc.TLS), zap.Stringer("passive_ports", lc.PassivePorts),
		zap.String("backend", lc.Backend.Name))
	s.wg.Add(1)
	go s.acceptLoop(fl)
}

// config is the configuration new sessions take.
func (s *Server) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Reload makes cfg the configuration of new sessions; sessions already
// open keep theirs. It is all or nothing, as Caddy's and HAProxy's are:
// every listener whose address is new is bound first, and only when all
// are bound does the server switch: listeners at an address both configs
// have keep their socket and take the new settings and certificate, those
// no longer configured are closed, and the new configuration takes over.
// If one cannot be bound, nothing changes: the error names the listener
// and its address, and the old listeners and configuration go on serving.
// The outcome is in the metrics (ftpsgate_config_last_reload_successful).
func (s *Server) Reload(cfg *config.Config) (err error) {
	defer func() { s.metrics.reloaded(err) }()
	if err := s.checkConfig(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errors.New("server is shut down")
	}
	// A socket is known by its address; one on an ephemeral port (":0")
	// by its listener's name as well, since each bind gets another port.
	socket := func(lc *config.Listener) string {
		if strings.HasSuffix(lc.Address, ":0") {
			return lc.Name + " " + lc.Address
		}
		return lc.Address
	}
	byAddr := map[string]*frontListener{}
	for _, fl := range s.listeners {
		byAddr[socket(fl.config())] = fl
	}
	// Bind first.
	fls := make([]*frontListener, len(cfg.Listeners))
	var added []*frontListener
	for i, lc := range cfg.Listeners {
		if fl := byAddr[socket(lc)]; fl != nil {
			fls[i] = fl
			delete(byAddr, socket(lc))
			continue
		}
		fl, err := bind(lc)
		if err != nil {
			for _, fl := range added {
				fl.ln.Close()
			}
			s.log.Error("reload refused: a listener cannot be bound; the running configuration stays",
				zap.String("listener", lc.Name), zap.String("address", lc.Address), zap.Error(err))
			return fmt.Errorf("reload refused, nothing changed: %w", err)
		}
		fls[i] = fl
		added = append(added, fl)
	}
	// Then switch.
	for i, fl := range fls {
		if !slices.Contains(added, fl) {
			fl.update(cfg.Listeners[i])
		}
	}
	for _, fl := range byAddr {
		s.log.Info("listener closed by reload", zap.String("listener", fl.config().Name), zap.String("address", fl.config().Address))
		fl.ln.Close()
	}
	s.listeners = fls
	for _, fl := range added {
		s.startListener(fl)
	}
	s.cfg = cfg
	s.bans.SetRules(cfg.Bans)
	s.warnInsecure(cfg)
	s.setPools(cfg)
	return nil
}

// ReloadFailed records a reload refused before it reached Reload (a
// configuration that did not load), for the reload metrics.
func (s *Server) ReloadFailed(err error) { s.metrics.reloaded(err) }

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
		p.start(s.dial)
		pools[b] = p
	}
	s.pools = pools
	s.poolMu.Unlock()
	if len(old) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for _, p := range old {
				p.close()
				for _, ps := range p.servers {
					if !current[[2]string{p.b.Name, ps.addr}] {
						s.metrics.backendUp.DeleteLabelValues(p.b.Name, ps.addr)
					}
				}
			}
		}()
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

// Addr is the bound address of the named listener, or nil.
func (s *Server) Addr(listener string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fl := range s.listeners {
		if fl.config().Name == listener {
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
		if fl.config().Name == listener {
			return fl.ports.Load().InUse()
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
			s.log.Warn("accept failed; backing off", zap.String("listener", fl.config().Name),
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
	// A connection the policy SKIPs comes unwrapped; a wrapped one is read
	// for its header here, with the header timeout, before anything asks
	// for its address (which would read the header without a deadline).
	pc, _ := c.(*proxyproto.Conn)
	var peer, tcpPeer netip.AddrPort
	if pc != nil {
		peer = addrPortOf(pc.Raw().RemoteAddr())
	} else {
		peer = addrPortOf(c.RemoteAddr())
	}
	if pp := fl.config().ProxyProtocol; pp != nil || pc != nil {
		from := peer
		if err := s.checkProxyHeader(pp, pc, from); err != nil {
			s.log.Warn("connection refused: PROXY protocol", zap.String("listener", fl.config().Name),
				zap.Stringer("from", from), zap.Error(err))
			c.Close()
			return
		}
		if pc != nil && pp != nil && trusted(pp, from.Addr()) {
			peer, tcpPeer = addrPortOf(pc.RemoteAddr()), from
		}
	}
	sess := newSession(s, fl, c, peer, tcpPeer)
	if !s.track(sess) {
		c.Close()
		return
	}
	defer s.untrack(sess)
	active := s.metrics.sessionsActive.WithLabelValues(fl.config().Name)
	active.Inc()
	defer active.Dec()
	s.metrics.sessionsTotal.WithLabelValues(fl.config().Name).Inc()
	sess.run()
}

// proxyPolicy is the PROXY protocol policy of a listener: a trusted load
// balancer must send a header; anyone else is left alone (SKIP: no header
// is waited for, as FTP's server speaks first) and then served directly or
// closed by checkProxyHeader.
func proxyPolicy(fl *frontListener) proxyproto.ConnPolicyFunc {
	return func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if pp := fl.config().ProxyProtocol; pp != nil && trusted(pp, addrPortOf(o.Upstream).Addr()) {
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

// checkProxyHeader decides on a connection of a PROXY-protocol listener
// (pp; nil when a reload turned the protocol off after pc was accepted):
// from a trusted balancer it must have sent a valid header (read within
// the header timeout); from elsewhere it is served only with allow_direct.
func (s *Server) checkProxyHeader(pp *config.ProxyProtocol, pc *proxyproto.Conn, tcpPeer netip.AddrPort) error {
	if pp == nil {
		return errors.New("the listener stopped taking PROXY headers (reload) as this connection came")
	}
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
	s.bindings[string(sess.bind.id)] = sess.bind
	s.perIP[sess.client.key]++
	return true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	delete(s.bindings, string(sess.bind.id))
	k := sess.client.key
	if s.perIP[k]--; s.perIP[k] <= 0 {
		delete(s.perIP, k)
	}
	s.mu.Unlock()
}

// binding returns the TLS binding of the tracked session whose binding id
// is id, or nil.
func (s *Server) binding(id []byte) *tlsBinding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bindings[string(id)]
}

// banSessions ends, with 421, every session of a client of the banned key
// that has not logged in, but for the one that caused the ban (which ends
// by itself).
func (s *Server) banSessions(key netip.Prefix, except *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if sess != except && key.Contains(sess.client.addr.Addr().Unmap()) {
			sess.kick()
		}
	}
}

// admit decides whether a tracked session may go on: its address is not
// banned, the server and the client (its address, or its IPv6 prefix)
// are within their session limits, and, with audit.on_error = "refuse",
// the audit stream can be written.
func (s *Server) admit(sess *session) *policy.Denial {
	if d := s.bans.Check(sess.client.addr.Addr(), time.Now()); d != nil {
		return d
	}
	s.mu.Lock()
	l := s.cfg.Limits
	refuse := s.cfg.Audit.OnError == config.AuditRefuse
	total, fromA := len(s.sessions), s.perIP[sess.client.key]
	s.mu.Unlock()
	// The sink logs why, rate-limited; the session logs the refusal.
	if refuse && s.audit.Health() != nil {
		return &policy.Denial{Rule: "audit_unavailable", Code: 421,
			Text: "Service not available: the audit log cannot be written; try again later."}
	}
	if l.MaxSessions > 0 && total > l.MaxSessions {
		return &policy.Denial{Rule: "max_sessions", Code: 421, Text: "Too many users connected; try again later."}
	}
	if l.MaxSessionsPerIP > 0 && fromA > l.MaxSessionsPerIP {
		return &policy.Denial{Rule: "max_sessions_per_ip", Code: 421, Text: "Too many connections from your address."}
	}
	return nil
}

// shuttingDown reports whether Shutdown (or Close) was called.
func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown stops accepting, answers idle sessions 421 and closes them, and
// lets transfers in progress finish. When ctx ends first, it closes every
// remaining session and returns ctx's error. Shutdown returns after every
// goroutine of the server has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
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
	defer s.closePools()
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
