package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/dataport"
)

// The listeners: a configured listener bound (frontListener), its accept
// loop, the PROXY protocol header of each connection and the admission of
// its session.

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
	// acme is the server's acme manager of a name (Server.acmeManager),
	// for a listener whose configuration names an acme block.
	acme func(name string) *acmeManager
}

// certificate is the certificate of a handshake: the acme block's the
// listener's current configuration names, or its certificate files'.
func (fl *frontListener) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	lc := fl.config()
	if lc.ACME == nil {
		return fl.cert.Load(), nil
	}
	am := fl.acme(lc.ACME.Name)
	if am == nil {
		return nil, errNoCertificate
	}
	return am.certificate(hello)
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

// bind opens the socket of lc.
func bind(lc *config.Listener, acme func(string) *acmeManager) (*frontListener, error) {
	ln, err := net.Listen("tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	fl := &frontListener{ln: ln, acme: acme}
	fl.cur.Store(lc)
	fl.cert.Store(lc.Certificate)
	fl.stampCert()
	fl.ports.Store(dataport.New(lc.PassivePorts.First, lc.PassivePorts.Last))
	fl.tlsConf = frontTLSConfig(fl.certificate)
	// Always wrapped, so that a reload can turn the PROXY protocol on or
	// off without a new socket: proxyPolicy reads the listener's current
	// configuration, and skips connections (no header read) while it has
	// no proxy_protocol block. The header timeout is checkProxyHeader's,
	// from the current configuration too.
	fl.ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: -1, ConnPolicy: proxyPolicy(fl)}
	return fl, nil
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

// admit decides whether a tracked session may go on: its address is not
// banned, the server and the client (its address, or its IPv6 prefix)
// are within their session limits, and, with audit.on_error = "refuse",
// the audit stream can be written.
func (s *Server) admit(sess *session) *policy.Denial {
	if d := s.state.banned(sess.client.addr.Addr(), time.Now()); d != nil {
		return d
	}
	// Counted until the session ends (untrack), refused or not.
	from := s.state.sessions(clientCounter(sess.client.key), +1)
	sess.clientCounted = true
	s.mu.Lock()
	a := policy.Admission{Sessions: len(s.sessions), MaxSessions: s.cfg.Limits.MaxSessions,
		FromClient: from, MaxPerClient: s.cfg.Limits.MaxSessionsPerIP}
	refuse := s.cfg.Audit.OnError == config.AuditRefuse
	s.mu.Unlock()
	// The sink logs why, rate-limited; the session logs the refusal.
	a.AuditRefuses = refuse && s.audit.Health() != nil
	return policy.Admit(a)
}
