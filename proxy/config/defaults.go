package config

import (
	"crypto/tls"
	"time"

	"github.com/ftpsgate/ftpsgate/policy"
)

// Every default of the configuration: what a file that leaves a setting
// out gets. The compile step starts from these values and overwrites
// what the file sets; nothing else sets a default. Where a default is a
// security choice, its comment says which attack it stops.

// defaultConfig is the configuration before the file is read: no
// listener (the file must name one), no backend, no route, no admin
// listener (admin), no audit stream (audit.file = "", and on_error =
// "continue": an outage of the log is not an outage of the service).
func defaultConfig() *Config {
	return &Config{
		Backends: make(map[string]*Backend),
		Policy:   DefaultPolicy(),
		Timeouts: DefaultTimeouts(),
		Limits:   DefaultLimits(),
		Bans:     DefaultBans(),
		Rates:    Rates{Quota: Quota{Period: DefaultQuotaPeriod}},
	}
}

// DefaultQuotaPeriod is a quota's period unless quota_period says
// otherwise: a day, from 00:00 UTC.
const DefaultQuotaPeriod = 24 * time.Hour

// DefaultPolicy is the policy block's default, policy.Default: TLS
// required before USER and PASS (no password crosses the network in
// clear), PROT P required before any transfer (no file does), every user,
// user names compared case-insensitively, and verbs outside the verb
// table refused (unknown_commands = "reject": a verb no rule can judge is
// not relayed).
func DefaultPolicy() policy.Rules { return policy.Default() }

// DefaultTimeouts are the timeouts block's defaults. Every phase has one,
// so that no client and no backend can hold a session's resources
// without end.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TLSHandshake:    10 * time.Second,
		Login:           60 * time.Second,
		Idle:            5 * time.Minute,
		PassiveAccept:   30 * time.Second,
		DataStall:       2 * time.Minute,
		BackendDial:     10 * time.Second,
		BackendGreeting: 10 * time.Second,
		BackendReply:    60 * time.Second,
	}
}

// DefaultLimits are the limits block's defaults: lines of 4 KiB (RFC 959
// needs 512; a longer one is a flood), 1000 sessions in all and 50 from
// one client (one address, or one IPv6 /64, which a single host holds),
// and 256 client data legs lingering after their transfers (each holds a
// descriptor until its client closes it). No max_file_size: a bound on
// files is the site's choice, as are rate limits (the zero Rates, and
// listeners' rate_down and rate_up at 0: no limit).
func DefaultLimits() Limits {
	return Limits{MaxLine: 4096, MaxSessions: 1000, MaxSessionsPerIP: 50, IPv6Prefix: policy.DefaultIPv6Prefix,
		MaxLingeringDataLegs: 256}
}

// DefaultBans are the bans block's defaults: 10 failed logins from one
// address (or IPv6 prefix) within 10 minutes ban it for 15, which slows a
// password guesser to a few guesses a minute.
func DefaultBans() policy.BanRules {
	return policy.BanRules{Failures: 10, Window: 10 * time.Minute, Duration: 15 * time.Minute, IPv6Prefix: policy.DefaultIPv6Prefix}
}

// DefaultCipherSuites are the TLS 1.2 cipher suites of a listener that
// names none: Mozilla's "intermediate" profile as Go can serve it (Go has
// no DHE), ECDHE with AES-GCM or ChaCha20-Poly1305 only. Go's own default
// adds the ECDHE CBC-SHA1 suites, whose MAC-then-encrypt padding invites
// Lucky Thirteen-class timing attacks (CVE-2013-0169) and which TLS
// scanners rate "obsolete". Every TLS 1.2 client of the last decade
// offers one of these.
func DefaultCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// defaultListener is a listener block's defaults: explicit FTPS (a
// plaintext 220, then AUTH TLS); TLS 1.2 at least (older versions are
// broken) with DefaultCipherSuites; the greeting "ftpsgate ready", which
// names no backend software or version; require_session_reuse on (a
// stranger, even behind the client's NAT address, cannot race the passive
// port); upload_close_notify = "require" (a truncated upload is not
// reported complete); active_allow_local off (PORT cannot aim the proxy at
// its own host or a backend's). No address filter, no PROXY protocol, and
// the address the client reached advertised in 227 replies.
func defaultListener() *Listener {
	return &Listener{
		TLS:                 Explicit,
		MinTLSVersion:       tls.VersionTLS12,
		CipherSuites:        DefaultCipherSuites(),
		Greeting:            "ftpsgate ready",
		RequireSessionReuse: true,
		UploadCloseNotify:   RequireCloseNotify,
	}
}

// defaultProxyProtocol is a listener's proxy_protocol block's defaults: a
// trusted load balancer has 5 seconds to send its header (a connection
// that sends none cannot hold a session), and connections from other
// addresses are closed (allow_direct off): a client cannot bypass the
// balancer's own filtering.
func defaultProxyProtocol() *ProxyProtocol {
	return &ProxyProtocol{HeaderTimeout: 5 * time.Second}
}

// defaultBackend is a backend block's defaults: plain FTP toward it (tls =
// "none"), round-robin over its servers, passive data connections (the
// proxy connects to the backend), no HOST passed on, no PROXY header, and
// DefaultBackendLimits.
func defaultBackend() *Backend {
	return &Backend{TLS: BackendPlain, Balance: RoundRobin, ProxyProtocol: NoProxyProtocol, Limits: DefaultBackendLimits()}
}

// defaultBackendTLS is the client TLS configuration toward an FTPS
// backend before its settings: TLS 1.2 to 1.3, certificates verified
// against the system's roots under the server's host name.
func defaultBackendTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
}

// DefaultBackendLimits are a backend's limits when its block names none:
// no bound on sessions, a login waits at most 30 s in the queue, 16
// connections set up at once per server, and 2 retries after a fast
// failure (see BackendLimits for why each).
func DefaultBackendLimits() BackendLimits {
	return BackendLimits{QueueTimeout: 30 * time.Second, MaxDials: 16, Retries: 2}
}

// defaultHealthCheck is a health_check block's defaults: a check every 10
// seconds, each within 5; 2 successes in a row mark a server up, 3
// failures down.
func defaultHealthCheck() *HealthCheck {
	return &HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second, Rise: 2, Fall: 3}
}

// DefaultAdminAddress is the admin listener's address when an admin block
// names none: loopback only, since /status.json names users, client
// addresses and file paths.
const DefaultAdminAddress = "127.0.0.1:9100"

// defaultScan is a scan block's defaults: a 60 s timeout; 25 MiB sent to
// the scanner at most (clamd's own StreamMaxLength default); an upload
// larger than that, or one the scanner gives no verdict on, rejected
// (above_max and on_error "reject": neither a large file nor a scanner's
// outage is a way past the scan); STOR, APPE and STOU scanned.
//
// Inline, unless mode "spool" is chosen; under "spool", a spool of 1 GiB (forty
// uploads of the default max_size) in DefaultSpoolRoot/NAME.
func defaultScan() *Scan {
	return &Scan{Timeout: 60 * time.Second, MaxSize: 25 << 20, AboveMax: ScanReject, OnError: ScanReject,
		Verbs: []string{"STOR", "APPE", "STOU"}, Mode: ScanInline, SpoolMax: 1 << 30}
}

// defaultNotify is a notify block's defaults: 10 s per attempt; 1024
// events queued at most (a few MB: a body is one audit line); 2 workers;
// 8 retries, waiting 1 s, 2 s, 4 s… up to 1 min between them, and none
// once the event is 15 min old; 5 s to drain the queue at shutdown. Plain
// http only to loopback.
func defaultNotify() *Notify {
	return &Notify{Timeout: 10 * time.Second, Queue: 1024, Workers: 2, Retries: 8, Backoff: time.Second,
		MaxBackoff: time.Minute, MaxAge: 15 * time.Minute, DrainTimeout: 5 * time.Second}
}

// DefaultSpoolRoot holds the spool of each scan block in mode "spool"
// that names no spool_dir, in a directory named after the block: under
// the state directory the systemd unit gives the service
// (StateDirectory=ftpsgate), on disk, writable by the service alone.
const DefaultSpoolRoot = "/var/lib/ftpsgate/spool"

// DefaultACMEDirectory is an acme block's CA when it names none: Let's
// Encrypt's production directory.
const DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// DefaultACMEStorage is an acme block's storage when it names none: the
// acme directory of the state directory the systemd unit gives the
// service (StateDirectory=ftpsgate). It holds private keys: the proxy
// creates it with mode 0700.
const DefaultACMEStorage = "/var/lib/ftpsgate/acme"

// DefaultDNSPropagationTimeout is how long a DNS-01 TXT record may take to
// become visible when the dns01 block does not say.
const DefaultDNSPropagationTimeout = 2 * time.Minute

// DefaultOnDemandRate is the on_demand block's rate when it names none:
// 10 orders an hour, at most 10 at once.
const DefaultOnDemandRate = "10/1h"

// defaultACME is an acme block's defaults: Let's Encrypt's production
// directory, trusted through the system's roots, the storage under the
// state directory, no contact address, no external account binding, no
// challenge listener (the block must name one).
func defaultACME() *ACME {
	return &ACME{Directory: DefaultACMEDirectory, Storage: DefaultACMEStorage}
}

// DefaultRedisPrefix starts the keys and channels of the state shared
// through Redis when the redis block sets no prefix.
const DefaultRedisPrefix = "ftpsgate:"

// defaultLDAP is an ldap block's defaults: a 5 s timeout for each step
// with the directory, at most 8 connections to it, closed after a minute
// idle, users found by (uid={user}), and groups that list their members
// by DN (groupOfNames, groupOfUniqueNames).
func defaultLDAP() *LDAP {
	return &LDAP{Timeout: 5 * time.Second, MaxConnections: 8, IdleTimeout: time.Minute,
		UserFilter: "(uid={user})", GroupFilter: "(|(member={dn})(uniqueMember={dn}))"}
}

// DefaultHookTimeout bounds an auth hook's request when its block sets no
// timeout: long enough for a directory lookup behind the hook, short
// enough that a hung hook answers the client (421) well within its own
// timeouts.
const DefaultHookTimeout = 5 * time.Second
