package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// readmeBlocks returns the code blocks of README.md that follow a
// "<!-- five-minute: NAME -->" line, by name, without their fences and
// their Markdown indent.
func readmeBlocks(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blocks := map[string]string{}
	var name, indent string
	var body []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "<!-- five-minute: "):
			name = strings.TrimSuffix(strings.TrimPrefix(trimmed, "<!-- five-minute: "), " -->")
		case name != "" && !in && strings.HasPrefix(trimmed, "```"):
			in, indent, body = true, line[:len(line)-len(strings.TrimLeft(line, " "))], nil
		case in && trimmed == "```":
			blocks[name] = strings.Join(body, "\n") + "\n"
			name, in = "", false
		case in:
			body = append(body, strings.TrimPrefix(line, indent))
		}
	}
	for _, want := range []string{"vsftpd", "cert", "config", "check", "curl", "lftp", "python"} {
		if blocks[want] == "" {
			t.Fatalf("README.md has no five-minute block %q", want)
		}
	}
	return blocks
}

// replaceAll applies each old → new pair of subs to s, failing the test
// when an old string is not there: the README changed under the test.
func replaceAll(t *testing.T, block, s string, subs ...string) string {
	t.Helper()
	for i := 0; i < len(subs); i += 2 {
		if !strings.Contains(s, subs[i]) {
			t.Fatalf("the README's %s block no longer contains %q:\n%s", block, subs[i], s)
		}
		s = strings.ReplaceAll(s, subs[i], subs[i+1])
	}
	return s
}

// TestReadmeFiveMinutePath follows "Fronting your vsftpd in five minutes"
// literally, from the README's own code blocks (not a copy of them), on
// loopback: the certificate commands, the configuration, validate -as-user
// and run, then curl (explicit and implicit), lftp and the verifying
// Python snippet, against a real vsftpd. Only what must move is moved:
// /etc/ftpsgate and /var/log/ftpsgate to a temporary directory, ports to
// free ones, the host name to localhost, the service user to nobody, and
// the backend to the test's vsftpd.
func TestReadmeFiveMinutePath(t *testing.T) {
	ftptest.RequireRoot(t)
	blocks := readmeBlocks(t)
	for _, setting := range []string{"listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", "ssl_enable=NO"} {
		if !strings.Contains(blocks["vsftpd"], setting+"\n") {
			t.Errorf("the README's vsftpd block lacks %s", setting)
		}
	}
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	if err := os.WriteFile(filepath.Join(be.Root, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := gateBinary(t)
	dir := ftptest.TempDir(t) // traversable by nobody
	etc, logs := filepath.Join(dir, "etc-ftpsgate"), filepath.Join(dir, "log-ftpsgate")
	sh := ftptest.Tool(t, "sh")
	common := []string{"/etc/ftpsgate", etc, "ftp.example.com", "localhost"}

	// 3. The certificate, and the key given to the service's group.
	ftptest.Run(t, time.Minute, "", sh, "-ec", replaceAll(t, "cert", blocks["cert"],
		append([]string{"chgrp ftpsgate", "chgrp nogroup"}, common...)...))

	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("ftpsgate never served on free ports")
		}
		explicit, implicit := ftptest.FreePort(t), ftptest.FreePort(t)
		f1, l1 := ftptest.FreePortRange(t, 10)
		f2, l2 := ftptest.FreePortRange(t, 10)
		if f2 <= l1 && f1 <= l2 {
			continue
		}
		// 4. The configuration.
		cfg := replaceAll(t, "config", blocks["config"],
			`"0.0.0.0:21"`, strconv.Quote(fmt.Sprintf("127.0.0.1:%d", explicit)),
			`"0.0.0.0:990"`, strconv.Quote(fmt.Sprintf("127.0.0.1:%d", implicit)),
			`"50000-50499"`, fmt.Sprintf(`"%d-%d"`, f1, l1),
			`"50500-50999"`, fmt.Sprintf(`"%d-%d"`, f2, l2),
			`"203.0.113.10"`, `"127.0.0.1"`,
			`"127.0.0.1:2121"`, strconv.Quote(be.Addr),
			"/etc/ftpsgate", etc, "/var/log/ftpsgate", logs)
		cfgPath := filepath.Join(etc, "ftpsgate.hcl")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		// 5. Check: the log directory, then validate as the service user.
		ftptest.Run(t, time.Minute, "", sh, "-ec", replaceAll(t, "check", blocks["check"],
			"install -d -o ftpsgate", "install -d -o nobody",
			"ftpsgate validate -as-user ftpsgate", bin+" validate -as-user nobody",
			"/etc/ftpsgate", etc, "/var/log/ftpsgate", logs))
		// ... and run, as the unit's ExecStart does.
		greeting := "ftpsgate ready"
		logOut := &ftptest.SyncBuffer{}
		done := make(chan int, 1)
		go func() { done <- run([]string{"run", "-config", cfgPath, "-log-level", "warn"}, logOut, logOut) }()
		if !waitOwnGreeting(fmt.Sprintf("127.0.0.1:%d", explicit), greeting, done) {
			continue
		}
		t.Cleanup(func() {
			syscall.Kill(os.Getpid(), syscall.SIGTERM) // run's own signal handling stops it
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Error("run did not stop")
			}
		})

		// 7. Try it: curl, explicit and implicit.
		login := be.User + ":" + be.Password
		curl := replaceAll(t, "curl", blocks["curl"],
			"ftp://USER:PASS@ftp.example.com/", fmt.Sprintf("ftp://%s@localhost:%d/", login, explicit),
			"ftps://USER:PASS@ftp.example.com/", fmt.Sprintf("ftps://%s@localhost:%d/", login, implicit),
			"/etc/ftpsgate", etc)
		for _, line := range strings.Split(strings.TrimSpace(curl), "\n") {
			out := ftptest.Run(t, ftptest.ClientTimeout, "", sh, "-ec", "exec "+line+" --silent --show-error --max-time 60")
			if !strings.Contains(out, "hello.txt") {
				t.Fatalf("%s listed %q", line, out)
			}
		}
		// lftp.
		lftp := replaceAll(t, "lftp", blocks["lftp"],
			"-u USER,PASS ftp.example.com", fmt.Sprintf("-u %s,%s -p %d localhost", be.User, be.Password, explicit),
			"/etc/ftpsgate", etc)
		if out := ftptest.Run(t, ftptest.ClientTimeout, "", sh, "-ec", "exec "+strings.TrimSpace(lftp)); !strings.Contains(out, "hello.txt") {
			t.Fatalf("lftp listed %q", out)
		}
		// The Python snippet of How to connect, which verifies the
		// certificate.
		py := replaceAll(t, "python", blocks["python"],
			`"ftp.example.com", 21`, fmt.Sprintf(`"localhost", %d`, explicit),
			`user="USER", passwd="PASS"`, fmt.Sprintf(`user=%q, passwd=%q`, be.User, be.Password),
			"/etc/ftpsgate", etc)
		if out := ftptest.Run(t, ftptest.ClientTimeout, "", ftptest.Tool(t, "python3"), "-c", py); !strings.Contains(out, "hello.txt") {
			t.Fatalf("the Python snippet listed %q", out)
		}
		// What the audit file says of it (its writer runs behind a queue).
		for deadline := time.Now().Add(30 * time.Second); ; {
			b, err := os.ReadFile(filepath.Join(logs, "audit.log"))
			if err == nil && strings.Count(string(b), `"event":"login"`) == 4 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("audit.log (%v):\n%s", err, b)
			}
			time.Sleep(50 * time.Millisecond) // polling the file, bounded above
		}
	}
}
