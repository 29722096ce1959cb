// Package audit writes the audit stream: one JSON line per fact of an FTP
// session (who connected, who logged in, which command, which reply, which
// transfer), separate from the diagnostic log. Secrets never reach it: a
// command's argument is taken from rewrite.Command.LogArg, which redacts
// PASS and ACCT where the command is parsed. Every text field is logged
// losslessly and on one line: a value that is not clean UTF-8 is escaped,
// with its exact bytes beside it in base64 (see text).
//
// Open's streams never block a session and never fail it: each file (or
// standard output) has a bounded queue and a writer of its own, which
// writes lines whole or not at all and tells its failures through Health,
// Stats and the diagnostic log.
package audit

import (
	"errors"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Event names, the "event" field of every line.
const (
	EventSessionStart = "session_start"
	EventTLS          = "tls"
	EventLogin        = "login"
	EventCommand      = "command"
	EventReply        = "reply"
	EventTransfer     = "transfer"
	EventPolicyDenied = "policy_denied"
	EventSessionEnd   = "session_end"
	EventBan          = "ban"
	EventHostDropped  = "host_dropped"
	EventBackendDown  = "backend_unavailable"
	EventCertificate  = "certificate"
)

// Logger writes audit events. A nil *Logger discards them.
type Logger struct {
	z       *zap.Logger
	xferlog io.Writer // classic xferlog lines, or nil
	sinks   []*sink   // Open's sinks behind z and xferlog; none for New's
	tap     Tap       // notifications' view of the events (tap.go), or nil
}

// New returns a Logger writing through z. Each event is an Info entry whose
// message is the event name.
func New(z *zap.Logger) *Logger { return &Logger{z: z} }

// EncoderConfig is the shape of an audit line: {"ts":…, "event":…, fields}.
// Timestamps are RFC 3339 with nanoseconds, in UTC.
func EncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:    "ts",
		MessageKey: "event",
		EncodeTime: func(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
			enc.AppendString(t.UTC().Format(time.RFC3339Nano))
		},
		EncodeDuration: zapcore.MillisDurationEncoder,
		LineEnding:     zapcore.DefaultLineEnding,
	}
}

// WithXferlog returns a copy of l that also writes an xferlog line per
// file transfer to w.
func (l *Logger) WithXferlog(w io.Writer) *Logger {
	c := *l
	c.xferlog = w
	return &c
}

// Session returns the events of one session, each carrying its id.
func (l *Logger) Session(id string) *Session {
	if l == nil {
		return &Session{}
	}
	s := &Session{xferlog: l.xferlog}
	z := l.z
	if l.tap != nil {
		s.held = &held{tap: l.tap}
		z = tapped(z, s.held)
	}
	if z != nil {
		s.z = z.With(zap.String("session", id))
	}
	return s
}

// Sync waits until the events logged so far are written (for Open's
// sinks: at most ten seconds) and flushes them to disk.
func (l *Logger) Sync() error {
	if l == nil {
		return nil
	}
	var errs []error
	if l.z != nil {
		errs = append(errs, l.z.Sync())
	}
	if s, ok := l.xferlog.(interface{ Sync() error }); ok {
		errs = append(errs, s.Sync())
	}
	return errors.Join(errs...)
}

// Health is why the audit stream cannot be written now, or nil: a sink
// whose writes fail (full disk, a reader gone), whose write has been
// blocked for longer than Options.StallTimeout (a reader that stopped
// reading), or whose queue is full. A Logger made by New has no sinks and
// is always healthy.
func (l *Logger) Health() error {
	if l == nil {
		return nil
	}
	var errs []error
	for _, s := range l.sinks {
		errs = append(errs, s.health())
	}
	return errors.Join(errs...)
}

// Stats are the counters of each of Open's sinks (none for New's).
func (l *Logger) Stats() []SinkStats {
	if l == nil {
		return nil
	}
	st := make([]SinkStats, len(l.sinks))
	for i, s := range l.sinks {
		st[i] = s.stats()
	}
	return st
}

// Session writes the events of one session. The zero value discards them.
type Session struct {
	z       *zap.Logger
	xferlog io.Writer
	held    *held // events for the tap, until their reply; nil without a tap
}

func (s *Session) emit(event string, fields ...zap.Field) {
	if s.z != nil {
		s.z.Info(event, fields...)
	}
}

// Start records a new control connection.
// tcpPeer is the address the TCP connection came from when a PROXY
// protocol header named the client ("" otherwise).
func (s *Session) Start(listener, client, local, tcpPeer string) {
	fs := text(text(text(make([]zap.Field, 0, 4), "listener", listener), "client", client), "local", local)
	if tcpPeer != "" {
		fs = text(fs, "tcp_peer", tcpPeer)
	}
	s.emit(EventSessionStart, fs...)
}

// TLS records a completed TLS handshake on the control connection.
func (s *Session) TLS(version, cipher, sni, alpn string, resumed bool) {
	fs := text(text(make([]zap.Field, 0, 5), "tls_version", version), "cipher", cipher)
	s.emit(EventTLS, append(text(text(fs, "sni", sni), "alpn", alpn), zap.Bool("resumed", resumed))...)
}

// Login records the backend's answer to a login.
func (s *Session) Login(l Login) {
	result := "failure"
	if l.OK {
		result = "success"
	}
	fs := text(text(make([]zap.Field, 0, 8), "user", l.User), "host", l.Host)
	fs = text(fs, "result", result)
	fs = text(text(text(fs, "backend", l.Backend), "backend_address", l.BackendAddress), "route", l.Route)
	fs = text(text(fs, "reason", l.Reason), "client", l.Client)
	fs = text(text(fs, "method", l.Method), "backend_user", l.BackendUser)
	fs = text(text(fs, "agent", l.Agent), "agent_address", l.AgentAddress)
	fs = text(fs, "cert_subject", l.CertSubject)
	s.emit(EventLogin, append(fs, zap.Bool("read_only", l.ReadOnly), zap.Int("code", l.Code))...)
}

// Login is a login attempt's outcome.
type Login struct {
	User           string
	Host           string // from HOST, if the client sent it
	OK             bool
	Backend        string // the backend chosen, and its address
	BackendAddress string
	Route          string // the route that chose it; "" for the listener's
	ReadOnly       bool
	Code           int // the reply the client got
	// Reason is the policy rule that refused the login, when the proxy
	// refused it ("deny_users": the client was told only "Login
	// incorrect."); "" when the backend answered.
	Reason string
	// Method is how the login was checked: "backend" (the backend
	// checked the client's own password), or the auth block's method
	// ("file").
	Method string
	// BackendUser is the user name the backend logged in, when the proxy
	// logged in for the client (edge authentication): the mapped account,
	// or the client's own name. Never a password.
	BackendUser string
	// Client is the client's address and port, so that one line says
	// who, from where and with what result.
	Client string
	// CertSubject is the subject of the client's certificate, when the
	// listener verified one (mutual TLS), as RFC 2253 writes it.
	CertSubject string
	// Agent and AgentAddress name the outbound-only agent that carried
	// the session to a via_agent backend, and its connection's address;
	// "" for a backend the proxy dials.
	Agent, AgentAddress string
}

// Command records a client command; PASS and ACCT arguments are redacted.
func (s *Session) Command(c rewrite.Command) {
	s.emit(EventCommand, text(text(make([]zap.Field, 0, 3), "verb", c.Verb), "arg", c.LogArg())...)
}

// Reply records the final reply the client got for a command, and hands
// the tap (WithTap) the events that waited for it.
func (s *Session) Reply(verb string, code int) {
	s.emit(EventReply, append(text(make([]zap.Field, 0, 2), "verb", verb), zap.Int("code", code))...)
	if s.held != nil {
		s.held.release(verb, false)
	}
}

// Direction is which way a transfer's data goes. The same values name it
// in the audit stream, in xferlog (as "o" and "i") and in the metrics'
// direction label.
type Direction string

const (
	Download Direction = "download" // from the FTP server to the client
	Upload   Direction = "upload"   // from the client to the FTP server
)

// Result is how a transfer ended, in the audit stream, in xferlog (as "c"
// for Complete, "i" for the rest) and in the metrics' result label.
type Result string

const (
	// Complete: every byte arrived, and the server said so.
	Complete Result = "complete"
	// Incomplete: the data broke off, failed an integrity check, or the
	// server reported an error after it.
	Incomplete Result = "incomplete"
	// Aborted by the client's ABOR.
	Aborted Result = "aborted"
	// TooLarge: an upload cut with 552 when it crossed max_file_size
	// (Transfer.PartialFile says what became of the partial file).
	TooLarge Result = "too_large"
	// Failed: no data connection was made.
	Failed Result = "failed"
	// Rejected: the upload arrived, but its scan refused it (Transfer's
	// Scan says why) and the file was deleted on the server.
	Rejected Result = "rejected"
	// QuotaExceeded: refused with 552 because the user's quota for its
	// direction was used up (Bytes 0), or cut with 552 when it reached
	// it (Transfer.Quota names the quota; an upload's PartialFile says
	// what became of its partial file).
	QuotaExceeded Result = "quota_exceeded"
)

// Transfer is one data transfer's outcome.
type Transfer struct {
	Verb      string // RETR, STOR, LIST…
	Direction Direction
	Path      string
	Bytes     int64
	Duration  time.Duration
	// Result is Complete; Incomplete when the data broke off, failed an
	// integrity check (Check) or the server reported an error after it,
	// Bytes saying how far it came; Aborted by the client's ABOR; Failed
	// when no data connection was made.
	Result Result
	// Check names the integrity check an incomplete transfer failed:
	// "upload_close_notify" (the client's upload ended without TLS
	// close_notify), "backend_close_notify" (the FTPS backend's data
	// ended without it), "announced_size" (fewer bytes than the server's
	// 150 announced); "" when none failed.
	Check string
	// Announced is the size the server's 150 reply announced (-1: none),
	// and Offset the restart offset (REST) the transfer began at.
	Announced, Offset int64
	// CloseNotify reports whether the client leg's TLS stream ended with
	// a close_notify from the side that sent the data: the client's on
	// an upload (false: its end was not verified), the proxy's on a
	// download (false: the client was not told the data is whole).
	CloseNotify bool
	TLS         bool // the client leg was under TLS (PROT P)
	// Resumed: the client leg's TLS session resumed the control
	// connection's (the data connection is bound to this session).
	Resumed bool
	// ResumedFrom is the id of the session whose TLS session the client
	// leg resumed, when it was a sibling's (another open session of the
	// same client address and user), not this one's; else "".
	ResumedFrom string
	Code        int // final reply code sent to the client
	// For xferlog: the client's address (no port), the user, and whether
	// the transfer was in TYPE I (binary) rather than TYPE A.
	Client string
	User   string
	Binary bool
	// File: the transfer moved a file (RETR, STOR, STOU, APPE, as the
	// proxy's verb table says), not a listing; only those go to xferlog.
	File bool
	// Throttled is how long the transfer waited for rate limits, and
	// RateLimit (bytes per second) and RateLevel ("listener", "user",
	// "address", "transfer") the smallest limit that made it wait; zero
	// and "" when none did.
	Throttled time.Duration
	RateLimit int64
	RateLevel string
	// PartialFile is what became of the backend's partial file after an
	// upload cut at max_file_size or at its quota: PartialRemoved,
	// PartialKept or PartialRemoveFailed; "" otherwise.
	PartialFile string
	// Quota is the quota a transfer was refused or cut at ("10GiB per
	// 24h"), and QuotaResets the end of its window; "" otherwise.
	Quota       string
	QuotaResets time.Time
	// Scan is the scan's outcome, for an upload a scan block covers
	// ("" for any other transfer): "clean", "infected" (Signature names
	// what the scanner found), "too_large" (larger than max_size and
	// rejected), "partial" (larger than max_size, its first part clean,
	// passed), "error" (no verdict: ScanError says why; Result says
	// whether it was rejected or passed), "none" (the upload did not
	// complete, and was not judged).
	Scan      string
	Signature string
	ScanError string
	// Deleted: the file was deleted on the server, rejected or (Scan
	// "none") never judged. False with Result "rejected" means the
	// deletion failed: the file is there.
	Deleted bool
	// ScanMode is the scan block's mode, "inline" or "spool"; Spooled,
	// under "spool", how long the upload was held on the proxy before it
	// was sent on to the server: received whole, then scanned (the whole
	// transfer, when it was never sent on).
	ScanMode string
	Spooled  time.Duration
}

// What became of the partial file of an upload cut at max_file_size.
const (
	// PartialRemoved: the proxy removed it with DELE.
	PartialRemoved = "removed"
	// PartialKept: it held data before the upload (REST or APPE), and
	// was kept.
	PartialKept = "kept"
	// PartialRemoveFailed: DELE was refused or could not be sent.
	PartialRemoveFailed = "remove_failed"
)

// Transfer records a finished transfer.
func (s *Session) Transfer(t Transfer) {
	fs := text(text(text(make([]zap.Field, 0, 14), "verb", t.Verb), "direction", string(t.Direction)), "path", t.Path)
	fs = append(fs, zap.Int64("bytes", t.Bytes), zap.Int64("duration_ms", t.Duration.Milliseconds()))
	fs = text(text(text(fs, "result", string(t.Result)), "user", t.User), "client", t.Client)
	fs = append(fs, zap.Bool("close_notify", t.CloseNotify),
		zap.Bool("data_tls", t.TLS), zap.Bool("data_tls_resumed", t.Resumed), zap.Int("code", t.Code))
	if t.ResumedFrom != "" {
		fs = text(fs, "data_tls_resumed_from", t.ResumedFrom)
	}
	if t.Check != "" {
		fs = text(fs, "check", t.Check)
	}
	if t.Announced >= 0 {
		fs = append(fs, zap.Int64("announced_bytes", t.Announced))
	}
	if t.Offset > 0 {
		fs = append(fs, zap.Int64("offset", t.Offset))
	}
	if t.Throttled > 0 {
		fs = append(fs, zap.Int64("throttled_ms", t.Throttled.Milliseconds()), zap.Int64("rate_limit", t.RateLimit))
		fs = text(fs, "rate_level", t.RateLevel)
	}
	if t.PartialFile != "" {
		fs = text(fs, "partial_file", t.PartialFile)
	}
	if t.Quota != "" {
		fs = append(text(fs, "quota", t.Quota), zap.Time("quota_resets", t.QuotaResets))
	}
	if t.Scan != "" {
		fs = text(fs, "scan", t.Scan)
		if t.Signature != "" {
			fs = text(fs, "signature", t.Signature)
		}
		if t.ScanError != "" {
			fs = text(fs, "scan_error", t.ScanError)
		}
		if t.ScanMode != "" {
			fs = text(fs, "scan_mode", t.ScanMode)
		}
		if t.ScanMode == "spool" {
			fs = append(fs, zap.Int64("spool_ms", t.Spooled.Milliseconds()))
		}
		if (t.Result == Rejected && t.ScanMode != "spool") || t.Deleted { // a spooled upload is never on the server to delete
			fs = append(fs, zap.Bool("deleted", t.Deleted))
		}
	}
	s.emit(EventTransfer, fs...)
	writeXferlog(s.xferlog, t)
}

// Ban records that the client's address (an IPv4 address, or an IPv6
// prefix, as address/bits) was banned until until, after failures failed
// logins.
func (s *Session) Ban(address string, until time.Time, failures int) {
	s.emit(EventBan, append(text(make([]zap.Field, 0, 3), "address", address),
		zap.Time("until", until), zap.Int("failures", failures))...)
}

// PolicyDenied records a refusal by policy.
func (s *Session) PolicyDenied(rule, verb, reason string) {
	s.emit(EventPolicyDenied, text(text(text(make([]zap.Field, 0, 3), "rule", rule), "verb", verb), "reason", reason)...)
}

// End records the end of the session, and hands the tap every event
// still waiting.
func (s *Session) End(user string, d time.Duration, how string, bytesDown, bytesUp int64) {
	fs := append(text(make([]zap.Field, 0, 5), "user", user), zap.Int64("duration_ms", d.Milliseconds()))
	s.emit(EventSessionEnd, append(text(fs, "reason", how),
		zap.Int64("bytes_down", bytesDown), zap.Int64("bytes_up", bytesUp))...)
	if s.held != nil {
		s.held.release("", true)
	}
}

// HostDropped records a HOST received before AUTH TLS and forgotten at the
// TLS handshake: plaintext state does not cross into the TLS session
// (anyone on the path could have sent it), unless the TLS SNI names the
// same host.
func (s *Session) HostDropped(host, sni string) {
	s.emit(EventHostDropped, text(text(nil, "host", host), "sni", sni)...)
}

// BackendUnavailable records that no server of backend could take the
// session, which was closed with 421: what the client was told (the FTP
// server "did not answer", "cannot be reached"…) and the last error.
func (s *Session) BackendUnavailable(backend, what, err string) {
	s.emit(EventBackendDown, text(text(text(nil, "backend", backend), "what", what), "error", err)...)
}

// Certificate is a certificate request to an ACME CA (an acme block), as
// the audit records it.
type Certificate struct {
	ACME, Domain string
	Operation    string // "obtain" or "renew"
	Result       string // "success" or "failure"
	Issuer       string // the issuer that signed it, on success
	Error        string // the CA's error, on failure
}

// Certificate records a certificate request to an ACME CA: it belongs to
// no session. Empty fields are left out.
func (l *Logger) Certificate(c Certificate) {
	if l == nil || l.z == nil {
		return
	}
	var fs []zap.Field
	for _, f := range []struct{ k, v string }{{"acme", c.ACME}, {"domain", c.Domain}, {"operation", c.Operation},
		{"result", c.Result}, {"issuer", c.Issuer}, {"error", c.Error}} {
		if f.v != "" {
			fs = text(fs, f.k, f.v)
		}
	}
	l.z.Info(EventCertificate, fs...)
}
