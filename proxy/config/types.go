package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"time"

	"github.com/ftpsgate/ftpsgate/policy"
)

// Config is one validated configuration. It is never modified after Load
// returns it: a reload builds a new one, and live sessions keep theirs.
type Config struct {
	// Listeners in the order of the file; names are unique.
	Listeners []*Listener
	// Backends by name.
	Backends map[string]*Backend
	// Scans are the scan blocks by name: the scanners uploads go through,
	// as a listener or a route names one.
	Scans map[string]*Scan
	// ACME are the acme blocks, in the order of the file; names are
	// unique, and no domain is in two of them.
	ACME   []*ACME
	Policy policy.Rules
	// Routes choose a session's backend by user, HOST and SNI, first
	// match wins; no match: the listener's backend.
	Routes []policy.Route
	// RouteLogins are what route blocks add to a login (auth, backend
	// account), by route name; a route that adds nothing is absent.
	RouteLogins map[string]*RouteLogin
	// Auths are the auth blocks, by name.
	Auths    map[string]*Auth
	Audit    Audit
	Timeouts Timeouts
	Limits   Limits
	// Rates limit the data bytes per second of users, client addresses
	// and single transfers (listeners have their own, Listener.RateDown
	// and RateUp).
	Rates Rates
	Bans  policy.BanRules
	// State is where bans, failed logins and session counts are kept:
	// in this process (the zero value), or shared by every instance
	// through Redis (State.Redis). Read at start, not on reload.
	State State
	// Admin is the address of the admin HTTP listener (/metrics,
	// /healthz, /readyz), or "" for none.
	Admin string
	// AdminPprof serves Go's profiles under /debug/pprof/ on the admin
	// listener (off by default; read at start, not on reload). It
	// requires AdminAuth: a heap profile holds memory contents.
	AdminPprof bool
	// AdminAuth is the credential the admin listener requires for
	// everything but /healthz and /readyz; the zero value requires none.
	// Read at start, not on reload.
	AdminAuth AdminAuth
	// AgentListener, if set, accepts agents (ftpsgate agent) that carry
	// the connections of via_agent backends. Its address is read at
	// start; its names and certificates on reload too.
	AgentListener *AgentListener
	// Notifies are the notify blocks, in the order of the file; names
	// are unique. Each posts the audit events it names to its URL.
	Notifies []*Notify
}

// AgentListener is where agents connect: mutual TLS, the agent's
// certificate verified against ClientCAs and its name (the subject's
// common name or a DNS name) one of AllowedNames.
type AgentListener struct {
	// Address is the host:port to listen on.
	Address string
	// Certificate is the edge's own key pair, which agents verify
	// against their ca_file.
	Certificate       *tls.Certificate
	CertFile, KeyFile string
	// ClientCAs are the CAs that sign agents' certificates (client_ca_file):
	// pinned, never the system roots.
	ClientCAs *x509.CertPool
	// AllowedNames are the agents' names accepted. An agent whose
	// certificate carries none of them is refused at its handshake;
	// removing a name on reload drops its connections (a stolen
	// certificate is revoked so).
	AllowedNames []string
}

// AdminAuth is the admin listener's authentication, in the two forms
// Prometheus can send (scrape_config authorization and basic_auth). Either
// one configured credential is accepted.
type AdminAuth struct {
	// BearerToken, if not empty, is accepted as "Authorization: Bearer
	// TOKEN". It is read from bearer_token_file.
	BearerToken string
	// BasicUser, if not empty, is accepted with HTTP basic authentication
	// when the password matches BasicHash, a bcrypt hash.
	BasicUser string
	BasicHash []byte
}

// Enabled reports whether a credential is required.
func (a AdminAuth) Enabled() bool { return a.BearerToken != "" || a.BasicUser != "" }

// Balance is a pool's choice of server.
type Balance string

const (
	RoundRobin Balance = "round_robin" // in turn
	LeastConn  Balance = "least_conn"  // the one with fewest sessions
	StickyUser Balance = "sticky_user" // by a hash of the user name
)

// HealthCheck is an active check of each server of a pool: a TCP
// connection (with the backend's PROXY header, LOCAL, and its TLS for an
// implicit one) that must read a 220 greeting within Timeout, every
// Interval; Fall failures in a row mark a server down, Rise successes up.
type HealthCheck struct {
	Interval, Timeout time.Duration
	Rise, Fall        int
}

// TLSMode is how a listener starts TLS.
type TLSMode int

const (
	// Explicit FTPS (RFC 4217): a plaintext 220 greeting, then AUTH TLS.
	Explicit TLSMode = iota + 1
	// Implicit FTPS: TLS from the first byte (customarily port 990).
	Implicit
)

func (m TLSMode) String() string {
	switch m {
	case Explicit:
		return "explicit"
	case Implicit:
		return "implicit"
	}
	return "invalid"
}

// BackendTLS is how the proxy talks to a backend.
type BackendTLS int

const (
	// BackendPlain is plain FTP toward the backend.
	BackendPlain BackendTLS = iota + 1
	// BackendExplicit: the proxy sends AUTH TLS, PBSZ 0 and PROT P.
	BackendExplicit
	// BackendImplicit: TLS from the first byte, control and data.
	BackendImplicit
)

func (m BackendTLS) String() string {
	switch m {
	case BackendPlain:
		return "none"
	case BackendExplicit:
		return "explicit"
	case BackendImplicit:
		return "implicit"
	}
	return "invalid"
}

// ProxyProtocolVersion is the version of the PROXY protocol header sent to
// a backend; its value is the version's number, as go-proxyproto takes it.
type ProxyProtocolVersion byte

const (
	NoProxyProtocol ProxyProtocolVersion = 0 // no header (the default)
	ProxyProtocolV1 ProxyProtocolVersion = 1 // the text header
	ProxyProtocolV2 ProxyProtocolVersion = 2 // the binary header, which may carry TLVs
)

func (v ProxyProtocolVersion) String() string {
	switch v {
	case NoProxyProtocol:
		return "none"
	case ProxyProtocolV1:
		return "v1"
	case ProxyProtocolV2:
		return "v2"
	}
	return "invalid"
}

// UploadCloseNotify is what the end of an upload's TLS stream must be.
// Go's TLS reader returns io.EOF both for a TLS close_notify and for a bare
// TCP FIN at a record boundary; only close_notify proves the client sent
// the whole file, and a FIN is what a truncation by anyone on the path
// looks like.
type UploadCloseNotify int

const (
	// RequireCloseNotify (the zero value and the default, as vsftpd's
	// strict_ssl_read_eof): an upload under PROT P that ends without the
	// client's close_notify fails with 426, and the backend's data
	// connection is reset so that the server records a failed upload.
	RequireCloseNotify UploadCloseNotify = iota
	// WarnCloseNotify: such an upload is completed as it ended, with a
	// warning in the log and "close_notify":false in the audit, for
	// clients known to close uncleanly.
	WarnCloseNotify
)

func (m UploadCloseNotify) String() string {
	switch m {
	case RequireCloseNotify:
		return "require"
	case WarnCloseNotify:
		return "warn"
	}
	return "invalid"
}

// Listener is one front socket and what sessions on it do.
type Listener struct {
	Name string
	// Address is the host:port to listen on, as given ("0.0.0.0:21").
	Address string
	TLS     TLSMode
	// Certificate is the loaded key pair (RSA or ECDSA).
	Certificate *tls.Certificate
	// CertFile and KeyFile are where Certificate was read from; the
	// server watches them and reloads the pair when they change. Empty
	// (and Certificate nil) when ACME is set.
	CertFile, KeyFile string
	// ACME, if set, is the acme block whose certificates the listener
	// serves, in place of CertFile and KeyFile: obtained at start and
	// renewed in the background, each handshake taking the current one.
	ACME *ACME
	// MinTLSVersion is tls.VersionTLS12 or tls.VersionTLS13.
	MinTLSVersion uint16
	// CipherSuites are the TLS 1.2 cipher suites the listener accepts,
	// by default DefaultCipherSuites. TLS 1.3 suites are not
	// configurable in Go: its three are AEAD and always on.
	CipherSuites []uint16
	// PassivePorts is the range the proxy's passive listeners use.
	PassivePorts PortRange
	// PublicAddress is advertised in 227 replies. If invalid (zero), the
	// address the client reached is used.
	PublicAddress netip.Addr
	// PassiveAddressOverrides advertise another address than
	// PublicAddress to clients of some networks (PassiveAddress): internal
	// clients reach the proxy at its internal address, and a 227 naming
	// the public one sends them through hairpin NAT, which many networks
	// do not do. Empty (the default): PublicAddress for everyone.
	PassiveAddressOverrides []PassiveAddressOverride
	// Backend is where sessions go unless a later rule routes them.
	Backend *Backend
	// Greeting is the text of the proxy's 220 reply.
	Greeting string
	// RequireSessionReuse refuses (522) a PROT P data connection whose
	// TLS session does not resume its control connection's, or that of
	// another session of the same client address and logged-in user (a
	// client sharing one TLS session cache across its connections). It
	// stops a stranger, even behind the client's own NAT address, from
	// racing the passive port. False (vsftpd's require_ssl_reuse=NO)
	// binds data connections to the client's address only, for clients
	// that cannot resume (see the README's compatibility matrix).
	RequireSessionReuse bool
	// UploadCloseNotify is whether an upload under PROT P must end with
	// the client's TLS close_notify (RequireCloseNotify, the zero value)
	// or is completed after a bare FIN with a warning (WarnCloseNotify).
	// Requiring it stops a truncated upload (a FIN injected or a
	// connection cut on the path) from being reported complete.
	UploadCloseNotify UploadCloseNotify
	// AllowCIDRs and DenyCIDRs filter clients by address at connect.
	AllowCIDRs, DenyCIDRs []netip.Prefix
	// ProxyProtocol, if set, reads the PROXY protocol (v1 or v2) header
	// from trusted load balancers on control connections.
	ProxyProtocol *ProxyProtocol
	// ActiveAllowLocal lets PORT and EPRT name a loopback or unspecified
	// address, an address of the proxy's host or one of a backend's.
	// False (the default) refuses them: a client whose address is one of
	// those (a local client, or one a trusted PROXY header names so)
	// would otherwise aim the proxy's active data connections at services
	// on the proxy's or a backend's host, and read its banners or write
	// into it (the FTP bounce attack turned inward, RFC 2577 §3).
	ActiveAllowLocal bool
	// RateDown and RateUp bound the data bytes per second of all the
	// listener's transfers together, downloads and uploads; 0 (the
	// default): no bound. See Rates for the other levels.
	RateDown, RateUp Rate
	// Auth is the auth block that checks logins on this listener before
	// any backend connection is opened (a route's own auth wins), or nil:
	// the backend checks the client's credentials, as without ftpsgate.
	Auth *Auth
	// Scan, if not nil, is the scanner the uploads of the listener's
	// sessions go through, unless the route that chose a session's
	// backend names another. Nil (the default): uploads are not scanned.
	Scan *Scan
	// ClientAuth is whether the control connection's TLS handshake asks
	// the client for a certificate (mutual TLS); ClientCAs, read from
	// ClientCAFile, are the roots it must chain to. ClientCertNone (the
	// zero value): no certificate is asked for. A certificate that does
	// not chain to ClientCAs fails the handshake in both other modes, so
	// a certificate of any other CA never names a user; an auth block's
	// cert block then maps it to a user (CertAuth).
	ClientAuth   ClientAuthMode
	ClientCAFile string
	ClientCAs    *x509.CertPool
}

// PassiveAddressOverride is one element of a listener's
// passive_address_overrides: clients whose address lies in Networks are
// told Address in 227 replies.
type PassiveAddressOverride struct {
	Networks []netip.Prefix
	// Address is IPv4: a 227 carries nothing else.
	Address netip.Addr
}

// PassiveAddress is the address a 227 reply advertises to a client at
// client: that of the first override whose networks hold it, else
// PublicAddress (invalid when unset: the caller then advertises the
// address the client reached). EPSV replies carry no address and need
// none.
func (l *Listener) PassiveAddress(client netip.Addr) netip.Addr {
	client = client.Unmap()
	for _, o := range l.PassiveAddressOverrides {
		for _, n := range o.Networks {
			if n.Contains(client) {
				return o.Address
			}
		}
	}
	return l.PublicAddress
}

// ProxyProtocol is a listener's PROXY protocol policy.
type ProxyProtocol struct {
	// Trusted are the addresses of the load balancers; a connection from
	// one of them must start with a PROXY header.
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for the header.
	HeaderTimeout time.Duration
	// AllowDirect serves connections from other addresses as they are
	// (a header they send is not honoured); otherwise they are closed.
	AllowDirect bool
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ First, Last uint16 }

// Len is the number of ports in the range.
func (r PortRange) Len() int { return int(r.Last) - int(r.First) + 1 }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Backend is an FTP server behind the proxy, or a pool of equivalent
// ones.
type Backend struct {
	Name string
	// Address is host:port of its control connection: the first of
	// Servers, named in logs.
	Address string
	// Servers are the pool's members (Address alone for a single
	// server), tried in the order Balance gives; a failed connection
	// moves on to the next.
	Servers []string
	// Balance picks a session's first server: RoundRobin, LeastConn or
	// StickyUser.
	Balance Balance
	// HealthCheck, if set, probes every server for a 220 greeting.
	HealthCheck *HealthCheck
	// ServerNameFromAddress: no server_name was set, so each server is
	// verified under the host of its own address.
	ServerNameFromAddress bool
	TLS                   BackendTLS
	// TLSConfig is the client configuration toward an FTPS backend (nil
	// for a plain one): roots, server name, versions. Sessions clone it
	// and add their own session cache.
	TLSConfig *tls.Config
	// InsecureSkipVerify: the backend's certificate is not verified, by
	// the operator's explicit choice (logged as a warning at start).
	InsecureSkipVerify bool
	// SendHost: a client's HOST (RFC 7151) is passed on to the backend.
	SendHost bool
	// ProxyProtocol is the PROXY protocol header sent on each control
	// connection (the client's address), if any.
	ProxyProtocol ProxyProtocolVersion
	// ProxyProtocolTLVs adds to a v2 header what the client's TLS
	// session was: PP2_TYPE_SSL with its version and cipher, the SNI as
	// PP2_TYPE_AUTHORITY, and the session id as PP2_TYPE_UNIQUE_ID.
	ProxyProtocolTLVs bool
	// ActiveData: the backend connects to the proxy for data (EPRT/PORT)
	// instead of the proxy connecting to it (EPSV/PASV, the default).
	ActiveData bool
	// Limits shield the backend's servers from bursts: sessions and
	// connection setups at once, a queue for logins past them, retries.
	Limits BackendLimits
	// ViaAgent, if not empty, is the name of the agents (ftpsgate agent)
	// through which the backend is reached: its control and data
	// connections (and health checks) are streams through one of them,
	// never dialled from the edge, so that nothing connects from the DMZ
	// into the internal network. Data toward it is passive. "" (the
	// default): dialled.
	ViaAgent string
}

// BackendLimits pace and bound the connections to each server of a
// backend, so that a server that breaks under a burst (pure-ftpd refuses
// past its -c bound, 100 by default, and its listen backlog is
// -c/8 + 3) sees an orderly stream, and the clients only a delay. Each
// bound applies to each server: in a pool, to every member alike.
type BackendLimits struct {
	// MaxSessions bounds the sessions each server holds at once, counted
	// from the proxy's dial until the session's backend connection
	// closes. Past it a login waits in the backend's queue, first come
	// first served, for a server with room, instead of dialling. 0 (the
	// default): no bound. Set it a little below the server's own limit,
	// which also counts health checks and connections from elsewhere.
	MaxSessions int
	// QueueTimeout bounds a login's wait in the queue (for a session or
	// a dial); past it the client gets "421 Server busy: N sessions
	// waiting, try again later." Default 30 s: less than clients wait for
	// a reply (FileZilla and curl: 20 s to a few minutes), and the login
	// timeout ends any wait too.
	QueueTimeout time.Duration
	// MaxDials bounds each server's connections being set up at once
	// (dial, implicit TLS, greeting, AUTH TLS), so that a burst of logins
	// never overflows a short listen backlog: connections past a full
	// backlog wait in the kernel for seconds, and their clients for a
	// greeting that does not come in time. Default 16: connections the
	// server has already accepted count too, so its backlog holds fewer;
	// 100 logins at once against pure-ftpd's backlog of 15 lose none
	// paced so, and about 40 unpaced. At least 1. A higher bound costs
	// nothing while the server greets quickly; set it lower for a server
	// with a shorter backlog, higher for a distant one (a server D
	// seconds from dial to greeting takes at most MaxDials/D sessions a
	// second).
	MaxDials int
	// Retries is how many more times a connection to a server is tried
	// when it fails fast: the dial refused or reset, the connection
	// closed before the greeting, or a 421 greeting (busy). Each retry
	// waits a short jittered backoff (about 100 ms, then 200 ms…). Only
	// then is the pool's next server tried, and only when none is left
	// does the client get 421, naming the cause. A server that does not
	// greet within timeouts.backend_greeting is not retried. Default 2;
	// 0 turns retries off.
	Retries int
}

// Audit says where audit events go.
type Audit struct {
	// File is a path, "-" for stdout, or "" for no audit stream.
	File string
	// Xferlog is a path for classic wu-ftpd xferlog lines, or "".
	Xferlog string
	// OnError is what the proxy does while the audit stream cannot be
	// written (full disk, a reader that went away or stopped reading).
	// The zero value, AuditContinue, keeps serving. Taken on reload.
	OnError AuditOnError
}

// AuditOnError is what the proxy does while the audit stream cannot be
// written. Either way, audit writes never block a session: events that do
// not fit the audit's queue are dropped and counted
// (ftpsgate_audit_dropped_total), and every failure is logged.
type AuditOnError int

const (
	// AuditContinue ("continue", the default) keeps serving: an outage
	// of the log is not an outage of the service. /readyz stays 200 and
	// says the audit is degraded.
	AuditContinue AuditOnError = iota
	// AuditRefuse ("refuse") fails closed, for sites where no transfer
	// may go unaudited: while the audit cannot be written, new sessions
	// get 421 and /readyz 503; sessions already running finish. Service
	// resumes by itself once writes go through again. It stops a client
	// that fills the log's disk (or a reader that stalls) from working
	// unaudited afterwards, at the price of availability.
	AuditRefuse
)

func (m AuditOnError) String() string {
	switch m {
	case AuditContinue:
		return "continue"
	case AuditRefuse:
		return "refuse"
	}
	return "invalid"
}

// Timeouts bound every phase of a session. Each is positive after Load.
type Timeouts struct {
	// TLSHandshake bounds a client's TLS handshake, on control and data.
	TLSHandshake time.Duration
	// Login bounds the time from connect to a successful login.
	Login time.Duration
	// Idle closes a control connection with no command for this long
	// (a transfer in progress counts as activity).
	Idle time.Duration
	// PassiveAccept bounds the wait for the client's data connection.
	PassiveAccept time.Duration
	// DataStall aborts a transfer when neither leg moves for this long.
	DataStall time.Duration
	// BackendDial bounds a connection to the backend, control or data.
	BackendDial time.Duration
	// BackendGreeting bounds a new backend control connection up to its
	// 220: the connection, the TLS handshake of an implicit backend and
	// the greeting. Short (10 s), so that the client hears the proxy's
	// 421 (or is moved to the pool's next server) before it gives up:
	// FileZilla waits 20 s, curl less.
	BackendGreeting time.Duration
	// BackendReply bounds the wait for a backend's reply to a command.
	BackendReply time.Duration
}

// Limits bound what clients may take.
type Limits struct {
	// MaxLine is the longest command line accepted, in bytes.
	MaxLine int
	// MaxSessions bounds the sessions of the whole server, and
	// MaxSessionsPerIP those from one client (policy.ClientKey: an IPv4
	// address, or an IPv6 /IPv6Prefix); 0: no bound.
	MaxSessions      int
	MaxSessionsPerIP int
	// IPv6Prefix is how many leading bits of an IPv6 address make one
	// client, for MaxSessionsPerIP and for bans (policy.BanRules has the
	// same value): 64 by default, since a host holds a whole /64; 128
	// counts each address.
	IPv6Prefix int
	// MaxLingeringDataLegs bounds, for the whole server, the client data
	// connections kept open after a successful transfer until the client
	// closes its end (at most 10 s each), so that the proxy's close never
	// destroys data the client has yet to read. Past the bound a leg is
	// closed at once. It stops clients that never close their data
	// connections from exhausting the proxy's file descriptors. 0: no leg
	// lingers.
	MaxLingeringDataLegs int
	// MaxFileSize bounds the size of an uploaded file in bytes (the
	// REST offset of a resumed STOR included; for APPE, the bytes
	// appended): the upload is cut the moment it would cross it, the
	// client gets 552, and the partial file the backend received is
	// removed with DELE when the upload created it (STOR or STOU from
	// offset 0). It stops one client from filling the backend's disk. 0
	// (the default): no bound.
	MaxFileSize int64
}

// Notify is a notify block: an HTTP endpoint that is posted the audit
// events it names (README, "Notify on upload"), each after the client has
// its final reply, signed with HMAC-SHA256, from a bounded queue, with
// retries. A notification never blocks or slows a session: one that finds
// the queue full is dropped and counted. Changes apply, on reload, to the
// events that follow.
type Notify struct {
	Name string
	// URL is where events are posted: https, or http to a loopback
	// address unless AllowPlainHTTP (a body names users, client
	// addresses and files). It holds no credentials: the secret is
	// SecretFile's.
	URL string
	// Events are the kinds posted, of audit.Kinds: "upload_complete",
	// "download_complete", "upload_rejected", "login_failed", "ban".
	// No default: a block names at least one.
	Events []string
	// Secret signs each request (X-Ftpsgate-Signature); it is read from
	// SecretFile, never written in the configuration, and re-read on
	// reload. At least 16 bytes, surrounding white space trimmed.
	Secret     []byte
	SecretFile string
	// AllowPlainHTTP allows an http URL to a host that is not loopback.
	// False, the default: the body would cross the network readable.
	AllowPlainHTTP bool
	// Timeout bounds one attempt: connect, TLS, request and the
	// receiver's answer. Zero is never the case once compiled: 10s.
	Timeout time.Duration
	// Queue is how many events wait for the workers at most; an event
	// that finds it full is dropped and counted
	// (ftpsgate_notify_dropped_total). Default 1024.
	Queue int
	// Workers post concurrently, each one event at a time (with its
	// retries). Default 2.
	Workers int
	// Retries is how many times a failed attempt is tried again (a
	// network error, a timeout, 5xx or 429; any other status is final).
	// Zero: one attempt only. Default 8.
	Retries int
	// Backoff is the wait before the first retry; it doubles each time
	// up to MaxBackoff, and each wait is drawn between half of it and
	// all of it (jitter, so that retries from many proxies spread).
	// Defaults 1s and 1m.
	Backoff, MaxBackoff time.Duration
	// MaxAge: an event not delivered this long after it happened is
	// given up (counted failed), whatever Retries says. Default 15m.
	MaxAge time.Duration
	// DrainTimeout bounds how long shutdown (and a reload, for the
	// events queued before it) waits to deliver what is queued; the rest
	// is counted dropped. Default 5s.
	DrainTimeout time.Duration
}

// State says where the server keeps what its instances may share: bans,
// the failed logins that lead to them, and the session counts behind
// max_sessions_per_user and max_sessions_per_ip. Rate limits are always
// per instance.
type State struct {
	// Redis, when set, shares that state between the instances that name
	// the same server and Prefix; nil keeps it in this process.
	Redis *RedisState
}

// RedisState is the Redis server the instances share their state through.
type RedisState struct {
	// Address is the server's host:port.
	Address string
	// TLS turns on TLS toward the server; CAFile, when set, holds the CAs
	// that verify its certificate (the system's pool otherwise). The
	// certificate is always verified: a server that could be impersonated
	// could lift every ban.
	TLS    bool
	CAFile string
	// Password, read from password_file, authenticates to the server
	// (AUTH); "" sends none.
	Password string
	// Prefix starts every key and channel name, so that several
	// deployments can share one server; "ftpsgate:" by default.
	Prefix string
	// DB is the database number (SELECT); 0 by default.
	DB int
}
