// Package audit writes the audit stream: one JSON line per fact of an FTP
// session (who connected, who logged in, which command, which reply, which
// transfer), separate from the diagnostic log. Secrets never reach it: a
// command's argument is taken from rewrite.Command.LogArg, which redacts
// PASS and ACCT where the command is parsed.
package audit

import (
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
)

// Logger writes audit events. A nil *Logger discards them.
type Logger struct {
	z       *zap.Logger
	xferlog io.Writer // classic xferlog lines, or nil
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
	if l.z != nil {
		s.z = l.z.With(zap.String("session", id))
	}
	return s
}

// Sync flushes buffered events.
func (l *Logger) Sync() error {
	if l == nil || l.z == nil {
		return nil
	}
	return l.z.Sync()
}

// Session writes the events of one session. The zero value discards them.
type Session struct {
	z       *zap.Logger
	xferlog io.Writer
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
	fields := []zap.Field{zap.String("listener", listener), zap.String("client", client), zap.String("local", local)}
	if tcpPeer != "" {
		fields = append(fields, zap.String("tcp_peer", tcpPeer))
	}
	s.emit(EventSessionStart, fields...)
}

// TLS records a completed TLS handshake on the control connection.
func (s *Session) TLS(version, cipher, sni, alpn string) {
	s.emit(EventTLS, zap.String("tls_version", version), zap.String("cipher", cipher),
		zap.String("sni", sni), zap.String("alpn", alpn))
}

// Login records the backend's answer to a login.
func (s *Session) Login(l Login) {
	result := "failure"
	if l.OK {
		result = "success"
	}
	s.emit(EventLogin, zap.String("user", l.User), zap.String("host", l.Host), zap.String("result", result),
		zap.String("backend", l.Backend), zap.String("backend_address", l.BackendAddress), zap.String("route", l.Route),
		zap.Bool("read_only", l.ReadOnly), zap.Int("code", l.Code))
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
}

// Command records a client command; PASS and ACCT arguments are redacted.
func (s *Session) Command(c rewrite.Command) {
	s.emit(EventCommand, zap.String("verb", c.Verb), zap.String("arg", c.LogArg()))
}

// Reply records the final reply the client got for a command.
func (s *Session) Reply(verb string, code int) {
	s.emit(EventReply, zap.String("verb", verb), zap.Int("code", code))
}

// Transfer is one data transfer's outcome.
type Transfer struct {
	Verb      string // RETR, STOR, LIST…
	Direction string // "download" (to the client) or "upload"
	Path      string
	Bytes     int64
	Duration  time.Duration
	// Result is "complete"; "incomplete" when the data broke off, failed
	// an integrity check (Check) or the server reported an error after
	// it, Bytes saying how far it came; "aborted" by the client's ABOR;
	// "failed" when no data connection was made.
	Result string
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
	Code    int // final reply code sent to the client
	// For xferlog: the client's address (no port), the user, and whether
	// the transfer was in TYPE I (binary) rather than TYPE A.
	Client string
	User   string
	Binary bool
}

// Transfer records a finished transfer.
func (s *Session) Transfer(t Transfer) {
	fields := []zap.Field{zap.String("verb", t.Verb), zap.String("direction", t.Direction),
		zap.String("path", t.Path), zap.Int64("bytes", t.Bytes), zap.Duration("duration", t.Duration),
		zap.String("result", t.Result), zap.Bool("close_notify", t.CloseNotify),
		zap.Bool("data_tls", t.TLS), zap.Bool("data_tls_resumed", t.Resumed), zap.Int("code", t.Code)}
	if t.Check != "" {
		fields = append(fields, zap.String("check", t.Check))
	}
	if t.Announced >= 0 {
		fields = append(fields, zap.Int64("announced_bytes", t.Announced))
	}
	if t.Offset > 0 {
		fields = append(fields, zap.Int64("offset", t.Offset))
	}
	s.emit(EventTransfer, fields...)
	writeXferlog(s.xferlog, t)
}

// Ban records that the client's address was banned until until, after
// failures failed logins.
func (s *Session) Ban(address string, until time.Time, failures int) {
	s.emit(EventBan, zap.String("address", address), zap.Time("until", until), zap.Int("failures", failures))
}

// PolicyDenied records a refusal by policy.
func (s *Session) PolicyDenied(rule, verb, reason string) {
	s.emit(EventPolicyDenied, zap.String("rule", rule), zap.String("verb", verb), zap.String("reason", reason))
}

// End records the end of the session.
func (s *Session) End(user string, d time.Duration, how string, bytesDown, bytesUp int64) {
	s.emit(EventSessionEnd, zap.String("user", user), zap.Duration("duration", d), zap.String("reason", how),
		zap.Int64("bytes_down", bytesDown), zap.Int64("bytes_up", bytesUp))
}
