package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// TestHookAndCertBlocks: hook and cert blocks and a listener's client_auth
// compile into the snapshot, and each mistake is reported at its file and
// line: two password sources, a hook in clear on a network, a cert block
// on a listener that asks for no certificate.
func TestHookAndCertBlocks(t *testing.T) {
	cert, key, users, _, pwFile := authFixture(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("hook-secret\n"), 0o600)
	good := fmt.Sprintf(`auth "partners" {
  hook {
    url                    = "https://auth.example.net/ftp-login"
    timeout                = "2s"
    ca_file                = %[1]q
    secret_file            = %[2]q
    cache_ttl              = "30s"
    backend_password_files = { svc = %[3]q }
  }
  cert {
    mode      = "cert_and_password"
    user_from = "san_email"
  }
}`, cert, secret, pwFile)
	mtls := fmt.Sprintf(`auth = "partners"
  client_auth    = "require"
  client_ca_file = %q`, cert)
	cfg, diags := Parse([]byte(fmt.Sprintf(authTmpl, cert, key, good, mtls)), "f.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	l := cfg.Listeners[0]
	a := l.Auth
	if l.ClientAuth != ClientCertRequire || l.ClientCAs == nil || a.Hook == nil || a.Cert == nil {
		t.Fatalf("listener %+v auth %+v", l, a)
	}
	h := a.Hook
	if h.Timeout != 2*time.Second || h.CacheTTL != 30*time.Second || h.Secret != "hook-secret" || h.RootCAs == nil ||
		h.BackendLogins["svc"].Password != "s3cret" || a.Cert.UserFrom != FromSANEmail || a.Cert.Mode != CertAndPassword {
		t.Fatalf("hook %+v cert %+v", h, a.Cert)
	}
	if m := a.Method(); m != "cert+hook" {
		t.Fatalf("method %q", m)
	}

	for _, tc := range []struct {
		name, blocks, listener string
		want                   []string
	}{
		{"two sources", fmt.Sprintf(`auth "a" {
  user_file = %q
  hook {
    url = "https://auth.example.net/"
  }
}`, users), `auth = "a"`, []string{"f.hcl:16: Two password sources"}},
		{"plain http on a network", `auth "a" {
  hook {
    url = "http://auth.example.net/login"
  }
}`, `auth = "a"`, []string{"f.hcl:16: Invalid hook url"}},
		{"plain http to localhost by name", `auth "a" {
  hook {
    url = "http://localhost:8080/login"
  }
}`, `auth = "a"`, []string{"f.hcl:16: Invalid hook url"}},
		{"credentials in the url", `auth "a" {
  hook {
    url = "https://u:p@auth.example.net/"
  }
}`, `auth = "a"`, []string{"f.hcl:16: Invalid hook url"}},
		{"bad timeout", `auth "a" {
  hook {
    url     = "http://127.0.0.1:8080/"
    timeout = "soon"
  }
}`, `auth = "a"`, []string{"f.hcl:17: Invalid duration"}},
		{"hook account without password file", `auth "a" {
  hook {
    url                    = "http://[::1]:8080/"
    backend_password_files = { svc = "/nonexistent" }
  }
}`, `auth = "a"`, []string{"f.hcl:17: Unreadable backend_password_files"}},
		{"cert without client_auth", `auth "a" {
  cert {
    mode = "cert"
  }
  backend_user         = "svc"
  backend_password_env = "HOME"
}`, `auth = "a"`, []string{"f.hcl:8: Certificate auth without client_auth"}},
		{"cert only with a user file", fmt.Sprintf(`auth "a" {
  user_file = %q
  cert {
    mode = "cert"
  }
}`, users), "", []string{"f.hcl:15: Invalid auth block"}},
		{"bad cert mode", `auth "a" {
  cert {
    mode      = "certificate"
    user_from = "uid"
  }
}`, "", []string{"f.hcl:16: Invalid cert mode", "f.hcl:17: Invalid user_from", "f.hcl:14: Invalid auth block"}},
		{"client_auth without CA", "", `client_auth = "require"`, []string{"f.hcl:8: Missing client_ca_file"}},
		{"CA without client_auth", "", `client_ca_file = "/etc/hosts"`, []string{"f.hcl:8: client_ca_file without client_auth"}},
		{"CA not PEM", "", `client_auth = "optional"
  client_ca_file = "/etc/hosts"`, []string{"f.hcl:9: Invalid client_ca_file"}},
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
