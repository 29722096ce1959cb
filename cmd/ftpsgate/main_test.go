package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

func TestValidateReportsFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.hcl")
	src := `listener "ftps" {
  address       = "0.0.0.0:21"
  tls           = "sideways"
  cert_file     = "/nonexistent/tls.crt"
  key_file      = "/nonexistent/tls.key"
  passive_ports = "50000-50999"
  backend       = "legacy"
}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", path}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut.String())
	}
	msg := errOut.String()
	for _, want := range []string{
		"Invalid TLS mode", path + ":3",
		"Cannot load certificate", path + ":4",
		"Unknown backend", path + ":7",
		"configuration is not valid",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, msg)
		}
	}
}

// TestValidateWarns: a valid configuration that is weaker than it should
// be (a private key others can read, a CBC suite let in for an old
// client, an admin listener open beyond loopback without credentials)
// validates, with one warning line for each, at its file and line.
func TestValidateWarns(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	if err := os.Chmod(certs.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gate.hcl")
	src := fmt.Sprintf(`listener "legacy-clients" {
  address           = "0.0.0.0:21"
  cert_file         = %q
  key_file          = %q
  passive_ports     = "50000-50999"
  backend           = "legacy"
  tls_cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"]
}
backend "legacy" { address = "10.0.0.5:21" }
admin { address = "0.0.0.0:9100" }
`, certs.CertFile, certs.KeyFile)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "configuration is valid") {
		t.Fatalf("stdout %q", out.String())
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	for _, want := range []string{
		path + `:4:23: warning: Readable key_file: key_file "` + certs.KeyFile + `" (mode 0644) can be read by every user`,
		path + `:7:23: warning: Weak cipher suites: Listener "legacy-clients" accepts TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA`,
		path + `:10:19: warning: Admin listener without authentication: The admin listener on 0.0.0.0:9100`,
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("no line starting %q in:\n%s", want, errOut.String())
		}
	}
	if len(lines) != 3 {
		t.Errorf("want 3 warnings:\n%s", errOut.String())
	}
}

func TestValidateMissingFile(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", "/nonexistent.hcl"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), "Cannot read configuration") {
		t.Fatalf("stderr %q", errOut.String())
	}
}

func TestExampleConfigIsValidButForItsCertificate(t *testing.T) {
	// configs/ftpsgate.hcl names certificate paths and a log directory of
	// a real install; all else in it must be valid.
	var out, errOut bytes.Buffer
	run([]string{"validate", "-config", "../../configs/ftpsgate.hcl"}, &out, &errOut)
	for _, line := range strings.Split(errOut.String(), "\n") {
		if line != "" && !strings.Contains(line, ": error: Cannot load certificate: ") &&
			!strings.Contains(line, ": error: Missing audit directory: The directory of /var/log/ftpsgate/") &&
			!strings.HasSuffix(line, ": configuration is not valid") {
			t.Errorf("example config: %s\n%s", line, errOut.String())
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ftpsgate ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "Usage") {
		t.Fatalf("unknown command: %d %q", code, errOut.String())
	}
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no command: %d", code)
	}
	if code := run([]string{"run", "-log-format", "xml", "-config", "/nonexistent"}, &out, &errOut); code != 2 {
		t.Fatalf("bad log format: %d", code)
	}
}

// TestRunServesAndStopsOnSIGTERM drives the whole wiring: configuration,
// audit file, listener, a client session, then SIGTERM for a clean stop.
func TestRunServesAndStopsOnSIGTERM(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	// A key others can read: run logs the warning validate prints.
	if err := os.Chmod(certs.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.log")
	const token = "c0ffee00c0ffee00c0ffee00c0ffee00"
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gate.hcl")
	greeting := "ftpsgate under test " + filepath.Base(dir)

	// The port is free when chosen, but another test process may take it
	// before run binds it: then run exits at once, or someone else's
	// server answers. Try again on either.
	var addr, adminAddr string
	// systemd's notification socket, played by the test.
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", notifyPath)
	// notified waits for a notification whose first line is want, and
	// returns all of it.
	notified := func(want string) string {
		t.Helper()
		notify.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 1024)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				t.Fatalf("no %s notification: %v", want, err)
			}
			if first, _, _ := strings.Cut(string(buf[:n]), "\n"); first == want {
				return string(buf[:n])
			}
		}
	}
	logs := &ftptest.SyncBuffer{}
	done := make(chan int, 1)
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatalf("run never served on a free port:\n%s", logs.String())
		}
		addr = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
		adminAddr = fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t))
		first, last := ftptest.FreePortRange(t, 5)
		os.WriteFile(cfg, []byte(fmt.Sprintf(`listener "ftps" {
  address = %q
  cert_file = %q
  key_file = %q
  passive_ports = "%d-%d"
  backend = "b"
  greeting = %q
}
backend "b" { address = "127.0.0.1:1" }
audit {
  file    = %q
  xferlog = %q
}
admin {
  address           = %q
  bearer_token_file = %q
}
`, addr, certs.CertFile, certs.KeyFile, first, last, greeting, auditFile, filepath.Join(dir, "xferlog"), adminAddr, tokenFile)), 0o600)
		go func() { done <- run([]string{"run", "-config", cfg}, io.Discard, logs) }()
		if ok := waitOwnGreeting(addr, greeting, done); ok {
			break
		}
	}
	notified("READY=1")
	c := ftptest.Dial(t, addr)
	c.Cmd(530, "USER alice") // TLS required by default
	c.Cmd(221, "QUIT")

	// The admin listener serves the metrics of this very session, to
	// the holder of the token only.
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `ftpsgate_policy_denials_total{rule="require_tls"} 1`) {
		t.Fatalf("/metrics:\n%s", body)
	}
	if !strings.Contains(logs.String(), `"msg":"configuration warning: Readable key_file"`) ||
		!strings.Contains(logs.String(), "(mode 0644) can be read by every user") {
		t.Errorf("run did not log the readable key:\n%s", logs.String())
	}

	// logrotate: rename, then SIGUSR1; events go to a new file.
	if err := os.Rename(auditFile, auditFile+".1"); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "audit files reopened") {
		if time.Now().After(deadline) {
			t.Fatalf("no reopen after SIGUSR1:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by deadline
	}
	c = ftptest.Dial(t, addr)
	c.Cmd(530, "USER bob")
	c.Cmd(221, "QUIT")

	// SIGHUP: an invalid file is refused and logged, the proxy runs on;
	// a valid one is taken by new sessions.
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfg, append(append([]byte(nil), good...), "listener {\n"...), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	if msg := notified("RELOADING=1"); !strings.Contains(msg, "\nMONOTONIC_USEC=") {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
	}
	if msg := notified("READY=1"); !strings.Contains(msg, "\nSTATUS=reload refused, running on the previous configuration: ") {
		t.Fatalf("READY=1 after a refused reload: %q", msg)
	}
	if !strings.Contains(logs.String(), "configuration reload refused") {
		t.Fatalf("no refusal logged:\n%s", logs.String())
	}
	metricLine := func(name string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		return ""
	}
	if got := metricLine("ftpsgate_config_last_reload_successful"); got != "ftpsgate_config_last_reload_successful 0" {
		t.Fatalf("after a refused reload: %q", got)
	}
	if got := readGreeting(t, addr); got != "220 "+greeting {
		t.Fatalf("greeting after a refused reload: %q", got)
	}
	os.WriteFile(cfg, bytes.Replace(good, []byte(greeting), []byte("reloaded by SIGHUP"), 1), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	notified("RELOADING=1")
	if msg := notified("READY=1"); !strings.Contains(msg, "\nSTATUS=configuration reloaded at ") {
		t.Fatalf("READY=1 after a reload: %q", msg)
	}
	if got := metricLine("ftpsgate_config_last_reload_successful"); got != "ftpsgate_config_last_reload_successful 1" {
		t.Fatalf("after a reload: %q", got)
	}
	if got := readGreeting(t, addr); got != "220 reloaded by SIGHUP" {
		t.Fatalf("greeting after the reload: %q\n%s", got, logs.String())
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	notified("STOPPING=1")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not stop on SIGTERM")
	}
	for _, f := range []string{auditFile + ".1", auditFile} {
		audit, _ := os.ReadFile(f)
		for _, ev := range []string{`"event":"session_start"`, `"event":"policy_denied"`, `"event":"session_end"`} {
			if !bytes.Contains(audit, []byte(ev)) {
				t.Errorf("%s lacks %s:\n%s", f, ev, audit)
			}
		}
	}
	if old, _ := os.ReadFile(auditFile + ".1"); bytes.Contains(old, []byte(`"bob"`)) {
		t.Error("the rotated file got events after SIGUSR1")
	}
}

// waitOwnGreeting waits until addr greets with greeting. It reports false
// once run has exited (its exit status consumed): at once, or because
// another server holds the port.
func waitOwnGreeting(addr, greeting string, done chan int) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		line, _ := ftptest.Greeting("", addr, 5*time.Second)
		if strings.TrimSpace(line) == "220 "+greeting {
			return true
		}
		if line != "" {
			// Another server holds the port, so run cannot bind it:
			// wait for its exit before trying another port.
			select {
			case <-done:
			case <-time.After(30 * time.Second):
			}
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, bounded by deadline
	}
	return false
}

// TestSystemdUnit: the unit in deploy/ passes systemd-analyze verify
// without a single warning (its binary path pointed at this test binary,
// which exists and is executable).
func TestSystemdUnit(t *testing.T) {
	bin := ftptest.Tool(t, "systemd-analyze")
	unit, err := os.ReadFile("../../deploy/ftpsgate.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ftpsgate.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/ftpsgate"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := ftptest.RunErr(time.Minute, "", bin, "verify", path)
	if err != nil || strings.TrimSpace(out+errOut) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"Type=notify", "User=ftpsgate", "Group=ftpsgate", "LogsDirectory=ftpsgate",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ProtectSystem=strict"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	// The user it runs as, from deploy/ftpsgate.sysusers, in a root of
	// the test's own.
	sysusers := ftptest.Tool(t, "systemd-sysusers")
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "etc"), 0o755)
	conf, _ := filepath.Abs("../../deploy/ftpsgate.sysusers")
	ftptest.Run(t, time.Minute, "", sysusers, "--root="+root, conf)
	if passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); !bytes.Contains(passwd, []byte("ftpsgate:x:")) ||
		!bytes.Contains(passwd, []byte(":/usr/sbin/nologin")) {
		t.Fatalf("sysusers made %q", passwd)
	}
}

// readGreeting returns the first line addr sends, without its line end.
func readGreeting(t *testing.T, addr string) string {
	t.Helper()
	line, err := ftptest.Greeting("", addr, 30*time.Second)
	if err != nil {
		t.Fatalf("greeting from %s: %q, %v", addr, line, err)
	}
	return strings.TrimSpace(line)
}

// writeMinimalConfig writes a valid configuration with one listener whose
// key and certificate are certs', and returns its path.
func writeMinimalConfig(t *testing.T, certs *ftptest.Certs, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gate.hcl")
	src := fmt.Sprintf(`listener "ftps" {
  address       = "127.0.0.1:2121"
  cert_file     = %q
  key_file      = %q
  passive_ports = "50000-50009"
  backend       = "legacy"
}
backend "legacy" { address = "127.0.0.1:21" }
%s`, certs.CertFile, certs.KeyFile, extra)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCLIConventions: the configuration may be named without -config, a
// stray argument is refused rather than ignored, -h is help (exit 0), the
// summary counts in words, and a bad log level lists the good ones.
func TestCLIConventions(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	path := writeMinimalConfig(t, certs, "")
	for _, tc := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"validate", path}, 0, path + ": configuration is valid (1 listener, 1 backend)", ""},
		{[]string{"validate", "-config", path}, 0, "configuration is valid", ""},
		{[]string{"validate", "-config", path, path}, 0, "configuration is valid", ""},
		{[]string{"validate", "-config", path, "/other.hcl"}, 2, "", "two configuration files"},
		{[]string{"validate", path, "extra"}, 2, "", "one configuration file"},
		{[]string{"validate", "/nonexistent/gate.hcl"}, 1, "", "/nonexistent/gate.hcl"},
		{[]string{"validate", "-h"}, 0, "", "-as-user"},
		{[]string{"run", "-h"}, 0, "", "-log-level"},
		{[]string{"run", "-log-level", "verbose", path}, 2, "", "want debug, info, warn or error"},
		{[]string{"help"}, 0, "FILE defaults to /etc/ftpsgate/ftpsgate.hcl", ""},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.inErr) {
			t.Errorf("%q: exit %d\nstdout %q\nstderr %q", tc.args, code, out.String(), errOut.String())
		}
	}
}

// TestValidateAsUser: a key only root can read (openssl's and certbot's
// 0600) passes validate as root, but validate -as-user names the service
// user who could not read it (systemd's DynamicUser, an unprivileged
// account), and the directory it could not write the audit file in.
func TestValidateAsUser(t *testing.T) {
	ftptest.RequireRoot(t)
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	for _, f := range []string{certs.KeyFile, certs.CertFile} { // t.TempDir's are 0700
		for d := filepath.Dir(f); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
	}
	if err := os.Chmod(certs.KeyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(certs.CertFile, 0o644) // a certificate is public
	logs := t.TempDir()             // root's, not writable by others
	path := writeMinimalConfig(t, certs, fmt.Sprintf("audit {\n  file = %q\n}\n", filepath.Join(logs, "audit.log")))
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", path}, &out, &errOut); code != 0 {
		t.Fatalf("as root: exit %d: %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut)
	msg := errOut.String()
	if code != 1 || !strings.Contains(msg, "user nobody cannot read "+certs.KeyFile) ||
		!strings.Contains(msg, "user nobody cannot create files in "+logs) || strings.Contains(msg, "cannot read "+certs.CertFile) {
		t.Fatalf("exit %d:\n%s", code, msg)
	}
	// Given to the user's group, as the README says, it passes.
	if err := os.Chown(certs.KeyFile, 0, groupOf(t, "nogroup")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(certs.KeyFile, 0o640)
	if err := os.Chmod(logs, 0o777); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut); code != 0 {
		t.Fatalf("key in nobody's group: exit %d:\n%s", code, errOut.String())
	}
}

func groupOf(t *testing.T, name string) int {
	t.Helper()
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(g.Gid)
	return n
}
