package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestLDAPBlocks: an ldap block compiles into the auth block's LDAP, with
// its defaults; each mistake is reported at its file and line, two
// password sources in one block among them, and no setting lets a
// password cross the network in clear.
func TestLDAPBlocks(t *testing.T) {
	cert, key, users, _, _ := authFixture(t)
	dir := t.TempDir()
	svcPW := filepath.Join(dir, "ldap.pass")
	os.WriteFile(svcPW, []byte("svc-pw\n"), 0o600)
	empty := filepath.Join(dir, "empty.pass")
	os.WriteFile(empty, []byte("\n"), 0o600)
	good := fmt.Sprintf(`auth "dir" {
  ldap {
    url              = "ldaps://ldap.example.com:1636"
    ca_file          = %q
    bind_dn_template = "uid={user},ou=people,dc=example,dc=com"
    max_connections  = 3
    group "cn=auditors,ou=groups,dc=example,dc=com" {
      read_only = true
    }
    group "cn=finance,ou=groups,dc=example,dc=com" {
      route = "finance"
    }
  }
}
auth "search" {
  ldap {
    url                   = "ldap://ldap.example.com"
    start_tls             = true
    service_dn            = "cn=svc,dc=example,dc=com"
    service_password_file = %q
    base_dn               = "ou=people,dc=example,dc=com"
    timeout               = "2s"
  }
}
route "finance" {
  users   = ["f-*"]
  backend = "legacy"
}`, cert, svcPW)
	cfg, diags := Parse([]byte(fmt.Sprintf(authTmpl, cert, key, good, `auth = "dir"`)), "f.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	l := cfg.Auths["dir"].LDAP
	if l == nil || l.TLS.ServerName != "ldap.example.com" || l.TLS.RootCAs == nil || l.MaxConnections != 3 ||
		l.Timeout != defaultLDAP().Timeout || len(l.Groups) != 2 || !l.Groups[0].ReadOnly || l.Groups[1].Route != "finance" ||
		cfg.Auths["dir"].Method() != "ldap" {
		t.Fatalf("ldap %+v", l)
	}
	s := cfg.Auths["search"].LDAP
	if s.ServicePassword != "svc-pw" || s.UserFilter != "(uid={user})" || !s.StartTLS || s.TLS.RootCAs != nil || s.Timeout.String() != "2s" {
		t.Fatalf("search ldap %+v", s)
	}

	block := func(body string) string { return "auth \"a\" {\n  ldap {\n" + body + "\n  }\n}" }
	for _, tc := range []struct {
		name, blocks string
		want         []string // "file:line: summary"
	}{
		{"two sources", fmt.Sprintf("auth \"a\" {\n  user_file = %q\n  ldap {\n    url = \"ldaps://h\"\n    bind_dn_template = \"uid={user},dc=x\"\n  }\n}", users),
			[]string{"f.hcl:16: Two password sources"}},
		{"clear", block(`    url = "ldap://h"
    bind_dn_template = "uid={user},dc=x"`), []string{"f.hcl:16: Password in clear"}},
		{"start_tls on ldaps", block(`    url = "ldaps://h"
    start_tls = true
    bind_dn_template = "uid={user},dc=x"`), []string{"f.hcl:17: Invalid start_tls"}},
		{"bad url", block(`    url = "http://h"
    bind_dn_template = "uid={user},dc=x"`), []string{"f.hcl:16: Invalid ldap url"}},
		{"no way to bind", block(`    url = "ldaps://h"`), []string{"f.hcl:15: Invalid ldap block"}},
		{"template and search", block(`    url = "ldaps://h"
    bind_dn_template = "uid={user},dc=x"
    base_dn = "dc=x"`), []string{"f.hcl:17: Invalid ldap block"}},
		{"template without user", block(`    url = "ldaps://h"
    bind_dn_template = "uid=alice,dc=x"`), []string{"f.hcl:17: Invalid bind_dn_template"}},
		{"filter without user", block(fmt.Sprintf(`    url = "ldaps://h"
    service_dn = "cn=svc,dc=x"
    service_password_file = %q
    base_dn = "dc=x"
    user_filter = "(uid=alice)"`, svcPW)), []string{"f.hcl:20: Invalid user_filter"}},
		{"broken filter", block(fmt.Sprintf(`    url = "ldaps://h"
    service_dn = "cn=svc,dc=x"
    service_password_file = %q
    base_dn = "dc=x"
    user_filter = "(uid={user}"`, svcPW)), []string{"f.hcl:20: Invalid user_filter"}},
		{"empty service password", block(fmt.Sprintf(`    url = "ldaps://h"
    service_dn = "cn=svc,dc=x"
    service_password_file = %q
    base_dn = "dc=x"`, empty)), []string{"f.hcl:18: Invalid service_password_file"}},
		{"bad ca", block(fmt.Sprintf(`    url = "ldaps://h"
    ca_file = %q
    bind_dn_template = "uid={user},dc=x"`, svcPW)), []string{"f.hcl:17: Invalid ca_file"}},
		{"max_connections", block(`    url = "ldaps://h"
    bind_dn_template = "uid={user},dc=x"
    max_connections = 0`), []string{"f.hcl:18: Invalid max_connections"}},
		{"unknown route", block(`    url = "ldaps://h"
    bind_dn_template = "uid={user},dc=x"
    group "cn=g,dc=x" {
      route = "nope"
    }`), []string{"f.hcl:19: Unknown route"}},
		{"bad group", block(`    url = "ldaps://h"
    bind_dn_template = "uid={user},dc=x"
    group "not a dn" {}`), []string{"f.hcl:18: Invalid group"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse([]byte(fmt.Sprintf(authTmpl, cert, key, tc.blocks, `auth = "a"`)), "f.hcl")
			var got []string
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				got = append(got, fmt.Sprintf("%s:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Summary))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("diagnostics\n%s\nwant\n%s\n(%v)", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), diags)
			}
		})
	}
}
