package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A sink decouples the sessions from the file (or pipe) their audit lines
// go to (issue 24, items 8 and 9). Write never blocks and never fails: it
// copies the line into a bounded queue, or, when the queue is full, drops
// it and counts it. One writer goroutine per sink takes lines from the
// queue in order (so one session's events stay in order), writes them in
// batches, each batch whole or not at all (target.writeWhole), and on an
// error keeps the batch and tries it again, line by line, backing off up
// to a second, until it goes through. Meanwhile the queue takes new lines
// until it is full. The sink is unhealthy while writes fail, while a write has been
// blocked for longer than the stall timeout, or while its queue is full;
// the proxy answers /readyz and, with audit.on_error = "refuse", admits
// sessions by that.
type sink struct {
	name string // "audit" or "xferlog": the metrics' label
	t    *target
	log  *zap.Logger
	opt  Options

	q       chan item
	stop    chan struct{} // closed by close: write what is queued, then end
	stopCtx context.Context
	ended   chan struct{} // closed when the writer has ended
	once    sync.Once
	closed  atomic.Bool // lines written after close are dropped

	written, writeErrors, dropped atomic.Uint64
	failure                       atomic.Pointer[failure] // set while writes fail
	writingSince                  atomic.Int64            // UnixNano of the write under way, or 0
	nextDropLog                   atomic.Int64            // UnixNano before which drops are not logged

	// The writer's own: when it last logged the failure, and the counts
	// then.
	lastFailLog              time.Time
	errorsLogged, dropLogged uint64
}

// item is a queued line, or a barrier (line nil) whose done is closed
// once every line queued before it is written.
type item struct {
	line []byte
	done chan struct{}
}

// failure is why a sink's writes fail, and since when.
type failure struct {
	err   error
	since time.Time
}

// maxBatch bounds the bytes one write takes from the queue.
const maxBatch = 64 << 10

// gatherDelay is how long the writer lets lines gather after the first
// one before it writes them all at once (Sync's lines are written at
// once). The lines keep the time they were logged.
const gatherDelay = time.Millisecond

// Backoff between tries of a failing write.
const (
	minBackoff = 20 * time.Millisecond
	maxBackoff = time.Second
)

var _ zapcore.WriteSyncer = (*sink)(nil)

func newSink(name string, t *target, opt Options) *sink {
	return &sink{name: name, t: t, log: opt.Log, opt: opt, q: make(chan item, opt.QueueLines),
		stop: make(chan struct{}), ended: make(chan struct{})}
}

// Write queues a copy of p, one whole line (zap writes one entry per call
// and reuses its buffer; the xferlog writes one line). It never blocks and never returns an
// error: a line that finds the queue full is dropped and counted.
func (s *sink) Write(p []byte) (int, error) {
	if s.closed.Load() {
		s.drop("the audit stream is closed")
		return len(p), nil
	}
	select {
	case s.q <- item{line: append([]byte(nil), p...)}:
	default:
		s.drop("queue full")
	}
	return len(p), nil
}

// drop counts a line lost, and logs it, at most once per
// ErrorLogInterval.
func (s *sink) drop(why string) {
	n := s.dropped.Add(1)
	now := time.Now().UnixNano()
	next := s.nextDropLog.Load()
	if now < next || !s.nextDropLog.CompareAndSwap(next, now+int64(s.opt.ErrorLogInterval)) {
		return
	}
	s.log.Error("audit lines dropped", zap.String("sink", s.name), zap.String("path", s.t.path),
		zap.String("reason", why), zap.Uint64("dropped_total", n), zap.Int("queue_lines", cap(s.q)),
		zap.NamedError("write_error", s.err()))
}

// Sync waits until every line queued before it is written (at most
// syncTimeout), then flushes a file to disk.
func (s *sink) Sync() error {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	if err := s.flush(ctx); err != nil {
		return err
	}
	return s.t.sync()
}

// syncTimeout bounds Sync.
const syncTimeout = 10 * time.Second

// flush waits until every line queued before the call is written.
func (s *sink) flush(ctx context.Context) error {
	if s.closed.Load() {
		return nil
	}
	done := make(chan struct{})
	select {
	case s.q <- item{done: done}:
	case <-ctx.Done():
		return fmt.Errorf("%s: flush: %w (queue full: %v)", s.name, ctx.Err(), s.err())
	}
	select {
	case <-done:
		return nil
	case <-s.ended:
		return fmt.Errorf("%s: closed before the flush", s.name)
	case <-ctx.Done():
		return fmt.Errorf("%s: flush: %w (%v)", s.name, ctx.Err(), s.err())
	}
}

// err is why the sink's writes fail now, or nil.
func (s *sink) err() error {
	if f := s.failure.Load(); f != nil {
		return f.err
	}
	return nil
}

// health is why the sink cannot take the audit stream now, or nil.
func (s *sink) health() error {
	if f := s.failure.Load(); f != nil {
		return fmt.Errorf("%s %s: writes failing since %s: %w", s.name, s.t.path,
			f.since.UTC().Format(time.RFC3339), f.err)
	}
	if w := s.writingSince.Load(); w != 0 {
		if d := time.Since(time.Unix(0, w)); d > s.opt.StallTimeout {
			return fmt.Errorf("%s %s: a write has been blocked for %s", s.name, s.t.path, d.Round(time.Second))
		}
	}
	if len(s.q) >= cap(s.q) {
		return fmt.Errorf("%s %s: queue full (%d lines): lines are dropped", s.name, s.t.path, cap(s.q))
	}
	return nil
}

// close stops the writer once it has written what is queued, or when ctx
// ends, then closes the target. A writer still blocked in a write when
// ctx ends (a pipe nobody reads) is left to the process's exit, and so is
// its file.
func (s *sink) close(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		s.stopCtx = ctx
		close(s.stop)
		select {
		case <-s.ended:
			err = s.t.close()
		case <-ctx.Done():
			err = fmt.Errorf("%s %s: %d lines still queued (%v): %w", s.name, s.t.path, len(s.q), s.err(), ctx.Err())
		}
	})
	return err
}

// run is the sink's writer goroutine.
func (s *sink) run() {
	defer close(s.ended)
	var (
		batch   []byte
		lines   uint64
		waiters []chan struct{}
	)
	take := func(it item) {
		if it.done != nil {
			waiters = append(waiters, it.done)
			return
		}
		batch = append(batch, it.line...)
		lines++
	}
	for {
		stopping := false
		select {
		case it := <-s.q:
			take(it)
		case <-s.stop:
			stopping = true
		}
		if !stopping && len(waiters) == 0 {
			// Gather: the lines that come meanwhile join this write.
			// While the writer sleeps rather than waits on the queue, a
			// session queueing a line wakes no one: one wake-up and one
			// write per gatherDelay instead of two per command, which
			// the command round trip would pay for on a busy machine.
			t := time.NewTimer(gatherDelay)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				stopping = true
			}
		}
	more:
		for stopping || len(batch) < maxBatch {
			select {
			case it := <-s.q:
				take(it)
			default:
				break more
			}
		}
		if !s.write(batch, lines) {
			return
		}
		for _, w := range waiters {
			close(w)
		}
		batch, lines, waiters = batch[:0], 0, waiters[:0]
		if stopping {
			return
		}
	}
}

// write writes batch, whole lines, trying again until it goes through.
// After a failure it goes on line by line, each tried until it goes
// through, so that a disk with room for some lines but not for the whole
// batch takes what it can. It reports false only when the sink is
// closing and the close deadline has passed; the lines not written are
// then dropped and counted.
func (s *sink) write(batch []byte, lines uint64) bool {
	backoff, lineByLine := minBackoff, false
	for len(batch) > 0 {
		chunk, n := batch, lines
		if i := bytes.IndexByte(batch, '\n'); lineByLine && i >= 0 {
			chunk, n = batch[:i+1], min(lines, 1)
		}
		s.writingSince.Store(time.Now().UnixNano())
		err := s.t.writeWhole(chunk)
		s.writingSince.Store(0)
		if err == nil {
			s.written.Add(n)
			batch, lines = batch[len(chunk):], lines-n
			backoff = minBackoff
			s.recovered()
			continue
		}
		lineByLine = true
		s.failed(err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			// Closing: a pipe whose reader is gone, or a file closed
			// under the sink, never comes back; anything else (a full
			// disk) may, until the deadline.
			if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
				s.lost(lines)
				return false
			}
			select {
			case <-time.After(backoff):
			case <-s.stopCtx.Done():
				s.lost(lines)
				return false
			}
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return true
}

// lost counts and logs the lines a closing sink gives up on.
func (s *sink) lost(lines uint64) {
	s.dropped.Add(lines)
	s.log.Error("audit lines lost at close: the sink could not be written", zap.String("sink", s.name),
		zap.String("path", s.t.path), zap.Uint64("lines", lines), zap.NamedError("write_error", s.err()))
}

// failed records a failed write and logs it: the first at once, then at
// most once per ErrorLogInterval while they go on.
func (s *sink) failed(err error) {
	n := s.writeErrors.Add(1)
	now := time.Now()
	f := s.failure.Load()
	since := now
	if f != nil {
		since = f.since
	}
	s.failure.Store(&failure{err: err, since: since})
	if f != nil && now.Sub(s.lastFailLog) < s.opt.ErrorLogInterval {
		return
	}
	msg := "audit write failed; retrying, new lines are queued"
	if f != nil {
		msg = "audit writes still failing"
	}
	s.log.Error(msg, zap.String("sink", s.name), zap.String("path", s.t.path), zap.Error(err),
		zap.Duration("failing_for", now.Sub(since)), zap.Uint64("write_errors", n-s.errorsLogged),
		zap.Uint64("dropped", s.dropped.Load()-s.dropLogged), zap.Int("queued", len(s.q)))
	s.lastFailLog, s.errorsLogged, s.dropLogged = now, n, s.dropped.Load()
}

// recovered logs the end of a run of failed writes.
func (s *sink) recovered() {
	f := s.failure.Swap(nil)
	if f == nil {
		return
	}
	s.log.Warn("audit writes resumed", zap.String("sink", s.name), zap.String("path", s.t.path),
		zap.Duration("failed_for", time.Since(f.since)), zap.Uint64("write_errors_total", s.writeErrors.Load()),
		zap.Uint64("dropped_total", s.dropped.Load()))
	s.errorsLogged, s.dropLogged = s.writeErrors.Load(), s.dropped.Load()
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Sink        string // "audit" or "xferlog"
	Written     uint64 // lines written
	WriteErrors uint64 // failed writes (each is tried again)
	Dropped     uint64 // lines lost: the queue was full, or the sink closed
	Queued      int    // lines waiting
	QueueLines  int    // the queue's bound
	// Err is why the sink is unhealthy now, or nil (see Logger.Health).
	Err error
}

func (s *sink) stats() SinkStats {
	return SinkStats{Sink: s.name, Written: s.written.Load(), WriteErrors: s.writeErrors.Load(),
		Dropped: s.dropped.Load(), Queued: len(s.q), QueueLines: cap(s.q), Err: s.health()}
}
