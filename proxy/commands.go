package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// The commands the proxy answers itself, but for login (login.go) and
// data (data.go).

// cmdAUTH upgrades the control connection to TLS (RFC 4217 §4).
func (s *session) cmdAUTH(cmd rewrite.Command) error {
	if s.tls != nil {
		return s.reply(cmd, 503, "TLS is already active.")
	}
	switch strings.ToUpper(cmd.Arg) {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		return s.reply(cmd, 504, "AUTH mechanism not supported; use AUTH TLS.")
	}
	// Anything the client sent after AUTH, before seeing our 234, would
	// be read as if it came under TLS: the STARTTLS injection class
	// (CVE-2011-0411, CVE-2011-1575). Refuse it, never execute it.
	if s.r.Buffered() > 0 {
		s.log.Warn("plaintext pipelined after AUTH TLS; closing", zap.Int("bytes", s.r.Buffered()))
		s.denied(policy.RuleStartTLSInjection, cmd.Verb, "data pipelined after AUTH")
		return errInjection
	}
	if !s.hasCertificate() {
		// RFC 2228's 431, "Need some unavailable resource to process
		// security": the session stays (plaintext, so the TLS policy
		// still refuses USER and PASS), and the client may try again
		// once the certificate has been obtained.
		s.log.Warn("AUTH TLS refused: the listener's acme block has no certificate yet", zap.String("acme", s.lcfg.ACME.Name))
		s.denied(policy.RuleNoCertificate, cmd.Verb, "no certificate yet")
		return s.reply(cmd, 431, "TLS is not available yet: this server has no certificate; try again later.")
	}
	if err := s.reply(cmd, 234, "AUTH TLS successful; start the TLS handshake."); err != nil {
		return err
	}
	return s.startTLS()
}

// hasCertificate reports whether the session's listener has a
// certificate to serve: always, unless it takes its certificates from an
// acme block that has none yet.
func (s *session) hasCertificate() bool {
	if s.lcfg.ACME == nil {
		return true
	}
	am := s.srv.acmeManager(s.lcfg.ACME.Name)
	return am != nil && am.hasCertificate()
}

// startTLS runs the server TLS handshake on the control connection.
func (s *session) startTLS() error {
	conf := s.bind.control()
	var hello *tls.ClientHelloInfo
	conf.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = h
		return nil, nil
	}
	first := &firstByte{Conn: s.raw}
	tc := tls.Server(first, conf)
	s.raw.SetDeadline(time.Now().Add(s.cfg.Timeouts.TLSHandshake))
	err := tc.Handshake()
	s.raw.SetDeadline(time.Time{})
	if err != nil {
		why := handshakeDiagnosis(err, first, hello, s.lcfg.TLS, s.cfg.Timeouts.TLSHandshake)
		s.denied(policy.RuleTLSHandshake, "AUTH", why+": "+err.Error())
		s.srv.metrics.tlsFailures.Inc()
		return fmt.Errorf("%w: %s (%w)", errHandshake, why, err)
	}
	// The connection keeps conf, and conf the closure: without this, the
	// parsed ClientHello (its key shares alone are over a KiB) would stay
	// for the session's life.
	hello = nil
	cs := tc.ConnectionState()
	s.tls, s.ctrl, s.r = tc, tc, bufio.NewReaderSize(tc, controlBufferSize)
	if s.host != "" && !strings.EqualFold(s.host, cs.ServerName) {
		// A HOST sent in clear may have come from anyone on the path
		// (the STARTTLS injection class): it would choose the backend
		// the password goes to. Only what the client says under TLS
		// counts; it may send HOST again.
		s.log.Info("HOST sent before AUTH TLS forgotten at the handshake", zap.String("host", s.host),
			zap.String("sni", cs.ServerName))
		s.audit.HostDropped(s.host, cs.ServerName)
		s.setHost("")
	}
	s.log.Debug("TLS established", zap.String("version", tls.VersionName(cs.Version)),
		zap.String("cipher", tls.CipherSuiteName(cs.CipherSuite)), zap.String("sni", cs.ServerName), zap.Bool("resumed", cs.DidResume))
	s.srv.metrics.tlsHandshakes.WithLabelValues(tls.VersionName(cs.Version)).Inc()
	if cs.DidResume {
		s.srv.metrics.tlsResumed.Inc()
	}
	s.audit.TLS(tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.ServerName, cs.NegotiatedProtocol, cs.DidResume)
	s.setView(func(v *sessionView) { v.TLS = tls.VersionName(cs.Version) })
	return nil
}

// firstByte records the first byte a connection read (under a TLS
// server: what the client sent first).
type firstByte struct {
	net.Conn
	b    byte
	seen bool
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if n > 0 && !f.seen {
		f.b, f.seen = p[0], true
	}
	return n, err
}

// tlsRecordHandshake is the first byte of a TLS handshake record, and so of
// every ClientHello.
const tlsRecordHandshake = 0x16

// handshakeDiagnosis says, for an operator, why a client's TLS handshake
// failed, from what the client sent (its first byte, its ClientHello) and
// the error: crypto/tls's own words name the symptom, not the cause.
func handshakeDiagnosis(err error, first *firstByte, hello *tls.ClientHelloInfo, mode config.TLSMode, timeout time.Duration) string {
	switch {
	case !first.seen && isTimeout(err) && mode == config.Implicit:
		return fmt.Sprintf("the client sent nothing within %s: an explicit-FTPS (or plain FTP) client waiting for a 220 on the implicit-TLS listener?", timeout)
	case !first.seen:
		return "the client closed or sent nothing before the handshake"
	case first.b != tlsRecordHandshake:
		return fmt.Sprintf("the client sent plaintext (first byte %q), not a TLS ClientHello: an explicit-FTPS or plain FTP client on the implicit-TLS listener?", first.b)
	case hello == nil:
		return "the ClientHello was malformed or cut short"
	}
	var offered []string
	modern := false
	for _, v := range hello.SupportedVersions {
		offered = append(offered, tls.VersionName(v))
		modern = modern || v >= tls.VersionTLS12
	}
	if !modern {
		return "the client offers only " + strings.Join(offered, ", ") + ", older than the listener's minimum (tls_min_version)"
	}
	// crypto/tls exposes no typed value for the alerts a peer sends, so
	// its words are read here, for the log's explanation only.
	switch e := err.Error(); {
	case strings.Contains(e, "client didn't provide a certificate"):
		return "the client sent no certificate, and the listener requires one (client_auth = \"require\")"
	case strings.Contains(e, "failed to verify certificate"):
		return "the client's certificate does not verify against the listener's client_ca_file (another CA, expired, or not for client authentication)"
	case strings.Contains(e, "bad certificate"), strings.Contains(e, "unknown certificate authority"),
		strings.Contains(e, "certificate expired"), strings.Contains(e, "certificate unknown"),
		strings.Contains(e, "bad record MAC"):
		// Under TLS 1.3 an OpenSSL client that rejects the certificate
		// sends its alert under keys the server has moved past: Go
		// reports a bad record MAC.
		return "the client does not trust the certificate (its CA, name or dates): give the client the CA, or use a certificate for the name it connects to"
	case strings.Contains(e, "no cipher suite supported"), strings.Contains(e, "handshake failure"):
		return "no cipher suite in common: the client may need one outside the intermediate profile (tls_cipher_suites)"
	case strings.Contains(e, "no application protocol"):
		return "the client offered ALPN protocols but not \"ftp\" (a browser or another protocol sent to the FTP port: ALPACA)"
	}
	return "the handshake failed"
}

// cmdPBSZ: with TLS the buffer size is always 0 (RFC 4217 §8).
func (s *session) cmdPBSZ(cmd rewrite.Command) error {
	if s.tls == nil {
		return s.reply(cmd, 503, "PBSZ requires AUTH TLS first.")
	}
	if cmd.Arg == "" || strings.Trim(cmd.Arg, "0123456789") != "" {
		return s.reply(cmd, 501, "PBSZ needs a number.")
	}
	s.pbsz = true
	return s.reply(cmd, 200, "PBSZ=0")
}

// cmdPROT sets the data channel protection (RFC 4217 §9).
func (s *session) cmdPROT(cmd rewrite.Command) error {
	if s.tls == nil {
		return s.reply(cmd, 503, "PROT requires AUTH TLS first.")
	}
	if !s.pbsz {
		return s.reply(cmd, 503, "PBSZ must come before PROT.")
	}
	if len(cmd.Arg) != 1 {
		return s.reply(cmd, 501, "PROT needs one of C, S, E, P.")
	}
	level := strings.ToUpper(cmd.Arg)[0]
	if d := s.cfg.Policy.Prot(level); d != nil {
		return s.deny(cmd, d)
	}
	s.prot = level
	if level == 'P' {
		return s.reply(cmd, 200, "Protection level set to Private.")
	}
	return s.reply(cmd, 200, "Protection level set to Clear.")
}

// proxyFeatures are the features the proxy itself implements; backend
// features of the same names are replaced by these.
var proxyFeatures = []string{"AUTH TLS", "PBSZ", "PROT", "EPSV", "EPRT", "HOST"}

// droppedFeatures reports, for each backend feature, whether it stays
// out of the FEAT the client sees: the proxy owns it (AUTH, PBSZ, PROT)
// or refuses it (CCC, ADAT, REIN; SSCN and CPSV, which are not in the verb
// table), or it names a verb the rules refuse a session (deny_commands, a
// read-only user's MFMT): clients need not try what will fail.
func droppedFeatures(rules *policy.Rules, readOnly bool) func(name string) bool {
	return func(name string) bool {
		switch name {
		case "AUTH", "PBSZ", "PROT", "CCC", "ADAT", "SSCN", "CPSV", "REIN":
			return true
		}
		v := lookupVerb(name)
		return v != nil && rules.Command(v.op(""), readOnly) != nil
	}
}

// cmdFEAT lists the proxy's features, merged with the backend's once it is
// connected (RFC 2389).
func (s *session) cmdFEAT(cmd rewrite.Command) error {
	var backend rewrite.Features
	if s.be != nil {
		rep, err := s.be.roundTrip(cmd, s.cfg.Timeouts.BackendReply)
		if err != nil {
			return err
		}
		backend = rewrite.ParseFEAT(rep)
	}
	return s.sendReply(cmd.Verb, backend.Merge(proxyFeatures, droppedFeatures(&s.cfg.Policy, s.login.readOnly)).Reply())
}

// cmdHOST records the virtual host the client asks for (RFC 7151). It must
// come before USER; the backend receives it only if its send_host is set.
func (s *session) cmdHOST(cmd rewrite.Command) error {
	if s.be != nil {
		return s.reply(cmd, 503, "HOST must come before USER.")
	}
	host, err := rewrite.ParseHOST(cmd.Arg)
	if err != nil {
		s.log.Info("bad HOST argument", zap.Error(err))
		return s.reply(cmd, 501, "HOST needs a host name or an [address].")
	}
	s.setHost(host)
	return s.reply(cmd, 220, "HOST "+host+" accepted.")
}

// setHost records the session's HOST ("" for none) and the loggers' field
// for it.
func (s *session) setHost(host string) {
	s.host = host
	s.base = s.srv.log.With(zap.String("session", s.id), zap.Stringer("client", s.client.addr),
		zap.String("listener", s.lcfg.Name))
	if host != "" {
		s.base = s.base.With(zap.String("host", host))
	}
	s.log = s.base
}

// cmdQUIT ends the session; the backend is told QUIT too (best effort).
func (s *session) cmdQUIT(cmd rewrite.Command) error {
	if s.be != nil {
		if rep, err := s.be.roundTrip(cmd, 5*time.Second); err != nil {
			s.log.Debug("backend QUIT failed", zap.Error(err))
		} else {
			s.log.Debug("backend QUIT", zap.Int("code", rep.Code))
		}
	}
	s.reply(cmd, 221, "Goodbye.")
	return errQuit
}

// cmdREST checks the restart offset (a non-negative decimal that fits in
// 63 bits: a negative, huge or non-numeric one gets 501; REST STREAM's
// offsets are byte counts, RFC 3659 §5) and holds it. The backend gets it
// right before the RETR or STOR it belongs to (cmdTransfer): forwarded at
// once, it would outlive a transfer command the proxy refuses (no PASV,
// read-only, PROT), which the backend never sees, and shift the next
// transfer. The next transfer command takes it, used or refused.
func (s *session) cmdREST(cmd rewrite.Command) error {
	// Digits only: ParseInt alone would take a sign.
	n, err := strconv.ParseInt(cmd.Arg, 10, 64)
	if err != nil || strings.Trim(cmd.Arg, "0123456789") != "" {
		return s.reply(cmd, 501, "REST needs a byte offset: a number from 0.")
	}
	s.rest = n
	return s.reply(cmd, 350, fmt.Sprintf("Restart position accepted (%d); send RETR or STOR.", n))
}

// workDir is the backend's working directory as far as the session
// knows it: from its last 257 reply to PWD, or "" when not known (before
// one, and after a CWD). Transfers are recorded by full path (fullPath).
type workDir struct{ dir string }

// notePWD takes the working directory from a 257 reply to PWD.
func (w *workDir) notePWD(rep *rewrite.Reply) {
	if dir, err := rewrite.ParsePWD(rep); err == nil && dir != "" {
		w.dir = dir
	}
}

// noteCWD forgets the working directory once CWD or CDUP moved it: the
// server resolves the path (symbolic links, its chroot) and the next
// PWD says where it went.
func (w *workDir) noteCWD(rep *rewrite.Reply) {
	if rep.Positive() {
		w.dir = ""
	}
}

// learn asks the backend be for its working directory when it is not
// known, so that a transfer can be recorded by its full path (fullPath):
// one round trip at the first file transfer of a session and after each
// CWD. It must run before the transfer command (the backend's control
// connection is the transfer's after it); a failure leaves it unknown.
func (w *workDir) learn(be *backendConn, timeout time.Duration, log *zap.Logger) error {
	if w.dir != "" {
		return nil
	}
	rep, err := be.roundTrip(rewrite.Command{Verb: "PWD"}, timeout)
	if err != nil {
		return err
	}
	w.notePWD(rep)
	if w.dir == "" {
		log.Debug("no working directory from the backend; transfers keep their relative names", zap.String("reply", rep.String()))
	}
	return nil
}

// fullPath is name (a transfer's argument, or STOU's chosen name) as a
// full path on the backend, as vsftpd logs it: joined to the working
// directory when relative and that is known.
func (w *workDir) fullPath(name string) string {
	if name == "" || strings.HasPrefix(name, "/") || w.dir == "" {
		return name
	}
	return path.Join(w.dir, name)
}

// cmdTYPE forwards TYPE and notes whether transfers are now binary.
func (s *session) cmdTYPE(cmd rewrite.Command) error {
	rep, err := s.forward(cmd)
	if err == nil && rep.Positive() {
		t := strings.ToUpper(strings.TrimSpace(cmd.Arg))
		s.binary = strings.HasPrefix(t, "I") || strings.HasPrefix(t, "L")
	}
	return err
}

// cmdNOOP keeps the backend connection alive once there is one.
func (s *session) cmdNOOP(cmd rewrite.Command) error {
	if s.be == nil {
		return s.reply(cmd, 200, "NOOP ok.")
	}
	_, err := s.forward(cmd)
	return err
}
