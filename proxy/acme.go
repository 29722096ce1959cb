package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// Automatic certificates (acme blocks): each block is an acmeManager, a
// certmagic configuration with a cache of its own, which obtains the
// block's certificates at start, serves them from storage while they are
// valid, and renews them in the background. The challenges are answered
// by challenge listeners of the proxy's own (HTTP-01, TLS-ALPN-01), never
// on an FTP port. The managers and challenge listeners are those of the
// configuration the server started with: a reload does not change them
// (checkACMEReload).

// acmeManager runs one acme block.
type acmeManager struct {
	cfg    *config.ACME
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
	// onDemand is the certmagic configuration of the names on_demand
	// allows, on the same cache and storage (nil without on_demand): a
	// certmagic configuration with OnDemand set obtains nothing at
	// start, so the block's domains keep a configuration of their own.
	onDemand *onDemand
	// redis is the storage in Redis (storage_redis), or nil.
	redis  *redisStorage
	log    *zap.Logger
	m      *metrics
	audit  *audit.Logger
	ctx    context.Context // ends certmagic's retries and renewals
	cancel context.CancelFunc
	stop   sync.Once
}

// newACMEManager prepares the manager of a; nothing is asked of the CA
// until manage. The storage directory is created (mode 0700: it holds
// private keys), unless the storage is rc's Redis (storage_redis).
func newACMEManager(a *config.ACME, log *zap.Logger, m *metrics, aud *audit.Logger, renewEvery time.Duration,
	rc *config.RedisState) (*acmeManager, error) {
	am := &acmeManager{cfg: a, log: log.With(zap.String("acme", a.Name)), m: m, audit: aud}
	var storage certmagic.Storage
	if a.StorageRedis {
		rs, err := newRedisStorage(rc, am.log)
		if err != nil {
			return nil, fmt.Errorf("acme %q: storage in redis: %w", a.Name, err)
		}
		am.redis, storage = rs, rs
	} else {
		if err := os.MkdirAll(a.Storage, 0o700); err != nil {
			return nil, fmt.Errorf("acme %q: storage: %w", a.Name, err)
		}
		storage = &certmagic.FileStorage{Path: a.Storage}
	}
	am.ctx, am.cancel = context.WithCancel(context.Background())
	cmLog := am.log.Named("certmagic")
	am.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			if am.onDemand != nil && !slices.ContainsFunc(c.Names, func(n string) bool { return slices.Contains(a.Domains, n) }) {
				return am.onDemand.magic, nil
			}
			return am.magic, nil
		},
		RenewCheckInterval: renewEvery, // zero: certmagic's default
		Logger:             cmLog,
	})
	am.magic = certmagic.New(am.cache, certmagic.Config{
		Storage: storage,
		// FTP clients connecting by address send no SNI.
		DefaultServerName:  a.Domains[0],
		FallbackServerName: a.Domains[0],
		OnEvent:            am.onEvent,
		Logger:             cmLog,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:     a.Directory,
		Email:  a.Email,
		Agreed: true, // by configuring the CA, the operator accepts its terms
		// certmagic binds the challenge port itself unless something
		// listens there already: the challenge listeners are bound
		// before manage, so that it finds them (and gives up its own).
		DisableHTTPChallenge:    a.HTTP01 == "",
		DisableTLSALPNChallenge: a.TLSALPN01 == "",
		TrustedRoots:            a.CARoots,
		Logger:                  cmLog,
	}
	for _, ch := range []struct {
		addr string
		port *int
	}{{a.HTTP01, &tmpl.AltHTTPPort}, {a.TLSALPN01, &tmpl.AltTLSALPNPort}} {
		if ch.addr == "" {
			continue
		}
		host, port, _ := net.SplitHostPort(ch.addr)
		tmpl.ListenHost = host // the same for both (config checks it)
		*ch.port, _ = strconv.Atoi(port)
	}
	if a.EAB != nil {
		tmpl.ExternalAccount = &acme.EAB{KeyID: a.EAB.KeyID, MACKey: a.EAB.HMACKey}
	}
	if d := a.DNS01; d != nil {
		tmpl.DNS01Solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        d.DNS,
			Resolvers:          d.Resolvers,
			PropagationTimeout: d.PropagationTimeout,
			Logger:             cmLog,
		}}
	}
	am.issuer = certmagic.NewACMEIssuer(am.magic, tmpl)
	am.magic.Issuers = []certmagic.Issuer{am.issuer}
	if a.OnDemand != nil {
		am.onDemand = newOnDemand(am, tmpl, cmLog)
	}
	return am, nil
}

// manage starts obtaining (or loading from storage) the block's
// certificates and keeps them renewed. It returns at once: a CA that
// cannot be reached is logged (onEvent) and retried with backoff, and the
// proxy serves meanwhile.
func (am *acmeManager) manage() {
	storage := am.cfg.Storage
	if am.redis != nil {
		storage = am.redis.String()
	}
	fields := []zap.Field{zap.Strings("domains", am.cfg.Domains), zap.String("directory", am.cfg.Directory),
		zap.String("storage", storage), zap.String("http01", am.cfg.HTTP01), zap.String("tls_alpn01", am.cfg.TLSALPN01)}
	if d := am.cfg.DNS01; d != nil {
		fields = append(fields, zap.String("dns01", d.Provider), zap.String("dns01_settings", d.Settings),
			zap.Strings("dns01_resolvers", d.Resolvers))
	}
	if o := am.cfg.OnDemand; o != nil {
		fields = append(fields, zap.Strings("on_demand", o.Allow), zap.Int("on_demand_orders", o.Orders), zap.Duration("on_demand_per", o.Per))
	}
	am.log.Info("managing certificates", fields...)
	if err := am.magic.ManageAsync(am.ctx, am.cfg.Domains); err != nil {
		am.log.Error("certificate management did not start", zap.Error(err))
	}
}

// close stops renewals and retries; safe to call more than once.
func (am *acmeManager) close() {
	am.stop.Do(func() {
		am.cancel()
		am.cache.Stop()
		if am.redis != nil {
			am.redis.close()
		}
	})
}

// onEvent logs and counts certmagic's certificate events.
func (am *acmeManager) onEvent(_ context.Context, event string, data map[string]any) error {
	domain, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	op := "obtain"
	if renewal {
		op = "renew"
	}
	switch event {
	case "cert_obtaining":
		am.log.Info("requesting a certificate from the CA", zap.String("domain", domain), zap.String("operation", op))
	case "cert_obtained":
		issuer, _ := data["issuer"].(string)
		am.log.Info("certificate obtained", zap.String("domain", domain), zap.String("operation", op),
			zap.String("issuer", issuer))
		am.m.acmeOperations.WithLabelValues(am.cfg.Name, domain, op, "success").Inc()
		if am.onDemand != nil && !slices.Contains(am.cfg.Domains, domain) {
			am.onDemand.remember(domain)
		}
		am.audit.Certificate(audit.Certificate{ACME: am.cfg.Name, Domain: domain, Operation: op, Result: "success", Issuer: issuer})
	case "cert_failed":
		err, _ := data["error"].(error)
		am.log.Error("certificate not obtained: the CA refused or could not be reached; retrying with backoff, "+
			"listeners serve the current certificate if there is one", zap.String("domain", domain),
			zap.String("operation", op), zap.String("directory", am.cfg.Directory), zap.Error(err))
		am.m.acmeOperations.WithLabelValues(am.cfg.Name, domain, op, "failure").Inc()
		msg := "unknown error"
		if err != nil {
			msg = err.Error()
		}
		am.audit.Certificate(audit.Certificate{ACME: am.cfg.Name, Domain: domain, Operation: op, Result: "failure", Error: msg})
	}
	return nil
}

// errNoCertificate: an acme listener has no certificate yet.
var errNoCertificate = errors.New("no certificate obtained yet (see the acme log lines)")

// certificate is the certificate an FTP listener serves for hello: the
// cached one its SNI matches (a domain's, a wildcard's, an on-demand
// name's), else one obtained on demand if a pattern allows the SNI, else
// the first domain's, else any of the block's. A hello offering the ACME
// TLS-ALPN protocol is refused: an FTP port never answers a challenge.
func (am *acmeManager) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, acmez.ACMETLS1Protocol) {
		return nil, errors.New("an ACME TLS-ALPN challenge on an FTP port: refused")
	}
	sni := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if sni != "" {
		// A domain's, a wildcard's matching sni, or an on-demand one's.
		if c := am.newest(sni); c != nil {
			return &c.Certificate, nil
		}
		if am.onDemand != nil && am.cfg.OnDemand.Allows(sni) {
			c, err := am.onDemand.certificate(hello, sni)
			if err == nil {
				return c, nil
			}
			am.log.Warn("no on-demand certificate; the handshake gets the default certificate", zap.String("domain", sni),
				zap.Error(err))
		}
	}
	names := am.cfg.Domains
	if i := slices.Index(names, sni); i > 0 {
		names = append([]string{sni}, slices.Delete(slices.Clone(names), i, i+1)...)
	}
	for _, d := range names {
		if c := am.newest(d); c != nil {
			return &c.Certificate, nil
		}
	}
	return nil, errNoCertificate
}

// newest is the cached certificate of domain that expires last, or nil.
func (am *acmeManager) newest(domain string) *certmagic.Certificate {
	var best *certmagic.Certificate
	for _, c := range am.cache.AllMatchingCertificates(domain) {
		if c.Leaf == nil || time.Now().After(c.Leaf.NotAfter) {
			continue
		}
		if best == nil || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = &c
		}
	}
	return best
}

// hasCertificate reports whether some domain of the block has a valid
// certificate to serve.
func (am *acmeManager) hasCertificate() bool {
	return slices.ContainsFunc(am.cfg.Domains, func(d string) bool { return am.newest(d) != nil })
}

// ---- challenge listeners ----

// challengeListener is an HTTP-01 or TLS-ALPN-01 listener, shared by the
// acme blocks that name its address.
type challengeListener struct {
	kind     string // "http01" or "tls_alpn01"
	ln       net.Listener
	managers []*acmeManager
	http     *http.Server // http01
}

// challengeTimeout bounds a challenge connection: the CA's request, or
// its handshake, and the answer.
const challengeTimeout = 10 * time.Second

// startACME prepares a manager per acme block of cfg and binds their
// challenge listeners; manage is called once the FTP listeners are bound.
// On an error nothing stays open.
func (s *Server) startACME(cfg *config.Config) (err error) {
	managers := map[string]*acmeManager{}
	s.acme.Store(&managers)
	defer func() {
		if err != nil {
			s.stopACME()
		}
	}()
	byAddr := map[string]*challengeListener{}
	for _, a := range cfg.ACME {
		am, err := newACMEManager(a, s.log, s.metrics, s.audit, s.renewEvery, cfg.State.Redis)
		if err != nil {
			return err
		}
		managers[a.Name] = am
		for _, ch := range []struct{ kind, addr string }{{"http01", a.HTTP01}, {"tls_alpn01", a.TLSALPN01}} {
			if ch.addr == "" {
				continue
			}
			if cl := byAddr[ch.kind+" "+ch.addr]; cl != nil {
				cl.managers = append(cl.managers, am)
				continue
			}
			ln, err := net.Listen("tcp", ch.addr)
			if err != nil {
				return fmt.Errorf("acme %q: %s listener: %w", a.Name, ch.kind, err)
			}
			cl := &challengeListener{kind: ch.kind, ln: ln, managers: []*acmeManager{am}}
			byAddr[ch.kind+" "+ch.addr] = cl
			s.challenges = append(s.challenges, cl)
		}
	}
	for _, cl := range s.challenges {
		s.log.Info("ACME challenge listener", zap.String("challenge", cl.kind), zap.Stringer("address", cl.ln.Addr()))
		s.wg.Add(1)
		if cl.kind == "http01" {
			cl.http = &http.Server{
				Handler:           http.HandlerFunc(cl.serveHTTP),
				ReadHeaderTimeout: challengeTimeout,
				ReadTimeout:       challengeTimeout,
				WriteTimeout:      challengeTimeout,
				IdleTimeout:       challengeTimeout,
				MaxHeaderBytes:    8 << 10,
				ErrorLog:          zap.NewStdLog(s.log.Named("http01")),
			}
			go s.serveHTTP01(cl)
		} else {
			go s.serveTLSALPN01(cl)
		}
	}
	return nil
}

// acmeManagers are the managers of the acme blocks the server started
// with, by name (empty before Start).
func (s *Server) acmeManagers() map[string]*acmeManager {
	if m := s.acme.Load(); m != nil {
		return *m
	}
	return nil
}

// manageACME starts every manager.
func (s *Server) manageACME() {
	for _, am := range s.acmeManagers() {
		am.manage()
	}
}

// stopACME closes the challenge listeners and stops the managers.
func (s *Server) stopACME() {
	for _, cl := range s.challenges {
		if cl.http != nil {
			cl.http.Close()
		} else {
			cl.ln.Close()
		}
	}
	for _, am := range s.acmeManagers() {
		am.close()
	}
}

// acmeManager is the manager of the acme block name, or nil.
func (s *Server) acmeManager(name string) *acmeManager { return s.acmeManagers()[name] }

// checkACMEReload refuses a reload whose listener names an acme block
// the server did not start with, and warns that a changed acme block
// takes effect at the next start only: certificates, accounts and the
// challenge listeners' sockets outlive reloads.
func (s *Server) checkACMEReload(cfg *config.Config) error {
	for _, l := range cfg.Listeners {
		if l.ACME != nil && s.acmeManager(l.ACME.Name) == nil {
			return fmt.Errorf("listener %q names acme %q, which was not in the configuration ftpsgate started with: "+
				"acme blocks are read at start only; restart ftpsgate", l.Name, l.ACME.Name)
		}
	}
	for _, a := range cfg.ACME {
		if am := s.acmeManager(a.Name); am == nil || !sameACME(am.cfg, a) {
			s.log.Warn("acme blocks are read at start only: restart ftpsgate to apply this change; the running one goes on",
				zap.String("acme", a.Name))
		}
	}
	for name := range s.acmeManagers() {
		if cfg.ACMEByName(name) == nil {
			s.log.Warn("acme block removed from the configuration: it keeps renewing until ftpsgate restarts", zap.String("acme", name))
		}
	}
	return nil
}

// sameACME reports whether two acme blocks say the same.
func sameACME(a, b *config.ACME) bool {
	eab := func(e *config.ACMEExternalAccount) string {
		if e == nil {
			return ""
		}
		return e.KeyID + "\x00" + e.HMACKey
	}
	dns01 := func(d *config.ACMEDNS01) string {
		if d == nil {
			return ""
		}
		return fmt.Sprint(d.Provider, d.Settings, d.Resolvers, d.PropagationTimeout)
	}
	onDemand := func(o *config.ACMEOnDemand) string {
		if o == nil {
			return ""
		}
		return fmt.Sprint(o.Allow, o.Orders, o.Per)
	}
	return slices.Equal(a.Domains, b.Domains) && a.Email == b.Email && a.Directory == b.Directory &&
		a.CARootsFile == b.CARootsFile && eab(a.EAB) == eab(b.EAB) && a.Storage == b.Storage && a.StorageRedis == b.StorageRedis &&
		a.HTTP01 == b.HTTP01 && a.TLSALPN01 == b.TLSALPN01 && dns01(a.DNS01) == dns01(b.DNS01) &&
		onDemand(a.OnDemand) == onDemand(b.OnDemand)
}

// serveHTTP01 is a goroutine serving an HTTP-01 challenge listener until
// it closes.
func (s *Server) serveHTTP01(cl *challengeListener) {
	defer s.wg.Done()
	if err := cl.http.Serve(cl.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("HTTP-01 challenge listener failed", zap.Stringer("address", cl.ln.Addr()), zap.Error(err))
	}
}

// serveHTTP answers the CA's HTTP-01 requests, and 404 to anything else:
// never a redirect, never a page of the proxy's.
func (cl *challengeListener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	for _, am := range cl.managers {
		if am.issuer.HandleHTTPChallenge(w, r) {
			return
		}
	}
	http.NotFound(w, r)
}

// serveTLSALPN01 is a goroutine accepting a TLS-ALPN-01 challenge
// listener's connections until it closes; each is one handshake.
func (s *Server) serveTLSALPN01(cl *challengeListener) {
	defer s.wg.Done()
	conf := &tls.Config{
		NextProtos: []string{acmez.ACMETLS1Protocol},
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			// RFC 8737 §3: the CA offers acme-tls/1 alone, with the
			// domain as SNI. Anything else is not a challenge.
			if len(hello.SupportedProtos) != 1 || hello.SupportedProtos[0] != acmez.ACMETLS1Protocol || hello.ServerName == "" {
				return nil, errors.New("not an ACME TLS-ALPN-01 challenge")
			}
			var err error
			for _, am := range cl.managers {
				var c *tls.Certificate
				if c, err = am.magic.GetCertificate(hello); err == nil {
					return c, nil
				}
			}
			return nil, err
		},
	}
	for {
		c, err := cl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("TLS-ALPN-01 challenge listener: accept failed", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go s.answerTLSALPN01(c, conf)
	}
}

// answerTLSALPN01 is a goroutine running one TLS-ALPN-01 handshake, then
// closing the connection (RFC 8737 §3: the validation is the handshake).
func (s *Server) answerTLSALPN01(c net.Conn, conf *tls.Config) {
	defer s.wg.Done()
	defer c.Close()
	c.SetDeadline(time.Now().Add(challengeTimeout))
	tc := tls.Server(c, conf)
	if err := tc.Handshake(); err != nil {
		s.log.Debug("TLS-ALPN-01 handshake refused", zap.Stringer("from", c.RemoteAddr()), zap.Error(err))
		return
	}
	s.log.Info("TLS-ALPN-01 challenge answered", zap.String("domain", tc.ConnectionState().ServerName),
		zap.Stringer("from", c.RemoteAddr()))
}
