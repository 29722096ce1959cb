package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/scan"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// Inline scanning (scan blocks, README "Scan uploads"): an upload's bytes
// go to the backend and to the scanner at once. The relay hands each
// chunk to the upload's scan (feed) before it writes it to the backend;
// a goroutine of the scan's own streams the chunks to the scanner (clamd
// or an ICAP service, by the block's engine), so the two writes overlap.
// At most scanBuffers chunks wait for the scanner: past that the relay
// waits (the client's TCP window closes), and never for longer than the
// scan block's timeout, after which the scan has failed and its goroutine
// only discards. The backend's final reply is
// held until the verdict (transfer.judge); the control channel is
// answered meanwhile, as during any transfer.

// scanBuffers bounds the chunks of one upload waiting for the scanner.
const scanBuffers = 4

// scanStream is one scan in progress, of either engine: *scan.Stream
// (clamd) or *scan.ICAPStream.
type scanStream interface {
	// Write sends a chunk of the upload; past the scan's max_size it
	// only counts.
	Write(p []byte) (int, error)
	// Finish ends the stream and returns the verdict.
	Finish() (scan.Verdict, error)
	// Close abandons the scan; any goroutine may call it, more than once.
	Close() error
}

var (
	_ scanStream = (*scan.Stream)(nil)
	_ scanStream = (*scan.ICAPStream)(nil)
)

// startStream connects to cfg's scanner and starts the scan of the file
// at path (which only ICAP sends, for the server's logs).
func startStream(cfg *config.Scan, path string) (scanStream, error) {
	if cfg.Engine == config.ICAP {
		c := &scan.ICAP{URL: cfg.ICAP, Timeout: cfg.Timeout, MaxSize: cfg.MaxSize}
		if cfg.RootCAs != nil {
			c.TLS = &tls.Config{RootCAs: cfg.RootCAs}
		}
		return c.Start(context.Background(), path)
	}
	c := &scan.Clamd{Network: cfg.Network, Address: cfg.Address, Timeout: cfg.Timeout, MaxSize: cfg.MaxSize}
	return c.Start(context.Background())
}

// scanVerdict counts a scan's result in the metrics.
func (m *metrics) scanVerdict(cfg *config.Scan, result string) {
	m.scanVerdicts.WithLabelValues(cfg.Name, cfg.Engine.String(), result).Inc()
}

// scanWaited records how long an upload's final reply waited for its
// verdict.
func (m *metrics) scanWaited(cfg *config.Scan, d time.Duration) {
	m.scanLatency.WithLabelValues(cfg.Name, cfg.Engine.String()).Observe(d.Seconds())
}

// uploadScan is the scan of one upload.
type uploadScan struct {
	cfg    *config.Scan
	stream scanStream
	tokens chan struct{}   // one per chunk waiting, up to scanBuffers
	work   chan *[]byte    // chunks from relayBuffers[0], their length set
	done   chan struct{}   // closed when run has the verdict (or gave up)
	stop   <-chan struct{} // the transfer's: feed stops waiting once it is closed
	ended  bool            // end or abandon was called (the relay's goroutine)

	// Set by run before done is closed.
	verdict scan.Verdict
	err     error
}

// startScan connects to the scan block's scanner and starts a scan; the
// scan's goroutine is counted in the session's WaitGroup. Called by the
// session goroutine, before the transfer starts.
func (s *session) startScan(cfg *config.Scan, path string, stop <-chan struct{}) (*uploadScan, error) {
	st, err := startStream(cfg, path)
	if err != nil {
		return nil, err
	}
	u := &uploadScan{cfg: cfg, stream: st, tokens: make(chan struct{}, scanBuffers),
		work: make(chan *[]byte, scanBuffers), done: make(chan struct{}), stop: stop}
	s.wg.Add(1)
	go u.run(&s.wg, s.log)
	return u, nil
}

// feed hands p, a chunk of the upload, to the scanner. It copies p, and
// waits only while scanBuffers chunks are waiting already, and not once
// the transfer is cancelled (ABOR, the session's end), whose relay must
// then end at once; the scan is abandoned after it.
func (u *uploadScan) feed(p []byte) {
	for len(p) > 0 {
		select {
		case u.tokens <- struct{}{}:
		case <-u.stop:
			return
		}
		bp := relayBuffers[0].Get().(*[]byte)
		n := copy(*bp, p)
		*bp = (*bp)[:n]
		u.work <- bp
		p = p[n:]
	}
}

// end tells the scanner that the upload is complete: the verdict follows.
func (u *uploadScan) end() {
	if !u.ended {
		u.ended = true
		close(u.work)
	}
}

// abandon gives the scan up: the upload did not complete, or nobody
// waits for the verdict any more. The scanner's connection is closed, so
// that run ends at once.
func (u *uploadScan) abandon() {
	u.stream.Close()
	u.end()
}

// run streams the chunks to the scanner, then reads the verdict. After a
// failure it goes on taking chunks, so that feed never waits on it.
func (u *uploadScan) run(wg *sync.WaitGroup, log *zap.Logger) {
	defer wg.Done()
	defer close(u.done)
	defer func() {
		if r := recover(); r != nil {
			log.Error("scan panic", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			u.stream.Close()
			u.err = fmt.Errorf("scan panic: %v", r)
			for bp := range u.work { // until end or abandon, so that feed never waits
				u.release(bp)
			}
		}
	}()
	var werr error
	for bp := range u.work {
		if werr == nil {
			_, werr = u.stream.Write(*bp)
		}
		u.release(bp)
	}
	u.verdict, u.err = u.stream.Finish()
}

// release gives a chunk's buffer back, whole, and its place to feed.
func (u *uploadScan) release(bp *[]byte) {
	*bp = (*bp)[:cap(*bp)]
	relayBuffers[0].Put(bp)
	<-u.tokens
}

// wait waits for the verdict, or for stop; it reports whether the
// verdict came.
func (u *uploadScan) wait(stop <-chan struct{}) bool {
	select {
	case <-u.done:
		return true
	case <-stop:
		return false
	}
}

// Scan outcomes, in the audit ("scan") and the metrics' result label.
const (
	scanClean    = "clean"
	scanInfected = "infected"
	scanTooLarge = "too_large"
	scanPartial  = "partial"
	scanError    = "error"
	scanNone     = "none"
)

// scanOf is the scan block of a session whose backend the route named
// route chose ("": none did): the route's, if it names one, else the
// listener's.
func (s *session) scanOf(route string) *config.Scan {
	if rt := s.routeNamed(route); rt != nil && rt.Scan != "" {
		return s.cfg.Scans[rt.Scan]
	}
	return s.lcfg.Scan
}

// openScan starts the scan of an upload x, before its command reaches the
// backend. It reports whether the upload may go on: a scanner that
// cannot be reached refuses it here under on_error = "reject" (451; the
// backend never sees the file), and lets it through unscanned under
// "pass".
func (x *transfer) openScan(cmd rewrite.Command, cfg *config.Scan) (bool, error) {
	s := x.s
	u, err := s.startScan(cfg, cmd.Arg, x.stop)
	if err == nil {
		x.scan = u
		return true, nil
	}
	s.srv.metrics.scanVerdict(cfg, scanError)
	x.scanOutcome, x.scanErr = scanError, err.Error()
	if cfg.OnError == config.ScanPass {
		x.log.Warn("scanner unavailable; upload passed unscanned (on_error = pass)", zap.String("scan", cfg.Name),
			zap.String("verb", cmd.Verb), zap.String("path", cmd.Arg), zap.Error(err))
		return true, nil
	}
	x.log.Warn("scanner unavailable; upload refused (on_error = reject)", zap.String("scan", cfg.Name),
		zap.String("verb", cmd.Verb), zap.String("path", cmd.Arg), zap.Error(err))
	x.client.close()
	s.audit.Transfer(audit.Transfer{
		Verb: cmd.Verb, Direction: x.direction, Path: cmd.Arg, Result: audit.Failed, Announced: -1, Code: 451,
		Client: s.client.addr.Addr().String(), User: s.login.user, Binary: x.binary, File: x.file,
		Scan: scanError, ScanError: err.Error(), ScanMode: cfg.Mode.String(),
	})
	s.srv.metrics.transfer(x.direction, audit.Failed, 0, 0)
	return false, s.reply(cmd, 451, "Upload refused: the malware scanner is unavailable; try again later.")
}

// judge holds a scanned upload's final reply until the scanner's
// verdict, and acts on it: a clean file gets the backend's reply; an
// infected one, one above max_size (above_max = "reject") or one without
// a verdict (on_error = "reject") is deleted on the backend and refused.
// An upload that did not complete is not judged: its scan is abandoned.
func (x *transfer) judge(out outcome) outcome {
	u := x.scan
	defer x.judging.Store(false)
	if u == nil {
		out.scan, out.scanErr = x.scanOutcome, x.scanErr
		return out
	}
	if out.result != audit.Complete || out.final == nil || !out.final.Positive() || x.state.Load() != transferRunning {
		u.abandon()
		out.scan = scanNone
		return out
	}
	cfg := u.cfg
	// The data are all in: the client leg ends now, as finish would end
	// it, so that the client reads the control channel (and may send
	// NOOP or STAT) while the verdict is pending.
	out.clientClosed = true
	if out.client != nil && !x.closeClientLeg(out.client) {
		u.abandon()
		out.scan, out.result = scanNone, audit.Incomplete
		out.reply = rewrite.NewReply(426, "Transfer aborted: the data connection to the client failed at close.")
		return out // finish deletes the file
	}
	since := time.Now()
	if !u.wait(x.stop) {
		// ABOR, or the session's end: the file is on the backend,
		// unjudged; finish deletes it.
		u.abandon()
		x.log.Warn("upload abandoned before its scan's verdict", zap.String("scan", cfg.Name), zap.String("path", x.path))
		out.scan, out.result = scanNone, audit.Incomplete
		out.reply = rewrite.NewReply(426, "Transfer aborted before the malware scan's verdict.")
		return out
	}
	if reply := x.decide(&out, since); reply != nil {
		out.result, out.reply = audit.Rejected, reply
		out.deleted = x.deleteUpload(&out)
	}
	return out
}

// decide reads the verdict of the upload's scan, which has come (the
// wait for it began at since), into out, and returns the reply of a
// refused upload, or nil when the upload is accepted.
func (x *transfer) decide(out *outcome, since time.Time) *rewrite.Reply {
	u := x.scan
	cfg, m := u.cfg, x.s.srv.metrics
	m.scanWaited(cfg, time.Since(since))
	v, err := u.verdict, u.err
	fields := []zap.Field{zap.String("scan", cfg.Name), zap.Stringer("engine", cfg.Engine), zap.String("verb", x.verb), zap.String("path", x.path),
		zap.Int64("bytes", out.bytes), zap.Int64("scanned", v.Scanned), zap.Duration("wait", time.Since(since))}
	var reply *rewrite.Reply
	switch {
	case err != nil:
		out.scan, out.scanErr = scanError, err.Error()
		if errors.Is(err, scan.ErrSizeLimit) {
			fields = append(fields, zap.String("hint", "clamd's StreamMaxLength is below the scan block's max_size"))
		}
		if cfg.OnError == config.ScanPass {
			x.log.Warn("scan failed; upload passed unscanned (on_error = pass)", append(fields, zap.Error(err))...)
			break
		}
		x.log.Warn("scan failed; upload rejected (on_error = reject)", append(fields, zap.Error(err))...)
		reply = rewrite.NewReply(451, "Upload rejected: the malware scan failed; try again later.")
	case v.Infected:
		out.scan, out.signature = scanInfected, v.Signature
		x.log.Warn("upload rejected: malware detected", append(fields, zap.String("signature", v.Signature))...)
		reply = rewrite.NewReply(550, "Upload rejected: malware detected ("+printable(v.Signature)+").")
	case v.Truncated && cfg.AboveMax == config.ScanReject:
		out.scan = scanTooLarge
		x.log.Warn("upload rejected: larger than the scan's max_size (above_max = reject)", append(fields, zap.Int64("max_size", cfg.MaxSize))...)
		reply = rewrite.NewReply(552, fmt.Sprintf("Upload rejected: larger than the malware scan's limit of %d bytes.", cfg.MaxSize))
	case v.Truncated:
		out.scan = scanPartial
		x.log.Warn("upload passed: only its first max_size bytes were scanned (above_max = pass)", append(fields, zap.Int64("max_size", cfg.MaxSize))...)
	default:
		out.scan = scanClean
		x.log.Debug("upload scanned clean", fields...)
	}
	m.scanVerdict(cfg, out.scan)
	return reply
}

// deleteUpload deletes the upload's file on the backend (DELE over the
// session's own backend control connection, which the transfer holds),
// and reports whether the backend confirmed it. A failure is logged as an
// error: the file is on the backend.
func (x *transfer) deleteUpload(out *outcome) bool {
	if x.target == "" {
		x.log.Error("scanned upload left on the backend: its name is unknown (STOU reply without a name)", zap.String("verb", x.verb))
		return false
	}
	if out.backendLost != nil {
		x.log.Error("scanned upload left on the backend: its control connection is lost", zap.String("path", x.path), zap.Error(out.backendLost))
		return false
	}
	rep, err := x.be.roundTrip(rewrite.Command{Verb: "DELE", Arg: x.target}, x.timeouts.BackendReply)
	if err != nil {
		out.backendLost = err
		x.log.Error("scanned upload left on the backend: DELE failed", zap.String("path", x.path), zap.Error(err))
		return false
	}
	if !rep.Positive() {
		x.log.Error("scanned upload left on the backend: DELE refused", zap.String("path", x.path), zap.String("reply", rep.String()))
		return false
	}
	x.log.Info("scanned upload deleted on the backend", zap.String("path", x.path))
	return true
}

// printable is a scanner's signature name for a reply line: no control
// characters, at most 200 bytes.
func printable(s string) string {
	b := []byte(s)
	if len(b) > 200 {
		b = b[:200]
	}
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}
