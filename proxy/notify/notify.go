// Package notify posts audit events to HTTP endpoints (notify blocks):
// each request signed with HMAC-SHA256, from a bounded queue per endpoint,
// by a few workers, retried with exponential backoff and jitter. It knows
// nothing of FTP: it is handed an event's kind and body (the audit line)
// and never blocks the hand that gives them.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// The request's headers. The signature is over the timestamp, the event
// id and the body, joined by dots:
//
//	X-Ftpsgate-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + "." + id + "." + body))
//
// A receiver recomputes it over the bytes it read, compares in constant
// time, refuses a timestamp far from its clock (a replay), and drops an
// id it has seen (a retry whose answer was lost). The timestamp is the
// attempt's, so each retry is signed anew; the id is the event's.
const (
	HeaderSignature = "X-Ftpsgate-Signature"
	HeaderTimestamp = "X-Ftpsgate-Timestamp" // Unix seconds
	HeaderEventID   = "X-Ftpsgate-Event-Id"  // 32 hex digits, the same on every attempt
	HeaderEvent     = "X-Ftpsgate-Event"     // the kind: upload_complete…
)

// Sign returns the X-Ftpsgate-Signature value of body sent at timestamp
// (Unix seconds) as event id, with secret.
func Sign(secret []byte, timestamp, id string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is the signature of body at timestamp as id
// with secret (what a receiver written in Go does).
func Verify(secret []byte, timestamp, id string, body []byte, sig string) bool {
	return hmac.Equal([]byte(sig), []byte(Sign(secret, timestamp, id, body)))
}

// Metrics are the notifications' collectors, by notify block name.
type Metrics struct {
	delivered *prometheus.CounterVec
	failed    *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	retries   *prometheus.CounterVec
	depth     *prometheus.GaugeVec
	latency   *prometheus.HistogramVec
}

// NewMetrics registers the collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	ns := "ftpsgate"
	m := &Metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notify_delivered_total",
			Help: "Notifications the receiver accepted (2xx), by notify block."}, []string{"notify"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notify_failed_total",
			Help: "Notifications given up, by notify block and reason (status: a 4xx other than 429, or a 3xx; retries: retries or max_age exhausted)."},
			[]string{"notify", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notify_dropped_total",
			Help: "Notifications never delivered nor tried to the end, by notify block and reason (queue_full; shutdown: left when the drain time ran out)."},
			[]string{"notify", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notify_retries_total",
			Help: "Attempts after a first one failed (network error, timeout, 5xx, 429), by notify block."}, []string{"notify"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "notify_queue_depth",
			Help: "Notifications waiting for a worker, by notify block."}, []string{"notify"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "notify_latency_seconds",
			Help:    "Time from an event to its delivery (queue, retries and the receiver's answer), by notify block.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10)}, []string{"notify"}),
	}
	reg.MustRegister(m.delivered, m.failed, m.dropped, m.retries, m.depth, m.latency)
	return m
}

// Options are the seams of a Set.
type Options struct {
	// Log receives a line per failure and (rate-limited) per drop. If
	// nil, nothing is logged.
	Log *zap.Logger
	// Metrics, if nil, are registered on a registry of their own.
	Metrics *Metrics
	// Transport carries the requests. If nil, each endpoint has its own
	// http.Transport (no proxy from the environment).
	Transport http.RoundTripper
}

// A Set is the endpoints of one configuration's notify blocks. Event is
// safe for concurrent use; Close ends it.
type Set struct {
	endpoints []*endpoint
}

// Start returns the Set of blocks, its workers running.
func Start(blocks []*config.Notify, opt Options) *Set {
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if opt.Metrics == nil {
		opt.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	s := &Set{}
	for _, b := range blocks {
		s.endpoints = append(s.endpoints, startEndpoint(b, opt))
	}
	return s
}

// Wants reports whether a block of s posts events of kind.
func (s *Set) Wants(kind string) bool {
	if s == nil {
		return false
	}
	for _, e := range s.endpoints {
		if slices.Contains(e.cfg.Events, kind) {
			return true
		}
	}
	return false
}

// Event queues the event of kind to every block that posts it, under one
// new event id. It never blocks: a full queue drops the event and counts
// it. body is not modified, and may be shared by the blocks.
func (s *Set) Event(kind string, body []byte) {
	if s == nil {
		return
	}
	ev := &event{id: newID(), kind: kind, body: body, at: time.Now()}
	for _, e := range s.endpoints {
		if slices.Contains(e.cfg.Events, kind) {
			e.enqueue(ev)
		}
	}
}

// Close stops taking events and delivers what is queued, for at most each
// block's drain_timeout and never after ctx ends; what is left is counted
// dropped (reason shutdown). It returns once every worker has ended, and
// is safe to call more than once.
func (s *Set) Close(ctx context.Context) {
	if s == nil {
		return
	}
	var wg sync.WaitGroup
	for _, e := range s.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.close(ctx)
		}()
	}
	wg.Wait()
}

// event is one notification, the same on every attempt but for the
// timestamp.
type event struct {
	id, kind string
	body     []byte
	at       time.Time // when it happened (queued)
}

// newID is 32 hex digits from crypto/rand.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// endpoint is one notify block at work.
type endpoint struct {
	cfg    *config.Notify
	log    *zap.Logger
	client *http.Client

	q chan *event
	// mu orders enqueue's sends before close: once closing is set (under
	// the write lock), nothing more enters q, and the workers, which end
	// only when q is empty, count every event.
	mu       sync.RWMutex
	closing  bool
	draining chan struct{} // closed by close: workers end once q is empty
	abort    context.Context
	stop     context.CancelFunc // ends in-flight attempts and backoffs
	once     sync.Once
	wg       sync.WaitGroup

	delivered, retries   prometheus.Counter
	failedStatus, failed prometheus.Counter // a final status; retries or max_age exhausted
	droppedFull          prometheus.Counter
	droppedShutdown      prometheus.Counter
	depth                prometheus.Gauge
	latency              prometheus.Observer

	nextDropLog atomic.Int64 // UnixNano before which drops are not logged
	shutLost    atomic.Int64 // events dropped for the shutdown, for close's log line
}

// dropShutdown counts an event dropped because the endpoint is closing.
func (e *endpoint) dropShutdown() {
	e.droppedShutdown.Inc()
	e.shutLost.Add(1)
}

// dropLogInterval is the least time between two log lines about one
// block's dropped events.
const dropLogInterval = 10 * time.Second

// maxResponse bounds what is read of a receiver's answer (then the
// connection can be reused).
const maxResponse = 64 << 10

func startEndpoint(cfg *config.Notify, opt Options) *endpoint {
	rt := opt.Transport
	if rt == nil {
		d := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
		rt = &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, MaxIdleConns: cfg.Workers,
			MaxIdleConnsPerHost: cfg.Workers, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout}
	}
	m := opt.Metrics
	n := cfg.Name
	e := &endpoint{cfg: cfg, log: opt.Log.With(zap.String("notify", n), zap.String("url", cfg.URL)),
		client: &http.Client{Transport: rt, Timeout: cfg.Timeout,
			// A redirect would carry the signed body somewhere the
			// configuration does not name: it is a final failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		q: make(chan *event, cfg.Queue), draining: make(chan struct{}),
		delivered: m.delivered.WithLabelValues(n), retries: m.retries.WithLabelValues(n),
		failedStatus: m.failed.WithLabelValues(n, "status"), failed: m.failed.WithLabelValues(n, "retries"),
		droppedFull: m.dropped.WithLabelValues(n, "queue_full"), droppedShutdown: m.dropped.WithLabelValues(n, "shutdown"),
		depth: m.depth.WithLabelValues(n), latency: m.latency.WithLabelValues(n)}
	e.abort, e.stop = context.WithCancel(context.Background())
	for range cfg.Workers {
		e.wg.Add(1)
		go e.work()
	}
	return e
}

// enqueue queues ev, or drops it when the queue is full or the endpoint
// is closing. It never waits.
func (e *endpoint) enqueue(ev *event) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closing {
		e.dropShutdown()
		e.logDrop(ev, "shutting down")
		return
	}
	select {
	case e.q <- ev:
		e.depth.Inc()
	default:
		e.droppedFull.Inc()
		e.logDrop(ev, "queue full")
	}
}

// logDrop logs a dropped event, at most once per dropLogInterval.
func (e *endpoint) logDrop(ev *event, why string) {
	now := time.Now().UnixNano()
	next := e.nextDropLog.Load()
	if now < next || !e.nextDropLog.CompareAndSwap(next, now+int64(dropLogInterval)) {
		return
	}
	e.log.Error("notification dropped", zap.String("reason", why), zap.String("event", ev.kind),
		zap.String("event_id", ev.id), zap.Int("queue", cap(e.q)))
}

// work is a worker: it delivers queued events one at a time until the
// endpoint is closed and its queue empty.
func (e *endpoint) work() {
	defer e.wg.Done()
	for {
		var ev *event
		select {
		case ev = <-e.q:
		case <-e.draining:
			select {
			case ev = <-e.q:
			default:
				return
			}
		}
		e.depth.Dec()
		if e.abort.Err() != nil {
			e.dropShutdown()
			continue
		}
		e.deliver(ev)
	}
}

// deliver posts ev until the receiver takes it, refuses it for good, or
// the retries run out.
func (e *endpoint) deliver(ev *event) {
	log := e.log.With(zap.String("event", ev.kind), zap.String("event_id", ev.id))
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			e.retries.Inc()
		}
		status, err := e.post(ev)
		switch {
		case err == nil && status >= 200 && status < 300:
			e.delivered.Inc()
			e.latency.Observe(time.Since(ev.at).Seconds())
			if attempt > 0 {
				log.Info("notification delivered after retries", zap.Int("attempts", attempt+1))
			}
			return
		case e.abort.Err() != nil:
			e.dropShutdown()
			log.Warn("notification dropped at shutdown: the drain time ran out", zap.Int("attempts", attempt+1))
			return
		case err == nil && !retryable(status):
			e.failedStatus.Inc()
			log.Error("notification refused by the receiver; not retried", zap.Int("status", status), zap.Int("attempts", attempt+1))
			return
		}
		wait := e.backoff(attempt)
		if attempt >= e.cfg.Retries || time.Since(ev.at)+wait > e.cfg.MaxAge {
			e.failed.Inc()
			log.Error("notification given up", zap.Int("attempts", attempt+1), zap.Int("status", status), zap.Error(err),
				zap.Duration("age", time.Since(ev.at)))
			return
		}
		log.Info("notification failed; retrying", zap.Int("attempt", attempt+1), zap.Int("status", status), zap.Error(err),
			zap.Duration("backoff", wait))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-e.abort.Done():
			t.Stop()
			e.dropShutdown()
			log.Warn("notification dropped at shutdown: the drain time ran out", zap.Int("attempts", attempt+1))
			return
		}
	}
}

// retryable reports whether a status may go through on another try: 429
// and 5xx. Every other (4xx, and 3xx, whose redirect is not followed) is
// the receiver's final word.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// backoff is the wait after failed attempt n (0 for the first): Backoff
// doubled n times, at most MaxBackoff, drawn between half of it and all
// of it.
func (e *endpoint) backoff(n int) time.Duration {
	d := e.cfg.Backoff
	for i := 0; i < n && d < e.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, e.cfg.MaxBackoff)
	half := d / 2
	return half + mrand.N(d-half+1)
}

// post makes one attempt, and returns the receiver's status, or the
// error that kept it from answering.
func (e *endpoint) post(ev *event) (int, error) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(e.abort, http.MethodPost, e.cfg.URL, bytes.NewReader(ev.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ftpsgate")
	req.Header.Set(HeaderEvent, ev.kind)
	req.Header.Set(HeaderEventID, ev.id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(e.cfg.Secret, ts, ev.id, ev.body))
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if err != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Accepted: the answer's body is not ours to judge.
		err = nil
	}
	return resp.StatusCode, err
}

// close stops taking events, lets the workers empty the queue until the
// drain time ends, then aborts what is left.
func (e *endpoint) close(ctx context.Context) {
	e.once.Do(func() {
		e.mu.Lock()
		e.closing = true
		e.mu.Unlock()
		close(e.draining)
		done := make(chan struct{})
		go func() {
			e.wg.Wait()
			close(done)
		}()
		t := time.NewTimer(e.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		e.stop() // the workers count what is left as dropped
		<-done
		if n := e.shutLost.Load(); n > 0 {
			e.log.Warn("notifications dropped at shutdown: the drain time ran out", zap.Int64("dropped", n),
				zap.Duration("drain_timeout", e.cfg.DrainTimeout))
		}
		if t, ok := e.client.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	})
}
