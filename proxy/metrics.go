package proxy

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
)

// metrics are the server's Prometheus collectors, on a registry of its own
// (never the global one: two servers in one process, as in tests, must not
// collide). Label values are bounded: listener, backend and rule names come
// from the configuration, verbs from the verb table (metricLabel).
type metrics struct {
	reg *prometheus.Registry

	sessionsActive  *prometheus.GaugeVec
	sessionsTotal   *prometheus.CounterVec
	logins          *prometheus.CounterVec
	hookRequests    *prometheus.CounterVec
	userFileReloads *prometheus.CounterVec
	ldapErrors      *prometheus.CounterVec
	commands        *prometheus.CounterVec
	denials         *prometheus.CounterVec
	transfers       *prometheus.CounterVec
	transferBytes   *prometheus.CounterVec
	transferSeconds *prometheus.HistogramVec
	tlsHandshakes   *prometheus.CounterVec
	tlsFailures     prometheus.Counter
	tlsResumed      prometheus.Counter
	backendDial     *prometheus.HistogramVec
	backendFailures *prometheus.CounterVec
	backendUp       *prometheus.GaugeVec
	backendRetries  *prometheus.CounterVec
	queueWait       *prometheus.HistogramVec
	bans            prometheus.Counter
	// The last reload's outcome, as Prometheus reports its own.
	reloadOK      prometheus.Gauge
	reloadTime    prometheus.Gauge
	lingerRefused prometheus.Counter
	// Rate limits and max_file_size (ratelimit.go).
	throttledSeconds *prometheus.CounterVec
	throttledBytes   *prometheus.CounterVec
	tooLarge         prometheus.Counter
	quotaRefusals    *prometheus.CounterVec
	// Upload scans (scan blocks): verdicts by scan block, engine and
	// result, and how long the final reply waited for them (scanVerdict,
	// scanWaited).
	scanVerdicts *prometheus.CounterVec
	scanLatency  *prometheus.HistogramVec
	// acmeOperations counts certificate requests to an ACME CA (acme.go).
	acmeOperations *prometheus.CounterVec
	// acmeOnDemandRefused counts on-demand orders refused by the on_demand
	// block's rate (acme_ondemand.go); by acme block only, since the
	// names are the clients' choice.
	acmeOnDemandRefused *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	ns := "ftpsgate"
	m.sessionsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "sessions_active",
		Help: "Control sessions open now."}, []string{"listener"})
	m.sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sessions_total",
		Help: "Control sessions accepted."}, []string{"listener"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "logins_total",
		Help: "Login attempts, by method (backend: the backend checked the password; else the auth block's: file, ldap, hook, cert, cert+file, …+totp) and result (success, failure, unavailable: the service that decides, a directory or a hook, gave no answer: 421)."},
		[]string{"method", "result"})
	m.hookRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "auth_hook_requests_total",
		Help: "Logins an auth block's HTTP hook decided, by auth block and result: allow, deny, cached (an allow within cache_ttl), unavailable (timeout, not 200, an answer that does not parse: 421)."},
		[]string{"auth", "result"})
	m.userFileReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "user_file_reloads_total",
		Help: "Reloads of an auth block's user file after it changed, by result (failure: the previous users were kept)."},
		[]string{"result"})
	m.ldapErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ldap_errors_total",
		Help: "Logins an auth block's directory gave no answer about (down, too slow, every connection busy, the service account refused), by auth block: each got 421."},
		[]string{"auth"})
	m.commands = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "commands_total",
		Help: "Commands received, by verb (OTHER for verbs outside RFC 959 and its extensions)."}, []string{"verb"})
	m.denials = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "policy_denials_total",
		Help: "Refusals by policy, by rule."}, []string{"rule"})
	m.transfers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "transfers_total",
		Help: "Data transfers, by direction and result."}, []string{"direction", "result"})
	m.transferBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "transfer_bytes_total",
		Help: "Bytes relayed on data connections, by direction."}, []string{"direction"})
	m.transferSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "transfer_duration_seconds",
		Help: "Duration of data transfers.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"direction"})
	m.tlsHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tls_handshakes_total",
		Help: "Completed client TLS handshakes on control connections, by version."}, []string{"version"})
	m.tlsFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "tls_handshake_failures_total",
		Help: "Failed client TLS handshakes on control connections."})
	m.tlsResumed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "tls_resumed_total",
		Help: "Client TLS handshakes on control connections that resumed an earlier connection's session (no full handshake)."})
	m.backendDial = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "backend_connect_seconds",
		Help: "Time to connect a backend, up to its greeting (and TLS).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)},
		[]string{"backend"})
	m.backendFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "backend_connect_failures_total",
		Help: "Failed backend connections (dial, greeting, TLS)."}, []string{"backend"})
	m.backendUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "backend_server_up",
		Help: "1 while a backend server is taken as up (health checks, failed connections), else 0."},
		[]string{"backend", "server"})
	m.backendRetries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "backend_retries_total",
		Help: "Connections to a backend server tried again after a fast failure, by cause: refused, reset, closed (before the greeting), busy (a 421 greeting)."},
		[]string{"backend", "cause"})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "backend_queue_wait_seconds",
		Help:    "Time logins waited for a backend server within max_sessions and max_dials, by result: served, timeout (421 Server busy), left (the client quit or closed, the login timed out, shutdown).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"backend", "result"})
	m.bans = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "bans_total",
		Help: "Client addresses banned after failed logins."})
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_successful",
		Help: "1 if the last configuration reload succeeded (or none was tried), 0 if it was refused."})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the configuration in force was loaded (start or last successful reload), in Unix seconds."})
	m.reloaded(nil)
	m.lingerRefused = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "data_legs_linger_refused_total",
		Help: "Client data connections closed at once after a transfer, without waiting for the client's close, because limits.max_lingering_data_legs were lingering."})
	m.throttledSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "throttled_seconds_total",
		Help: "Time transfers waited for a rate limit, by direction and by the level that made them wait (listener, user, address, transfer)."},
		[]string{"direction", "level"})
	m.throttledBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "throttled_bytes_total",
		Help: "Data bytes that waited for a rate limit before they were relayed, by direction and level."},
		[]string{"direction", "level"})
	m.tooLarge = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "max_file_size_refusals_total",
		Help: "Uploads cut with 552 when they crossed limits.max_file_size."})
	m.quotaRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "quota_refusals_total",
		Help: "Transfers refused with 552, or cut with 552, because their user's quota was used up, by direction."},
		[]string{"direction"})
	buckets := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "rate_buckets",
		Help: "Shared rate-limit buckets held (listener, user or class, client address), each by the sessions that use it."},
		func() float64 { return float64(s.buckets.len()) })
	m.scanVerdicts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "scan_verdicts_total",
		Help: "Upload scans, by scan block, engine (clamd, icap) and result: clean, infected, too_large (rejected above max_size), partial (passed above max_size), error (no verdict; rejected or passed as on_error says)."},
		[]string{"scan", "engine", "result"})
	m.scanLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "scan_latency_seconds",
		Help:    "Time an upload's final reply was held for the scanner's verdict, from the server's final reply, by scan block and engine: what scanning adds to the upload.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"scan", "engine"})
	m.acmeOperations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "acme_certificate_requests_total",
		Help: "Certificate requests to an ACME CA, by acme block, domain, operation (obtain, renew) and result (success, failure); failures are retried with backoff."},
		[]string{"acme", "domain", "operation", "result"})
	m.acmeOnDemandRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "acme_on_demand_refused_total",
		Help: "On-demand certificate orders refused because the on_demand block's rate was spent; those handshakes got the default certificate."},
		[]string{"acme"})
	lingering := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "data_legs_lingering",
		Help: "Client data connections kept open after a transfer until the client closes them (at most limits.max_lingering_data_legs)."},
		func() float64 { return float64(s.lingering.Load()) })
	ports := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "passive_ports_in_use",
		Help: "Passive ports held, all listeners."}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, fl := range s.listeners {
			n += fl.ports.Load().InUse()
		}
		return float64(n)
	})
	m.reg.MustRegister(m.sessionsActive, m.sessionsTotal, m.logins, m.hookRequests, m.userFileReloads, m.ldapErrors, m.commands, m.denials, m.transfers,
		m.transferBytes, m.transferSeconds, m.tlsHandshakes, m.tlsFailures, m.tlsResumed, m.backendDial, m.backendFailures,
		m.backendUp, m.backendRetries, m.queueWait, m.bans, m.reloadOK, m.reloadTime, m.lingerRefused, lingering, ports,
		m.throttledSeconds, m.throttledBytes, m.tooLarge, m.quotaRefusals, buckets,
		m.scanVerdicts, m.scanLatency,
		newAuditCollector(s.audit), &queueCollector{s: s}, m.acmeOperations, m.acmeOnDemandRefused, newACMECollector(s),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// auditCollector reads the audit sinks' counters at each scrape, by sink
// ("audit", "xferlog"). A Logger without sinks (audit.New, or none) has
// no series.
type auditCollector struct {
	audit                                     *audit.Logger
	written, errors, dropped, queued, healthy *prometheus.Desc
}

func newAuditCollector(a *audit.Logger) *auditCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("ftpsgate_audit_"+name, help, []string{"sink"}, nil)
	}
	return &auditCollector{audit: a,
		written: d("lines_written_total", "Audit lines written."),
		errors: d("write_errors_total", "Failed audit writes (full disk, reader gone); each is tried again, "+
			"and nothing of it is left in the file."),
		dropped: d("dropped_total", "Audit lines lost: the queue was full (writes failing or blocked), or the stream was closed."),
		queued:  d("queue_lines", "Audit lines waiting to be written."),
		healthy: d("healthy", "1 while the audit sink can be written, 0 while its writes fail, block, or its queue is full."),
	}
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.written, c.errors, c.dropped, c.queued, c.healthy} {
		ch <- d
	}
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.audit.Stats() {
		healthy := 1.0
		if st.Err != nil {
			healthy = 0
		}
		ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(st.Written), st.Sink)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.WriteErrors), st.Sink)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped), st.Sink)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Queued), st.Sink)
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, st.Sink)
	}
}

// queueCollector reads the backends' queues at each scrape: the sessions
// each server holds and the connections being set up toward it (what
// max_sessions and max_dials bound), and the logins waiting, by backend.
type queueCollector struct{ s *Server }

var (
	descBackendSessions = prometheus.NewDesc("ftpsgate_backend_sessions",
		"Sessions a backend server holds, counted from the dial until the backend connection closes (what max_sessions bounds).",
		[]string{"backend", "server"}, nil)
	descBackendDials = prometheus.NewDesc("ftpsgate_backend_dials_in_flight",
		"Connections to a backend server being set up: dial, TLS, greeting (what max_dials bounds).",
		[]string{"backend", "server"}, nil)
	descQueueWaiting = prometheus.NewDesc("ftpsgate_backend_queue_waiting",
		"Logins waiting for a backend server within max_sessions and max_dials.", []string{"backend"}, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBackendSessions
	ch <- descBackendDials
	ch <- descQueueWaiting
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	servers, queues := c.s.backendLoad(time.Now())
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(descQueueWaiting, prometheus.GaugeValue, float64(q.Waiting), q.Backend)
	}
	for _, b := range servers {
		ch <- prometheus.MustNewConstMetric(descBackendSessions, prometheus.GaugeValue, float64(b.Held), b.Backend, b.Server)
		ch <- prometheus.MustNewConstMetric(descBackendDials, prometheus.GaugeValue, float64(b.Dialing), b.Backend, b.Server)
	}
}

// reloaded records a reload's outcome: err is nil when it succeeded.
func (m *metrics) reloaded(err error) {
	if err != nil {
		m.reloadOK.Set(0)
		return
	}
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
}

// transfer counts one transfer of bytes that took d.
func (m *metrics) transfer(direction audit.Direction, result audit.Result, bytes int64, d time.Duration) {
	m.transfers.WithLabelValues(string(direction), string(result)).Inc()
	m.transferBytes.WithLabelValues(string(direction)).Add(float64(bytes))
	m.transferSeconds.WithLabelValues(string(direction)).Observe(d.Seconds())
}

// acmeCollector reads, at each scrape, when each acme domain's certificate
// expires: a domain without one has no series (and its requests' failures
// are counted in acme_certificate_requests_total).
type acmeCollector struct {
	s      *Server
	expiry *prometheus.Desc
}

func newACMECollector(s *Server) *acmeCollector {
	return &acmeCollector{s: s, expiry: prometheus.NewDesc("ftpsgate_acme_certificate_expiry_timestamp_seconds",
		"When the certificate served for an acme domain expires, in Unix seconds.", []string{"acme", "domain"}, nil)}
}

func (c *acmeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.expiry }

func (c *acmeCollector) Collect(ch chan<- prometheus.Metric) {
	for name, am := range c.s.acmeManagers() {
		names := am.cfg.Domains
		if am.onDemand != nil {
			names = append(slices.Clone(names), am.onDemand.names()...)
		}
		for _, d := range names {
			if cert := am.newest(d); cert != nil {
				ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(cert.Leaf.NotAfter.Unix()), name, d)
			}
		}
	}
}
