package proxy

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// A transfer is one transfer command (RETR, STOR, LIST…) from the backend
// leg's setup to the final reply. The session makes it (newTransfer) and
// starts it (start): the backend leg, the command, the backend's 150;
// from then on it runs in a goroutine of its own (run), owning the
// backend's control connection and both data legs, while the session
// reads on, for ABOR. It answers the transfer command, and an ABOR that
// claimed it, then hands the session back (session.transferEnded).
type transfer struct {
	verb, path string
	user       string // the session's, logged in
	direction  audit.Direction
	start      time.Time
	announced  rewrite.Size // by the 150 reply, if sized
	sized      bool
	offset     int64        // the restart offset (REST) the backend was given
	bytes      atomic.Int64 // relayed so far
	binary     bool         // under TYPE I (for xferlog, and the size check)
	file       bool         // a file, not a listing (for xferlog)
	useTLS     bool         // PROT P: the client leg is under TLS

	// What it runs with. s is the session, whose client it answers; be is
	// the backend's control connection, the transfer's while it runs, and
	// dialer opens the backend leg on it. client and backend are the data
	// legs being set up, the transfer's from begin on.
	s        *session
	be       *backendConn
	dialer   *backendDialer
	client   *pendingData
	backend  *backendData
	log      *zap.Logger
	timeouts config.Timeouts
	// uploadEnd: the listener's upload_close_notify (verifyUpload).
	uploadEnd config.UploadCloseNotify
	// lost is why the backend's control connection was lost, if it was
	// and the transfer was not cancelled: the session ends with it.
	lost error

	// An upload a scan block covers (scanner.go): scan is its scan, nil
	// when the scanner could not be reached and on_error let it pass
	// (scanOutcome and scanErr then say so); target is the file's name
	// on the backend, for DELE ("" when a STOU reply did not name it);
	// judging is set from the upload's last byte until its verdict (STAT
	// says so).
	scan                 *uploadScan
	scanOutcome, scanErr string
	target               string
	judging              atomic.Bool
	// scanMode is the scan block's mode ("inline", "spool"), "" for an
	// upload no scan block covers. A spooled upload (spooltransfer.go)
	// has its spool file, spool, the transfer goroutine's from run on;
	// named, the full path of the file a STOU made on the backend;
	// forwarding is set while it is sent on to the backend, sent
	// counting its bytes (STAT says so).
	scanMode   string
	spool      *spoolFile
	named      string
	forwarding atomic.Bool
	sent       atomic.Int64

	// state: transferRunning until the transfer goroutine is about to send
	// its final reply (transferDone), or until the client asks to abort
	// (transferAbort). Whoever moves it first decides who answers ABOR.
	state atomic.Int32
	// cleaning is set when an upload was cut at max_file_size or at its
	// quota: the transfer still needs the backend's control connection,
	// for the final reply and the DELE of the partial file, and the
	// session's end waits for it (within the backend's reply timeouts)
	// instead of cancelling it. A client that hangs up at the 552, as
	// curl does, thus still leaves no partial file.
	cleaning atomic.Bool

	mu     sync.Mutex // guards legs, killed
	legs   []func()   // each resets one data leg
	killed bool

	stop chan struct{} // closed by cancel
	done chan struct{} // closed when the transfer goroutine ends
}

const (
	transferRunning int32 = iota
	transferDone
	transferAbort
)

// addLeg registers the reset of a data leg so that cancel can run it; a
// leg added after cancel is reset at once.
func (x *transfer) addLeg(reset func()) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.legs = append(x.legs, reset)
	if x.killed {
		reset()
	}
}

// cancel interrupts the transfer: both legs are reset, which unblocks the
// relay (a deadline would not: the relay re-arms its own), and the transfer
// goroutine then ends it.
func (x *transfer) cancel() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.killed {
		close(x.stop)
	}
	x.killed = true
	for _, reset := range x.legs {
		reset()
	}
}

func (x *transfer) cancelled() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.killed
}

// announcedBytes is the size the transfer's 150 reply announced, or -1.
func (x *transfer) announcedBytes() int64 {
	if !x.sized {
		return -1
	}
	return x.announced.Bytes
}

// wait blocks until the transfer, if any (x may be nil), has sent its
// final reply.
func (x *transfer) wait() {
	if x != nil {
		<-x.done
	}
}

// abort asks the transfer to abort, and reports whether it will answer
// the ABOR itself, which it has then done. When it reports false, no
// transfer was running (x is nil, or it had finished: it has been waited
// for) and ABOR is handled as a plain command.
func (x *transfer) abort() bool {
	if x == nil || !x.state.CompareAndSwap(transferRunning, transferAbort) {
		x.wait()
		return false
	}
	x.cancel()
	<-x.done
	return true
}

// during answers the commands a client may send while the transfer runs,
// without the backend (whose control connection the transfer owns): NOOP,
// and STAT with the transfer's progress (RFC 959 §4.1.3). It returns nil
// for any other command, and when no transfer runs (x may be nil); the
// command then waits for the transfer to end.
func (x *transfer) during(cmd rewrite.Command) *rewrite.Reply {
	if x == nil || x.state.Load() != transferRunning {
		return nil
	}
	switch {
	case cmd.Verb == "NOOP":
		return rewrite.NewReply(200, "NOOP ok; transfer in progress.")
	case cmd.Verb == "STAT" && cmd.Arg == "" && x.forwarding.Load():
		return rewrite.NewReply(211, fmt.Sprintf("Upload of %s scanned clean; sending it to the FTP server: %d of %d bytes.",
			x.path, x.sent.Load(), x.bytes.Load()))
	case cmd.Verb == "STAT" && cmd.Arg == "" && x.judging.Load():
		return rewrite.NewReply(211, fmt.Sprintf("Upload of %s received, %d bytes; waiting for the malware scan's verdict for %s.",
			x.path, x.bytes.Load(), time.Since(x.start).Round(time.Millisecond)))
	case cmd.Verb == "STAT" && cmd.Arg == "":
		lines := []string{fmt.Sprintf("Transfer in progress: %s %s, %d bytes in %s.",
			x.verb, x.path, x.bytes.Load(), time.Since(x.start).Round(time.Millisecond))}
		lines = append(lines, x.s.limitLines(x.user, x.direction == audit.Upload, x.file)...)
		return rewrite.NewReply(211, append(lines, "End of status.")...)
	}
	return nil
}

// ---- the transfer goroutine ----

// run is the transfer goroutine: it waits for the client's data
// connection, relays, and sends the final reply only after the last byte
// reached its destination and the client leg was closed cleanly.
func (x *transfer) run() {
	defer x.s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			x.log.Error("transfer panic", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			x.backend.close()
			x.client.close()
			if x.scan != nil {
				x.scan.abandon()
			}
			x.s.send(x.verb, rewrite.NewReply(426, "Internal error; transfer aborted."))
		}
		x.s.transferEnded(x.lost)
		close(x.done)
	}()
	if x.spool != nil {
		x.finish(x.spoolOutcome())
		return
	}
	x.finish(x.judge(x.outcome()))
}

// outcome is how a transfer ended, before the final reply.
type outcome struct {
	client      *clientData
	bytes       int64
	final       *rewrite.Reply // the backend's final reply, nil if not read
	backendLost error          // the backend control connection failed
	reply       *rewrite.Reply // what the client gets, when not final
	result      audit.Result
	check       string // the integrity check that failed, if any
	closeNotify bool   // the client leg's TLS stream ended with close_notify
	// flow is how the relay was paced (nil if it did not run); tooLarge:
	// the upload crossed max_file_size, and partial is what became of
	// the backend's partial file (audit.PartialRemoved…).
	flow     *flow
	tooLarge bool
	partial  string
	// overQuota: the transfer was cut at its user's quota (quota.go).
	overQuota bool
	// clientClosed: the client leg was closed already, cleanly (judge
	// closes it before waiting for a verdict).
	clientClosed bool
	// The scan's outcome (audit.Transfer's Scan, Signature, ScanError),
	// and whether the file was deleted on the backend.
	scan, signature, scanErr string
	deleted                  bool
	// backendIdle: the backend was never sent the transfer command (a
	// spooled upload before it is sent on), so an ABOR is not its
	// business. spooled is how long a spooled upload was held before it
	// was sent on.
	backendIdle bool
	spooled     time.Duration
}

// outcome connects both data legs, relays, and reads the backend's final
// reply.
func (x *transfer) outcome() outcome {
	// The backend's TLS handshake runs while the client connects.
	if err := x.dialer.connectData(x.be, x.backend); err != nil {
		x.client.close()
		x.backend.close()
		x.log.Warn("backend data connection failed", zap.String("verb", x.verb), zap.Error(err))
		return x.readFinal(outcome{result: audit.Failed, reply: rewrite.NewReply(425, "Cannot open data connection to the FTP server.")})
	}
	cd, out := x.awaitClient()
	if cd == nil {
		return x.readFinal(out)
	}
	out.client = cd
	x.addLeg(func() { resetLeg(cd.tcp) })
	rerr := x.relayLegs(&out)
	if rerr == nil {
		// The source ended cleanly. For an upload the backend learns the
		// end of the file from our close_notify (under TLS) and FIN.
		if x.scan != nil {
			// clamd scans while the backend's leg closes.
			x.judging.Store(true) // until judge has the verdict
			x.scan.end()
		}
		x.backend.finish(lingerTimeout)
		out.result = audit.Complete
		return x.readFinal(out)
	}
	// Something broke. The backend must not take a broken upload for a
	// complete one: its leg is reset, not closed.
	x.backend.close()
	x.brokenOff(&out, rerr)
	return x.readFinal(out)
}

// awaitClient waits for the client's data connection, within the
// passive-accept timeout. Without one, it returns the failed outcome,
// the backend leg closed and a refused TLS client told why (refuseData).
func (x *transfer) awaitClient() (*clientData, outcome) {
	var cd, refused *clientData
	var err error
	timer := time.NewTimer(x.timeouts.PassiveAccept)
	select {
	case r := <-x.client.ready:
		timer.Stop()
		cd, err, refused = r.conn, r.err, r.refused
	case <-timer.C:
		err = x.client.timedOut(x.timeouts.PassiveAccept)
	case <-x.stop:
		timer.Stop()
		err = errors.New("transfer cancelled")
	}
	x.client.close()
	if cd != nil {
		return cd, outcome{}
	}
	x.backend.close()
	out := outcome{result: audit.Failed, reply: rewrite.NewReply(425, "Cannot open data connection: "+shortErr(err)+".")}
	var nr *errNotResumed
	if errors.As(err, &nr) {
		out.reply = rewrite.NewReply(522, notResumedText(nr))
	}
	var none *errNoDataConn
	if errors.As(err, &none) {
		// Behind NAT or a firewall, the usual cause: the advertised
		// address is not the one clients reach, or the port is not
		// forwarded to this host.
		x.log.Warn("no data connection from the client to the passive port it was given",
			append(x.client.passive.fields(), zap.String("transfer", x.verb), zap.Duration("waited", none.after),
				zap.String("hint", "check that public_address is the address clients reach and that passive_ports are forwarded to the listening address"))...)
	} else {
		x.log.Info("client data connection failed", zap.String("verb", x.verb), zap.Error(err))
	}
	if refused != nil {
		x.refuseData(refused) // before the 522, which the client reads after its data connection ends
	}
	return nil, out
}

// relayLegs copies the data one way and checks how its source ended. It
// returns nil for a stream that ended cleanly and passed its checks.
func (x *transfer) relayLegs(out *outcome) error {
	cd, stall := out.client, x.timeouts.DataStall
	out.flow = newFlow(x, x.maxBytes())
	defer out.flow.end()
	if x.direction == audit.Download {
		n, err := relay(cd.conn, x.backend.conn, false, stall, &x.bytes, out.flow, nil)
		out.bytes = n
		x.s.bytesDown.Add(n)
		if errors.Is(err, errQuotaExceeded) {
			// Cut here: finish resets the client's leg, so that the
			// client cannot take what it got for the whole file, and
			// the command gets 552, never 226.
			out.overQuota = true
			return err
		}
		if err == nil {
			err = x.verifyDownload(n)
		}
		return err
	}
	var tee func([]byte)
	if x.scan != nil {
		tee = x.scan.feed
	}
	var dst net.Conn = x.spool // a spooled upload is received into its spool file
	if x.spool == nil {
		dst = x.backend.conn
	}
	n, err := relay(dst, cd.conn, true, stall, &x.bytes, out.flow, tee)
	out.bytes = n
	x.s.bytesUp.Add(n)
	if errors.Is(err, errFileTooLarge) || errors.Is(err, errQuotaExceeded) {
		// Cut here: the client stops sending at once, and is told why
		// on the control connection (552).
		out.tooLarge = errors.Is(err, errFileTooLarge)
		out.overQuota = !out.tooLarge
		if x.spool == nil { // a spooled upload left nothing on the backend
			x.cleaning.Store(true) // before the client can see the cut
		}
		resetLeg(cd.tcp)
		return err
	}
	// The relay read io.EOF, and not from the TCP stream: the client's
	// close_notify.
	out.closeNotify = err == nil && cd.tls != nil && !cd.eof.sawTCPEOF()
	if err == nil {
		err = x.verifyUpload(cd, out.closeNotify)
	}
	return err
}

// brokenOff records in out why the relay broke off (rerr) and what the
// client is told.
func (x *transfer) brokenOff(out *outcome, rerr error) {
	out.result = audit.Incomplete
	var ie *errIntegrity
	switch {
	case out.tooLarge:
		out.result = audit.TooLarge
		out.reply = rewrite.NewReply(552, fmt.Sprintf("Upload aborted: the file exceeds the maximum size of %s (%d bytes).",
			config.FormatSize(x.s.cfg.Limits.MaxFileSize), x.s.cfg.Limits.MaxFileSize))
		x.s.srv.metrics.tooLarge.Inc()
		x.log.Info("upload cut at max_file_size", zap.String("verb", x.verb), zap.String("path", x.path),
			zap.Int64("bytes", out.bytes), zap.Int64("offset", x.offset), zap.Int64("max_file_size", x.s.cfg.Limits.MaxFileSize))
		return
	case out.overQuota:
		l := out.flow.quota
		out.result = audit.QuotaExceeded
		out.reply = rewrite.NewReply(552, out.flow.quotaText(out.bytes))
		x.s.srv.metrics.quotaRefusals.WithLabelValues(string(x.direction)).Inc()
		x.log.Info("transfer cut at its quota", zap.String("verb", x.verb), zap.String("path", x.path),
			zap.Int64("bytes", out.bytes), zap.String("quota", l.quota.String(out.flow.up)), zap.Time("resets", l.key.end))
		return
	case errors.Is(rerr, errSpoolFull), errors.Is(rerr, errSpoolTooLarge), errors.Is(rerr, errSpoolWrite):
		x.spoolRefused(out, rerr)
		return
	case x.cancelled():
		// By the client's ABOR, or by the session's end (the client
		// vanished, or shutdown): only the first is "aborted".
		if x.state.Load() == transferAbort {
			out.result = audit.Aborted
		}
		out.reply = rewrite.NewReply(426, "Transfer aborted.")
	case errors.As(rerr, &ie):
		out.check = ie.check
		out.reply = rewrite.NewReply(426, ie.text)
		x.log.Warn("transfer failed an integrity check", zap.String("verb", x.verb), zap.String("path", x.path),
			zap.String("check", ie.check), zap.Int64("bytes", out.bytes), zap.Int64("announced", x.announcedBytes()), zap.Int64("offset", x.offset))
	case isTimeout(rerr):
		out.reply = rewrite.NewReply(426, fmt.Sprintf("Transfer aborted: no progress for %s.", x.timeouts.DataStall))
	case errors.Is(rerr, errClientLeg):
		out.reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the client failed.")
	default:
		out.reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the FTP server failed.")
	}
	if ie == nil {
		x.log.Info("transfer failed", zap.String("verb", x.verb), zap.Int64("bytes", out.bytes), zap.Error(rerr))
	}
}

// readFinal reads the backend's final reply to the transfer command into
// out, unless the client's ABOR already claimed the transfer: abortBackend
// then reads it together with the ABOR's reply.
func (x *transfer) readFinal(out outcome) outcome {
	if x.state.Load() == transferAbort {
		return out
	}
	out.final, out.backendLost = x.be.read(x.timeouts.BackendReply)
	return out
}
