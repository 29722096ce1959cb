package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options tune Open. The zero value gives the defaults.
type Options struct {
	// Log is the diagnostic log, where the audit stream's own failures
	// go (rate-limited: see ErrorLogInterval). If nil, they are not
	// logged, only counted.
	Log *zap.Logger
	// QueueLines bounds each sink's queue of lines waiting for its
	// writer. A line that does not fit is dropped and counted, so a
	// stalled reader or a full disk never blocks a session. Zero means
	// 8192 (a few MB at most).
	QueueLines int
	// ErrorLogInterval is the least time between two log lines about
	// one sink's failing writes or dropped lines. Zero means 10s.
	ErrorLogInterval time.Duration
	// StallTimeout: a write blocked for longer (a pipe nobody reads)
	// makes the sink unhealthy (Logger.Health). Zero means 5s.
	StallTimeout time.Duration
	// CloseTimeout bounds how long Files.Close waits for queued lines
	// to be written. Zero means 10s.
	CloseTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.QueueLines <= 0 {
		o.QueueLines = 8192
	}
	if o.ErrorLogInterval <= 0 {
		o.ErrorLogInterval = 10 * time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 5 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 10 * time.Second
	}
}

// Files are the audit stream's sinks: its files, or standard output.
type Files struct {
	sinks   []*sink
	timeout time.Duration
	once    sync.Once
	err     error
}

// Open returns a Logger writing JSON lines to auditPath ("-" for standard
// output, "" for none) and, if xferlogPath is set, classic xferlog lines
// there. Each goes through its own sink: a bounded queue and a writer
// goroutine, so that writing never blocks a session (see sink). Close
// the Files to flush and stop them.
//
// With auditPath "-", a reader that goes away makes writes fail with
// EPIPE, and the process dies of SIGPIPE unless it has ignored or caught
// the signal (signal.Ignore(syscall.SIGPIPE)) before: the command does.
func Open(auditPath, xferlogPath string, opt Options) (*Logger, *Files, error) {
	opt.defaults()
	files := &Files{timeout: opt.CloseTimeout}
	l := &Logger{}
	if auditPath != "" {
		var t *target
		if auditPath == "-" {
			t = newTarget("-", os.Stdout)
		} else {
			f, err := openAppend(auditPath)
			if err != nil {
				return nil, nil, fmt.Errorf("open audit file: %w", err)
			}
			t = newTarget(auditPath, f)
		}
		s := newSink("audit", t, opt)
		files.sinks = append(files.sinks, s)
		l.z = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), s, zapcore.InfoLevel))
	}
	if xferlogPath != "" {
		f, err := openAppend(xferlogPath)
		if err != nil {
			files.Close()
			return nil, nil, fmt.Errorf("open xferlog: %w", err)
		}
		s := newSink("xferlog", newTarget(xferlogPath, f), opt)
		files.sinks = append(files.sinks, s)
		l.xferlog = s
	}
	l.sinks = files.sinks
	for _, s := range files.sinks {
		go s.run()
	}
	return l, files, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Reopen reopens every file (SIGUSR1, after logrotate renamed them):
// the lines queued before the call are written to the old file first
// (waiting at most reopenFlushTimeout: a failing file is switched anyway,
// and its queue goes to the new one). Standard output is left as it is. A
// file that cannot be opened is written on to the previous one, and the
// error names it.
func (fs *Files) Reopen() error {
	var first error
	for _, s := range fs.sinks {
		ctx, cancel := context.WithTimeout(context.Background(), reopenFlushTimeout)
		s.flush(ctx)
		cancel()
		if err := s.t.reopen(); err != nil && first == nil {
			first = fmt.Errorf("reopen %s: %w", s.t.path, err)
		}
	}
	return first
}

// reopenFlushTimeout bounds how long Reopen waits for the queued lines.
const reopenFlushTimeout = 2 * time.Second

// Close writes what is queued, waiting at most Options.CloseTimeout, and
// closes the files (not standard output). Events logged after Close are
// dropped and counted. It is safe to call more than once.
func (fs *Files) Close() error {
	fs.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), fs.timeout)
		defer cancel()
		var errs []error
		for _, s := range fs.sinks {
			errs = append(errs, s.close(ctx))
		}
		fs.err = errors.Join(errs...)
	})
	return fs.err
}

// target is where a sink writes: an append-only file that can be reopened
// under the same path, for logrotate, or standard output.
type target struct {
	path string // "-" for standard output

	// mu is held for a write, so that reopen never closes a file under
	// one.
	mu      sync.Mutex
	f       *os.File
	regular bool // f is a regular file: a partial write can be cut off
}

func newTarget(path string, f *os.File) *target {
	t := &target{path: path, f: f}
	if fi, err := f.Stat(); err == nil {
		t.regular = fi.Mode().IsRegular()
	}
	return t
}

// writeWhole writes p, a whole number of lines, entirely or not at all:
// when a write to a regular file comes up short (ENOSPC, EDQUOT, EFBIG),
// the bytes it did write are cut off again, so that no partial line is
// left to be fused with the next one. The file grew by exactly those
// bytes (the sink is its only writer), so its size after the write says
// where to cut; a size tracked from before would be wrong after
// logrotate's copytruncate emptied the file. A pipe cannot be cut: its
// short writes happen only when its reader has gone (EPIPE).
func (t *target) writeWhole(p []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.f.Write(p)
	if err == nil {
		return nil
	}
	if n > 0 {
		err = fmt.Errorf("%d of %d bytes written: %w", n, len(p), err)
		if t.regular {
			if cerr := cutTail(t.f, int64(n)); cerr != nil {
				err = errors.Join(err, fmt.Errorf("cutting off the partial line: %w", cerr))
			}
		}
	}
	return err
}

// cutTail removes the last n bytes of f and leaves its offset at the new
// end (which a file opened without O_APPEND, such as a redirected
// standard output, needs).
func cutTail(f *os.File, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := max(fi.Size()-n, 0)
	if err := f.Truncate(size); err != nil {
		return err
	}
	_, err = f.Seek(size, io.SeekStart)
	return err
}

// sync flushes a regular file to disk.
func (t *target) sync() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.regular {
		return nil
	}
	return t.f.Sync()
}

// reopen opens the path anew and closes the previous file. Standard
// output is not reopened.
func (t *target) reopen() error {
	if t.path == "-" {
		return nil
	}
	nf, err := openAppend(t.path)
	if err != nil {
		return err
	}
	t.mu.Lock()
	old := t.f
	t.f, t.regular = nf, true
	if fi, err := nf.Stat(); err == nil {
		t.regular = fi.Mode().IsRegular()
	}
	t.mu.Unlock()
	return old.Close()
}

// close closes the file; standard output stays open.
func (t *target) close() error {
	if t.path == "-" {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.f.Close()
}
