package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/agent"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// errNoAgent: a via_agent backend's agents are none connected. The
// client gets "421 Service not available: no agent connected".
var errNoAgent = errors.New("no agent connected")

// agentHandshakeTimeout bounds an agent's TLS handshake on the agent
// listener.
const agentHandshakeTimeout = 10 * time.Second

// maxAgentHandshakes bounds the handshakes running at once on the agent
// listener: a connection past it is closed at once, so that a flood of
// connections that never finish their handshake holds at most this many
// goroutines and descriptors. Agents retry with backoff.
const maxAgentHandshakes = 64

// An agentHub is the edge's side of the outbound-only agents: it accepts
// them on the agent listener (mutual TLS, the agent's name checked against
// allowed_names), keeps each one's yamux session, and opens streams
// through them for via_agent backends (dial). Several agents of one name
// share the load (the one carrying fewest streams is taken) and fail over
// (a session that cannot open a stream is dropped and the next tried).
type agentHub struct {
	log *zap.Logger
	// conf is the agent listener's configuration in force: reload
	// replaces it; the handshake and each new stream read it.
	conf atomic.Pointer[config.AgentListener]

	// mu guards the fields below it.
	mu     sync.Mutex
	ln     net.Listener
	byName map[string][]*agentSession
	closed bool

	wg sync.WaitGroup // the accept loop, handshakes, session watchers
	// handshakes holds a token per handshake running (maxAgentHandshakes).
	handshakes chan struct{}

	// Metrics, by agent name (names come from allowed_names, so the label
	// is bounded).
	connections *prometheus.GaugeVec   // connections held now
	admitted    *prometheus.CounterVec // connections admitted: their rate is the reconnect rate
	refusedTLS  prometheus.Counter     // handshakes refused (unknown CA or name)
	streams     *prometheus.CounterVec // streams asked for, by result
}

// agentSession is one connection of an agent.
type agentSession struct {
	name   string
	remote string
	since  time.Time
	sess   *yamux.Session
}

// newAgentHub returns a hub whose metrics are registered on reg.
func newAgentHub(log *zap.Logger, reg prometheus.Registerer) *agentHub {
	ns := "ftpsgate"
	h := &agentHub{log: log.With(zap.String("component", "agents")), byName: map[string][]*agentSession{},
		handshakes: make(chan struct{}, maxAgentHandshakes),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "agent_connections",
			Help: "Connections of outbound-only agents held now, by agent name."}, []string{"agent"}),
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "agent_connections_total",
			Help: "Agent connections admitted, by agent name: after the first ones, reconnections."}, []string{"agent"}),
		refusedTLS: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "agent_handshake_failures_total",
			Help: "Agent connections refused at the TLS handshake (certificate, CA or name not allowed)."}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "agent_streams_total",
			Help: "Connections asked of agents, by agent name and result: opened, refused (by the agent), failed, no_agent."},
			[]string{"agent", "result"}),
	}
	reg.MustRegister(h.connections, h.admitted, h.refusedTLS, h.streams)
	return h
}

// start binds the agent listener of al and accepts agents.
func (h *agentHub) start(al *config.AgentListener) error {
	h.conf.Store(al)
	ln, err := net.Listen("tcp", al.Address)
	if err != nil {
		return fmt.Errorf("agent listener: %w", err)
	}
	h.mu.Lock()
	h.ln = ln
	h.mu.Unlock()
	h.log.Info("accepting agents", zap.Stringer("address", ln.Addr()), zap.Strings("allowed_names", al.AllowedNames))
	h.wg.Add(1)
	go h.acceptAgents(ln)
	return nil
}

// addr is the agent listener's bound address, or nil.
func (h *agentHub) addr() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return nil
	}
	return h.ln.Addr()
}

// tlsConfig is the listener's TLS for one handshake, from the
// configuration in force: TLS 1.3, the agent's certificate required and
// verified against client_ca_file, its name one of allowed_names.
func (h *agentHub) tlsConfig() *tls.Config {
	al := h.conf.Load()
	return &tls.Config{
		Certificates: []tls.Certificate{*al.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    al.ClientCAs,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{agent.ALPN},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no agent certificate")
			}
			if _, ok := agentName(cs.PeerCertificates[0], al.AllowedNames); !ok {
				return fmt.Errorf("agent certificate %q carries no name of allowed_names", cs.PeerCertificates[0].Subject.CommonName)
			}
			return nil
		},
	}
}

// agentName is the name of allowed an agent's certificate carries: its
// subject's common name, or one of its DNS names.
func agentName(cert *x509.Certificate, allowed []string) (string, bool) {
	if slices.Contains(allowed, cert.Subject.CommonName) && cert.Subject.CommonName != "" {
		return cert.Subject.CommonName, true
	}
	for _, n := range cert.DNSNames {
		if slices.Contains(allowed, n) {
			return n, true
		}
	}
	return "", false
}

// acceptAgents is the agent listener's accept loop.
func (h *agentHub) acceptAgents(ln net.Listener) {
	defer h.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				h.log.Error("agent listener failed", zap.Error(err))
			}
			return
		}
		select {
		case h.handshakes <- struct{}{}:
		default:
			h.refusedTLS.Inc()
			h.log.Warn("too many agent handshakes at once; connection closed", zap.Stringer("agent_address", c.RemoteAddr()),
				zap.Int("running", maxAgentHandshakes))
			c.Close()
			continue
		}
		h.wg.Add(1)
		go h.admit(c)
	}
}

// admit runs an agent's handshake and registers its session.
func (h *agentHub) admit(c net.Conn) {
	defer h.wg.Done()
	log := h.log.With(zap.Stringer("agent_address", c.RemoteAddr()))
	tc := tls.Server(c, h.tlsConfig())
	ctx, cancel := context.WithTimeout(context.Background(), agentHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-h.handshakes
	if err != nil {
		h.refusedTLS.Inc()
		log.Warn("agent refused at its TLS handshake", zap.Error(err))
		c.Close()
		return
	}
	name, _ := agentName(tc.ConnectionState().PeerCertificates[0], h.conf.Load().AllowedNames)
	sess, err := yamux.Client(tc, agent.YamuxConfig())
	if err != nil {
		c.Close()
		return
	}
	as := &agentSession{name: name, remote: c.RemoteAddr().String(), since: time.Now(), sess: sess}
	h.mu.Lock()
	if h.closed || !slices.Contains(h.conf.Load().AllowedNames, name) {
		h.mu.Unlock()
		sess.Close()
		return
	}
	h.byName[name] = append(h.byName[name], as)
	n := len(h.byName[name])
	h.connections.WithLabelValues(name).Set(float64(n))
	h.admitted.WithLabelValues(name).Inc()
	h.mu.Unlock()
	log.Info("agent connected", zap.String("agent", name), zap.Int("connections", n))
	<-sess.CloseChan()
	h.drop(as)
	log.Warn("agent connection ended", zap.String("agent", name), zap.Duration("lasted", time.Since(as.since)))
}

// drop forgets as and closes its session.
func (h *agentHub) drop(as *agentSession) {
	h.mu.Lock()
	h.byName[as.name] = slices.DeleteFunc(h.byName[as.name], func(o *agentSession) bool { return o == as })
	h.connections.WithLabelValues(as.name).Set(float64(len(h.byName[as.name])))
	if len(h.byName[as.name]) == 0 {
		delete(h.byName, as.name)
	}
	h.mu.Unlock()
	as.sess.Close()
}

// connected is how many connections agents of name hold.
func (h *agentHub) connected(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byName[name])
}

// update takes a reloaded configuration: new handshakes check its names,
// and the connections of agents whose name it no longer allows are closed
// (a stolen certificate is revoked by removing its name). The listener's
// address is read at start only.
func (h *agentHub) update(al *config.AgentListener) {
	if al == nil || h.conf.Load() == nil {
		return // checkReload refused a change
	}
	h.conf.Store(al)
	h.mu.Lock()
	var revoked []*agentSession
	for name, ss := range h.byName {
		if !slices.Contains(al.AllowedNames, name) {
			revoked = append(revoked, ss...)
		}
	}
	h.mu.Unlock()
	for _, as := range revoked {
		h.log.Warn("agent name no longer allowed; its connection is closed", zap.String("agent", as.name), zap.String("agent_address", as.remote))
		h.drop(as)
	}
}

// checkReload refuses a configuration that adds, removes or moves the
// agent listener: its socket is bound at start only, and a via_agent
// backend whose agents cannot connect would fail every session.
func (h *agentHub) checkReload(al *config.AgentListener) error {
	cur := h.conf.Load()
	switch {
	case cur == nil && al != nil:
		return errors.New("agent_listener added: it is bound at start only; restart to add it")
	case cur != nil && al == nil:
		return errors.New("agent_listener removed: restart to remove it")
	case cur != nil && al.Address != cur.Address:
		return fmt.Errorf("agent_listener address changed from %s to %s: it is bound at start only; restart to move it", cur.Address, al.Address)
	}
	return nil
}

// close closes the listener and every agent connection, and waits for the
// hub's goroutines. Safe to call more than once.
func (h *agentHub) close() {
	h.mu.Lock()
	h.closed = true
	if h.ln != nil {
		h.ln.Close()
	}
	var all []*agentSession
	for _, ss := range h.byName {
		all = append(all, ss...)
	}
	h.mu.Unlock()
	for _, as := range all {
		as.sess.Close()
	}
	h.wg.Wait()
}

// dialer is the dial function of backends reached through the agents of
// name.
func (h *agentHub) dialer(name string) dialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return h.dial(ctx, name, address)
	}
}

// dial opens a connection to address (IP:port) through an agent of name:
// the one carrying fewest streams first; a connection that cannot open a
// stream is dropped and the next one tried. An agent's refusal is final
// (another agent of the name has the same allow_targets). With none
// connected, the error is errNoAgent.
func (h *agentHub) dial(ctx context.Context, name, address string) (net.Conn, error) {
	target, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("through agent %q: %q is not IP:port", name, address)
	}
	timeout := agentHandshakeTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	tried := map[*agentSession]bool{}
	for {
		h.mu.Lock()
		var best *agentSession
		for _, as := range h.byName[name] {
			if !tried[as] && (best == nil || as.sess.NumStreams() < best.sess.NumStreams()) {
				best = as
			}
		}
		h.mu.Unlock()
		if best == nil {
			h.streams.WithLabelValues(name, "no_agent").Inc()
			if len(tried) > 0 {
				return nil, fmt.Errorf("%w: every connection of agent %q failed", errNoAgent, name)
			}
			return nil, fmt.Errorf("%w named %q", errNoAgent, name)
		}
		tried[best] = true
		st, err := best.sess.OpenStream()
		if err != nil {
			h.log.Warn("agent connection cannot open a stream; dropped", zap.String("agent", name),
				zap.String("agent_address", best.remote), zap.Error(err))
			h.drop(best)
			continue
		}
		c, err := agent.Open(st, target, timeout)
		switch {
		case err == nil:
			h.streams.WithLabelValues(name, "opened").Inc()
			return c, nil
		case errors.Is(err, agent.ErrRefused):
			h.streams.WithLabelValues(name, "refused").Inc()
			h.log.Warn("the agent refused a connection", zap.String("agent", name), zap.String("agent_address", best.remote),
				zap.Stringer("target", target), zap.Error(err))
			return nil, fmt.Errorf("agent %q at %s: %w", name, best.remote, err)
		case best.sess.IsClosed():
			continue
		default:
			h.streams.WithLabelValues(name, "failed").Inc()
			return nil, fmt.Errorf("agent %q at %s: %w", name, best.remote, err)
		}
	}
}

// agent names the agent that carries b's control connection, and its
// address, or "" for a connection the proxy dialled.
// watchAgent, for a backend reached through an agent, ends the session
// with 421 as soon as that agent's connection ends (the agent went away,
// or a reload revoked its name) while no transfer runs: the session's FTP
// server is then out of reach, and the client must not learn it only at
// its next command, or never while it idles. A running transfer fails by
// itself (its legs end) and ends the session after its 426. The watching
// goroutine belongs to be: it ends when be is closed, at the latest when
// the session closes.
func (s *session) watchAgent(be *backendConn) {
	ac, ok := be.raw.(*agent.Conn)
	if !ok {
		return
	}
	go func() {
		select {
		case <-ac.Closed():
		case <-ac.AgentGone():
			select {
			case <-ac.Closed(): // be was done with anyway
			default:
				s.agentGone(be)
			}
		}
	}()
}

// agentGone wakes the session's control read with errBackendLost, unless
// a transfer runs or the session is ending already.
func (s *session) agentGone(be *backendConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.xfer != nil || s.fatal != nil || s.killed {
		return
	}
	name, addr := be.agent()
	s.log.Warn("the agent carrying the session's FTP server connection went away", zap.String("agent", name),
		zap.String("agent_address", addr))
	s.fatal = fmt.Errorf("%w: agent %q at %s went away", errBackendLost, name, addr)
	s.raw.SetReadDeadline(time.Now()) // wake readCommand
}

func (b *backendConn) agent() (name, addr string) {
	if ac, ok := b.raw.(*agent.Conn); ok {
		return b.cfg.ViaAgent, ac.AgentAddr().String()
	}
	return "", ""
}

// AgentStatus is one connection of an agent, for the status page.
type AgentStatus struct {
	Agent   string    `json:"agent"`
	Address string    `json:"address"`
	Since   time.Time `json:"since"`
	Streams int       `json:"streams"`
}

// status lists the agents' connections, by name and age.
func (h *agentHub) status() []AgentStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []AgentStatus
	for _, ss := range h.byName {
		for _, as := range ss {
			out = append(out, AgentStatus{Agent: as.name, Address: as.remote, Since: as.since, Streams: as.sess.NumStreams()})
		}
	}
	slices.SortFunc(out, func(a, b AgentStatus) int { return cmp.Or(cmp.Compare(a.Agent, b.Agent), a.Since.Compare(b.Since)) })
	return out
}
