package ftptest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is Debian's redis-server, run by one test on a loopback port: the
// shared state of several ftpsgate instances. It is never the package's
// system service.
type Redis struct {
	Addr string // 127.0.0.1:port

	t    testing.TB
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	out    *bytes.Buffer
}

// StartRedis starts redis-server on a free loopback port, without
// persistence, in a fresh directory; it is stopped when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := Tool(t, "redis-server")
	r := &Redis{t: t, dir: TempDir(t)}
	var err error
	for try := 0; try < 5; try++ {
		r.port = FreePort(t)
		r.Addr = "127.0.0.1:" + strconv.Itoa(r.port)
		if err = r.start(bin); err == nil {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("redis-server did not start: %v", err)
	return nil
}

// Restart starts redis-server again on the same port, after Stop: it
// comes back empty, as after a crash without persistence.
func (r *Redis) Restart() {
	r.t.Helper()
	var err error
	for try := 0; try < 5; try++ { // the port may linger a moment after the kill
		if err = r.start(Tool(r.t, "redis-server")); err == nil {
			return
		}
	}
	r.t.Fatalf("redis-server did not restart on %s: %v", r.Addr, err)
}

func (r *Redis) start(bin string) error {
	cmd := exec.Command(bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--daemonize", "no", "--protected-mode", "yes")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		if pingRedis(r.Addr) == nil {
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited at start (%v): %s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %s", r.Addr, startTimeout, out.String())
		}
	}
	r.mu.Lock()
	r.cmd, r.exited, r.out = cmd, exited, out
	r.mu.Unlock()
	return nil
}

// Stop kills redis-server (SIGKILL: as a crash) and waits for it to exit.
// Safe to call when it is stopped.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// pingRedis sends PING to the Redis at addr and expects +PONG.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
