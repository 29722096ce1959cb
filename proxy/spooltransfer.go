package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// A spooled upload (scan block mode "spool", README "Scan uploads"): the
// client gets the proxy's own 150 at once, and sends the file into a
// spool file (spool.go) while the scanner reads it as in inline mode
// (the relay's tee). Once the file is in whole and the verdict is clean,
// the transfer goroutine sends it on to the backend as any transfer's
// backend leg is opened (backendDialer.openData: EPSV or PASV on the
// session's backend control connection, or the backend's active mode),
// with the client's verb and argument, after REST when the client gave
// one; the client's final reply is the backend's. An infected upload is
// refused with 550 and the backend never sees a byte, nor the command.
// The spool file is removed before the final reply, on every path.
//
// REST before STOR is honoured: the backend is sent the same REST, and
// the spooled bytes written from that offset, as without scanning. The
// scan judges the bytes sent, as an inline scan does (and as for APPE):
// the client learns what the backend holds with SIZE, and a part of a
// file a spooled upload left on the backend was scanned clean, since
// nothing else reaches it. Refusing REST would only make a large upload
// interrupted mid-way start over.

// startSpooled starts a spooled upload, in the session goroutine: it
// checks that the spool has room (452 if not: the client sends nothing),
// connects to the scanner (openScan: 451 under on_error = "reject" when
// it cannot), creates the spool file, sends the proxy's own 150 and
// starts the transfer goroutine. The backend is not told of the upload
// yet.
func (x *transfer) startSpooled(cmd rewrite.Command, sc *config.Scan, active netip.AddrPort) error {
	s := x.s
	sp := s.srv.spools.of(sc)
	if sp == nil { // the server opens every spool before a configuration is used
		x.client.close()
		s.log.Error("scan block's spool is not open", zap.String("scan", sc.Name))
		return x.refuseSpooled(cmd, 451, "Upload refused: the proxy cannot spool it; try again later.")
	}
	if sp.full() {
		x.client.close()
		s.srv.spools.m.refused.WithLabelValues(sc.Name, "before").Inc()
		s.log.Warn("upload refused: the spool is full", zap.String("scan", sc.Name), zap.String("verb", cmd.Verb),
			zap.String("path", cmd.Arg), zap.Int64("spool_max", sp.max.Load()))
		return x.refuseSpooled(cmd, 452, "Insufficient storage space: the proxy's upload spool is full; try again later.")
	}
	if ok, err := x.openScan(cmd, sc); !ok {
		return err
	}
	var limit int64
	if x.scan != nil && sc.AboveMax == config.ScanReject {
		limit = sc.MaxSize // more could not be scanned whole: cut at once, not spooled
	}
	sf, err := sp.create(limit)
	if err != nil {
		x.client.close()
		x.abandonScan()
		s.log.Error("upload refused: no spool file", zap.String("scan", sc.Name), zap.Error(err))
		return x.refuseSpooled(cmd, 451, "Upload refused: the proxy cannot spool it; try again later.")
	}
	x.spool = sf
	x.path, x.target = cmd.Arg, cmd.Arg
	if x.file && cmd.Arg != "" {
		x.path = s.cwd.fullPath(cmd.Arg)
	}
	x.start = time.Now()
	x.announced, x.sized = rewrite.Size{}, false
	if active.IsValid() {
		x.client = s.dataConnector(x.verb).dialData(active, x.useTLS)
	}
	if err := s.sendReply(cmd.Verb, rewrite.NewReply(150, "Ok to send data; the upload is scanned before it goes on to the FTP server.")); err != nil {
		x.client.close()
		x.abandonScan()
		sf.remove(x.log)
		return err
	}
	s.mu.Lock()
	s.xfer = x
	s.mu.Unlock()
	s.wg.Add(1)
	go x.run()
	return nil
}

// abandonScan gives up the upload's scan, if it has one.
func (x *transfer) abandonScan() {
	if x.scan != nil {
		x.scan.abandon()
	}
}

// refuseSpooled audits and answers a spooled upload refused before its
// 150.
func (x *transfer) refuseSpooled(cmd rewrite.Command, code int, text string) error {
	s := x.s
	s.audit.Transfer(audit.Transfer{
		Verb: cmd.Verb, Direction: x.direction, Path: cmd.Arg, Result: audit.Failed, Announced: -1, Code: code,
		Client: s.client.addr.Addr().String(), User: s.login.user, Binary: x.binary, File: x.file,
		Scan: scanNone, ScanMode: x.scanMode,
	})
	s.srv.metrics.transfer(x.direction, audit.Failed, 0, 0)
	return s.reply(cmd, code, text)
}

// spoolOutcome is a spooled upload's transfer goroutine up to its final
// reply: the client's data into the spool (and to the scanner), the
// verdict, and for a clean file the backend leg. The spool file is
// removed when it returns, before the final reply.
func (x *transfer) spoolOutcome() (out outcome) {
	defer x.spool.remove(x.log)
	defer func() {
		if out.spooled == 0 {
			out.spooled = time.Since(x.start) // never sent on
		}
		if x.scan != nil && out.scan == "" {
			out.scan = scanNone
		}
		if x.scan == nil {
			out.scan, out.scanErr = x.scanOutcome, x.scanErr
		}
	}()
	cd, failed := x.awaitClient()
	if cd == nil {
		x.abandonScan()
		failed.backendIdle = true
		return failed
	}
	out.backendIdle = true
	out.client = cd
	x.addLeg(func() { resetLeg(cd.tcp) })
	if err := x.relayLegs(&out); err != nil {
		x.abandonScan()
		x.brokenOff(&out, err)
		return out
	}
	// In whole: the client's leg ends now, so that it reads the control
	// channel (NOOP, STAT) while the verdict is pending.
	out.clientClosed = true
	if !x.closeClientLeg(cd) {
		x.abandonScan()
		out.result = audit.Incomplete
		out.reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the client failed at close.")
		return out
	}
	if u := x.scan; u != nil {
		x.judging.Store(true)
		u.end()
		since := time.Now()
		if !u.wait(x.stop) {
			x.judging.Store(false)
			u.abandon()
			x.log.Info("spooled upload abandoned before its scan's verdict; the FTP server never saw it",
				zap.String("scan", u.cfg.Name), zap.String("path", x.path))
			out.result = audit.Incomplete
			out.reply = rewrite.NewReply(426, "Transfer aborted before the malware scan's verdict.")
			return out
		}
		reply := x.decide(&out, since)
		x.judging.Store(false)
		if reply != nil {
			out.result, out.reply = audit.Rejected, reply
			return out
		}
	}
	out.spooled = time.Since(x.start)
	x.forwardSpool(&out)
	return out
}

// spoolRefused records a spooled upload cut while it was received (the
// relay's rerr): the spool filled up, or the disk under it (452, RFC
// 959's "insufficient storage space"), the spool file could not be
// written (451), or the upload passed max_size under above_max =
// "reject" (552, as an inline scan answers it). The backend saw nothing.
func (x *transfer) spoolRefused(out *outcome, rerr error) {
	sf := x.spool
	fields := []zap.Field{zap.String("scan", sf.sp.name), zap.String("verb", x.verb), zap.String("path", x.path), zap.Int64("bytes", out.bytes)}
	if errors.Is(rerr, errSpoolWrite) {
		out.result = audit.Incomplete
		out.reply = rewrite.NewReply(451, "Upload aborted: the proxy could not spool it; try again later.")
		if errors.Is(rerr, syscall.ENOSPC) || errors.Is(rerr, syscall.EDQUOT) {
			out.reply = rewrite.NewReply(452, "Insufficient storage space: the proxy's spool disk is full; try again later.")
			x.s.srv.spools.m.refused.WithLabelValues(sf.sp.name, "during").Inc()
		}
		x.log.Error("upload cut: the spool file could not be written", append(fields, zap.String("file", sf.path), zap.Error(rerr))...)
		return
	}
	if errors.Is(rerr, errSpoolFull) {
		out.result = audit.Incomplete
		out.reply = rewrite.NewReply(452, "Insufficient storage space: the proxy's upload spool filled up; try again later.")
		x.s.srv.spools.m.refused.WithLabelValues(sf.sp.name, "during").Inc()
		x.log.Warn("upload cut: the spool is full", append(fields, zap.Int64("spool_max", sf.sp.max.Load()))...)
		return
	}
	out.result, out.scan = audit.Rejected, scanTooLarge
	out.reply = rewrite.NewReply(552, fmt.Sprintf("Upload rejected: larger than the malware scan's limit of %d bytes.", sf.limit))
	if x.scan != nil {
		x.s.srv.metrics.scanVerdict(x.scan.cfg, scanTooLarge)
	}
	x.log.Warn("upload rejected: larger than the scan's max_size (above_max = reject); not spooled further",
		append(fields, zap.Int64("max_size", sf.limit))...)
}

// forwardSpool sends a spooled upload, scanned clean (or passed), to the
// backend: its data leg opened as any transfer's (openData, connectData),
// REST if the client gave one, the client's command, the spool file, and
// the backend's final reply, which the client gets. A failure of the
// backend's gets a reply of its own: the backend's refusal as it is, or
// 451 when the data could not be sent; the file is not on the backend
// then, or only in part (what reached it was scanned).
func (x *transfer) forwardSpool(out *outcome) {
	if x.cancelled() { // ABOR or the session's end, as the verdict came
		out.result, out.reply = audit.Incomplete, rewrite.NewReply(426, "Transfer aborted.")
		return
	}
	x.forwarding.Store(true)
	defer x.forwarding.Store(false)
	fail := func(result audit.Result, text string, err error) {
		out.result, out.reply = result, rewrite.NewReply(451, text)
		if errors.Is(err, errBackendLost) {
			out.backendLost = err
		}
		x.log.Warn("spooled upload not stored on the FTP server", zap.String("verb", x.verb), zap.String("path", x.path),
			zap.Int64("bytes", out.bytes), zap.Int64("sent", x.sent.Load()), zap.Error(err))
	}
	bd, err := x.dialer.openData(x.be)
	if err != nil {
		fail(audit.Failed, "Upload not stored: cannot open a data connection to the FTP server; try again later.", err)
		return
	}
	x.backend = bd
	x.addLeg(bd.close)
	first, refused, err := x.sendCommand(rewrite.Command{Verb: x.verb, Arg: x.target}) // the client's command
	if err != nil {
		bd.close()
		fail(audit.Failed, "Upload not stored: lost the connection to the FTP server.", err)
		out.backendLost = err
		return
	}
	if refused { // REST or the command refused: permissions, quota…
		bd.close()
		out.result, out.final = audit.Failed, first
		x.log.Warn("FTP server refused a spooled upload", zap.String("verb", x.verb), zap.String("path", x.path), zap.String("reply", first.String()))
		return
	}
	out.backendIdle = false
	if name, ok := rewrite.STOUName(first); x.verb == "STOU" && ok {
		x.named = x.s.cwd.fullPath(name)
	}
	if err := x.dialer.connectData(x.be, bd); err != nil {
		bd.close()
		fail(audit.Failed, "Upload not stored: the data connection to the FTP server failed.", err)
		*out = x.readFinal(*out)
		return
	}
	sf := x.spool
	n, err := int64(0), sf.rewind()
	if err == nil {
		n, err = relay(bd.conn, sf, false, x.timeouts.DataStall, &x.sent, nil, nil)
	}
	if err == nil && n != sf.size {
		err = fmt.Errorf("sent %d of the %d bytes spooled", n, sf.size)
	}
	if err != nil {
		bd.close() // reset: the server must not take it for a whole file
		if x.cancelled() {
			out.result, out.reply = audit.Incomplete, rewrite.NewReply(426, "Transfer aborted.")
		} else {
			fail(audit.Incomplete, "Upload not stored: the data connection to the FTP server failed.", err)
		}
		*out = x.readFinal(*out)
		return
	}
	bd.finish(lingerTimeout)
	out.result = audit.Complete
	*out = x.readFinal(*out)
	if out.final != nil && !out.final.Positive() {
		x.log.Warn("FTP server did not store a spooled upload", zap.String("verb", x.verb), zap.String("path", x.path),
			zap.String("reply", out.final.String()))
	}
}
