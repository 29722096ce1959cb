package ftptest

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a real FTP server running on loopback for one test.
type Server struct {
	Name     string // "vsftpd" or "pure-ftpd"
	Addr     string // host:port of its control connection
	Root     string // the directory the test user sees as "/"
	User     string
	Password string
	Log      string // path of its log, for failure messages
}

// startTimeout bounds a server's start, up to its first 220.
const startTimeout = 20 * time.Second

// VsftpdOptions tune a vsftpd backend.
type VsftpdOptions struct {
	// Extra lines for vsftpd.conf.
	Extra []string
	// TLS makes it an FTPS server with this certificate: TLS required
	// for logins and data, and require_ssl_reuse=YES (vsftpd's default,
	// stated anyway): a data connection must resume the control
	// connection's TLS session.
	TLS *Certs
	// Implicit: TLS from the first byte (with TLS set).
	Implicit bool
	// IPv6: listen on [::1] instead of 127.0.0.1.
	IPv6 bool
	// Host is the IPv4 loopback address to listen on; "" means
	// 127.0.0.1.
	Host string
}

// Vsftpd starts vsftpd (unpacked from Debian's package by test-deps; never
// a system-wide vsftpd, so every machine tests the same binary) on a free
// loopback port, serving a fresh directory to the test account. It stops
// when the test ends.
func Vsftpd(t testing.TB, opt VsftpdOptions) *Server {
	t.Helper()
	RequireRoot(t)
	bin := filepath.Join(VsftpdRoot, "usr/sbin/vsftpd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("vsftpd not found at %s: %s", bin, setupHint)
	}
	user, pass := Credentials(t)
	dir := TempDir(t)
	root := filepath.Join(dir, "root")
	empty := filepath.Join(dir, "empty")
	for _, d := range []string{root, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	Chown(t, root)
	logFile := filepath.Join(dir, "vsftpd.log")
	var lastErr error
	for try := 0; try < 5; try++ {
		port := FreePort(t)
		conf := []string{
			"listen_port=" + strconv.Itoa(port),
			"background=NO", "anonymous_enable=NO", "local_enable=YES", "write_enable=YES", "local_umask=022",
			"pam_service_name=" + PAMService, "userlist_enable=NO",
			"local_root=" + root, "chroot_local_user=YES", "allow_writeable_chroot=YES",
			"secure_chroot_dir=" + empty, "seccomp_sandbox=NO",
			"xferlog_enable=YES", "vsftpd_log_file=" + logFile, "log_ftp_protocol=YES",
			"max_clients=0", "max_per_ip=0",
		}
		host := "127.0.0.1"
		if opt.Host != "" {
			host = opt.Host
		}
		addr := host + ":" + strconv.Itoa(port)
		if opt.IPv6 {
			conf = append(conf, "listen=NO", "listen_ipv6=YES", "listen_address6=::1")
			addr = "[::1]:" + strconv.Itoa(port)
		} else {
			conf = append(conf, "listen=YES", "listen_ipv6=NO", "listen_address="+host)
		}
		if opt.TLS != nil {
			conf = append(conf, "ssl_enable=YES", "rsa_cert_file="+opt.TLS.CertFile,
				"rsa_private_key_file="+opt.TLS.KeyFile, "ssl_ciphers=HIGH", "require_ssl_reuse=YES",
				"force_local_logins_ssl=YES", "force_local_data_ssl=YES", "debug_ssl=YES")
			if opt.Implicit {
				conf = append(conf, "implicit_ssl=YES")
			}
		}
		conf = append(conf, opt.Extra...)
		confFile := filepath.Join(dir, "vsftpd.conf")
		if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ready := func() error { return WaitGreeting(addr, startTimeout) }
		if opt.TLS != nil && opt.Implicit {
			ready = func() error { return waitGreetingTLS(addr, opt.TLS.ClientConfig(), startTimeout) }
		}
		if err := startDaemon(t, "vsftpd", ready, bin, confFile); err != nil {
			lastErr = err
			continue
		}
		name := "vsftpd"
		if opt.TLS != nil {
			name = "vsftpd-ftps"
		}
		return &Server{Name: name, Addr: addr, Root: root, User: user, Password: pass, Log: logFile}
	}
	t.Fatalf("vsftpd did not start: %v", lastErr)
	return nil
}

// PureFTPdOptions tune a pure-ftpd backend.
type PureFTPdOptions struct {
	// TLS makes it an FTPS server (explicit, AUTH TLS) with this
	// certificate, TLS required on control and data connections (-Y 3).
	TLS *Certs
	// MaxClients is its bound on simultaneous clients, in all and from
	// one address (-c and -C); past it pure-ftpd greets with "421 N users
	// (the maximum) are already logged in" and hangs up. 0 means 200.
	MaxClients int
}

// PureFTPd starts pure-ftpd (unpacked from Debian's package by test-deps)
// on a free loopback port, with a virtual user of its own whose files
// belong to the test account. It stops when the test ends.
func PureFTPd(t testing.TB) *Server {
	t.Helper()
	return PureFTPdWith(t, PureFTPdOptions{})
}

// PureFTPdWith is PureFTPd with options.
func PureFTPdWith(t testing.TB, opt PureFTPdOptions) *Server {
	t.Helper()
	RequireRoot(t)
	bin := filepath.Join(PureFTPdRoot, "usr/sbin/pure-ftpd")
	pw := filepath.Join(PureFTPdRoot, "usr/bin/pure-pw")
	for _, p := range []string{bin, pw} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("pure-ftpd not found at %s: %s", p, setupHint)
		}
	}
	accountIDs(t) // fails early when the account is missing
	dir := TempDir(t)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	Chown(t, root)
	user, pass := "pureuser", randomToken()
	passwd, pdb := filepath.Join(dir, "pureftpd.passwd"), filepath.Join(dir, "pureftpd.pdb")
	Run(t, 30*time.Second, pass+"\n"+pass+"\n", pw, "useradd", user, "-u", Account, "-d", root,
		"-f", passwd, "-m", "-F", pdb)
	// pure-pw hashes with libsodium's memory-hard pwhash, which makes each
	// login take seconds on a loaded machine; a SHA-512 crypt hash (which
	// pure-ftpd also reads) keeps tests about the proxy, not the hash.
	b, err := os.ReadFile(passwd)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(string(b), ":")
	if len(fields) < 3 {
		t.Fatalf("unexpected pure-pw output %q", b)
	}
	fields[1] = strings.TrimSpace(Run(t, time.Minute, pass+"\n", Tool(t, "openssl"), "passwd", "-6", "-stdin"))
	if err := os.WriteFile(passwd, []byte(strings.Join(fields, ":")), 0o600); err != nil {
		t.Fatal(err)
	}
	Run(t, 30*time.Second, "", pw, "mkdb", pdb, "-f", passwd)
	logFile := filepath.Join(dir, "pure-ftpd.log")
	var lastErr error
	for try := 0; try < 5; try++ {
		port := FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		clients := strconv.Itoa(cmp.Or(opt.MaxClients, 200))
		args := []string{
			"-S", "127.0.0.1," + strconv.Itoa(port), "-l", "puredb:" + pdb,
			"-E", "-A", "-H", "-c", clients, "-C", clients, "-g", filepath.Join(dir, "pure-ftpd.pid"),
			"-O", "clf:" + logFile,
		}
		if opt.TLS != nil {
			args = append(args, "-Y", "3", "-2", opt.TLS.CertFile+","+opt.TLS.KeyFile)
		}
		if err := startDaemon(t, "pure-ftpd", func() error { return WaitGreeting(addr, startTimeout) }, bin, args...); err != nil {
			lastErr = err
			continue
		}
		name := "pure-ftpd"
		if opt.TLS != nil {
			name = "pure-ftpd-ftps"
		}
		return &Server{Name: name, Addr: addr, Root: root, User: user, Password: pass, Log: logFile}
	}
	t.Fatalf("pure-ftpd did not start: %v", lastErr)
	return nil
}

// startDaemon starts a foreground server in its own process group, waits
// for its greeting on addr, and stops the whole group when the test ends.
func startDaemon(t testing.TB, name string, wait func() error, bin string, args ...string) error {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	ready := make(chan error, 1)
	go func() { ready <- wait() }()
	select {
	case err := <-exited:
		exited <- err // for stop
		stop()
		return fmt.Errorf("%s exited at start (%w): %s", name, err, out.String())
	case err := <-ready:
		if err != nil {
			stop()
			return fmt.Errorf("%s: %w; output: %s", name, err, out.String())
		}
	}
	t.Cleanup(stop)
	return nil
}

func randomToken() string {
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return fmt.Sprintf("%x", b[:])
}

// ProFTPDOptions tune a ProFTPD backend.
type ProFTPDOptions struct {
	// TLS makes it an FTPS server (mod_tls) with this certificate, TLS
	// required for logins and data; ProFTPD requires data connections to
	// resume the control connection's TLS session by default.
	TLS *Certs
	// Implicit: TLS from the first byte (with TLS set).
	Implicit bool
	// Extra lines for proftpd.conf.
	Extra []string
}

// ProFTPD starts ProFTPD (unpacked from Debian's packages by test-deps) on
// a free loopback port. Its user is the test account, declared in an
// AuthUserFile of its own (no PAM: logins cost one SHA-512 crypt), jailed
// in a fresh directory. It stops when the test ends.
func ProFTPD(t testing.TB, opt ProFTPDOptions) *Server {
	t.Helper()
	RequireRoot(t)
	bin := filepath.Join(ProFTPDRoot, "usr/sbin/proftpd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("ProFTPD not found at %s: %s", bin, setupHint)
	}
	user, pass := Credentials(t)
	uid, gid := accountIDs(t)
	dir := TempDir(t)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	Chown(t, root)
	hash := strings.TrimSpace(Run(t, time.Minute, pass+"\n", Tool(t, "openssl"), "passwd", "-6", "-stdin"))
	passwd := filepath.Join(dir, "ftpd.passwd")
	line := fmt.Sprintf("%s:%s:%d:%d::%s:/usr/sbin/nologin\n", user, hash, uid, gid, root)
	if err := os.WriteFile(passwd, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "commands.log")
	name := "proftpd"
	if opt.TLS != nil {
		name = "proftpd-ftps"
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		port := FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		conf := []string{
			"ServerType standalone", `ServerName "ftpsgate test ProFTPD"`, "DefaultServer on",
			"Port " + strconv.Itoa(port), "DefaultAddress 127.0.0.1", "SocketBindTight on", "UseIPv6 off",
			"User nobody", "Group nogroup",
			"PidFile " + filepath.Join(dir, "proftpd.pid"), "ScoreboardFile " + filepath.Join(dir, "proftpd.scoreboard"),
			"DelayTable none", "WtmpLog off", "UseReverseDNS off",
			"ModulePath " + filepath.Join(ProFTPDRoot, "usr/lib/proftpd"),
			"AuthOrder mod_auth_file.c", "AuthUserFile " + passwd, "RequireValidShell off",
			"DefaultRoot ~", "AllowOverwrite on", "Umask 022", "MaxInstances 500",
			"SystemLog " + filepath.Join(dir, "proftpd.log"), "TransferLog " + filepath.Join(dir, "xferlog"),
			`LogFormat commands "%h %u %r %s"`, "ExtendedLog " + logFile + " ALL commands",
		}
		if opt.TLS != nil {
			kind := "RSA"
			if opt.TLS.KeyType == ECDSA {
				kind = "EC"
			}
			conf = append(conf, "LoadModule mod_tls.c", "TLSEngine on", "TLSRequired on",
				"TLSProtocol TLSv1.2 TLSv1.3", "TLSVerifyClient off", "TLSLog "+filepath.Join(dir, "tls.log"),
				"TLS"+kind+"CertificateFile "+opt.TLS.CertFile, "TLS"+kind+"CertificateKeyFile "+opt.TLS.KeyFile)
			if opt.Implicit {
				conf = append(conf, "TLSOptions UseImplicitSSL")
			}
		}
		conf = append(conf, opt.Extra...)
		confFile := filepath.Join(dir, "proftpd.conf")
		if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ready := func() error { return WaitGreeting(addr, startTimeout) }
		if opt.TLS != nil && opt.Implicit {
			ready = func() error { return waitGreetingTLS(addr, opt.TLS.ClientConfig(), startTimeout) }
		}
		if err := startDaemon(t, name, ready, bin, "-n", "-q", "-c", confFile); err != nil {
			lastErr = err
			continue
		}
		return &Server{Name: name, Addr: addr, Root: root, User: user, Password: pass, Log: logFile}
	}
	t.Fatalf("ProFTPD did not start: %v", lastErr)
	return nil
}

// HAProxy runs Debian's haproxy in the foreground with the configuration
// text conf (a "global" section with no user, chroot or daemon is added) and
// waits until ready (e.g. a greeting through its frontend) succeeds.
func HAProxy(t testing.TB, conf string, ready func() error) {
	t.Helper()
	bin := Tool(t, "haproxy")
	dir := TempDir(t)
	file := filepath.Join(dir, "haproxy.cfg")
	full := "global\n  maxconn 1000\n  log stderr format raw local0 info\n\n" + conf
	if err := os.WriteFile(file, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := RunErr(time.Minute, "", bin, "-c", "-f", file); err != nil {
		t.Fatalf("haproxy -c: %v\n%s%s\n%s", err, out, errOut, full)
	}
	if err := startDaemon(t, "haproxy", ready, bin, "-db", "-f", file); err != nil {
		t.Fatalf("%v\n%s", err, full)
	}
}
