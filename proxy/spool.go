package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// The spool of scan blocks in mode "spool" (README, "Scan uploads"): the
// bounded area an upload is received into whole, scanned, and sent on
// from only when clean (spooltransfer.go). One spool per scan block, in a
// directory of its own that the proxy creates 0700; its files are 0600,
// created exclusively under a random name, and removed by the transfer
// that made them on every path, before its final reply. Files of the
// spool's name pattern found in the directory when the proxy opens it
// (at start, or when a reload names a new one) are a crashed run's, and
// are removed; so are any left after Shutdown.

// spoolPrefix begins the name of every spool file.
const spoolPrefix = "ftpsgate-spool-"

var (
	// errSpoolFull: the spool's spool_max was reached while an upload
	// was received (452).
	errSpoolFull = errors.New("the spool is full")
	// errSpoolTooLarge: an upload passed its scan block's max_size
	// under above_max = "reject" while it was received (552): it could
	// not be scanned whole, and is not kept.
	errSpoolTooLarge = errors.New("larger than the scan's max_size")
	// errSpoolWrite: the spool file could not be written (the disk is
	// full, an I/O error): 452 for a full disk, else 451.
	errSpoolWrite = errors.New("writing to the spool")
)

// spool is the area of one scan block's spooled uploads.
type spool struct {
	name string // the scan block's
	dir  string
	max  atomic.Int64 // spool_max, as the last configuration says
	used atomic.Int64 // bytes reserved by its files
	m    *spoolMetrics
}

// reserve takes n bytes of the spool, and reports whether they fitted.
func (sp *spool) reserve(n int64) bool {
	for {
		u := sp.used.Load()
		if u+n > sp.max.Load() {
			return false
		}
		if sp.used.CompareAndSwap(u, u+n) {
			sp.m.bytes.WithLabelValues(sp.name).Add(float64(n))
			return true
		}
	}
}

func (sp *spool) release(n int64) {
	sp.used.Add(-n)
	sp.m.bytes.WithLabelValues(sp.name).Sub(float64(n))
}

// full reports whether the spool has no byte left.
func (sp *spool) full() bool { return sp.used.Load() >= sp.max.Load() }

// create makes a new spool file: mode 0600, O_EXCL under a random name,
// so that nothing already there (a file, a symbolic link planted by
// someone who could write to the directory) is ever opened. limit, if
// positive, is the most bytes it takes (errSpoolTooLarge past it).
func (sp *spool) create(limit int64) (*spoolFile, error) {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	path := filepath.Join(sp.dir, spoolPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating a spool file: %w", err)
	}
	return &spoolFile{sp: sp, f: f, path: path, limit: limit}, nil
}

// spoolFile is one upload in the spool. It passes for a net.Conn, so that
// the relay writes the upload into it and later reads it to the backend,
// with the rate limits, max_file_size and the tee to the scanner that any
// upload has; deadlines mean nothing to it. It is used by the transfer
// goroutine alone, and removed by it (remove), on every path.
type spoolFile struct {
	sp    *spool
	f     *os.File
	path  string
	size  int64 // written, and reserved in the spool
	limit int64 // > 0: the most it takes
	gone  bool  // removed
}

var _ net.Conn = (*spoolFile)(nil)

// Write appends p, if the spool has room for it (errSpoolFull) and the
// file's limit allows it (errSpoolTooLarge); a chunk that does not fit is
// not written at all.
func (sf *spoolFile) Write(p []byte) (int, error) {
	n := int64(len(p))
	if sf.limit > 0 && sf.size+n > sf.limit {
		return 0, errSpoolTooLarge
	}
	if !sf.sp.reserve(n) {
		return 0, errSpoolFull
	}
	m, err := sf.f.Write(p)
	sf.size += int64(m)
	sf.sp.release(n - int64(m))
	if err != nil {
		return m, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	return m, nil
}

// Read reads the file from where rewind put it.
func (sf *spoolFile) Read(p []byte) (int, error) { return sf.f.Read(p) }

// rewind makes the next Read start at the file's beginning.
func (sf *spoolFile) rewind() error {
	_, err := sf.f.Seek(0, io.SeekStart)
	return err
}

// Close does nothing: the file lives until remove. (The relay never closes
// its legs, but a net.Conn must have one.)
func (sf *spoolFile) Close() error                     { return nil }
func (sf *spoolFile) LocalAddr() net.Addr              { return spoolAddr(sf.path) }
func (sf *spoolFile) RemoteAddr() net.Addr             { return spoolAddr(sf.path) }
func (sf *spoolFile) SetDeadline(time.Time) error      { return nil }
func (sf *spoolFile) SetReadDeadline(time.Time) error  { return nil }
func (sf *spoolFile) SetWriteDeadline(time.Time) error { return nil }

type spoolAddr string

func (a spoolAddr) Network() string { return "spool" }
func (a spoolAddr) String() string  { return string(a) }

// remove closes and deletes the file, and gives its bytes back to the
// spool. It may be called more than once; a failure is logged as an
// error (the file, which may hold malware, stays on the proxy's disk
// until the next start removes it).
func (sf *spoolFile) remove(log *zap.Logger) {
	if sf == nil || sf.gone {
		return
	}
	sf.gone = true
	sf.f.Close()
	if err := os.Remove(sf.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Error("spool file not removed", zap.String("file", sf.path), zap.Error(err))
	}
	sf.sp.release(sf.size)
}

// spoolMetrics are the spools' collectors.
type spoolMetrics struct {
	bytes   *prometheus.GaugeVec
	refused *prometheus.CounterVec
}

func newSpoolMetrics(reg prometheus.Registerer) *spoolMetrics {
	m := &spoolMetrics{
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ftpsgate", Name: "spool_bytes",
			Help: "Bytes of uploads held in a scan block's spool now (mode \"spool\"), at most its spool_max."}, []string{"scan"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ftpsgate", Name: "spool_refusals_total",
			Help: "Uploads refused with 452 because a scan block's spool was full: before they were received (when \"before\") or while (\"during\")."},
			[]string{"scan", "when"}),
	}
	reg.MustRegister(m.bytes, m.refused)
	return m
}

// spoolSet is the server's spools, by directory, kept across reloads:
// a reload that keeps a scan block's directory keeps its spool, files
// and count, and takes its new spool_max.
type spoolSet struct {
	m *spoolMetrics

	mu    sync.Mutex // guards byDir
	byDir map[string]*spool
}

func newSpoolSet(reg prometheus.Registerer) *spoolSet {
	return &spoolSet{m: newSpoolMetrics(reg), byDir: make(map[string]*spool)}
}

// open opens the spool of each scan block of cfg in mode "spool" whose
// directory is not open yet: it creates the directory (and its parents)
// mode 0700, checks it, and removes a crashed run's files from it. An
// error names the block and the directory; what was opened before it
// stays open (a spool directory holds nothing until a transfer uses it).
func (ss *spoolSet) open(cfg *config.Config, log *zap.Logger) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, sc := range cfg.Scans {
		if sc.Mode != config.ScanSpool {
			continue
		}
		if sp := ss.byDir[sc.SpoolDir]; sp != nil {
			sp.name = sc.Name
			sp.max.Store(sc.SpoolMax)
			continue
		}
		if err := prepareSpoolDir(sc.SpoolDir); err != nil {
			return fmt.Errorf("scan %q: spool_dir %s: %w", sc.Name, sc.SpoolDir, err)
		}
		if n, err := sweepSpool(sc.SpoolDir, log); err != nil {
			return fmt.Errorf("scan %q: spool_dir %s: %w", sc.Name, sc.SpoolDir, err)
		} else if n > 0 {
			log.Warn("removed files a previous run left in the spool", zap.String("scan", sc.Name),
				zap.String("spool_dir", sc.SpoolDir), zap.Int("files", n))
		}
		sp := &spool{name: sc.Name, dir: sc.SpoolDir, m: ss.m}
		sp.max.Store(sc.SpoolMax)
		ss.m.bytes.WithLabelValues(sc.Name).Set(0)
		ss.byDir[sc.SpoolDir] = sp
	}
	return nil
}

// of is the spool of scan block sc, or nil if it has none open.
func (ss *spoolSet) of(sc *config.Scan) *spool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byDir[sc.SpoolDir]
}

// sweep removes every spool file left in the open spools: after
// Shutdown, when no transfer runs any more.
func (ss *spoolSet) sweep(log *zap.Logger) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, sp := range ss.byDir {
		if n, err := sweepSpool(sp.dir, log); err != nil || n > 0 {
			log.Error("spool files left after shutdown", zap.String("scan", sp.name), zap.Int("removed", n), zap.Error(err))
		}
	}
}

// prepareSpoolDir creates dir, mode 0700, with any missing parent (also
// 0700), and checks that it is a directory of the proxy's own user, not
// a symbolic link, that no one else may enter: the spool holds uploads
// not yet scanned.
func prepareSpoolDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory (a symbolic link is refused)")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, not by the proxy's user (uid %d)", st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("mode %#o lets other users in; make it 0700", perm)
	}
	return nil
}

// sweepSpool removes the spool files in dir (by their name pattern; the
// directory's other files are left alone) and returns how many.
func sweepSpool(dir string, log *zap.Logger) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), spoolPrefix) || e.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			log.Error("stale spool file not removed", zap.String("file", filepath.Join(dir, e.Name())), zap.Error(err))
			continue
		}
		n++
	}
	return n, nil
}
