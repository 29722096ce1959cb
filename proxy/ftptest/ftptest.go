// Package ftptest starts real FTP servers and runs real FTP clients on
// loopback, for ftpsgate's integration tests: vsftpd, pure-ftpd and ProFTPD
// as backends; curl, lftp and Python's ftplib as clients; certificates made on
// the fly. A missing prerequisite fails the test with what to run; nothing
// is ever skipped silently.
//
// The machine is prepared by scripts/test-deps.sh (make test-deps): Debian
// packages, vsftpd, pure-ftpd and ProFTPD unpacked under VsftpdRoot,
// PureFTPdRoot and ProFTPDRoot (their packages conflict with each other, and
// installing one would remove an FTP server the machine runs), and the
// system account Account whose password is in PasswordFile. A system-wide
// FTP server, if any, is never started.
package ftptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Paths and names prepared by scripts/test-deps.sh.
const (
	Account      = "ftpsgate-test"
	PasswordFile = "/var/lib/ftpsgate-test/password"
	PAMService   = "ftpsgate-test"
	VsftpdRoot   = "/opt/ftpsgate-test/vsftpd"
	PureFTPdRoot = "/opt/ftpsgate-test/pure-ftpd"
	ProFTPDRoot  = "/opt/ftpsgate-test/proftpd"
)

const setupHint = "prepare the machine with `make test-deps` (as root)"

// RequireRoot fails the test unless it runs as root: the FTP servers switch
// to the logged-in user, which only root can do.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test starts real FTP servers, which must run as root; run `sudo make test`")
	}
}

// Tool returns the path of an executable, or fails the test.
func Tool(t testing.TB, name string) string {
	t.Helper()
	for _, dir := range []string{"", "/usr/sbin/", "/sbin/"} {
		if p, err := exec.LookPath(dir + name); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not installed: %s", name, setupHint)
	return ""
}

// Credentials returns the test account's name and password.
func Credentials(t testing.TB) (user, password string) {
	t.Helper()
	b, err := os.ReadFile(PasswordFile)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		t.Fatalf("test account password not found (%v): %s", err, setupHint)
	}
	return Account, string(bytes.TrimSpace(b))
}

// accountIDs returns the uid and gid of the test account.
func accountIDs(t testing.TB) (int, int) {
	t.Helper()
	u, err := user.Lookup(Account)
	if err != nil {
		t.Fatalf("system account %s not found: %s", Account, setupHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Servers started on it must retry on a bind failure.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePortRange returns n consecutive ports, all free a moment ago, for a
// passive port range.
func FreePortRange(t testing.TB, n int) (first, last int) {
	t.Helper()
	for try := 0; try < 50; try++ {
		// Below Linux's ephemeral range (32768 up), where outgoing
		// connections would race for the same ports.
		var b [2]byte
		rand.Read(b[:])
		first = 20000 + (int(b[0])<<8|int(b[1]))%(12000-n)
		var ls []net.Listener
		ok := true
		for p := first; p < first+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return first, first + n - 1
		}
	}
	t.Fatalf("no free range of %d ports found", n)
	return 0, 0
}

// WaitGreeting waits until a server at addr sends a 220 greeting, polling
// until timeout. It is a readiness check, not a sleep.
func WaitGreeting(addr string, timeout time.Duration) error {
	return waitGreeting(addr, timeout, nil)
}

// waitGreetingTLS is WaitGreeting for an implicit-FTPS server.
func waitGreetingTLS(addr string, conf *tls.Config, timeout time.Duration) error {
	return waitGreeting(addr, timeout, conf)
}

// waitGreeting polls addr until it greets with 220 (over TLS from the
// first byte when conf is set), or timeout passes.
func waitGreeting(addr string, timeout time.Duration, conf *tls.Config) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var r io.Reader = c
			if conf != nil {
				r = tls.Client(c, conf)
			}
			buf := make([]byte, 4)
			_, err = io.ReadFull(r, buf)
			c.Close()
			if err == nil && string(buf[:3]) == "220" {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("greeting %q", buf)
			}
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no 220 greeting from %s within %s: %w", addr, timeout, last)
}

// RandomFile writes size random bytes to path and returns their SHA-256.
func RandomFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FileSHA256 returns the SHA-256 of the file at path.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Chown gives path to the test account, so that the FTP server can write
// there once logged in.
func Chown(t testing.TB, path string) {
	t.Helper()
	uid, gid := accountIDs(t)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// Run runs a command with a timeout and returns its standard output. A
// non-zero exit fails the test with both outputs.
func Run(t testing.TB, timeout time.Duration, stdin string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := RunErr(timeout, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// RunErr runs a command with a timeout and returns its outputs and error.
func RunErr(timeout time.Duration, stdin string, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return o.String(), e.String(), err
}

// TempDir is t.TempDir made traversable by the FTP servers' unprivileged
// processes (t.TempDir is mode 0700, owned by root).
func TempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}
