// Package config loads ftpsgate's HCL configuration into an immutable
// runtime snapshot, or reports every problem it finds with its file and line.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsgate/ftpsgate/policy"
)

// Config is one validated configuration. It is never modified after Load
// returns it: a reload builds a new one, and live sessions keep theirs.
type Config struct {
	// Listeners in the order of the file; names are unique.
	Listeners []*Listener
	// Backends by name.
	Backends map[string]*Backend
	Policy   policy.Rules
	// Routes choose a session's backend by user, HOST and SNI, first
	// match wins; no match: the listener's backend.
	Routes   []policy.Route
	Audit    Audit
	Timeouts Timeouts
	Limits   Limits
	Bans     policy.BanRules
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
	// server watches them and reloads the pair when they change.
	CertFile, KeyFile string
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

// DefaultBackendLimits are a backend's limits when its block names none.
func DefaultBackendLimits() BackendLimits {
	return BackendLimits{QueueTimeout: 30 * time.Second, MaxDials: 16, Retries: 2}
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
}

// DefaultTimeouts are the timeouts when the configuration names none.
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

// DefaultLimits are the limits when the configuration names none.
func DefaultLimits() Limits {
	return Limits{MaxLine: 4096, MaxSessions: 1000, MaxSessionsPerIP: 50, IPv6Prefix: policy.DefaultIPv6Prefix,
		MaxLingeringDataLegs: 256}
}

// DefaultBans are the ban rules when the configuration names none: 10
// failed logins from one address within 10 minutes ban it for 15.
func DefaultBans() policy.BanRules {
	return policy.BanRules{Failures: 10, Window: 10 * time.Minute, Duration: 15 * time.Minute, IPv6Prefix: policy.DefaultIPv6Prefix}
}

// ---- the file's shape, as gohcl decodes it ----

type fileSchema struct {
	Listeners []listenerBlock `hcl:"listener,block"`
	Backends  []backendBlock  `hcl:"backend,block"`
	Policy    *policyBlock    `hcl:"policy,block"`
	Routes    []routeBlock    `hcl:"route,block"`
	Audit     *auditBlock     `hcl:"audit,block"`
	Timeouts  *timeoutsBlock  `hcl:"timeouts,block"`
	Limits    *limitsBlock    `hcl:"limits,block"`
	Bans      *bansBlock      `hcl:"bans,block"`
	Admin     *adminBlock     `hcl:"admin,block"`
}

type listenerBlock struct {
	Name          string  `hcl:"name,label"`
	Address       string  `hcl:"address"`
	TLS           *string `hcl:"tls"`
	CertFile      string  `hcl:"cert_file"`
	KeyFile       string  `hcl:"key_file"`
	PassivePorts  string  `hcl:"passive_ports"`
	PublicAddress *string `hcl:"public_address"`
	Backend       string  `hcl:"backend"`
	Greeting      *string `hcl:"greeting"`
	TLSMinVersion *string `hcl:"tls_min_version"`
	// TLSCipherSuites replaces DefaultCipherSuites, by Go's names.
	TLSCipherSuites *[]string `hcl:"tls_cipher_suites"`
	// RequireSessionReuse defaults to true.
	RequireSessionReuse *bool               `hcl:"require_session_reuse"`
	UploadCloseNotify   *string             `hcl:"upload_close_notify"` // "require" (the default) or "warn"
	AllowCIDRs          *[]string           `hcl:"allow_cidrs"`
	DenyCIDRs           *[]string           `hcl:"deny_cidrs"`
	ProxyProtocol       *proxyProtocolBlock `hcl:"proxy_protocol,block"`
	ActiveAllowLocal    *bool               `hcl:"active_allow_local"`
}

type proxyProtocolBlock struct {
	TrustedCIDRs  []string `hcl:"trusted_cidrs"`
	HeaderTimeout *string  `hcl:"header_timeout"`
	AllowDirect   *bool    `hcl:"allow_direct"`
}

type backendBlock struct {
	Name               string            `hcl:"name,label"`
	Address            *string           `hcl:"address"`
	Servers            []string          `hcl:"servers,optional"`
	Balance            *string           `hcl:"balance"`
	HealthCheck        *healthCheckBlock `hcl:"health_check,block"`
	TLS                *string           `hcl:"tls"`
	CAFile             *string           `hcl:"ca_file"`
	ServerName         *string           `hcl:"server_name"`
	InsecureSkipVerify *bool             `hcl:"insecure_skip_verify"`
	TLSMinVersion      *string           `hcl:"tls_min_version"`
	TLSMaxVersion      *string           `hcl:"tls_max_version"`
	DataMode           *string           `hcl:"data_mode"`
	SendHost           *bool             `hcl:"send_host"`
	ProxyProtocol      *string           `hcl:"proxy_protocol"`
	ProxyProtocolTLVs  *bool             `hcl:"proxy_protocol_tlvs"`
	MaxSessions        *int              `hcl:"max_sessions"`
	QueueTimeout       *string           `hcl:"queue_timeout"`
	MaxDials           *int              `hcl:"max_dials"`
	Retries            *int              `hcl:"retries"`
}

type healthCheckBlock struct {
	Interval *string `hcl:"interval"`
	Timeout  *string `hcl:"timeout"`
	Rise     *int    `hcl:"rise"`
	Fall     *int    `hcl:"fall"`
}

type routeBlock struct {
	Name    string    `hcl:"name,label"`
	Users   *[]string `hcl:"users"`
	Hosts   *[]string `hcl:"hosts"`
	SNI     *[]string `hcl:"sni"`
	Backend string    `hcl:"backend"`
}

type policyBlock struct {
	RequireTLS   *bool     `hcl:"require_tls"`
	RequireProtP *bool     `hcl:"require_prot_p"`
	AllowUsers   *[]string `hcl:"allow_users"`
	DenyUsers    *[]string `hcl:"deny_users"`
	ReadOnly     *[]string `hcl:"read_only_users"`
	AllowCmds    *[]string `hcl:"allow_commands"`
	DenyCmds     *[]string `hcl:"deny_commands"`
	ReadOnlyCmds *[]string `hcl:"read_only_commands"`
	Unknown      *string   `hcl:"unknown_commands"`
	UserNames    *string   `hcl:"user_names"`
	MaxPerUser   *int      `hcl:"max_sessions_per_user"`
}

type auditBlock struct {
	File    *string `hcl:"file"`
	Xferlog *string `hcl:"xferlog"`
	OnError *string `hcl:"on_error"`
}

type timeoutsBlock struct {
	TLSHandshake    *string `hcl:"tls_handshake"`
	Login           *string `hcl:"login"`
	Idle            *string `hcl:"idle"`
	PassiveAccept   *string `hcl:"passive_accept"`
	DataStall       *string `hcl:"data_stall"`
	BackendDial     *string `hcl:"backend_dial"`
	BackendGreeting *string `hcl:"backend_greeting"`
	BackendReply    *string `hcl:"backend_reply"`
}

type adminBlock struct {
	Address         *string         `hcl:"address"`
	Pprof           *bool           `hcl:"pprof"`
	BearerTokenFile *string         `hcl:"bearer_token_file"`
	BasicAuth       *basicAuthBlock `hcl:"basic_auth,block"`
}

type basicAuthBlock struct {
	User         string `hcl:"user"`
	PasswordHash string `hcl:"password_hash"`
}

type bansBlock struct {
	Failures *int      `hcl:"failures"`
	Window   *string   `hcl:"window"`
	Duration *string   `hcl:"duration"`
	Safelist *[]string `hcl:"safelist"`
}

type limitsBlock struct {
	MaxLine          *int `hcl:"max_line"`
	MaxSessions      *int `hcl:"max_sessions"`
	MaxSessionsPerIP *int `hcl:"max_sessions_per_ip"`
	IPv6Prefix       *int `hcl:"ipv6_prefix"`
	MaxLingeringData *int `hcl:"max_lingering_data_legs"`
}

// Load reads and compiles the configuration file at path. On any problem it
// returns a nil Config and diagnostics naming each problem's file and line.
func Load(path string) (*Config, hcl.Diagnostics) {
	src, err := readSmallFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   err.Error(),
		}}
	}
	return Parse(src, path)
}

// Parse compiles configuration source; filename is used in diagnostics and
// to resolve nothing else (certificate paths are taken as given).
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var fs fileSchema
	diags = append(diags, gohcl.DecodeBody(file.Body, nil, &fs)...)
	if diags.HasErrors() {
		return nil, diags
	}
	c := &compiler{src: file.Body.(*hclsyntax.Body)}
	cfg := c.compile(&fs)
	diags = append(diags, c.diags...)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// compiler turns the decoded file into a Config, collecting every problem.
type compiler struct {
	src   *hclsyntax.Body
	diags hcl.Diagnostics
	// exposed are the secret files already warned about: listeners
	// often share one key.
	exposed map[string]bool
}

// block returns the body of the i-th block of type typ, for ranges.
func (c *compiler) block(typ string, i int) *hclsyntax.Block {
	n := 0
	for _, b := range c.src.Blocks {
		if b.Type != typ {
			continue
		}
		if n == i {
			return b
		}
		n++
	}
	return nil
}

// rangeOf is the range of attribute attr in block b, or of the block's
// header when the attribute is absent.
func rangeOf(b *hclsyntax.Block, attr string) *hcl.Range {
	if b == nil {
		return nil
	}
	if a, ok := b.Body.Attributes[attr]; ok {
		r := a.Expr.Range()
		return &r
	}
	r := b.DefRange()
	return &r
}

func (c *compiler) errorf(subject *hcl.Range, summary, format string, args ...any) {
	c.diags = append(c.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject,
	})
}

// warnf records a warning: the configuration is valid, but weaker than it
// should be. validate prints it; run logs it.
func (c *compiler) warnf(subject *hcl.Range, summary, format string, args ...any) {
	c.diags = append(c.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject,
	})
}

// elemRange is the range of the i-th element of list attribute attr in
// block b, or of the whole attribute when it is not a literal list.
func elemRange(b *hclsyntax.Block, attr string, i int) *hcl.Range {
	if a, ok := b.Body.Attributes[attr]; ok {
		if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
			r := t.Exprs[i].Range()
			return &r
		}
	}
	return rangeOf(b, attr)
}

func (c *compiler) compile(fs *fileSchema) *Config {
	cfg := &Config{
		Backends: make(map[string]*Backend),
		Policy:   policy.Default(),
		Timeouts: DefaultTimeouts(),
		Limits:   DefaultLimits(),
		Bans:     DefaultBans(),
	}
	for i, bb := range fs.Backends {
		blk := c.block("backend", i)
		if _, dup := cfg.Backends[bb.Name]; dup {
			c.errorf(rangeOf(blk, ""), "Duplicate backend", "A backend named %q is already defined.", bb.Name)
			continue
		}
		b := &Backend{Name: bb.Name, TLS: BackendPlain}
		c.servers(bb, blk, b)
		if bb.TLS != nil {
			switch *bb.TLS {
			case "none":
			case "explicit":
				b.TLS = BackendExplicit
			case "implicit":
				b.TLS = BackendImplicit
			default:
				c.errorf(rangeOf(blk, "tls"), "Invalid backend TLS mode",
					"tls must be \"none\", \"explicit\" or \"implicit\", not %q.", *bb.TLS)
			}
		}
		c.backendTLS(bb, blk, b)
		b.SendHost = bb.SendHost != nil && *bb.SendHost
		if bb.ProxyProtocol != nil {
			switch *bb.ProxyProtocol {
			case "v1":
				b.ProxyProtocol = ProxyProtocolV1
			case "v2":
				b.ProxyProtocol = ProxyProtocolV2
			case "none":
			default:
				c.errorf(rangeOf(blk, "proxy_protocol"), "Invalid proxy_protocol",
					"proxy_protocol must be \"v1\", \"v2\" or \"none\", not %q.", *bb.ProxyProtocol)
			}
		}
		if bb.ProxyProtocolTLVs != nil && *bb.ProxyProtocolTLVs {
			b.ProxyProtocolTLVs = true
			if b.ProxyProtocol != ProxyProtocolV2 {
				c.errorf(rangeOf(blk, "proxy_protocol_tlvs"), "Invalid proxy_protocol_tlvs",
					"TLVs exist only in PROXY protocol v2: set proxy_protocol = \"v2\".")
			}
		}
		if bb.DataMode != nil {
			switch *bb.DataMode {
			case "passive":
			case "active":
				b.ActiveData = true
			default:
				c.errorf(rangeOf(blk, "data_mode"), "Invalid data mode",
					"data_mode must be \"passive\" or \"active\", not %q.", *bb.DataMode)
			}
		}
		c.backendLimits(bb, blk, b)
		cfg.Backends[bb.Name] = b
	}

	names := map[string]bool{}
	for i, lb := range fs.Listeners {
		blk := c.block("listener", i)
		if names[lb.Name] {
			c.errorf(rangeOf(blk, ""), "Duplicate listener", "A listener named %q is already defined.", lb.Name)
			continue
		}
		names[lb.Name] = true
		if l := c.listener(lb, blk, cfg); l != nil {
			cfg.Listeners = append(cfg.Listeners, l)
		}
	}
	if len(fs.Listeners) == 0 {
		c.errorf(nil, "No listener", "The configuration needs at least one listener block.")
	}
	c.checkOverlaps(cfg)

	if pb := fs.Policy; pb != nil {
		blk := c.block("policy", 0)
		if pb.RequireTLS != nil {
			cfg.Policy.RequireTLS = *pb.RequireTLS
		}
		if pb.RequireProtP != nil {
			cfg.Policy.RequireProtP = *pb.RequireProtP
		}
		r := &cfg.Policy
		for _, l := range []struct {
			attr string
			v    *[]string
			dst  *[]string
		}{{"allow_users", pb.AllowUsers, &r.AllowUsers}, {"deny_users", pb.DenyUsers, &r.DenyUsers},
			{"read_only_users", pb.ReadOnly, &r.ReadOnlyUsers}} {
			if l.v == nil {
				continue
			}
			*l.dst = append([]string(nil), *l.v...)
			if err := policy.ValidPatterns(*l.dst); err != nil {
				c.errorf(rangeOf(blk, l.attr), "Invalid policy", "%s: %s", l.attr, err)
			}
		}
		for _, l := range []struct {
			attr string
			v    *[]string
			dst  *[]string
		}{{"allow_commands", pb.AllowCmds, &r.AllowCommands}, {"deny_commands", pb.DenyCmds, &r.DenyCommands},
			{"read_only_commands", pb.ReadOnlyCmds, &r.ReadOnlyCommands}} {
			if l.v == nil {
				continue
			}
			for _, v := range *l.v {
				// "site  chmod" is "SITE CHMOD": verbs are case-insensitive.
				v = strings.Join(strings.Fields(strings.ToUpper(v)), " ")
				if err := policy.ValidCommandEntry(v); err != nil {
					c.errorf(rangeOf(blk, l.attr), "Invalid policy", "%s: %s", l.attr, err)
				}
				*l.dst = append(*l.dst, v)
			}
		}
		if pb.Unknown != nil {
			switch *pb.Unknown {
			case "reject":
			case "relay":
				r.RelayUnknown = true
				c.warnf(rangeOf(blk, "unknown_commands"), "Unknown commands relayed",
					"unknown_commands = \"relay\" sends verbs ftpsgate does not know to the backend, whose effect no rule can judge (they count as writes for read-only users). Prefer naming the few your clients need.")
			default:
				c.errorf(rangeOf(blk, "unknown_commands"), "Invalid policy",
					"unknown_commands must be \"reject\" (502, the default) or \"relay\", not %q.", *pb.Unknown)
			}
		}
		if pb.UserNames != nil {
			switch *pb.UserNames {
			case "case_insensitive":
			case "exact":
				r.UserNames = policy.Exact
			default:
				c.errorf(rangeOf(blk, "user_names"), "Invalid policy",
					"user_names must be \"case_insensitive\" (the default) or \"exact\", not %q.", *pb.UserNames)
			}
		}
		for _, v := range r.AllowCommands {
			if slices.Contains(r.DenyCommands, v) {
				c.errorf(rangeOf(blk, "allow_commands"), "Unreachable rule",
					"%s is in both allow_commands and deny_commands; deny_commands wins.", v)
			}
		}
		for _, u := range r.AllowUsers {
			if ok, _ := path.Match(u, u); ok && slices.ContainsFunc(r.DenyUsers, func(d string) bool { m, _ := path.Match(d, u); return m }) {
				c.errorf(rangeOf(blk, "allow_users"), "Unreachable rule",
					"allow_users names %q, which deny_users refuses; deny_users wins.", u)
			}
		}
		if pb.MaxPerUser != nil {
			r.MaxSessionsPerUser = *pb.MaxPerUser
			if *pb.MaxPerUser < 0 {
				c.errorf(rangeOf(blk, "max_sessions_per_user"), "Invalid policy",
					"max_sessions_per_user must be 0 (no bound) or more.")
			}
		}
	}
	c.routes(fs, cfg)

	if ab := fs.Audit; ab != nil {
		if ab.File != nil {
			cfg.Audit.File = *ab.File
		}
		for _, f := range []struct{ attr, path string }{{"file", cfg.Audit.File}, {"xferlog", cfg.Audit.Xferlog}} {
			if f.path == "" || f.path == "-" {
				continue
			}
			// run would fail to open the file: say so now. (The systemd
			// unit creates /var/log/ftpsgate with LogsDirectory=.)
			if fi, err := os.Stat(filepath.Dir(f.path)); err != nil || !fi.IsDir() {
				c.errorf(rangeOf(c.block("audit", 0), f.attr), "Missing audit directory",
					"The directory of %s (%s) does not exist: create it, writable by the user ftpsgate runs as.", f.path, filepath.Dir(f.path))
			}
		}
		if ab.Xferlog != nil {
			cfg.Audit.Xferlog = *ab.Xferlog
			if *ab.Xferlog == "-" || *ab.Xferlog == "" {
				c.errorf(rangeOf(c.block("audit", 0), "xferlog"), "Invalid xferlog", "xferlog must be a file path.")
			}
		}
		if ab.OnError != nil {
			switch *ab.OnError {
			case "continue":
				cfg.Audit.OnError = AuditContinue
			case "refuse":
				cfg.Audit.OnError = AuditRefuse
			default:
				c.errorf(rangeOf(c.block("audit", 0), "on_error"), "Invalid on_error",
					"on_error must be \"continue\" or \"refuse\", not %q.", *ab.OnError)
			}
		}
	}
	if tb := fs.Timeouts; tb != nil {
		blk := c.block("timeouts", 0)
		t := &cfg.Timeouts
		c.duration(blk, "tls_handshake", tb.TLSHandshake, &t.TLSHandshake)
		c.duration(blk, "login", tb.Login, &t.Login)
		c.duration(blk, "idle", tb.Idle, &t.Idle)
		c.duration(blk, "passive_accept", tb.PassiveAccept, &t.PassiveAccept)
		c.duration(blk, "data_stall", tb.DataStall, &t.DataStall)
		c.duration(blk, "backend_dial", tb.BackendDial, &t.BackendDial)
		c.duration(blk, "backend_greeting", tb.BackendGreeting, &t.BackendGreeting)
		c.duration(blk, "backend_reply", tb.BackendReply, &t.BackendReply)
	}
	for i, bb := range fs.Backends {
		if b := cfg.Backends[bb.Name]; b != nil && bb.QueueTimeout != nil && b.Limits.QueueTimeout >= cfg.Timeouts.Login {
			c.warnf(rangeOf(c.block("backend", i), "queue_timeout"), "Queue timeout past the login timeout",
				"Backend %q: queue_timeout (%s) is not less than timeouts.login (%s), which ends every wait first: "+
					"clients would be told 421 Login timeout, not that the server is busy.",
				bb.Name, b.Limits.QueueTimeout, cfg.Timeouts.Login)
		}
	}
	if lb := fs.Limits; lb != nil {
		blk := c.block("limits", 0)
		if lb.MaxLine != nil {
			if *lb.MaxLine < 512 || *lb.MaxLine > 1<<20 {
				c.errorf(rangeOf(blk, "max_line"), "Invalid limit",
					"max_line must be between 512 and 1048576 bytes (RFC 959 lines need at least 512).")
			} else {
				cfg.Limits.MaxLine = *lb.MaxLine
			}
		}
		for _, l := range []struct {
			attr string
			v    *int
			dst  *int
		}{{"max_sessions", lb.MaxSessions, &cfg.Limits.MaxSessions}, {"max_sessions_per_ip", lb.MaxSessionsPerIP, &cfg.Limits.MaxSessionsPerIP}} {
			if l.v == nil {
				continue
			}
			if *l.v < 0 {
				c.errorf(rangeOf(blk, l.attr), "Invalid limit", "%s must be 0 (no bound) or more.", l.attr)
			}
			*l.dst = *l.v
		}
		if lb.IPv6Prefix != nil {
			if *lb.IPv6Prefix < 1 || *lb.IPv6Prefix > 128 {
				c.errorf(rangeOf(blk, "ipv6_prefix"), "Invalid limit", "ipv6_prefix must be between 1 and 128 (bits).")
			} else {
				cfg.Limits.IPv6Prefix = *lb.IPv6Prefix
			}
		}
		if v := lb.MaxLingeringData; v != nil {
			if *v < 0 {
				c.errorf(rangeOf(blk, "max_lingering_data_legs"), "Invalid limit",
					"max_lingering_data_legs must be 0 (no data connection lingers) or more.")
			}
			cfg.Limits.MaxLingeringDataLegs = *v
		}
	}
	if ab := fs.Admin; ab != nil {
		cfg.Admin = "127.0.0.1:9100"
		if ab.Address != nil {
			cfg.Admin = *ab.Address
			if err := checkHostPort(*ab.Address, true); err != nil {
				c.errorf(rangeOf(c.block("admin", 0), "address"), "Invalid admin address", "%s", err)
			}
		}
		cfg.AdminPprof = ab.Pprof != nil && *ab.Pprof
		c.adminAuth(ab, cfg)
	}
	if bb := fs.Bans; bb != nil {
		blk := c.block("bans", 0)
		if bb.Failures != nil {
			if *bb.Failures < 0 {
				c.errorf(rangeOf(blk, "failures"), "Invalid bans", "failures must be 0 (bans off) or more.")
			}
			cfg.Bans.Failures = *bb.Failures
		}
		c.duration(blk, "window", bb.Window, &cfg.Bans.Window)
		c.duration(blk, "duration", bb.Duration, &cfg.Bans.Duration)
		cfg.Bans.Safelist = c.cidrs(blk, "safelist", bb.Safelist)
	}
	cfg.Bans.IPv6Prefix = cfg.Limits.IPv6Prefix
	c.checkSockets(fs, cfg)
	return cfg
}

// servers compiles a backend's address, or its pool: servers, balance and
// health_check.
func (c *compiler) servers(bb backendBlock, blk *hclsyntax.Block, b *Backend) {
	switch {
	case bb.Address != nil && bb.Servers != nil:
		c.errorf(rangeOf(blk, "servers"), "Invalid backend", "Set address (one server) or servers (a pool), not both.")
		return
	case bb.Address != nil:
		b.Servers = []string{*bb.Address}
	case len(bb.Servers) == 0:
		c.errorf(rangeOf(blk, ""), "Invalid backend", "A backend needs an address, or servers for a pool.")
		return
	default:
		b.Servers = bb.Servers
	}
	attr := "servers"
	if bb.Address != nil {
		attr = "address"
	}
	seen := map[string]bool{}
	for _, a := range b.Servers {
		if err := checkHostPort(a, false); err != nil {
			c.errorf(rangeOf(blk, attr), "Invalid backend address", "%s", err)
		}
		if seen[a] {
			c.errorf(rangeOf(blk, attr), "Invalid backend", "Server %q is listed twice.", a)
		}
		seen[a] = true
	}
	b.Address = b.Servers[0]
	b.Balance = RoundRobin
	if bb.Balance != nil {
		switch v := Balance(*bb.Balance); v {
		case RoundRobin, LeastConn, StickyUser:
			b.Balance = v
		default:
			c.errorf(rangeOf(blk, "balance"), "Invalid balance",
				"balance must be \"round_robin\", \"least_conn\" or \"sticky_user\", not %q.", *bb.Balance)
		}
	}
	if hb := bb.HealthCheck; hb != nil {
		var hblk *hclsyntax.Block
		for _, sub := range blk.Body.Blocks {
			if sub.Type == "health_check" {
				hblk = sub
			}
		}
		hc := &HealthCheck{Interval: 10 * time.Second, Timeout: 5 * time.Second, Rise: 2, Fall: 3}
		c.duration(hblk, "interval", hb.Interval, &hc.Interval)
		c.duration(hblk, "timeout", hb.Timeout, &hc.Timeout)
		for _, n := range []struct {
			name string
			v    *int
			dst  *int
		}{{"rise", hb.Rise, &hc.Rise}, {"fall", hb.Fall, &hc.Fall}} {
			if n.v == nil {
				continue
			}
			if *n.v < 1 || *n.v > 100 {
				c.errorf(rangeOf(hblk, n.name), "Invalid health check", "%s must be from 1 to 100, not %d.", n.name, *n.v)
			}
			*n.dst = *n.v
		}
		b.HealthCheck = hc
	}
}

// backendLimits compiles max_sessions, queue_timeout, max_dials and
// retries.
func (c *compiler) backendLimits(bb backendBlock, blk *hclsyntax.Block, b *Backend) {
	b.Limits = DefaultBackendLimits()
	l := &b.Limits
	for _, n := range []struct {
		name     string
		v        *int
		min, max int
		dst      *int
		what     string
	}{
		{"max_sessions", bb.MaxSessions, 0, 1 << 20, &l.MaxSessions, "0 (no bound) to 1048576"},
		{"max_dials", bb.MaxDials, 1, 1 << 16, &l.MaxDials, "1 to 65536"},
		{"retries", bb.Retries, 0, 10, &l.Retries, "0 (none) to 10"},
	} {
		if n.v == nil {
			continue
		}
		if *n.v < n.min || *n.v > n.max {
			c.errorf(rangeOf(blk, n.name), "Invalid backend limit", "%s must be from %s, not %d.", n.name, n.what, *n.v)
		}
		*n.dst = *n.v
	}
	c.duration(blk, "queue_timeout", bb.QueueTimeout, &l.QueueTimeout)
}

// backendTLS compiles a backend's TLS settings; they are refused on a
// plain backend, where they would silently do nothing.
func (c *compiler) backendTLS(bb backendBlock, blk *hclsyntax.Block, b *Backend) {
	if b.TLS == BackendPlain {
		for name, set := range map[string]bool{
			"ca_file": bb.CAFile != nil, "server_name": bb.ServerName != nil,
			"insecure_skip_verify": bb.InsecureSkipVerify != nil,
			"tls_min_version":      bb.TLSMinVersion != nil, "tls_max_version": bb.TLSMaxVersion != nil,
		} {
			if set {
				c.errorf(rangeOf(blk, name), "TLS setting on a plain backend",
					"%s applies only to a backend with tls = \"explicit\" or \"implicit\".", name)
			}
		}
		return
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
	host, _, _ := net.SplitHostPort(b.Address)
	conf.ServerName = host
	b.ServerNameFromAddress = bb.ServerName == nil
	if bb.ServerName != nil {
		if *bb.ServerName == "" {
			c.errorf(rangeOf(blk, "server_name"), "Invalid server name", "server_name must not be empty.")
		}
		conf.ServerName = *bb.ServerName
	}
	if bb.CAFile != nil {
		pem, err := readSmallFile(*bb.CAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			c.errorf(rangeOf(blk, "ca_file"), "Cannot read ca_file", "%s", err)
		case !pool.AppendCertsFromPEM(pem):
			c.errorf(rangeOf(blk, "ca_file"), "Invalid ca_file", "%q holds no PEM certificate.", *bb.CAFile)
		default:
			conf.RootCAs = pool
		}
	}
	if bb.InsecureSkipVerify != nil && *bb.InsecureSkipVerify {
		conf.InsecureSkipVerify = true
		b.InsecureSkipVerify = true
	}
	version := func(name string, v *string, dst *uint16) {
		if v == nil {
			return
		}
		switch *v {
		case "1.2":
			*dst = tls.VersionTLS12
		case "1.3":
			*dst = tls.VersionTLS13
		default:
			c.errorf(rangeOf(blk, name), "Invalid TLS version",
				"%s must be \"1.2\" or \"1.3\", not %q: older versions are broken.", name, *v)
		}
	}
	version("tls_min_version", bb.TLSMinVersion, &conf.MinVersion)
	version("tls_max_version", bb.TLSMaxVersion, &conf.MaxVersion)
	if conf.MinVersion > conf.MaxVersion {
		c.errorf(rangeOf(blk, "tls_max_version"), "Invalid TLS versions", "tls_max_version is below tls_min_version.")
	}
	b.TLSConfig = conf
}

// routes compiles the route blocks: the backend must exist, the patterns
// parse, and every route must be reachable (a route after one that matches
// everything, or with the same lists as an earlier one, never takes a
// session).
func (c *compiler) routes(fs *fileSchema, cfg *Config) {
	names := map[string]bool{}
	for i, rb := range fs.Routes {
		blk := c.block("route", i)
		if names[rb.Name] {
			c.errorf(rangeOf(blk, ""), "Duplicate route", "A route named %q is already defined.", rb.Name)
			continue
		}
		names[rb.Name] = true
		rt := policy.Route{Name: rb.Name, Backend: rb.Backend}
		for _, l := range []struct {
			attr  string
			v     *[]string
			dst   *[]string
			lower bool
		}{{"users", rb.Users, &rt.Users, false}, {"hosts", rb.Hosts, &rt.Hosts, true}, {"sni", rb.SNI, &rt.SNI, true}} {
			if l.v == nil {
				continue
			}
			if len(*l.v) == 0 {
				c.errorf(rangeOf(blk, l.attr), "Invalid route", "%s is empty: leave it out to match anything.", l.attr)
			}
			for _, p := range *l.v {
				if l.lower {
					p = strings.ToLower(p)
				}
				*l.dst = append(*l.dst, p)
			}
			if err := policy.ValidPatterns(*l.dst); err != nil {
				c.errorf(rangeOf(blk, l.attr), "Invalid route", "%s: %s", l.attr, err)
			}
		}
		if _, ok := cfg.Backends[rb.Backend]; !ok {
			c.errorf(rangeOf(blk, "backend"), "Unknown backend",
				"Route %q names backend %q, which no backend block defines.", rb.Name, rb.Backend)
		}
		for _, prev := range cfg.Routes {
			switch {
			case prev.CatchAll():
				c.errorf(rangeOf(blk, ""), "Unreachable route",
					"Route %q comes after route %q, which matches every session.", rb.Name, prev.Name)
			case slices.Equal(prev.Users, rt.Users) && slices.Equal(prev.Hosts, rt.Hosts) && slices.Equal(prev.SNI, rt.SNI):
				c.errorf(rangeOf(blk, ""), "Unreachable route",
					"Route %q matches the same sessions as route %q, which comes first.", rb.Name, prev.Name)
			default:
				continue
			}
			break
		}
		cfg.Routes = append(cfg.Routes, rt)
	}
}

func (c *compiler) listener(lb listenerBlock, blk *hclsyntax.Block, cfg *Config) *Listener {
	l := &Listener{
		Name:                lb.Name,
		Address:             lb.Address,
		TLS:                 Explicit,
		MinTLSVersion:       tls.VersionTLS12,
		Greeting:            "ftpsgate ready",
		RequireSessionReuse: true,
	}
	if lb.RequireSessionReuse != nil {
		l.RequireSessionReuse = *lb.RequireSessionReuse
	}
	l.ActiveAllowLocal = lb.ActiveAllowLocal != nil && *lb.ActiveAllowLocal
	if err := checkHostPort(lb.Address, true); err != nil {
		c.errorf(rangeOf(blk, "address"), "Invalid listener address", "%s", err)
	}
	if lb.UploadCloseNotify != nil {
		switch *lb.UploadCloseNotify {
		case "require":
		case "warn":
			l.UploadCloseNotify = WarnCloseNotify
		default:
			c.errorf(rangeOf(blk, "upload_close_notify"), "Invalid upload_close_notify",
				"upload_close_notify must be \"require\" or \"warn\", not %q.", *lb.UploadCloseNotify)
		}
	}
	if lb.TLS != nil {
		switch *lb.TLS {
		case "explicit":
		case "implicit":
			l.TLS = Implicit
		default:
			c.errorf(rangeOf(blk, "tls"), "Invalid TLS mode",
				"tls must be \"explicit\" or \"implicit\", not %q.", *lb.TLS)
		}
	}
	if lb.TLSMinVersion != nil {
		switch *lb.TLSMinVersion {
		case "1.2":
		case "1.3":
			l.MinTLSVersion = tls.VersionTLS13
		default:
			c.errorf(rangeOf(blk, "tls_min_version"), "Invalid TLS version",
				"tls_min_version must be \"1.2\" or \"1.3\", not %q: older versions are broken.", *lb.TLSMinVersion)
		}
	}
	l.CipherSuites = c.cipherSuites(lb, blk, l)
	l.CertFile, l.KeyFile = lb.CertFile, lb.KeyFile
	cert, err := LoadKeyPair(lb.CertFile, lb.KeyFile)
	if err != nil {
		c.errorf(rangeOf(blk, "cert_file"), "Cannot load certificate",
			"Loading cert_file %q and key_file %q: %s", lb.CertFile, lb.KeyFile, err)
	} else {
		l.Certificate = &cert
		c.secretFile(rangeOf(blk, "key_file"), "key_file", lb.KeyFile, "the private key")
	}
	pr, err := ParsePortRange(lb.PassivePorts)
	if err != nil {
		c.errorf(rangeOf(blk, "passive_ports"), "Invalid passive port range", "%s", err)
	}
	l.PassivePorts = pr
	if lb.PublicAddress != nil && *lb.PublicAddress != "" {
		a, err := netip.ParseAddr(*lb.PublicAddress)
		switch {
		case err != nil:
			c.errorf(rangeOf(blk, "public_address"), "Invalid public address",
				"public_address must be an IP address: %s", err)
		case !a.Unmap().Is4():
			c.errorf(rangeOf(blk, "public_address"), "Invalid public address",
				"public_address is advertised in PASV replies, which carry only IPv4; %s is not IPv4.", a)
		default:
			l.PublicAddress = a.Unmap()
		}
	}
	if lb.Greeting != nil {
		if strings.ContainsAny(*lb.Greeting, "\r\n\x00") {
			c.errorf(rangeOf(blk, "greeting"), "Invalid greeting", "greeting must be one line.")
		} else {
			l.Greeting = *lb.Greeting
		}
	}
	if pb := lb.ProxyProtocol; pb != nil {
		var pblk *hclsyntax.Block
		for _, b := range blk.Body.Blocks {
			if b.Type == "proxy_protocol" {
				pblk = b
			}
		}
		pp := &ProxyProtocol{HeaderTimeout: 5 * time.Second, Trusted: c.cidrs(pblk, "trusted_cidrs", &pb.TrustedCIDRs)}
		if len(pb.TrustedCIDRs) == 0 {
			c.errorf(rangeOf(pblk, "trusted_cidrs"), "Invalid proxy_protocol",
				"trusted_cidrs must name the load balancers whose PROXY headers are believed.")
		}
		c.duration(pblk, "header_timeout", pb.HeaderTimeout, &pp.HeaderTimeout)
		pp.AllowDirect = pb.AllowDirect != nil && *pb.AllowDirect
		l.ProxyProtocol = pp
	}
	l.AllowCIDRs = c.cidrs(blk, "allow_cidrs", lb.AllowCIDRs)
	l.DenyCIDRs = c.cidrs(blk, "deny_cidrs", lb.DenyCIDRs)
	for _, a := range l.AllowCIDRs {
		for _, d := range l.DenyCIDRs {
			if d.Bits() <= a.Bits() && d.Contains(a.Addr()) {
				c.errorf(rangeOf(blk, "allow_cidrs"), "Unreachable rule",
					"allow_cidrs entry %s lies inside deny_cidrs entry %s, which wins.", a, d)
			}
		}
	}
	b, ok := cfg.Backends[lb.Backend]
	if !ok {
		c.errorf(rangeOf(blk, "backend"), "Unknown backend",
			"Listener %q names backend %q, which no backend block defines.", lb.Name, lb.Backend)
	}
	l.Backend = b
	return l
}

// cipherSuites compiles a listener's tls_cipher_suites: Go's names
// (tls.CipherSuiteName) of TLS 1.2 suites that Go does not mark insecure.
// A suite outside DefaultCipherSuites is a warning naming the listener:
// it is there for some old client, and should go when that client does.
func (c *compiler) cipherSuites(lb listenerBlock, blk *hclsyntax.Block, l *Listener) []uint16 {
	if lb.TLSCipherSuites == nil {
		return DefaultCipherSuites()
	}
	if len(*lb.TLSCipherSuites) == 0 {
		c.errorf(rangeOf(blk, "tls_cipher_suites"), "Invalid tls_cipher_suites",
			"tls_cipher_suites is empty: leave it out for the default (ECDHE with AES-GCM or ChaCha20-Poly1305).")
		return DefaultCipherSuites()
	}
	if l.MinTLSVersion == tls.VersionTLS13 {
		c.errorf(rangeOf(blk, "tls_cipher_suites"), "Invalid tls_cipher_suites",
			"tls_cipher_suites chooses TLS 1.2 suites, and tls_min_version = \"1.3\" turns TLS 1.2 off.")
	}
	byName := map[string]*tls.CipherSuite{}
	for _, cs := range tls.CipherSuites() {
		byName[cs.Name] = cs
	}
	insecure := map[string]bool{}
	for _, cs := range tls.InsecureCipherSuites() {
		insecure[cs.Name] = true
	}
	var out []uint16
	var extra []string
	for i, name := range *lb.TLSCipherSuites {
		at := elemRange(blk, "tls_cipher_suites", i)
		cs := byName[name]
		switch {
		case insecure[name]:
			c.errorf(at, "Insecure cipher suite",
				"%s is one Go marks insecure (RC4, 3DES, CBC-SHA256, or RSA key exchange without forward secrecy); it cannot be enabled.", name)
			continue
		case cs == nil:
			c.errorf(at, "Unknown cipher suite",
				"%q is not a cipher suite name of Go's crypto/tls (such as \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\").", name)
			continue
		case !slices.Contains(cs.SupportedVersions, tls.VersionTLS12):
			c.errorf(at, "Invalid cipher suite",
				"%s is a TLS 1.3 suite: Go does not let TLS 1.3 suites be chosen (all three are always on).", name)
			continue
		case slices.Contains(out, cs.ID):
			c.errorf(at, "Invalid tls_cipher_suites", "%s is listed twice.", name)
			continue
		}
		out = append(out, cs.ID)
		if !slices.Contains(DefaultCipherSuites(), cs.ID) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		c.warnf(rangeOf(blk, "tls_cipher_suites"), "Weak cipher suites",
			"Listener %q accepts %s, outside Mozilla's intermediate profile: CBC with a SHA-1 MAC, open to "+
				"Lucky Thirteen-class padding attacks (CVE-2013-0169). Keep them only while an old client needs them.",
			l.Name, strings.Join(extra, ", "))
	}
	return out
}

// cidrs compiles a list of address ranges. An address with host bits set
// ("10.0.0.1/8") is refused, as it likely means something else; so is an
// entry already covered by another of the same list.
func (c *compiler) cidrs(blk *hclsyntax.Block, attr string, v *[]string) []netip.Prefix {
	if v == nil {
		return nil
	}
	var out []netip.Prefix
	for _, s := range *v {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen()) // a lone address
			} else {
				c.errorf(rangeOf(blk, attr), "Invalid address range", "%s: %q is not a CIDR range such as \"10.0.0.0/8\".", attr, s)
				continue
			}
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Masked() != p {
			c.errorf(rangeOf(blk, attr), "Invalid address range",
				"%s: %s has host bits set; did you mean %s?", attr, s, p.Masked())
			continue
		}
		for _, q := range out {
			if q.Overlaps(p) {
				c.errorf(rangeOf(blk, attr), "Overlapping address ranges", "%s: %s overlaps %s.", attr, p, q)
			}
		}
		out = append(out, p)
	}
	return out
}

// adminAuth compiles the admin block's credentials. pprof without them
// is refused: a heap profile holds memory contents (keys, passwords in
// flight). An admin listener on a non-loopback address without them is a
// warning: /status.json names users, client addresses and file paths.
func (c *compiler) adminAuth(ab *adminBlock, cfg *Config) {
	blk := c.block("admin", 0)
	a := &cfg.AdminAuth
	if ab.BearerTokenFile != nil {
		at := rangeOf(blk, "bearer_token_file")
		b, err := readSmallFile(*ab.BearerTokenFile)
		tok := strings.TrimSpace(string(b))
		switch {
		case err != nil:
			c.errorf(at, "Cannot read bearer_token_file", "%s", err)
		case len(tok) < 16:
			c.errorf(at, "Invalid bearer_token_file",
				"%q holds %d characters: a token needs at least 16 (e.g. from `openssl rand -hex 32`).", *ab.BearerTokenFile, len(tok))
		case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
			c.errorf(at, "Invalid bearer_token_file",
				"%q holds spaces or characters outside printable ASCII; a bearer token cannot carry them (RFC 6750).", *ab.BearerTokenFile)
		default:
			a.BearerToken = tok
			c.secretFile(at, "bearer_token_file", *ab.BearerTokenFile, "the admin token")
		}
	}
	if bb := ab.BasicAuth; bb != nil {
		var bblk *hclsyntax.Block
		for _, b := range blk.Body.Blocks {
			if b.Type == "basic_auth" {
				bblk = b
			}
		}
		switch {
		case bb.User == "" || strings.ContainsAny(bb.User, ":\r\n"):
			c.errorf(rangeOf(bblk, "user"), "Invalid basic_auth", "user must not be empty, and cannot hold a colon (RFC 7617).")
		default:
			a.BasicUser = bb.User
		}
		if _, err := bcrypt.Cost([]byte(bb.PasswordHash)); err != nil {
			c.errorf(rangeOf(bblk, "password_hash"), "Invalid basic_auth",
				"password_hash must be a bcrypt hash (\"$2y$10$…\", from `htpasswd -nbBC 10 USER PASSWORD`): %s", err)
			a.BasicUser = ""
		} else {
			a.BasicHash = []byte(bb.PasswordHash)
		}
	}
	if cfg.AdminPprof && !a.Enabled() {
		c.errorf(rangeOf(blk, "pprof"), "pprof needs authentication",
			"pprof = true needs bearer_token_file or basic_auth in the admin block: a heap profile holds memory contents.")
	}
	if !a.Enabled() && !LoopbackAddress(cfg.Admin) {
		c.warnf(rangeOf(blk, "address"), "Admin listener without authentication",
			"The admin listener on %s is reachable beyond this machine and requires no credential: /status.json names users, "+
				"client addresses and file paths. Set bearer_token_file or basic_auth, or bind it to 127.0.0.1.", cfg.Admin)
	}
}

// LoopbackAddress reports whether the host of host:port addr is a
// loopback address or "localhost".
func LoopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// secretFile warns when the file at path, which holds what, can be read
// by users other than its owner: any mode bit for others, or group bits
// on a file not owned by root. A root-owned file readable by its group
// (0640, 0440) is how a system shares a key with one service: Debian's
// ssl-cert group, a Kubernetes Secret volume with the pod's fsGroup. The
// rule is PostgreSQL's for ssl_key_file.
func (c *compiler) secretFile(at *hcl.Range, attr, path, what string) {
	st, err := os.Stat(path) // the file itself: Kubernetes mounts a symbolic link to it
	if err != nil {
		return
	}
	perm := st.Mode().Perm()
	owner := uint32(0)
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = sys.Uid
	}
	var who string
	switch {
	case perm&0o007 != 0:
		who = "every user of the machine"
	case perm&0o070 != 0 && owner != 0:
		who = fmt.Sprintf("its group, and it is owned by uid %d, not root", owner)
	default:
		return
	}
	if c.exposed[path] {
		return
	}
	if c.exposed == nil {
		c.exposed = map[string]bool{}
	}
	c.exposed[path] = true
	c.warnf(at, "Readable "+attr,
		"%s %q (mode %04o) can be read by %s: that exposes %s. Run chmod 600 on it (or own it by root with mode 0640 and "+
			"put the service in its group); in a Kubernetes Secret volume set defaultMode: 0440 and the pod's fsGroup.",
		attr, path, perm, who, what)
}

// checkOverlaps refuses two listeners whose passive ranges overlap: each
// listener owns its range, and two owners would steal each other's ports.
func (c *compiler) checkOverlaps(cfg *Config) {
	for i, a := range cfg.Listeners {
		for _, b := range cfg.Listeners[:i] {
			if a.PassivePorts.Len() > 0 && b.PassivePorts.Len() > 0 &&
				a.PassivePorts.First <= b.PassivePorts.Last && b.PassivePorts.First <= a.PassivePorts.Last {
				c.errorf(rangeOf(c.block("listener", i), "passive_ports"), "Overlapping passive ranges",
					"Listener %q's passive_ports %s overlap listener %q's %s.", a.Name, a.PassivePorts, b.Name, b.PassivePorts)
			}
		}
	}
}

// socket is a host:port as the checks below compare them: a host of ""
// (or 0.0.0.0, ::) takes every address.
type socket struct {
	host string
	port uint16
}

func parseSocket(s string) (socket, bool) {
	host, port, err := net.SplitHostPort(s)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil {
		return socket{}, false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() {
			host = ""
		} else {
			host = a.Unmap().String()
		}
	}
	return socket{host, uint16(p)}, true
}

// meets reports whether a socket bound at a and one at b would take the
// same connections: same port, and the same host or a wildcard.
func (a socket) meets(b socket) bool {
	return a.port == b.port && a.port != 0 && (a.host == b.host || a.host == "" || b.host == "")
}

// checkSockets refuses what validate used to pass and run would then hit:
// two listeners on one address, a control or admin port inside a passive
// range, and a backend server that is the proxy's own listener (every
// session would loop through the proxy until it runs out of sessions).
func (c *compiler) checkSockets(fs *fileSchema, cfg *Config) {
	type bound struct {
		what string
		s    socket
		r    *hcl.Range
	}
	var binds []bound
	for i, l := range cfg.Listeners {
		if s, ok := parseSocket(l.Address); ok {
			binds = append(binds, bound{fmt.Sprintf("listener %q", l.Name), s, rangeOf(c.block("listener", i), "address")})
		}
	}
	if s, ok := parseSocket(cfg.Admin); ok && cfg.Admin != "" {
		binds = append(binds, bound{"the admin listener", s, rangeOf(c.block("admin", 0), "address")})
	}
	for i, a := range binds {
		for _, b := range binds[:i] {
			if a.s.meets(b.s) {
				c.errorf(a.r, "Address in use twice", "%s and %s both listen on port %d of the same address.", a.what, b.what, a.s.port)
			}
		}
	}
	for i, l := range cfg.Listeners {
		lhost, ok := parseSocket(l.Address)
		if !ok {
			continue
		}
		for _, b := range binds {
			if l.PassivePorts.First <= b.s.port && b.s.port <= l.PassivePorts.Last && (b.s.host == lhost.host || b.s.host == "" || lhost.host == "") {
				c.errorf(rangeOf(c.block("listener", i), "passive_ports"), "Passive range takes a listening port",
					"Listener %q's passive_ports %s include port %d, where %s listens.", l.Name, l.PassivePorts, b.s.port, b.what)
			}
		}
	}
	for i, bb := range fs.Backends {
		b := cfg.Backends[bb.Name]
		if b == nil {
			continue
		}
		for _, addr := range b.Servers {
			s, ok := parseSocket(addr)
			if !ok {
				continue
			}
			for _, l := range binds {
				loop := l.s.port == s.port && (l.s.host == s.host || (l.s.host == "" && isLocalHost(s.host)))
				if loop && l.what != "the admin listener" {
					c.errorf(rangeOf(c.block("backend", i), ""), "Backend is the proxy itself",
						"Backend %q's server %s is %s of this proxy: sessions would loop through it. Point it at the FTP server.", bb.Name, addr, l.what)
				}
			}
		}
	}
}

// isLocalHost reports whether host names this machine for certain:
// loopback, or localhost.
func isLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (c *compiler) duration(blk *hclsyntax.Block, name string, v *string, dst *time.Duration) {
	if v == nil {
		return
	}
	d, err := time.ParseDuration(*v)
	if err != nil || d <= 0 {
		c.errorf(rangeOf(blk, name), "Invalid duration",
			"%s must be a positive duration such as \"30s\" or \"5m\", not %q.", name, *v)
		return
	}
	*dst = d
}

// ParsePortRange parses "first-last" (or a single port) into a range of
// unprivileged ports.
func ParsePortRange(s string) (PortRange, error) {
	a, b, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		b = a
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("passive_ports must look like \"50000-50999\", not %q", s)
	}
	if first < 1024 || last < first {
		return PortRange{}, fmt.Errorf("passive_ports %q must be a rising range of ports from 1024 to 65535", s)
	}
	return PortRange{uint16(first), uint16(last)}, nil
}

func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (p == 0 && !listen) {
		return fmt.Errorf("%q has an invalid port", s)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}

// maxFileSize bounds a configuration, certificate or key file: a path
// naming a device or a huge file is an error, not a hang.
const maxFileSize = 4 << 20

// readSmallFile reads a regular file of at most maxFileSize bytes.
func readSmallFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; a regular file ignores the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// LoadKeyPair is tls.LoadX509KeyPair through readSmallFile (regular files
// of at most 4 MiB).
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readSmallFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readSmallFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
