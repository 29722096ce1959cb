package ftptest

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Slapd is Debian's OpenLDAP server, run by one test on two loopback
// ports (LDAP with StartTLS, and LDAPS) with a configuration generated
// for it (a cn=config made by slapadd -n0) and an mdb database in a temp
// directory. It is never the package's system service. Its certificate is
// the server certificate of the Certs it was given.
type Slapd struct {
	URL      string // ldap://127.0.0.1:port (StartTLS offered)
	LDAPSURL string // ldaps://127.0.0.1:port
	// AdminDN and AdminPassword are the database's root account.
	AdminDN, AdminPassword string
	// Suffix is the database's suffix, "dc=test".
	Suffix string

	t             testing.TB
	certs         *Certs
	dir, cfg      string
	port, tlsPort int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	out    *SyncBuffer
}

// StartSlapd starts slapd with the entries of ldif under the suffix
// dc=test (whose entry StartSlapd adds), and stops it when the test ends.
// It is ready when the root account's bind over StartTLS succeeds.
func StartSlapd(t testing.TB, certs *Certs, ldif string) *Slapd {
	t.Helper()
	Tool(t, "slapd")
	Tool(t, "slapadd")
	s := &Slapd{t: t, certs: certs, dir: TempDir(t), Suffix: "dc=test", AdminDN: "cn=admin,dc=test",
		AdminPassword: "slapd-admin-pw"}
	s.cfg = filepath.Join(s.dir, "slapd.d")
	db := filepath.Join(s.dir, "db")
	for _, d := range []string{s.cfg, db} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: %[1]s/slapd.pid
olcTLSCACertificateFile: %[2]s
olcTLSCertificateFile: %[3]s
olcTLSCertificateKeyFile: %[4]s

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: %[5]s
olcDbDirectory: %[6]s
olcDbMaxSize: 67108864
olcRootDN: %[7]s
olcRootPW: %[8]s
olcAccess: {0}to attrs=userPassword by anonymous auth by * none
olcAccess: {1}to * by users read by * none
`, s.dir, certs.CAFile, certs.CertFile, certs.KeyFile, s.Suffix, db, s.AdminDN, s.AdminPassword)
	s.slapadd("0", config)
	s.slapadd("1", "dn: dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: test\no: test\n\n"+ldif)
	var err error
	for try := 0; try < 5; try++ {
		s.port, s.tlsPort = FreePort(t), FreePort(t)
		s.URL = "ldap://127.0.0.1:" + strconv.Itoa(s.port)
		s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(s.tlsPort)
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("slapd did not start: %v", err)
	return nil
}

// slapadd loads ldif into database n (0: cn=config) of the configuration.
func (s *Slapd) slapadd(n, ldif string) {
	s.t.Helper()
	p := filepath.Join(s.dir, "db"+n+".ldif")
	if err := os.WriteFile(p, []byte(ldif), 0o600); err != nil {
		s.t.Fatal(err)
	}
	args := []string{"-F", s.cfg, "-l", p}
	if n == "0" {
		args = append(args, "-n", "0")
	} else {
		args = append(args, "-b", s.Suffix)
	}
	if out, err := exec.Command(Tool(s.t, "slapadd"), args...).CombinedOutput(); err != nil {
		s.t.Fatalf("slapadd -n%s: %v\n%s", n, err, out)
	}
}

// Restart starts slapd again on the same ports, after Stop, with the same
// database.
func (s *Slapd) Restart() {
	s.t.Helper()
	var err error
	for try := 0; try < 5; try++ { // a port may linger a moment after the kill
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("slapd did not restart on %s: %v", s.URL, err)
}

func (s *Slapd) start() error {
	// -d 256 (stats): in the foreground, every connection and operation
	// logged (Log), which tests read to see what reached the directory.
	cmd := exec.Command(Tool(s.t, "slapd"), "-d", "256", "-F", s.cfg,
		"-h", s.URL+"/ "+s.LDAPSURL+"/")
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.ping()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("slapd exited at start (%v): %s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("slapd on %s did not accept a bind within %s (%v): %s", s.URL, startTimeout, err, out.String())
		}
	}
	s.mu.Lock()
	s.cmd, s.exited, s.out = cmd, exited, out
	s.mu.Unlock()
	return nil
}

// ping binds as the root account over StartTLS, verifying the
// certificate: the readiness check.
func (s *Slapd) ping() error {
	c, err := ldap.DialURL(s.URL)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(5 * time.Second)
	if err := c.StartTLS(&tls.Config{RootCAs: s.certs.Pool, ServerName: "127.0.0.1"}); err != nil {
		return err
	}
	return c.Bind(s.AdminDN, s.AdminPassword)
}

// Log is what slapd printed since it last started: its stats lines
// (connections, BIND, SRCH and their results).
func (s *Slapd) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Stop kills slapd (SIGKILL: as a crash, or a directory gone away) and
// waits for it to exit. Safe to call when it is stopped.
func (s *Slapd) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// LDIFUser is the LDIF of an inetOrgPerson uid=user under base, with a
// clear-text userPassword (slapd compares it as it is).
func LDIFUser(user, base, password string) string {
	return fmt.Sprintf("dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n",
		user, base, user, user, user, password)
}

// LDIFGroup is the LDIF of a groupOfNames cn=name under base with the
// members' DNs.
func LDIFGroup(name, base string, members ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,%s\nobjectClass: groupOfNames\ncn: %s\n", name, base, name)
	for _, m := range members {
		fmt.Fprintf(&b, "member: %s\n", m)
	}
	b.WriteString("\n")
	return b.String()
}
