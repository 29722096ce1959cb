package audit

import (
	"fmt"
	"os"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// File is an append-only log file that can be reopened under the same
// path, for logrotate: after the rotated file is renamed, Reopen starts a
// new one (and the last writes to the old one are complete). Safe for
// concurrent use.
type File struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// OpenFile opens path for appending, creating it (mode 0640) if needed.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Write(p)
}

// Sync flushes the file to disk.
func (f *File) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Sync()
}

// Reopen opens the path anew and closes the previous file. If the path
// cannot be opened, writes go on to the previous file and the error says
// why.
func (f *File) Reopen() error {
	nf, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.f
	f.f = nf
	f.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Close()
}

// Files are the audit stream's open files.
type Files struct {
	list []*File
}

// Open returns a Logger writing JSON lines to auditPath ("-" for stdout,
// "" for none) and, if xferlogPath is set, classic xferlog lines there.
func Open(auditPath, xferlogPath string) (*Logger, *Files, error) {
	files := &Files{}
	l := &Logger{}
	if auditPath != "" {
		var ws zapcore.WriteSyncer
		if auditPath == "-" {
			ws = zapcore.Lock(os.Stdout)
		} else {
			f, err := OpenFile(auditPath)
			if err != nil {
				return nil, nil, fmt.Errorf("open audit file: %w", err)
			}
			files.list = append(files.list, f)
			ws = f
		}
		l.z = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), ws, zapcore.InfoLevel))
	}
	if xferlogPath != "" {
		f, err := OpenFile(xferlogPath)
		if err != nil {
			files.Close()
			return nil, nil, fmt.Errorf("open xferlog: %w", err)
		}
		files.list = append(files.list, f)
		l.xferlog = f
	}
	return l, files, nil
}

// Reopen reopens every file (SIGUSR1, after logrotate renamed them).
func (fs *Files) Reopen() error {
	var first error
	for _, f := range fs.list {
		if err := f.Reopen(); err != nil && first == nil {
			first = fmt.Errorf("reopen %s: %w", f.path, err)
		}
	}
	return first
}

// Close closes every file.
func (fs *Files) Close() error {
	var first error
	for _, f := range fs.list {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
