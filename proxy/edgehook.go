package proxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// The HTTP hook of an auth block: each login is POSTed to the hook as
// JSON, and its answer decides it. The hook fails closed: a timeout, a
// status other than 200, a body over maxHookAnswer or one that does not
// parse strictly (an unknown field, trailing data, no "allow") refuses the
// login with 421, never lets it in. The password is in the request only
// when the login needs it checked (not with cert mode "cert") and the URL
// is https or a loopback address (validate refuses any other URL; the
// check here is the second line).

// Why a hook refused a login (the audit's reason).
const (
	reasonHookDenied         = "hook_denied"
	reasonHookUnavailable    = "hook_unavailable"          // timeout, non-200, garbage: 421
	reasonHookUnknownBackend = "hook_unknown_backend"      // the answer names no backend block
	reasonHookUnknownAccount = "hook_unknown_backend_user" // nor an account of backend_password_files
	reasonHookUnknownRoute   = "hook_unknown_route"        // the answer names no route block
)

// maxHookAnswer bounds the body of a hook's answer: a few small fields.
const maxHookAnswer = 16 << 10

// maxHookCache bounds the answers a hook keeps (allowed logins within
// cache_ttl).
const maxHookCache = 4096

// hookRequest is the JSON the hook receives.
type hookRequest struct {
	Auth     string `json:"auth"` // the auth block's name
	User     string `json:"user"`
	Password string `json:"password,omitempty"` // see sendPassword
	Client   string `json:"client_address"`     // address:port of the client (a trusted PROXY header's)
	Listener string `json:"listener"`
	TLS      struct {
		Version    string `json:"version"`
		Cipher     string `json:"cipher"`
		ServerName string `json:"server_name,omitempty"`
	} `json:"tls"`
	// Certificate is the client's verified certificate, if it gave one.
	Certificate *hookCertificate `json:"client_certificate,omitempty"`
}

type hookCertificate struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	SHA256  string `json:"sha256"` // of the DER certificate, hex
}

// hookAnswer is the JSON a hook answers with; any other field is an error.
type hookAnswer struct {
	// Allow is required: an answer without it is garbage, not a no.
	Allow *bool `json:"allow"`
	// Backend names a backend block the login goes to, in place of its
	// route's or listener's.
	Backend string `json:"backend,omitempty"`
	// Route names a route block the login goes through, as an ldap
	// group's route does: the route's backend, its scan block and its
	// backend account (unless BackendUser names another). An answer may
	// name a route or a backend, not both.
	Route string `json:"route,omitempty"`
	// BackendUser names an account of the hook block's
	// backend_password_files the login uses at the backend.
	BackendUser string `json:"backend_user,omitempty"`
	// ReadOnly makes the session read-only (it never lifts the policy's
	// read_only_users).
	ReadOnly bool `json:"read_only,omitempty"`
}

// errHookAnswer is a hook's answer that is not a usable one.
var errHookAnswer = errors.New("hook answer refused")

// hookClient calls one auth block's hook, and keeps the answers that
// allowed a login for cache_ttl.
type hookClient struct {
	cfg    *config.Hook
	auth   string
	url    *url.URL
	client *http.Client
	now    func() time.Time
	// cacheKey keys the cache's HMAC: an entry's key reveals no password
	// to whoever reads the process's memory without it.
	cacheKey [32]byte
	// mu guards cache.
	mu    sync.Mutex
	cache map[[32]byte]hookCached
}

type hookCached struct {
	answer hookAnswer
	until  time.Time
}

// newHookClient makes the client of auth block a's hook, dialling with
// dial (nil: the system's dialer). It follows no redirect (a 3xx is an
// answer that is not 200) and uses no HTTP proxy from the environment:
// the request may carry a password.
func newHookClient(a *config.Auth, dial func(ctx context.Context, network, address string) (net.Conn, error)) *hookClient {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	u, _ := url.Parse(a.Hook.URL) // checked by config
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{RootCAs: a.Hook.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	h := &hookClient{cfg: a.Hook, auth: a.Name, url: u, now: time.Now, cache: map[[32]byte]hookCached{},
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}}
	rand.Read(h.cacheKey[:])
	return h
}

// sendPassword reports whether a request to the hook may carry the
// password: only over https or to a loopback address.
func (h *hookClient) sendPassword() bool {
	return strings.EqualFold(h.url.Scheme, "https") || config.HookLoopback(h.url)
}

// key is the cache key of a request: its user, password, client address
// (without the port, which changes with each connection) and certificate.
func (h *hookClient) key(req *hookRequest, password string) [32]byte {
	m := hmac.New(sha256.New, h.cacheKey[:])
	host, _, _ := net.SplitHostPort(req.Client)
	cert := ""
	if req.Certificate != nil {
		cert = req.Certificate.SHA256
	}
	for _, f := range []string{req.User, password, host, cert} {
		fmt.Fprintf(m, "%d:%s", len(f), f)
	}
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// check asks the hook about req, with password if withPassword, or
// answers from the cache. cached reports that it did; err that the hook
// gave no usable answer (the login is then refused with 421).
func (h *hookClient) check(ctx context.Context, req *hookRequest, password string, withPassword bool) (a hookAnswer, cached bool, err error) {
	if withPassword && !h.sendPassword() {
		withPassword = false // validate refuses such a URL; never send it in clear anyway
	}
	if withPassword {
		req.Password = password
	} else {
		password = ""
	}
	k := h.key(req, password)
	if h.cfg.CacheTTL > 0 {
		h.mu.Lock()
		c, ok := h.cache[k]
		if ok && h.now().Before(c.until) {
			h.mu.Unlock()
			return c.answer, true, nil
		}
		delete(h.cache, k)
		h.mu.Unlock()
	}
	a, err = h.ask(ctx, req)
	if err == nil && *a.Allow && h.cfg.CacheTTL > 0 {
		h.store(k, a)
	}
	return a, false, err
}

// store keeps an answer that allowed a login, for cache_ttl. A full cache
// is swept of expired answers; if it is still full, the answer is not kept.
func (h *hookClient) store(k [32]byte, a hookAnswer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if len(h.cache) >= maxHookCache {
		for k, c := range h.cache {
			if !now.Before(c.until) {
				delete(h.cache, k)
			}
		}
		if len(h.cache) >= maxHookCache {
			return
		}
	}
	h.cache[k] = hookCached{answer: a, until: now.Add(h.cfg.CacheTTL)}
}

// ask POSTs req to the hook and reads its answer strictly, within the
// hook's timeout.
func (h *hookClient) ask(ctx context.Context, req *hookRequest) (hookAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return hookAnswer{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), bytes.NewReader(body))
	if err != nil {
		return hookAnswer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "ftpsgate")
	if h.cfg.Secret != "" {
		hr.Header.Set("Authorization", "Bearer "+h.cfg.Secret)
	}
	resp, err := h.client.Do(hr)
	if err != nil {
		return hookAnswer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hookAnswer{}, fmt.Errorf("%w: HTTP status %d, not 200", errHookAnswer, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHookAnswer+1))
	if err != nil {
		return hookAnswer{}, fmt.Errorf("reading the answer: %w", err)
	}
	return parseHookAnswer(data)
}

// parseHookAnswer parses a hook's answer: one JSON object of hookAnswer's
// fields and no other, with "allow", and nothing after it.
func parseHookAnswer(data []byte) (hookAnswer, error) {
	var a hookAnswer
	if len(data) > maxHookAnswer {
		return a, fmt.Errorf("%w: the body is over %d bytes", errHookAnswer, maxHookAnswer)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, fmt.Errorf("%w: %v", errHookAnswer, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return a, fmt.Errorf("%w: data after the JSON object", errHookAnswer)
	}
	if a.Allow == nil {
		return a, fmt.Errorf("%w: no \"allow\"", errHookAnswer)
	}
	if a.Route != "" && a.Backend != "" {
		return a, fmt.Errorf("%w: both \"route\" and \"backend\"", errHookAnswer)
	}
	return a, nil
}

// hookCheck asks e's hook about the login of l.user with password (the
// client's, without a TOTP code) and fills v: its reason when the hook
// refuses, unavailable when it gives no answer, and the backend, account
// and read-only flag an allowing answer names.
func (l *login) hookCheck(e *edgeLogin, password string, v *edgeVerdict) {
	s := l.s
	h := s.srv.hookFor(e.auth)
	req := &hookRequest{Auth: e.auth.Name, User: l.user, Client: s.client.addr.String(), Listener: s.lcfg.Name}
	if s.tls != nil {
		cs := s.tls.ConnectionState()
		req.TLS.Version, req.TLS.Cipher, req.TLS.ServerName = tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.ServerName
	}
	if c := s.clientCert(); c != nil {
		sum := sha256.Sum256(c.Raw)
		req.Certificate = &hookCertificate{Subject: c.Subject.String(), Issuer: c.Issuer.String(), SHA256: fmt.Sprintf("%x", sum)}
	}
	start := time.Now()
	a, cached, err := h.check(context.Background(), req, password, !e.auth.CertOnly())
	result := "cached"
	switch {
	case err != nil:
		result = "unavailable"
		s.log.Warn("auth hook gave no answer; login refused with 421", zap.String("auth", e.auth.Name),
			zap.Duration("took", time.Since(start)), zap.Error(err))
		v.reason, v.err = reasonHookUnavailable, err
	case !*a.Allow:
		result = "deny"
		v.reason = reasonHookDenied
	default:
		if !cached {
			result = "allow"
		}
		l.hookGrant(e, a, v)
	}
	s.srv.metrics.hookRequests.WithLabelValues(e.auth.Name, result).Inc()
}

// hookGrant applies an allowing answer to v: the route, backend block
// and account it names must exist, or the login is refused (the hook and
// the configuration disagree: the log says so).
func (l *login) hookGrant(e *edgeLogin, a hookAnswer, v *edgeVerdict) {
	s := l.s
	v.readOnly = a.ReadOnly
	if a.Route != "" && !s.routeVerdict(a.Route, v) {
		s.log.Warn("auth hook allowed a login through a route no route block defines; refused",
			zap.String("auth", e.auth.Name), zap.String("route", a.Route))
		v.reason = reasonHookUnknownRoute
		return
	}
	if a.Backend != "" {
		b, ok := s.cfg.Backends[a.Backend]
		if !ok {
			s.log.Warn("auth hook allowed a login to a backend no backend block defines; refused",
				zap.String("auth", e.auth.Name), zap.String("backend", a.Backend))
			v.reason = reasonHookUnknownBackend
			return
		}
		v.backend = b
	}
	if a.BackendUser != "" {
		m, ok := e.auth.Hook.BackendLogins[a.BackendUser]
		if !ok {
			s.log.Warn("auth hook named a backend_user that backend_password_files does not hold; refused",
				zap.String("auth", e.auth.Name), zap.String("backend_user", a.BackendUser))
			v.reason = reasonHookUnknownAccount
			return
		}
		v.mapped = m
	}
}

// hookFor returns the client of auth block a's hook, made at its first
// use; pruneHooks forgets those of blocks a reload dropped.
func (s *Server) hookFor(a *config.Auth) *hookClient {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	h := s.hooks[a]
	if h == nil {
		if s.hooks == nil {
			s.hooks = map[*config.Auth]*hookClient{}
		}
		h = newHookClient(a, s.dialHook)
		s.hooks[a] = h
	}
	return h
}

// pruneHooks forgets the hook clients (and their caches) of auth blocks
// cfg does not hold: a reload starts with fresh caches, so a fix in the
// configuration applies at once. A session of the old configuration that
// asks again gets a client of its own.
func (s *Server) pruneHooks(cfg *config.Config) {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	for a, h := range s.hooks {
		if cfg.Auths[a.Name] != a {
			h.client.CloseIdleConnections()
			delete(s.hooks, a)
		}
	}
}
