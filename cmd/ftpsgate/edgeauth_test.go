package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// TestEdgeAuthSIGHUP: ftpsgate run, given an auth block by a SIGHUP
// reload, refuses a wrong password with 530 without trying its backend
// (which is down: an accepted login gets 421); a user file broken before
// the next SIGHUP makes that reload refused, logged with the file's line,
// and the users stay; a good file is taken at the SIGHUP.
func TestEdgeAuthSIGHUP(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	g := startGateProcess(t, devnull, "")
	users := filepath.Join(t.TempDir(), "users")
	entry := func(data []byte, user, pw string) []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte(pw), userfile.MinBcryptCost)
		out, err := userfile.Set(data, user, string(h))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	good := entry(nil, "alice", "alice-pw")
	if err := os.WriteFile(users, good, 0o600); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(g.src, `backend = "b"`, `backend = "b"
  auth = "staff"`, 1) + fmt.Sprintf("auth \"staff\" {\n  user_file = %q\n}\n", users)
	os.WriteFile(g.cfg, []byte(src), 0o600)
	hup := func(want string) {
		t.Helper()
		n := len(logLines(t, g.stderr.String(), want))
		g.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(time.Minute)
		for len(logLines(t, g.stderr.String(), want)) == n {
			if time.Now().After(deadline) {
				g.fatal(t, "no "+want+" after SIGHUP")
			}
			time.Sleep(20 * time.Millisecond) // polling the log, bounded by deadline
		}
	}
	login := func(user, pw string) string {
		c := ftptest.Dial(t, g.addr)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(331, "USER %s", user)
		c.Send("PASS " + pw)
		code, msg := c.Read()
		return fmt.Sprint(code, " ", msg)
	}
	hup("configuration reloaded: new sessions use it, open sessions keep theirs")
	if got := login("alice", "wrong"); got != "530 Login incorrect." {
		t.Fatalf("wrong password: %q", got)
	}
	if got := login("alice", "alice-pw"); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("accepted login toward a backend that is down: %q", got)
	}

	// Broken: the reload is refused, its line logged; alice stays.
	os.WriteFile(users, append(good, "bob:{SHA}abc=\n"...), 0o600)
	hup("configuration reload refused: running on the previous configuration")
	if !strings.Contains(g.stderr.String(), users+":2:1") {
		t.Fatalf("the refused reload does not name the line:\n%s", g.stderr.String())
	}
	if got := login("alice", "alice-pw"); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("alice after a broken file: %q", got)
	}

	// Good again, with carol: taken at the SIGHUP.
	os.WriteFile(users, entry(good, "carol", "carol-pw"), 0o600)
	hup("configuration reloaded: new sessions use it, open sessions keep theirs")
	if got := login("carol", "carol-pw"); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("carol after the reload: %q", got)
	}
	g.stop(t)
}

// TestValidateAuth: validate names each bad line of a user file at that
// file's line, an unknown auth name at the configuration's, and warns of
// a user file others can read.
func TestValidateAuth(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("# staff\nalice:$apr1$x$y\nbob\n"), 0o644)
	path := filepath.Join(dir, "gate.hcl")
	os.WriteFile(path, []byte(fmt.Sprintf(`listener "ftps" {
  address       = "127.0.0.1:0"
  cert_file     = %q
  key_file      = %q
  passive_ports = "50000-50999"
  backend       = "b"
  auth          = "staff"
}
backend "b" { address = "127.0.0.1:21" }
auth "staff" {
  user_file = %q
}
route "r" {
  backend = "b"
  auth    = "partners"
}
`, certs.CertFile, certs.KeyFile, users)), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", path}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
	for _, want := range []string{
		users + ":2:1: error: Invalid user file line: auth \"staff\": a weak or unsupported hash",
		users + ":3:1: error: Invalid user file line: auth \"staff\": not user:hash",
		path + ":11:15: warning: Readable user_file",
		path + ":15:13: error: Unknown auth block: Route \"r\" names auth \"partners\"",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate lacks %q:\n%s", want, errOut.String())
		}
	}
}
