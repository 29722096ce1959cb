package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/crypto/bcrypt"
)

// authFixture writes a good user file, a bad one and a backend password
// file, and returns the configuration template's arguments.
func authFixture(t *testing.T) (cert, key, users, bad, pwFile string) {
	t.Helper()
	cert, key = testCert(t)
	dir := t.TempDir()
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), 10)
	users = filepath.Join(dir, "users")
	os.WriteFile(users, []byte("# staff\nalice:"+string(h)+"\n"), 0o600)
	bad = filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("alice:"+string(h)+"\n# ok\nbob:$apr1$x$y\ncarol\n"), 0o600)
	pwFile = filepath.Join(dir, "backend.pass")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	return
}

const authTmpl = `listener "ftps" {
  address       = "0.0.0.0:21"
  tls           = "explicit"
  cert_file     = "%[1]s"
  key_file      = "%[2]s"
  passive_ports = "50000-50999"
  backend       = "legacy"
  %[4]s
}
backend "legacy" {
  address = "10.0.0.5:21"
  tls     = "none"
}
%[3]s
`

// TestAuthBlocks: auth blocks compile into the snapshot, and each mistake
// is reported at its file and line (the user file's own line for a bad
// entry).
func TestAuthBlocks(t *testing.T) {
	cert, key, users, bad, pwFile := authFixture(t)
	t.Setenv("FTPSGATE_TEST_BACKEND_PW", "from-env")
	good := fmt.Sprintf(`auth "staff" {
  user_file             = %q
  backend_user          = "svc"
  backend_password_file = %q
}
route "ops" {
  users                = ["ops*"]
  backend              = "legacy"
  backend_user         = "ops"
  backend_password_env = "FTPSGATE_TEST_BACKEND_PW"
}`, users, pwFile)
	cfg, diags := Parse([]byte(fmt.Sprintf(authTmpl, cert, key, good, `auth = "staff"`)), "f.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	a := cfg.Listeners[0].Auth
	if a == nil || a.Name != "staff" || !a.Users.Has("alice") || a.Backend.User != "svc" || a.Backend.Password != "s3cret" {
		t.Fatalf("auth %+v", a)
	}
	if rl := cfg.RouteLogins["ops"]; rl == nil || rl.Backend.Password != "from-env" || rl.Auth != nil {
		t.Fatalf("route login %+v", rl)
	}
	if fmt.Sprint(a.Backend) != "svc" {
		t.Fatalf("a backend account prints as %q", fmt.Sprint(a.Backend))
	}

	for _, tc := range []struct {
		name, blocks, listener string
		want                   []string // "file:line: summary"
	}{
		{"unknown auth", "", `auth = "nope"`, []string{"f.hcl:8: Unknown auth block"}},
		{"unknown route auth", `route "r" {
  backend = "legacy"
  auth    = "nope"
}`, "", []string{"f.hcl:16: Unknown auth block"}},
		{"unreadable user file", `auth "a" {
  user_file = "/nonexistent/users"
}`, `auth = "a"`, []string{"f.hcl:15: Unreadable user file"}},
		{"no user file", `auth "a" {
}`, `auth = "a"`, []string{"f.hcl:14: Invalid auth block"}},
		{"bad lines", fmt.Sprintf(`auth "a" {
  user_file = %q
}`, bad), `auth = "a"`, []string{bad + ":3: Invalid user file line", bad + ":4: Invalid user file line"}},
		{"user without password", fmt.Sprintf(`auth "a" {
  user_file    = %q
  backend_user = "svc"
}`, users), `auth = "a"`, []string{"f.hcl:16: Invalid backend account"}},
		{"both passwords", fmt.Sprintf(`auth "a" {
  user_file             = %q
  backend_user          = "svc"
  backend_password_file = %q
  backend_password_env  = "FTPSGATE_TEST_BACKEND_PW"
}`, users, pwFile), `auth = "a"`, []string{"f.hcl:18: Invalid backend account"}},
		{"unset env", fmt.Sprintf(`auth "a" {
  user_file            = %q
  backend_user         = "svc"
  backend_password_env = "FTPSGATE_TEST_UNSET"
}`, users), `auth = "a"`, []string{"f.hcl:17: Missing backend password"}},
		{"route account without auth", `route "r" {
  backend               = "legacy"
  backend_user          = "svc"
  backend_password_env  = "FTPSGATE_TEST_BACKEND_PW"
}`, "", []string{"f.hcl:16: Backend account without auth"}},
		{"bad TOTP line", fmt.Sprintf(`auth "a" {
  user_file         = %q
  totp_secrets_file = %q
}`, users, bad), `auth = "a"`, []string{bad + ":1: Invalid TOTP secrets line", bad + ":3: Invalid TOTP secrets line",
			bad + ":4: Invalid TOTP secrets line"}},
		{"duplicate", fmt.Sprintf(`auth "a" {
  user_file = %q
}
auth "a" {
  user_file = %q
}`, users, users), `auth = "a"`, []string{"f.hcl:17: Duplicate auth block"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse([]byte(fmt.Sprintf(authTmpl, cert, key, tc.blocks, tc.listener)), "f.hcl")
			var got []string
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				line := d.Summary
				if d.Subject != nil {
					line = fmt.Sprintf("%s:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Summary)
				}
				got = append(got, line)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("diagnostics\n%s\nwant\n%s\n(%v)", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), diags)
			}
		})
	}
}
