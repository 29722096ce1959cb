package ftptest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/scan"
)

// EICAR is the EICAR anti-malware test file: harmless, and detected as
// malware by every scanner that knows it.
var EICAR = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)

// EICARSignature is the name ClamdServer's database gives EICAR: sigtool
// names an MD5 signature after the file it hashed, and clamd adds
// ".UNOFFICIAL" to signatures outside its official databases.
const EICARSignature = "Eicar-Test-Signature.UNOFFICIAL"

// Clamd is a clamd daemon started for one test.
type Clamd struct {
	// Unix is its Unix socket's path, TCP its host:port on loopback.
	Unix, TCP string
	Log       string // its log file, for failure messages
	stop      func()
}

// Stop stops clamd, and returns once it has exited. Safe to call twice.
func (c *Clamd) Stop() { c.stop() }

// StartClamd starts clamd (Debian's clamav-daemon) in the foreground, on a
// Unix socket in a temporary directory and a free loopback TCP port, with
// its own configuration and a signature database made offline: sigtool
// --md5 of the EICAR test file (nothing is downloaded, freshclam never
// runs, the system's clamd, if any, is not used). streamMax is its
// StreamMaxLength (and its file and scan size limits), in bytes. It is
// ready (it answered PING with PONG) when StartClamd returns, and stops
// when the test ends.
func StartClamd(t testing.TB, streamMax int64) *Clamd {
	t.Helper()
	bin := Tool(t, "clamd")
	sigtool := Tool(t, "sigtool")
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join(dir, strings.TrimSuffix(EICARSignature, ".UNOFFICIAL"))
	if err := os.WriteFile(sample, EICAR, 0o600); err != nil {
		t.Fatal(err)
	}
	// sigtool names the signature by the path it is given: run it in dir.
	cmd := exec.Command(sigtool, "--md5", filepath.Base(sample))
	cmd.Dir = dir
	sig, err := cmd.Output()
	if err != nil {
		t.Fatalf("sigtool --md5: %v", err)
	}
	if err := os.WriteFile(filepath.Join(db, "eicar.hdb"), sig, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "clamd.sock")
	logFile := filepath.Join(dir, "clamd.log")
	size := strconv.FormatInt(streamMax, 10)
	var lastErr error
	for try := 0; try < 5; try++ {
		port := strconv.Itoa(FreePort(t))
		conf := []string{
			"Foreground yes", "DatabaseDirectory " + db, "LocalSocket " + sock, "LocalSocketMode 600",
			"TCPSocket " + port, "TCPAddr 127.0.0.1", "LogFile " + logFile, "LogTime yes",
			"PidFile " + filepath.Join(dir, "clamd.pid"), "TemporaryDirectory " + dir,
			"StreamMaxLength " + size, "MaxFileSize " + size, "MaxScanSize " + size,
			"SelfCheck 0", "MaxThreads 4",
		}
		confFile := filepath.Join(dir, "clamd.conf")
		if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(sock)
		c := &Clamd{Unix: sock, TCP: "127.0.0.1:" + port, Log: logFile}
		stop, err := startProcess(bin, func() error { return waitPONG(c, 60*time.Second) }, "-c", confFile)
		if err != nil {
			lastErr = err
			continue
		}
		c.stop = stop
		t.Cleanup(stop)
		return c
	}
	t.Fatalf("clamd did not start: %v", lastErr)
	return nil
}

// waitPONG polls clamd with PING on both its sockets until each answers
// PONG, or timeout.
func waitPONG(c *Clamd, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for _, cl := range []*scan.Clamd{{Network: "unix", Address: c.Unix, Timeout: 5 * time.Second},
		{Network: "tcp", Address: c.TCP, Timeout: 5 * time.Second}} {
		for {
			if err = cl.Ping(context.Background()); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(20 * time.Millisecond) // a poll's interval, not a wait for readiness
		}
	}
	return nil
}

// startProcess starts a foreground daemon in its own process group and
// waits until ready reports nil; stop kills the group and waits for it
// (safe to call twice).
func startProcess(bin string, ready func() error, args ...string) (stop func(), err error) {
	cmd := exec.Command(bin, args...)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	readyc := make(chan error, 1)
	go func() { readyc <- ready() }()
	select {
	case <-exited:
		return nil, &startError{bin, out.String()}
	case err := <-readyc:
		if err != nil {
			stop()
			return nil, &startError{bin, err.Error() + "; output: " + out.String()}
		}
	}
	return stop, nil
}

type startError struct{ bin, detail string }

func (e *startError) Error() string { return e.bin + " did not start: " + e.detail }
