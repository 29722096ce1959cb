// Package proxy is the running ftpsgate: it accepts FTP and FTPS clients,
// terminates their TLS, speaks FTP to the backends and relays every data
// transfer through its own passive ports.
//
// A Server (server.go) binds its listeners (listener.go) and runs one
// session per control connection. A session (session.go) reads one
// command at a time and handles it as the verb table says (control.go,
// verbs.go); its login (login.go), its connection to the backend
// (dialer.go) and each of its transfers (transfer.go, with the client's
// data connection from clientdata.go and the backend's from
// backenddata.go) are types of their own.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
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
	// ACMERenewCheckInterval is how often the acme blocks' certificates
	// are checked for renewal. Zero means certmagic's default (10
	// minutes); tests of renewal with short-lived certificates set less.
	ACMERenewCheckInterval time.Duration
}

// Server runs the listeners of one configuration and their sessions.
type Server struct {
	log   *zap.Logger
	audit *audit.Logger
	dial  func(ctx context.Context, network, address string) (net.Conn, error)

	// mu guards cfg and the fields after it, up to draining.
	mu        sync.Mutex
	cfg       *config.Config // the configuration new sessions take (Reload replaces it)
	listeners []*frontListener
	sessions  map[*session]struct{}
	// bindings: the TLS binding of each session, by binding id, for
	// data connections that resume a sibling session's ticket (tls.go).
	bindings map[string]*tlsBinding
	draining bool // Shutdown or Close was called

	// Safe for concurrent use, or set once by New (state: by Start,
	// before the first session).
	//
	// state holds bans, failed logins and session counts by user and by
	// client (state.go): in memory, or shared through Redis.
	state   sharedState
	metrics *metrics
	stateM  *stateMetrics
	// loginDelays: how long backends take to answer logins, mimicked
	// for names the policy refuses (login.go).
	loginDelays loginDelays
	// userFiles are the auth blocks' user files as last loaded, and
	// hashSlots bound the password checks running at once (edgeauth.go).
	userFiles userFiles
	hashSlots chan struct{}
	// ldapPools are the connections to the auth blocks' directories
	// (edgeldap.go).
	ldapPools ldapPools
	// hooksMu guards hooks: the auth blocks' hook clients (edgehook.go).
	hooksMu sync.Mutex
	hooks   map[*config.Auth]*hookClient
	// dialHook connects to auth hooks; nil: the system's dialer.
	dialHook func(ctx context.Context, network, address string) (net.Conn, error)
	// lingering counts the client data legs lingering after a transfer
	// (closeClientLeg), bounded by limits.max_lingering_data_legs.
	lingering atomic.Int64
	// live is the configuration in force (cfg, without the lock), whose
	// rate limits running transfers follow (ratelimit.go); buckets are
	// the rate limits shared by sessions.
	live    atomic.Pointer[config.Config]
	buckets bucketSet

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

	// acme: the managers of the acme blocks, by name, and challenges:
	// their challenge listeners; both set by Start, and kept as they are
	// by reloads (acme.go).
	acme       atomic.Pointer[map[string]*acmeManager]
	challenges []*challengeListener
	renewEvery time.Duration // Options.ACMERenewCheckInterval
	// agents: the outbound-only agents of via_agent backends (agents.go).
	agents *agentHub
	// notifier posts audit events to the notify blocks (notifier.go).
	notifier *notifier
	// spools: the spools of scan blocks in mode "spool", opened by Start
	// and by Reload (spool.go).
	spools *spoolSet

	certEvery time.Duration
	stop      chan struct{} // closed by Shutdown
	stopOnce  sync.Once

	wg sync.WaitGroup // accept loops and sessions
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
		state:    newMemoryState(cfg.Bans),
	}
	s.hashSlots = newHashSlots()
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.live.Store(cfg)
	s.metrics = newMetrics(s)
	s.agents = newAgentHub(s.log, s.metrics.reg)
	s.notifier = newNotifier(s.log, s.metrics.reg)
	s.audit = s.audit.WithTap(s.notifier)
	s.stateM = newStateMetrics(s.metrics.reg)
	s.spools = newSpoolSet(s.metrics.reg)
	s.stateM.up.Set(1) // in memory: always up; a redis state sets its own
	s.stop = make(chan struct{})
	s.certEvery = opt.CertCheckInterval
	s.renewEvery = opt.ACMERenewCheckInterval
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
	if err := s.spools.open(s.config(), s.log); err != nil {
		return err
	}
	if err := s.shareState(s.config()); err != nil {
		return err
	}
	// The challenge listeners first: certmagic must find them bound.
	if err := s.startACME(s.config()); err != nil {
		s.state.close()
		return err
	}
	var fls []*frontListener
	for _, lc := range s.config().Listeners {
		fl, err := bind(lc, s.acmeManager)
		if err != nil {
			for _, fl := range fls {
				fl.ln.Close()
			}
			s.stopACME()
			s.state.close()
			return err
		}
		fls = append(fls, fl)
	}
	if al := s.config().AgentListener; al != nil {
		if err := s.agents.start(al); err != nil {
			for _, fl := range fls {
				fl.ln.Close()
			}
			s.stopACME()
			s.state.close()
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		for _, fl := range fls {
			fl.ln.Close()
		}
		s.stopACME()
		s.agents.close()
		s.state.close()
		return errors.New("server is shut down")
	}
	s.listeners = fls
	s.warnInsecure(s.cfg)
	s.setPools(s.cfg)
	for _, fl := range fls {
		s.startListener(fl)
	}
	s.userFiles.set(s.cfg)
	s.notifier.use(s.cfg)
	s.ldapPools.set(s.cfg)
	s.wg.Add(2)
	go s.watchCertificates()
	go s.watchUserFiles()
	s.manageACME()
	return nil
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
	if err := s.checkACMEReload(cfg); err != nil {
		s.log.Error("reload refused; the running configuration stays", zap.Error(err))
		return fmt.Errorf("reload refused, nothing changed: %w", err)
	}
	if err := s.agents.checkReload(cfg.AgentListener); err != nil {
		s.log.Error("reload refused; the running configuration stays", zap.Error(err))
		return fmt.Errorf("reload refused, nothing changed: %w", err)
	}
	if err := s.spools.open(cfg, s.log); err != nil {
		s.log.Error("reload refused; the running configuration stays", zap.Error(err))
		return fmt.Errorf("reload refused, nothing changed: %w", err)
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
		fl, err := bind(lc, s.acmeManager)
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
	old := s.cfg
	s.cfg = cfg
	s.live.Store(cfg)
	s.state.setRules(cfg.Bans)
	s.userFiles.set(cfg)
	s.ldapPools.set(cfg)
	s.pruneHooks(cfg)
	s.agents.update(cfg.AgentListener)
	s.notifier.use(cfg)
	if !sameRedis(old.State.Redis, cfg.State.Redis) {
		s.log.Warn("the state block changed; it is read at start only: restart to apply it")
	}
	s.warnInsecure(cfg)
	s.setPools(cfg)
	return nil
}

// ReloadFailed records a reload refused before it reached Reload (a
// configuration that did not load), for the reload metrics.
func (s *Server) ReloadFailed(err error) { s.metrics.reloaded(err) }

// AgentAddr is the bound address of the agent listener, or nil.
func (s *Server) AgentAddr() net.Addr { return s.agents.addr() }

// AgentsConnected is how many connections agents of name hold now.
func (s *Server) AgentsConnected(name string) int { return s.agents.connected(name) }

// dialFor is how connections to b's servers are opened: through its
// agents for a via_agent backend, else by the dialer.
func (s *Server) dialFor(b *config.Backend) dialFunc {
	if b.ViaAgent != "" {
		return s.agents.dialer(b.ViaAgent)
	}
	return s.dial
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
// returns the new count (across instances, with shared state).
func (s *Server) userSessions(user string, delta int) int {
	return s.state.sessions(userCounter(user), delta)
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
	return true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	delete(s.bindings, string(sess.bind.id))
	s.mu.Unlock()
	if sess.clientCounted {
		s.state.sessions(clientCounter(sess.client.key), -1)
	}
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
	s.stopACME()

	done := make(chan struct{})
	go closeWhenDone(&s.wg, done)
	defer s.agents.close() // after the sessions, whose connections are streams through agents
	defer s.closePools()
	defer s.ldapPools.close()
	defer s.pruneHooks(&config.Config{}) // every hook client's idle connections
	defer s.state.close()
	// After the sessions, whose last events it posts: within ctx.
	defer s.notifier.close(ctx)
	defer s.spools.sweep(s.log) // after every transfer, whose own files are gone
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

// closeWhenDone is a goroutine that closes done once wg's count is zero.
func closeWhenDone(wg *sync.WaitGroup, done chan struct{}) {
	wg.Wait()
	close(done)
}

// newSessionID returns 16 hex digits from crypto/rand.
func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// shareState makes the state block of cfg the server's state: with a
// redis block, bans and session counts are shared through Redis (the
// in-memory state becomes its mirror and fallback).
func (s *Server) shareState(cfg *config.Config) error {
	rc := cfg.State.Redis
	mem, ok := s.state.(*memoryState)
	if rc == nil || !ok {
		return nil
	}
	r, err := newRedisState(rc, mem, s.log, s.stateM, nil, func(key netip.Prefix) { s.banSessions(key, nil) })
	if err != nil {
		return fmt.Errorf("state: redis: %w", err)
	}
	s.state = r
	return nil
}
