package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// The control protocol: one command at a time is read (readCommand) and
// handled as the verb table says (dispatch, verbs.go): answered by the
// proxy (commands.go, login.go, data.go), or forwarded to the backend
// with its replies relayed (forward); every reply goes out through send.

// readCommand reads and parses the next command line. Malformed lines are
// answered here and reading goes on, up to maxBadLines of them.
func (s *session) readCommand() (rewrite.Command, error) {
	for {
		s.mu.Lock()
		err := s.armReadDeadlineLocked()
		s.mu.Unlock()
		if err != nil {
			return rewrite.Command{}, err
		}
		if s.tls == nil {
			// A TLS client on the plaintext port (an implicit-FTPS client
			// on the explicit listener) sends a ClientHello: no line of
			// it is a command, and it waits for a ServerHello forever.
			if b, err := s.r.Peek(1); err == nil && b[0] == tlsRecordHandshake {
				return rewrite.Command{}, errClientHello
			}
		}
		line, err := rewrite.ReadLine(s.r, s.cfg.Limits.MaxLine)
		s.lastActive.Store(time.Now().UnixNano())
		var cmd rewrite.Command
		if err == nil {
			cmd, err = rewrite.ParseCommand(line)
		}
		switch {
		case err == nil:
			return cmd, nil
		case isTimeout(err):
			if err := s.timeoutReason(); err != nil {
				return rewrite.Command{}, err
			}
			continue // a transfer is running: the control channel may rest
		case errors.Is(err, rewrite.ErrLineTooLong), errors.Is(err, rewrite.ErrBareCR),
			errors.Is(err, rewrite.ErrNUL), errors.Is(err, rewrite.ErrSyntax):
			s.badLines++
			s.log.Info("bad command line", zap.Error(err), zap.Int("count", s.badLines))
			if s.badLines >= maxBadLines {
				return rewrite.Command{}, errTooManyErrors
			}
			text := "Syntax error, command unrecognized."
			if errors.Is(err, rewrite.ErrLineTooLong) {
				text = fmt.Sprintf("Command line too long (limit %d bytes).", s.cfg.Limits.MaxLine)
			}
			if err := s.send("", rewrite.NewReply(500, text)); err != nil {
				return rewrite.Command{}, err
			}
		default:
			return rewrite.Command{}, err
		}
	}
}

// armReadDeadlineLocked sets the control read deadline: the idle timeout,
// or the rest of the login timeout before login; it returns instead the
// error that ends the session, if one does. Under mu, so that drain's
// deadline is never overwritten.
func (s *session) armReadDeadlineLocked() error {
	if s.killed {
		return net.ErrClosed
	}
	if s.fatal != nil {
		return s.fatal
	}
	if s.banned {
		return errBanned
	}
	if s.draining && s.xfer == nil {
		return errDraining
	}
	d := time.Now().Add(s.cfg.Timeouts.Idle)
	if !s.loggedIn {
		if ld := s.start.Add(s.cfg.Timeouts.Login); ld.Before(d) {
			d = ld
		}
	}
	return s.raw.SetReadDeadline(d)
}

// timeoutReason says why a control read timed out, or nil when the session
// should read on (a transfer is running).
func (s *session) timeoutReason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fatal != nil:
		return s.fatal
	case s.banned:
		return errBanned
	case s.xfer != nil:
		return nil
	case s.draining:
		return errDraining
	case !s.loggedIn && !time.Now().Before(s.start.Add(s.cfg.Timeouts.Login)):
		return errLoginTimeout
	}
	return errIdle
}

// dispatch handles one command, as the verb table (verbs.go) says. A
// returned error ends the session.
func (s *session) dispatch(cmd rewrite.Command) error {
	v := lookupVerb(cmd.Verb)
	var op policy.Op
	if v != nil {
		op = v.op(cmd.Arg)
	} else {
		op = unknownOp(cmd.Verb)
	}
	relayed := v == nil || v.handle == nil
	// Every command is audited before its reply. A command relayed as it
	// is (the common case once logged in: PWD, CWD, SIZE…) is audited
	// once the backend has it, while the backend works, so that the write
	// is not part of the round trip (forwardChecked); any other is
	// audited now. Holding needs nothing between here and the backend to
	// block or to write another event: no transfer to wait for or to
	// answer during, no 530, no policy denial.
	if relayed && s.be != nil && s.currentTransfer() == nil && (v != nil || s.cfg.Policy.Unknown(cmd.Verb) == nil) &&
		s.cfg.Policy.Command(op, s.login.readOnly) == nil {
		s.unaudited, s.holding = cmd, true
		defer s.auditHeld() // if it never reached the backend
	} else {
		s.audit.Command(cmd)
	}
	s.srv.metrics.commands.WithLabelValues(metricLabel(v)).Inc()
	if hook := s.srv.dispatchHook.Load(); hook != nil {
		(*hook)(cmd)
	}
	x := s.currentTransfer()
	if v != nil && v.name == "ABOR" && x.abort() {
		return nil
	}
	if v != nil && v.duringTransfer {
		if rep := x.during(cmd); rep != nil {
			return s.sendReply(cmd.Verb, rep)
		}
	}
	x.wait() // RFC 959: commands after a transfer command wait for it
	if v == nil {
		if d := s.cfg.Policy.Unknown(cmd.Verb); d != nil {
			return s.deny(cmd, d)
		}
	}
	if (v == nil || !v.preLogin) && s.be == nil {
		return s.reply(cmd, 530, "Please login with USER and PASS.")
	}
	if v != nil && v.data != "" {
		// A transfer command takes the REST before it, whether it runs
		// or is refused (cmdREST).
		defer func() { s.rest = 0 }()
	}
	if d := s.cfg.Policy.Command(op, s.login.readOnly); d != nil {
		return s.deny(cmd, d)
	}
	if relayed {
		rep, err := s.forward(cmd)
		if err == nil && v != nil && v.after != nil {
			v.after(&s.cwd, rep)
		}
		return err
	}
	return v.handle(s, cmd)
}

// auditHeld writes the audit event of the command dispatch held back.
func (s *session) auditHeld() {
	if s.holding {
		s.audit.Command(s.unaudited)
		s.holding, s.unaudited = false, rewrite.Command{}
	}
}

func refuse(code int, text string) func(*session, rewrite.Command) error {
	return func(s *session, cmd rewrite.Command) error {
		s.log.Info("command refused", zap.String("verb", cmd.Verb), zap.Int("code", code))
		return s.reply(cmd, code, text)
	}
}

// denied records a refusal by rule in the audit stream and the metrics.
func (s *session) denied(rule, verb, reason string) {
	s.audit.PolicyDenied(rule, verb, reason)
	s.srv.metrics.denials.WithLabelValues(rule).Inc()
}

// deny answers a policy refusal, logs it and records it in the audit.
func (s *session) deny(cmd rewrite.Command, d *policy.Denial) error {
	s.log.Info("policy denied", zap.String("rule", d.Rule), zap.String("verb", cmd.Verb), zap.Int("code", d.Code))
	s.denied(d.Rule, cmd.Verb, d.Text)
	// A name refused by allow_users or deny_users never comes here: it is
	// answered as a wrong password, and counted at PASS (login.go).
	return s.reply(cmd, d.Code, d.Text)
}

// ---- everything else goes to the backend ----

// forward sends cmd to the backend and relays every reply up to the final
// one, which it returns. A 421 from the backend ends the session after it
// is relayed.
func (s *session) forward(cmd rewrite.Command) (*rewrite.Reply, error) {
	return s.forwardChecked(cmd, nil)
}

// forwardChecked is forward with check looking at each reply before it is
// relayed; when check reports the reply handled, forwarding stops and
// forwardChecked returns a nil reply and check's error.
func (s *session) forwardChecked(cmd rewrite.Command, check func(rewrite.Command, *rewrite.Reply) (bool, error)) (*rewrite.Reply, error) {
	err := s.be.send(cmd)
	s.auditHeld()
	if err != nil {
		return nil, err
	}
	for {
		rep, err := s.be.read(s.cfg.Timeouts.BackendReply)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if handled, err := check(cmd, rep); handled {
				return nil, err
			}
		}
		if err := s.sendReply(cmd.Verb, rep); err != nil {
			return nil, err
		}
		if rep.Code == 421 {
			s.log.Info("backend closed the session", zap.String("reply", rep.String()))
			return nil, fmt.Errorf("%w: backend sent 421", errQuit)
		}
		if rep.Final() {
			return rep, nil
		}
	}
}

// ---- replies to the client ----

// reply sends a one-line reply of the proxy's own to cmd.
func (s *session) reply(cmd rewrite.Command, code int, text string) error {
	return s.sendReply(cmd.Verb, rewrite.NewReply(code, text))
}

// sendReply sends rep as the answer to verb and records it, after the
// client has it: the audit write is not part of the round trip.
func (s *session) sendReply(verb string, rep *rewrite.Reply) error {
	err := s.send(verb, rep)
	if rep.Final() {
		s.audit.Reply(verb, rep.Code)
	}
	return err
}

// send writes rep to the client. It is safe to call from the transfer
// goroutine.
func (s *session) send(verb string, rep *rewrite.Reply) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.ctrl.Write(rep.Wire())
	if err != nil {
		s.log.Debug("reply not delivered", zap.String("verb", verb), zap.Int("code", rep.Code), zap.Error(err))
	}
	return err
}

// watchClient watches the client's control connection while the session
// goroutine waits in a backend's queue and reads nothing. gone receives
// why the wait must end: the client sent QUIT (errQueueQuit) or closed
// the connection, the login (or idle) timeout passed, the server drains
// or kills the session, or the client's address was banned (the reasons
// readCommand would find). Other commands the client sends are left for
// readCommand, as is the QUIT. stop ends the watch and returns once the
// watching goroutine has ended.
func (s *session) watchClient() (gone <-chan error, stop func()) {
	w := &clientWatch{s: s, gone: make(chan error, 1), done: make(chan struct{}), quit: make(chan struct{})}
	go w.run()
	return w.gone, w.stop
}

// clientWatch is one watch of session.watchClient.
type clientWatch struct {
	s    *session
	gone chan error    // receives why the wait must end, once
	done chan struct{} // closed when run ends
	quit chan struct{} // closed by stop
	// stopped, under s.mu: stop was called; run sets no more deadlines.
	stopped bool
}

// run is the watching goroutine: it waits for what the client sends, or
// for a deadline (the reasons readCommand would find), and looks for a
// QUIT among the complete lines the session's reader holds.
func (w *clientWatch) run() {
	defer close(w.done)
	r := w.s.r
	scanned, lineStart := 0, 0 // bytes of r's buffer looked at; where the last partial line starts
	for {
		ok, err := w.arm()
		if !ok {
			return
		}
		if err == nil {
			if scanned >= r.Size() {
				// A buffer full of lines, none a QUIT: the client
				// pipelines; nothing more can be seen before
				// readCommand reads.
				<-w.quit
				return
			}
			_, err = r.Peek(scanned + 1) // until the client sends more, or a deadline
		}
		if w.halted() {
			return
		}
		if isTimeout(err) {
			if err = w.s.timeoutReason(); err == nil {
				continue
			}
		}
		if err != nil {
			w.gone <- err
			return
		}
		buf, _ := r.Peek(r.Buffered())
		var quit bool
		if quit, lineStart = sawQUIT(buf, scanned, lineStart); quit {
			w.gone <- errQueueQuit
			return
		}
		scanned = len(buf)
	}
}

// sawQUIT reports whether a complete line of buf after from is a QUIT;
// lineStart is where the line that from is in starts, and the returned
// one where the last partial line starts.
func sawQUIT(buf []byte, from, lineStart int) (bool, int) {
	for i := from; i < len(buf); i++ {
		if buf[i] != '\n' {
			continue
		}
		line := bytes.TrimSuffix(buf[lineStart:i], []byte("\r"))
		if cmd, err := rewrite.ParseCommand(line); err == nil && cmd.Verb == "QUIT" {
			return true, lineStart
		}
		lineStart = i + 1
	}
	return false, lineStart
}

// arm sets the read deadline of readCommand, unless stop came first.
func (w *clientWatch) arm() (bool, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.stopped {
		return false, nil
	}
	return true, w.s.armReadDeadlineLocked()
}

// halted reports whether stop was called.
func (w *clientWatch) halted() bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.stopped
}

// stop ends the watch and returns once run has ended.
func (w *clientWatch) stop() {
	w.s.mu.Lock()
	w.stopped = true
	w.s.raw.SetReadDeadline(time.Now()) // wakes Peek
	w.s.mu.Unlock()
	close(w.quit)
	<-w.done
}
