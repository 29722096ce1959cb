package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary gateBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// gateBinary builds the ftpsgate command once per test run and returns
// its path.
func gateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ftpsgate-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ftpsgate")
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// gateProcess is ftpsgate run as its own process, its standard output a
// pipe the test holds the reading end of.
type gateProcess struct {
	cmd        *exec.Cmd
	done       chan int // its exit status, once it has exited
	stderr     *ftptest.SyncBuffer
	addr       string // the explicit listener
	admin      string // the admin listener
	cfg        string // the configuration file
	src        string // its text
	stdout     *os.File
	exitStatus string // how it ended, once done has a value
	certs      *ftptest.Certs
}

// startGateProcess runs ftpsgate with audit { file = "-" } and auditHCL
// more lines in the audit block, writing its stdout to w.
func startGateProcess(t *testing.T, w *os.File, auditHCL string) *gateProcess {
	t.Helper()
	bin := gateBinary(t)
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	dir := t.TempDir()
	greeting := "ftpsgate audit test " + filepath.Base(dir)
	g := &gateProcess{cfg: filepath.Join(dir, "gate.hcl"), stderr: &ftptest.SyncBuffer{}, certs: certs}
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatalf("ftpsgate never served on a free port:\n%s", g.stderr.String())
		}
		g.addr = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
		g.admin = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
		first, last := ftptest.FreePortRange(t, 5)
		g.src = fmt.Sprintf(`listener "ftps" {
  address = %q
  cert_file = %q
  key_file = %q
  passive_ports = "%d-%d"
  backend = "b"
  greeting = %q
}
backend "b" { address = "127.0.0.1:1" }
audit {
  file = "-"
  %s
}
admin {
  address = %q
}
`, g.addr, certs.CertFile, certs.KeyFile, first, last, greeting, auditHCL, g.admin)
		if err := os.WriteFile(g.cfg, []byte(g.src), 0o600); err != nil {
			t.Fatal(err)
		}
		g.cmd = exec.Command(bin, "run", "-config", g.cfg)
		g.cmd.Stdout, g.cmd.Stderr = w, g.stderr
		if err := g.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		g.done = make(chan int, 1)
		go func(cmd *exec.Cmd, done chan int) {
			cmd.Wait()
			g.exitStatus = cmd.ProcessState.String()
			done <- cmd.ProcessState.ExitCode()
		}(g.cmd, g.done)
		if waitOwnGreeting(g.addr, greeting, g.done) {
			break
		}
	}
	proc := g.cmd.Process
	t.Cleanup(func() { proc.Kill() })
	return g
}

// alive fails the test if the process has exited.
func (g *gateProcess) alive(t *testing.T) {
	t.Helper()
	select {
	case code := <-g.done:
		t.Fatalf("ftpsgate exited (%d, %s):\n%s", code, g.exitStatus, g.stderr.String())
	default:
	}
}

// fatal fails the test with msg, and with how the process ended if it
// ends within five seconds.
func (g *gateProcess) fatal(t *testing.T, msg string) {
	t.Helper()
	select {
	case code := <-g.done:
		t.Fatalf("%s; ftpsgate exited (%d, %s):\n%s", msg, code, g.exitStatus, g.stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatalf("%s; ftpsgate runs:\n%s", msg, g.stderr.String())
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gateProcess) stop(t *testing.T) {
	t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case code := <-g.done:
		if code != 0 {
			t.Fatalf("exit %d (%s):\n%s", code, g.exitStatus, g.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("ftpsgate did not stop on SIGTERM")
	}
}

// get fetches path from the admin listener.
func (g *gateProcess) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + g.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReadyz polls /readyz until its status is code and its body holds
// want.
func (g *gateProcess) waitReadyz(t *testing.T, code int, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, body := g.get(t, "/readyz")
		if c == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %q, want %d with %q", c, body, code, want)
		}
		time.Sleep(50 * time.Millisecond) // polling a state, bounded by deadline
	}
}

// logLines are the diagnostic log's JSON lines with message msg.
func logLines(t *testing.T, stderr, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(stderr, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestAuditStdoutReaderGone (issue 24, item 8): with audit.file = "-", the
// reader of the audit stream exits. The proxy is not killed by SIGPIPE: it
// logs a structured error, counts it, and keeps serving.
func TestAuditStdoutReaderGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g := startGateProcess(t, w, "")
	w.Close()
	// The reader reads the first events, then goes away.
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, `"event":"session_start"`) {
		t.Fatalf("first audit line %q: %v", line, err)
	}
	r.Close()

	for i := range 5 {
		if got, err := ftptest.Greeting("", g.addr, 30*time.Second); err != nil || !strings.HasPrefix(got, "220 ") {
			g.fatal(t, fmt.Sprintf("session %d after the reader left: %q, %v", i, got, err))
		}
	}
	deadline := time.Now().Add(time.Minute)
	for len(logLines(t, g.stderr.String(), "audit write failed; retrying, new lines are queued")) == 0 {
		g.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("no audit write error logged:\n%s", g.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by deadline
	}
	g.alive(t)
	e := logLines(t, g.stderr.String(), "audit write failed; retrying, new lines are queued")[0]
	if e["level"] != "error" || e["sink"] != "audit" || e["path"] != "-" || !strings.Contains(fmt.Sprint(e["error"]), "broken pipe") {
		t.Fatalf("log line %v", e)
	}
	if _, body := g.get(t, "/metrics"); strings.Contains(body, `ftpsgate_audit_write_errors_total{sink="audit"} 0`) ||
		!strings.Contains(body, `ftpsgate_audit_write_errors_total{sink="audit"}`) {
		t.Fatalf("/metrics:\n%s", body)
	}
	g.waitReadyz(t, 200, "audit degraded")
	if got, err := ftptest.Greeting("", g.addr, 30*time.Second); err != nil || !strings.HasPrefix(got, "220 ") {
		t.Fatalf("a session after the errors: %q, %v", got, err)
	}
	if n := strings.Count(g.stderr.String(), "write error"); n != 0 {
		t.Fatalf("%d unstructured write errors:\n%s", n, g.stderr.String())
	}
	g.stop(t)
}

// TestAuditStdoutStalled (issue 24, item 8): with audit.file = "-", the
// reader stops reading (a pipe of one page, full). Greetings still come at
// once, /readyz says the audit is degraded; reloaded with on_error =
// "refuse", /readyz is 503 and new sessions get 421; once the reader reads
// again, service resumes, and the lines it reads are whole.
func TestAuditStdoutStalled(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), syscall.F_SETPIPE_SZ, 4096); errno != 0 {
		t.Fatalf("F_SETPIPE_SZ: %v", errno)
	}
	g := startGateProcess(t, w, "")
	w.Close()

	// 50 clients at once, each greeted promptly: no session waits for
	// the audit stream.
	const clients = 50
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			got, err := ftptest.Greeting("", g.addr, 10*time.Second)
			if err == nil && !strings.HasPrefix(got, "220 ") {
				err = fmt.Errorf("greeting %q", got)
			}
			if err != nil {
				err = fmt.Errorf("client %d: %w", i, err)
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			g.fatal(t, err.Error())
		}
	}
	g.waitReadyz(t, 200, "audit degraded")
	if _, body := g.get(t, "/metrics"); !strings.Contains(body, `ftpsgate_audit_healthy{sink="audit"} 0`) {
		t.Fatalf("/metrics:\n%s", body)
	}

	// Fail-closed: reloaded with on_error = "refuse".
	if err := os.WriteFile(g.cfg, []byte(strings.Replace(g.src, `file = "-"`, "file = \"-\"\n  on_error = \"refuse\"", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(g.stderr.String(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload:\n%s", g.stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by deadline
	}
	g.waitReadyz(t, 503, "new sessions are refused")
	if got, err := ftptest.Greeting("", g.addr, 30*time.Second); err != nil || !strings.HasPrefix(got, "421 ") {
		t.Fatalf("a new session with the audit stalled: %q, %v; want 421", got, err)
	}

	// The reader reads again: service resumes.
	lines := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		lines <- got
	}()
	g.waitReadyz(t, 200, "ready\n")
	if got, err := ftptest.Greeting("", g.addr, 30*time.Second); err != nil || !strings.HasPrefix(got, "220 ") {
		t.Fatalf("a new session once the reader reads: %q, %v", got, err)
	}
	g.stop(t)
	starts := 0
	for _, l := range <-lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if m["event"] == "session_start" {
			starts++
		}
	}
	if starts < clients+2 {
		t.Fatalf("%d session_start events for %d sessions", starts, clients+2)
	}
}
