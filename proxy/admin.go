package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// The admin listener's deadlines. Its requests are GETs without a body,
// answered from memory, except the CPU profile and the execution trace,
// which run for the seconds they are asked for (pprof refuses a duration
// that WriteTimeout would cut).
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 2 * time.Minute
	// adminIdleTimeout closes a keep-alive connection with no request:
	// Prometheus reconnects for a scrape when needed.
	adminIdleTimeout = 30 * time.Second
	adminMaxHeader   = 16 << 10
)

// AdminServer is the admin listener's HTTP server: AdminHandler with a
// deadline for each phase of a request, so that a client sending its
// headers slowly, reading slowly or holding an idle connection is cut off.
// The caller serves it on its listener and closes it.
func (s *Server) AdminServer() *http.Server {
	return &http.Server{
		Handler:           s.AdminHandler(),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeader,
		ErrorLog:          zap.NewStdLog(s.log.Named("admin")),
	}
}

// AdminHandler serves /metrics (Prometheus text format), /status (the
// status page: live sessions and transfers, backend servers; its data as
// /status.json), /healthz (200
// while the process runs) and /readyz (200 while the listeners accept,
// 503 before Start and once shutting down, and, with audit.on_error =
// "refuse", while the audit stream cannot be written, the reason in the
// body; with "continue" it stays 200 and its body says the audit is
// degraded, since sessions are served); with admin { pprof = true },
// also Go's CPU, heap and goroutine profiles under /debug/pprof/.
//
// With admin credentials configured, every path but /healthz and /readyz
// requires them (kubelet probes carry none, and those two answer only
// "ok" and "ready"). On a loopback admin address every request must name
// a loopback host (adminGuard.host). The configuration is read once.
func (s *Server) AdminHandler() http.Handler {
	cfg := s.config()
	g := newAdminGuard(cfg, s.log)
	auth := g.authenticated
	mux := http.NewServeMux()
	if cfg.AdminPprof {
		mux.Handle("GET /debug/pprof/", auth(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/profile", auth(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", auth(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", auth(http.HandlerFunc(pprof.Trace)))
	}
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /status", auth(http.HandlerFunc(s.serveStatus)))
	mux.Handle("GET /status.json", auth(http.HandlerFunc(s.serveStatusJSON)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		ready := len(s.listeners) > 0 && !s.draining
		refuse := s.cfg.Audit.OnError == config.AuditRefuse
		s.mu.Unlock()
		if !ready {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if err := s.audit.Health(); err != nil {
			// One line: the reasons may be several, joined by newlines.
			why := strings.ReplaceAll(err.Error(), "\n", "; ")
			if refuse {
				http.Error(w, "not ready: new sessions are refused: the audit stream cannot be written: "+why,
					http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ready\naudit degraded (on_error = continue): " + why + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	return g.host(mux)
}

// adminGuard holds the admin listener's checks: the Host header on a
// loopback listener, and the configured credential.
type adminGuard struct {
	log      *zap.Logger
	loopback bool // the listener binds a loopback address: Host must name one
	auth     config.AdminAuth
	token    [sha256.Size]byte // of auth.BearerToken
	// bcryptSlot lets one bcrypt comparison run at a time: each costs
	// tens of milliseconds of CPU, and a flood of guesses must not take
	// the proxy's cores from its sessions.
	bcryptSlot chan struct{}

	// mu guards verified.
	mu sync.Mutex
	// verified is the SHA-256 of the last basic credentials bcrypt
	// accepted, so that a scraper's every request does not pay bcrypt.
	verified [sha256.Size]byte
}

func newAdminGuard(cfg *config.Config, log *zap.Logger) *adminGuard {
	return &adminGuard{
		log:        log,
		loopback:   config.LoopbackAddress(cfg.Admin),
		auth:       cfg.AdminAuth,
		token:      sha256.Sum256([]byte(cfg.AdminAuth.BearerToken)),
		bcryptSlot: make(chan struct{}, 1),
	}
}

// host wraps h with the DNS rebinding defence: on a loopback listener, a
// request must name a loopback host (localhost, 127.0.0.0/8, [::1]; any
// port, since a tunnel such as kubectl port-forward changes it). A page on
// an attacker's domain that resolves to 127.0.0.1 is sent with its own
// name, and refused. Listeners on other addresses have no names to check
// against: authentication protects them.
func (g *adminGuard) host(h http.Handler) http.Handler {
	if !g.loopback {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "" && !loopbackHost(r.Host) {
			g.log.Info("admin request refused: Host is not a loopback name", zap.String("remote", r.RemoteAddr),
				zap.String("host", r.Host), zap.String("path", r.URL.Path))
			http.Error(w, "Forbidden: this listener answers only requests to localhost, 127.0.0.1 or [::1].", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names the loopback interface.
func loopbackHost(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// authenticated wraps h so that it runs only for a request carrying the
// configured credential; without one configured, h runs for any.
func (g *adminGuard) authenticated(h http.Handler) http.Handler {
	if !g.auth.Enabled() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, why := g.check(r); !ok {
			g.log.Info("admin request refused: "+why, zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path))
			if g.auth.BasicUser != "" {
				w.Header().Add("WWW-Authenticate", `Basic realm="ftpsgate admin", charset="UTF-8"`)
			}
			if g.auth.BearerToken != "" {
				w.Header().Add("WWW-Authenticate", `Bearer realm="ftpsgate admin"`)
			}
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// check reports whether r carries the configured credential, and if not,
// why not.
func (g *adminGuard) check(r *http.Request) (bool, string) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return false, "no credentials"
	}
	scheme, cred, _ := strings.Cut(authz, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && g.auth.BearerToken != "":
		// Hashes of equal length: the comparison leaks neither the
		// token's bytes nor its length.
		got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
		if subtle.ConstantTimeCompare(got[:], g.token[:]) == 1 {
			return true, ""
		}
		return false, "wrong bearer token"
	case strings.EqualFold(scheme, "Basic") && g.auth.BasicUser != "":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return false, "malformed basic credentials"
		}
		if g.basic(r.Context(), user, pass) {
			return true, ""
		}
		return false, "wrong user or password"
	}
	return false, "unsupported authentication scheme"
}

// basic reports whether user and pass are the configured basic
// credentials.
func (g *adminGuard) basic(ctx context.Context, user, pass string) bool {
	sum := sha256.Sum256([]byte(user + "\x00" + pass))
	g.mu.Lock()
	known := subtle.ConstantTimeCompare(sum[:], g.verified[:]) == 1
	g.mu.Unlock()
	if known {
		return true
	}
	if subtle.ConstantTimeCompare([]byte(user), []byte(g.auth.BasicUser)) != 1 {
		return false
	}
	select {
	case g.bcryptSlot <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	err := bcrypt.CompareHashAndPassword(g.auth.BasicHash, []byte(pass))
	<-g.bcryptSlot
	if err != nil {
		return false
	}
	g.mu.Lock()
	g.verified = sum
	g.mu.Unlock()
	return true
}
