package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/ftpsgate/ftpsgate/agent"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestAgentCheck: "ftpsgate agent -check" accepts configs/agent.hcl once
// its files exist, and reports a mistake with its file and line.
func TestAgentCheck(t *testing.T) {
	src, err := os.ReadFile("../../configs/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	certFile, keyFile := certs.ClientCert(t, "dc1")
	s := strings.NewReplacer("/etc/ftpsgate/edge-ca.pem", certs.CAFile, "/etc/ftpsgate/agent.crt", certFile,
		"/etc/ftpsgate/agent.key", keyFile).Replace(string(src))
	dir := t.TempDir()
	good := filepath.Join(dir, "agent.hcl")
	os.WriteFile(good, []byte(s), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"agent", "-check", "-config", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "configuration is valid") {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte(strings.Replace(s, `"10.0.0.5:21"`, `"ftp.internal:21"`, 1)), 0o600)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"agent", "-check", bad}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "bad.hcl:") || !strings.Contains(errOut.String(), "Invalid allow_targets") {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
}

// TestValidateAsUserAgentListener: validate -as-user also checks the
// agent listener's key, which the service must read at start.
func TestValidateAsUserAgentListener(t *testing.T) {
	ftptest.RequireRoot(t)
	certs, edge := ftptest.NewCerts(t, ftptest.ECDSA), ftptest.NewCerts(t, ftptest.ECDSA)
	for _, c := range []*ftptest.Certs{certs, edge} {
		for d := filepath.Dir(c.KeyFile); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		os.Chmod(c.CertFile, 0o644)
		os.Chmod(c.CAFile, 0o644)
	}
	os.Chmod(certs.KeyFile, 0o644)
	os.Chmod(edge.KeyFile, 0o600) // root's only
	path := writeMinimalConfig(t, certs, fmt.Sprintf(`agent_listener {
  address        = "127.0.0.1:7443"
  cert_file      = %q
  key_file       = %q
  client_ca_file = %q
  allowed_names  = ["dc1"]
}
`, edge.CertFile, edge.KeyFile, edge.CAFile))
	var out, errOut bytes.Buffer
	code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "user nobody cannot read "+edge.KeyFile) {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
}

// TestAgentSIGHUP: ftpsgate agent rereads its file on SIGHUP. A new
// allow_targets applies to the next stream the edge asks for, on the
// session already established; a broken file is refused, logged with its
// line, and the agent runs on with the targets it had.
func TestAgentSIGHUP(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	certFile, keyFile := certs.ClientCert(t, "dc1")
	edge := startSketchEdge(t, certs)
	// Two targets: servers that each answer a connection with its name.
	targets := map[string]string{}
	for _, name := range []string{"one", "two"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, name)
				c.Close()
			}
		}()
		targets[name] = ln.Addr().String()
	}
	path := filepath.Join(t.TempDir(), "agent.hcl")
	write := func(allow string) {
		t.Helper()
		src := fmt.Sprintf("edge = %q\nserver_name = \"localhost\"\nca_file = %q\ncert_file = %q\nkey_file = %q\nsessions = 1\nallow_targets = [%s]\n",
			edge.ln.Addr().String(), certs.CAFile, certFile, keyFile, allow)
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("%q", targets["one"]))
	stderr := &ftptest.SyncBuffer{}
	cmd := exec.Command(gateBinary(t), "agent", "-config", path)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	sess := edge.next(t)
	// reach reports what the target answered through the agent, or the
	// agent's refusal.
	reach := func(name string) string {
		t.Helper()
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatalf("stream: %v\n%s", err, stderr.String())
		}
		c, err := agent.Open(st, netip.MustParseAddrPort(targets[name]), 30*time.Second)
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	hup := func(want string) {
		t.Helper()
		n := len(logLines(t, stderr.String(), want))
		cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(time.Minute)
		for len(logLines(t, stderr.String(), want)) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP:\n%s", want, stderr.String())
			}
			time.Sleep(20 * time.Millisecond) // polling the log, bounded by deadline
		}
	}
	if got := reach("one"); got != "one" {
		t.Fatalf("target one before the reload: %q", got)
	}
	if got := reach("two"); !strings.Contains(got, "not in allow_targets") {
		t.Fatalf("target two before the reload: %q", got)
	}

	write(fmt.Sprintf("%q", targets["two"]))
	hup("agent configuration reloaded: new streams use its allow_targets, new sessions with the edge its certificate")
	if got := reach("two"); got != "two" {
		t.Fatalf("target two after the reload: %q", got)
	}
	if got := reach("one"); !strings.Contains(got, "not in allow_targets") {
		t.Fatalf("target one after the reload: %q", got)
	}

	// Broken: refused, its line logged; the targets stay.
	write(`"ftp.internal:21"`)
	hup("agent configuration reload refused: running on the previous configuration")
	if !strings.Contains(stderr.String(), path+":7:") {
		t.Fatalf("the refused reload does not name the line:\n%s", stderr.String())
	}
	if got := reach("two"); got != "two" {
		t.Fatalf("target two after the refused reload: %q", got)
	}
	if got := reach("one"); !strings.Contains(got, "not in allow_targets") {
		t.Fatalf("target one after the refused reload: %q", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("agent exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the agent did not stop on SIGTERM")
	}
}

// sketchEdge is the edge's end of the agent protocol, without the proxy:
// a TLS listener requiring the agent's certificate, handing over the yamux
// session of each agent that connects.
type sketchEdge struct {
	ln       net.Listener
	sessions chan *yamux.Session
}

func startSketchEdge(t *testing.T, certs *ftptest.Certs) *sketchEdge {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.CertFile, certs.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: certs.Pool, MinVersion: tls.VersionTLS13, NextProtos: []string{agent.ALPN}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	e := &sketchEdge{ln: ln, sessions: make(chan *yamux.Session, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if err := c.(*tls.Conn).Handshake(); err != nil {
				c.Close()
				continue
			}
			s, err := yamux.Client(c, agent.YamuxConfig())
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { s.Close() })
			e.sessions <- s
		}
	}()
	return e
}

// next is the next agent session to connect.
func (e *sketchEdge) next(t *testing.T) *yamux.Session {
	t.Helper()
	select {
	case s := <-e.sessions:
		return s
	case <-time.After(time.Minute):
		t.Fatal("no agent connected to the edge")
		return nil
	}
}
