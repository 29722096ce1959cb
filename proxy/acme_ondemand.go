package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// On-demand issuance (an acme block's on_demand): a handshake whose SNI
// matches one of the block's patterns, and for which no certificate is
// cached, obtains one on the spot through certmagic's OnDemand, so that
// names need not be listed ahead (one per customer, say). Every order
// passes decide, which checks the pattern again and spends a token of the
// block's rate; a name no pattern matches never reaches certmagic
// (acmeManager.certificate serves it the default certificate).

// onDemand is the on-demand half of an acmeManager.
type onDemand struct {
	am    *acmeManager
	magic *certmagic.Config

	// mu guards the fields below.
	mu      sync.Mutex
	limiter *rate.Limiter
	// admitted are the names given a token, and when: the same name is
	// admitted again without one for a period of the rate, since
	// certmagic asks once per waiting handshake and again on a retry.
	admitted map[string]time.Time
	// obtained are the names obtained on demand, for the expiry gauge
	// (bounded by the rate).
	obtained map[string]bool
	// rateLog bounds the warnings of refusals past the rate: a client
	// sending names the patterns allow, past the rate, would otherwise
	// write one per handshake.
	rateLog logThrottle
}

// logThrottle lets one log line through per period, and counts the ones
// it held back meanwhile. The zero value is ready; the caller serialises.
type logThrottle struct {
	last       time.Time
	suppressed int
}

// refusalLogPeriod is the least time between two warnings of the same
// kind of on-demand refusal.
const refusalLogPeriod = time.Minute

// allow reports whether a line may be logged at now, and how many were
// held back since the last one.
func (t *logThrottle) allow(now time.Time, period time.Duration) (bool, int) {
	if !t.last.IsZero() && now.Sub(t.last) < period {
		t.suppressed++
		return false, 0
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	return true, n
}

var (
	errOnDemandNotAllowed = errors.New("no on_demand pattern allows this name")
	errOnDemandRate       = errors.New("the on_demand rate is spent")
)

// newOnDemand prepares am's on-demand configuration: the same cache,
// storage and issuer settings as am's own.
func newOnDemand(am *acmeManager, tmpl certmagic.ACMEIssuer, log *zap.Logger) *onDemand {
	o := am.cfg.OnDemand
	od := &onDemand{am: am, admitted: map[string]time.Time{}, obtained: map[string]bool{},
		limiter: rate.NewLimiter(rate.Every(o.Per/time.Duration(o.Orders)), o.Orders)}
	od.magic = certmagic.New(am.cache, certmagic.Config{
		Storage:  am.magic.Storage,
		OnEvent:  am.onEvent,
		Logger:   log,
		OnDemand: &certmagic.OnDemandConfig{DecisionFunc: od.decide},
	})
	od.magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(od.magic, tmpl)}
	return od
}

// certificate is sni's certificate, loaded from storage or obtained now
// (the handshake waits for it).
func (od *onDemand) certificate(hello *tls.ClientHelloInfo, sni string) (*tls.Certificate, error) {
	h := *hello
	h.ServerName = sni // normalised: certmagic keys its cache and storage by it
	return od.magic.GetCertificate(&h)
}

// decide is certmagic's DecisionFunc: name may get a certificate if a
// pattern allows it and the rate has a token (or name had one lately).
func (od *onDemand) decide(_ context.Context, name string) error {
	o := od.am.cfg.OnDemand
	if !o.Allows(name) {
		od.am.log.Warn("on-demand certificate refused: no on_demand pattern allows the name", zap.String("domain", name))
		return errOnDemandNotAllowed
	}
	od.mu.Lock()
	defer od.mu.Unlock()
	now := time.Now()
	for n, at := range od.admitted {
		if now.Sub(at) >= o.Per {
			delete(od.admitted, n)
		}
	}
	if _, ok := od.admitted[name]; ok {
		return nil
	}
	if !od.limiter.AllowN(now, 1) {
		if ok, held := od.rateLog.allow(now, refusalLogPeriod); ok {
			od.am.log.Warn("on-demand certificate refused: the on_demand rate is spent; the handshake gets the default certificate",
				zap.String("domain", name), zap.Int("orders", o.Orders), zap.Duration("per", o.Per),
				zap.Int("not_logged_since_last", held))
		}
		od.am.m.acmeOnDemandRefused.WithLabelValues(od.am.cfg.Name).Inc()
		return errOnDemandRate
	}
	od.admitted[name] = now
	od.am.log.Info("on-demand certificate allowed", zap.String("domain", name))
	return nil
}

// remember notes that name's certificate was obtained on demand.
func (od *onDemand) remember(name string) {
	od.mu.Lock()
	defer od.mu.Unlock()
	od.obtained[name] = true
}

// names are the names obtained on demand so far, sorted.
func (od *onDemand) names() []string {
	od.mu.Lock()
	defer od.mu.Unlock()
	out := make([]string, 0, len(od.obtained))
	for n := range od.obtained {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
