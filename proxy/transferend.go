package proxy

import (
	"errors"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// The end of a transfer (transfer.go has its start and its relay): the
// final reply and the audit record, ABOR toward the backend, the client
// leg's close, and what max_file_size leaves behind.

// ---- the end ----

// finish closes the client leg and sends the final reply(ies).
func (x *transfer) finish(out outcome) {
	aborted := !x.state.CompareAndSwap(transferRunning, transferDone)
	reply := out.reply // the proxy's own verdict, when the relay failed
	if reply == nil {
		reply = out.final // else the backend's
	}
	if reply == nil { // backend control lost mid-transfer
		reply = rewrite.NewReply(426, "Transfer aborted: lost the connection to the FTP server.")
	}
	if !reply.Positive() && out.result == audit.Complete {
		out.result = audit.Incomplete
	}
	// The client leg ends cleanly (TLS close_notify, then FIN) only if
	// the transfer succeeded: a client can then tell a complete file from
	// a truncated one on the data connection too.
	if out.client != nil && !out.clientClosed {
		if out.result == audit.Complete {
			if !x.closeClientLeg(out.client) {
				reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the client failed at close.")
				out.result = audit.Incomplete
			} else if x.direction == audit.Download {
				out.closeNotify = out.client.tls != nil // ours, sent
			}
		} else {
			resetLeg(out.client.tcp)
		}
	}
	if out.result == audit.Complete && x.direction == audit.Upload && out.client != nil && out.client.tls != nil && !out.closeNotify {
		x.log.Warn("upload ended without TLS close_notify: its completeness cannot be verified",
			zap.String("path", x.path), zap.Int64("bytes", out.bytes))
	}
	if aborted {
		reply = x.abortBackend(&out, reply)
	}
	switch {
	case x.spool != nil:
		// Spooled: the backend holds only what was scanned clean and
		// sent on; there is nothing to delete.
	case x.scan != nil && out.scan == scanNone && out.bytes > 0 && !out.deleted:
		// A scanned upload that did not complete (one cut at
		// max_file_size too) was not judged: what reached the backend
		// must not stay there, even in a file that existed before it.
		x.log.Warn("incomplete scanned upload; deleting what reached the backend", zap.String("path", x.path), zap.Int64("bytes", out.bytes))
		out.deleted = x.deleteUpload(&out)
		if out.tooLarge || out.overQuota {
			out.partial = audit.PartialRemoveFailed
			if out.deleted {
				out.partial = audit.PartialRemoved
			}
		}
	case out.tooLarge, out.overQuota && x.direction == audit.Upload:
		x.removePartial(&out)
	}
	if out.backendLost != nil && !x.cancelled() {
		x.log.Warn("backend control connection lost during transfer", zap.Error(out.backendLost))
		x.lost = out.backendLost // the session cannot go on (transferEnded)
	}
	// Recorded before the reply, so that whoever reads the audit after
	// seeing the reply finds the transfer there.
	x.record(out, reply.Code)
	x.s.sendReply(x.verb, reply)
	if aborted {
		x.s.sendReply("ABOR", rewrite.NewReply(226, "Abort successful."))
	}
}

// record logs and audits the transfer, and counts it in the metrics.
func (x *transfer) record(out outcome, code int) {
	s := x.s
	var resumedFrom string
	if out.client != nil {
		resumedFrom = out.client.sibling
	}
	d := time.Since(x.start)
	fields := []zap.Field{zap.String("verb", x.verb), zap.String("path", x.path), zap.Int64("bytes", out.bytes),
		zap.Duration("duration", d), zap.String("result", string(out.result)), zap.Int("code", code)}
	var throttled time.Duration
	var rateLimit int64
	var rateLevel string
	if f := out.flow; f != nil && f.waited > 0 {
		throttled, rateLimit, rateLevel = f.waited, int64(f.slowest), f.slowestAt.String()
		fields = append(fields, zap.Duration("throttled", throttled), zap.String("rate_limit", f.rateLimit()))
	}
	path := x.path
	if x.named != "" {
		path = x.named
	}
	x.log.Info("transfer", fields...)
	var quota string
	var quotaResets time.Time
	if out.overQuota {
		l := out.flow.quota
		quota, quotaResets = l.quota.String(out.flow.up), l.key.end
	}
	s.audit.Transfer(audit.Transfer{
		Throttled: throttled, RateLimit: rateLimit, RateLevel: rateLevel, PartialFile: out.partial,
		Quota: quota, QuotaResets: quotaResets,
		Verb: x.verb, Direction: x.direction, Path: path, Bytes: out.bytes, Duration: d,
		Result: out.result, Check: out.check, Announced: x.announcedBytes(), Offset: x.offset,
		CloseNotify: out.closeNotify, TLS: out.client != nil && out.client.tls != nil,
		Resumed: out.client != nil && out.client.resumed, ResumedFrom: resumedFrom,
		Code:   code,
		Client: s.client.addr.Addr().String(), User: s.login.user, Binary: x.binary, File: x.file,
		Scan: out.scan, Signature: out.signature, ScanError: out.scanErr, Deleted: out.deleted,
		ScanMode: x.scanMode, Spooled: out.spooled,
	})
	s.srv.metrics.transfer(x.direction, out.result, out.bytes, d)
}

// abortBackend completes an ABOR that arrived during the transfer (RFC 959
// §4.1.3): the backend is sent ABOR and its replies are consumed. It
// returns the reply the transfer command gets: 426, or its real result if
// it had completed; the ABOR itself then gets 226.
func (x *transfer) abortBackend(out *outcome, reply *rewrite.Reply) *rewrite.Reply {
	abor := rewrite.Command{Verb: "ABOR"}
	if out.backendLost == nil && !out.backendIdle {
		if err := x.be.send(abor); err != nil {
			out.backendLost = err
		} else {
			want := 1 // the ABOR's own reply
			if out.final == nil {
				want = 2 // and the transfer's, not read yet
			}
			for i := 0; i < want; i++ {
				rep, err := x.be.read(5 * time.Second)
				if err != nil {
					if !isTimeout(err) {
						out.backendLost = err
					}
					break
				}
				x.log.Debug("backend reply to ABOR", zap.String("reply", rep.String()))
			}
		}
	}
	if out.result != audit.Complete {
		out.result = audit.Aborted
		reply = rewrite.NewReply(426, "Transfer aborted.")
	}
	return reply
}

// ---- the client leg's end ----

// refusedUploadLimit bounds what the client of a refused upload may send
// before its connection is reset instead of closed (refuseData).
const refusedUploadLimit = 64 << 20

// refuseData ends the client's data connection refused for its TLS
// session (522) so that the client's error is the transfer command's 522,
// not a reset on the data connection, which clients report first and
// without the reason (Python's ftplib raised BrokenPipeError, and read the
// 522 as the reply to its next command; issue 15, item 4). Nothing but our
// close_notify is sent on it. A download's client reads an empty stream
// ended by close_notify, then the 522. An upload's client writes at once,
// and a closed connection would fail its write: what it sends is read and
// discarded, never forwarded, until it closes its side (at most
// refusedUploadLimit bytes, each read within the stall deadline; past
// that the connection is reset); then it gets close_notify and the 522.
func (x *transfer) refuseData(cd *clientData) {
	x.addLeg(func() { resetLeg(cd.tcp) }) // ABOR, or the session's end
	if x.direction == audit.Upload {
		cd.eof.progress(x.timeouts.DataStall)
		n, err := io.Copy(io.Discard, io.LimitReader(cd.conn, refusedUploadLimit+1))
		cd.eof.progress(0)
		if err != nil || n > refusedUploadLimit || x.cancelled() {
			x.log.Info("refused upload's data connection reset", zap.Int64("discarded", n), zap.Error(err))
			resetLeg(cd.tcp)
			return
		}
		x.log.Debug("refused upload's data discarded", zap.Int64("bytes", n))
	}
	x.closeClientLeg(cd)
}

// closeClientLeg ends a successful transfer's client leg: TLS close_notify,
// then TCP FIN; a lingering goroutine reads until the client closes too, so
// that our close never resets data the client has yet to read. At most
// limits.max_lingering_data_legs legs linger in the whole server (a client
// that never closes its data connections would otherwise hold a descriptor
// for each, issue 24 item 7); past that a leg is closed at once: what was
// sent still arrives, and only a client that sends more after it may meet
// a reset. It reports whether the close_notify was sent.
func (x *transfer) closeClientLeg(cd *clientData) bool {
	srv := x.s.srv
	cd.tcp.SetWriteDeadline(time.Now().Add(x.timeouts.DataStall))
	if cd.tls != nil {
		if err := cd.tls.CloseWrite(); err != nil {
			x.log.Info("close_notify to client failed", zap.Error(err))
			cd.tcp.Close()
			return false
		}
	}
	cd.tcp.CloseWrite()
	if !srv.startLinger(x.s.cfg.Limits.MaxLingeringDataLegs) {
		srv.metrics.lingerRefused.Inc()
		x.log.Debug("data connection closed without lingering: max_lingering_data_legs reached")
		cd.tcp.Close()
		return true
	}
	x.s.wg.Add(1)
	go lingerLeg(&x.s.wg, &srv.lingering, cd)
	return true
}

// shortErr is err for a reply: a network error's cause without its
// addresses.
func shortErr(err error) string {
	if err == nil {
		return "unknown error"
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}

// ---- max_file_size ----

// maxBytes is how many bytes the transfer may relay under
// limits.max_file_size: for STOR, the size less the REST offset it
// writes from; for STOU and APPE, the size (APPE's file may hold more
// already, which the proxy does not know). -1: no bound (a download, or
// no max_file_size).
func (x *transfer) maxBytes() int64 {
	max := x.s.cfg.Limits.MaxFileSize
	if max <= 0 || x.direction != audit.Upload {
		return -1
	}
	return pos(max - x.offset)
}

func pos(n int64) int64 {
	if n < 0 {
		return 0
	}
	return n
}

// removePartial removes, after the backend's final reply, the partial
// file an upload cut at max_file_size or at its quota left on the
// backend: DELE on the proxy's own control connection, which the
// transfer still owns. Only a file the upload created is removed (STOR
// or STOU from offset 0): with REST or APPE, the file held data before
// this transfer, which is kept.
// out.partial says what became of it, for the audit.
func (x *transfer) removePartial(out *outcome) {
	switch {
	case x.offset > 0 || x.verb == "APPE":
		out.partial = audit.PartialKept
		x.log.Info("partial upload kept: the file existed before it (REST or APPE)", zap.String("path", x.path))
		return
	case out.backendLost != nil:
		out.partial = audit.PartialRemoveFailed
		x.log.Warn("partial upload not removed: no connection to the FTP server", zap.String("path", x.path))
		return
	}
	rep, err := x.be.roundTrip(rewrite.Command{Verb: "DELE", Arg: x.path}, x.timeouts.BackendReply)
	switch {
	case err != nil:
		out.backendLost = err
		out.partial = audit.PartialRemoveFailed
		x.log.Warn("partial upload not removed: DELE failed", zap.String("path", x.path), zap.Error(err))
	case rep.Code/100 != 2:
		out.partial = audit.PartialRemoveFailed
		x.log.Warn("partial upload not removed: the FTP server refused DELE", zap.String("path", x.path), zap.String("reply", rep.String()))
	default:
		out.partial = audit.PartialRemoved
		x.log.Info("partial upload removed", zap.String("path", x.path))
	}
}
