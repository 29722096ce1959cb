package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// notifyTmpl is validTmpl with two notify blocks (lines 1 to 18); %[1]s
// and %[2]s are their secret files.
const notifyTmpl = `notify "hooks" {
  url              = "https://hooks.example.com/ftp"
  events           = ["upload_complete", "upload_rejected"]
  secret_file      = "%[1]s"
  timeout          = "3s"
  queue            = 10
  workers          = 1
  retries          = 3
  backoff          = "100ms"
  max_backoff      = "2s"
  max_age          = "1m"
  drain_timeout    = "2s"
}
notify "local" {
  url         = "http://127.0.0.1:8080/hook"
  events      = ["login_failed", "ban", "download_complete"]
  secret_file = "%[2]s"
}
`

// notifyConfig returns the configuration and the first block's secret
// file.
func notifyConfig(t *testing.T) (string, string) {
	dir := t.TempDir()
	s1, s2 := filepath.Join(dir, "hooks.secret"), filepath.Join(dir, "local.secret")
	for _, p := range []string{s1, s2} {
		if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, key := testCert(t)
	return fmt.Sprintf(notifyTmpl, s1, s2) + fmt.Sprintf(validTmpl, cert, key), s1
}

func TestNotifyBlocks(t *testing.T) {
	src, secret := notifyConfig(t)
	cfg, diags := Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if len(cfg.Notifies) != 2 {
		t.Fatalf("%d notify blocks", len(cfg.Notifies))
	}
	h := cfg.Notifies[0]
	if h.Name != "hooks" || h.URL != "https://hooks.example.com/ftp" || !slices.Equal(h.Events, []string{"upload_complete", "upload_rejected"}) ||
		string(h.Secret) != "0123456789abcdef0123456789abcdef" || h.SecretFile != secret || h.Timeout != 3*time.Second ||
		h.Queue != 10 || h.Workers != 1 || h.Retries != 3 || h.Backoff != 100*time.Millisecond || h.MaxBackoff != 2*time.Second ||
		h.MaxAge != time.Minute || h.DrainTimeout != 2*time.Second || h.AllowPlainHTTP {
		t.Fatalf("notify hooks = %+v", h)
	}
	// The defaults.
	l := cfg.Notifies[1]
	d := defaultNotify()
	if l.Timeout != d.Timeout || l.Queue != 1024 || l.Workers != 2 || l.Retries != 8 || l.Backoff != time.Second ||
		l.MaxBackoff != time.Minute || l.MaxAge != 15*time.Minute || l.DrainTimeout != 5*time.Second {
		t.Fatalf("notify local = %+v", l)
	}
}

// TestNotifyDiagnostics: each mistake is an error at its line.
func TestNotifyDiagnostics(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"scheme", `"https://hooks.example.com/ftp"`, `"ftp://hooks.example.com/ftp"`, 2, "Invalid notify url"},
		{"not a URL", `"https://hooks.example.com/ftp"`, `"https://hooks example.com/%zz"`, 2, "Invalid notify url"},
		{"no host", `"https://hooks.example.com/ftp"`, `"https:///ftp"`, 2, "Invalid notify url"},
		{"credentials", `"https://hooks.example.com/ftp"`, `"https://u:p@hooks.example.com/ftp"`, 2, "Invalid notify url"},
		{"plain http beyond loopback", `"https://hooks.example.com/ftp"`, `"http://hooks.example.com/ftp"`, 2, "Invalid notify url"},
		{"plain http to a private address", `"http://127.0.0.1:8080/hook"`, `"http://10.0.0.5:8080/hook"`, 15, "Invalid notify url"},
		{"unknown event", `"upload_rejected"]`, `"upload_refused"]`, 3, "Invalid events"},
		{"event twice", `"upload_rejected"]`, `"upload_complete"]`, 3, "Invalid events"},
		{"no events", `["upload_complete", "upload_rejected"]`, `[]`, 3, "Invalid events"},
		{"missing secret file", `.secret"`, `.nothere"`, 4, "Cannot read secret_file"},
		{"short secret", "", "", 4, "Invalid secret_file"},
		{"timeout", `"3s"`, `"0s"`, 5, "Invalid duration"},
		{"queue", `queue            = 10`, `queue            = 0`, 6, "Invalid queue"},
		{"workers", `workers          = 1`, `workers          = 1000`, 7, "Invalid workers"},
		{"retries", `retries          = 3`, `retries          = -1`, 8, "Invalid retries"},
		{"backoff above max", `"100ms"`, `"5s"`, 9, "Invalid backoff"},
		{"duplicate", `notify "local"`, `notify "hooks"`, 14, "Duplicate notify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, secret := notifyConfig(t)
			edited := strings.Replace(src, tc.old, tc.new, 1)
			if tc.old == "" { // the secret file's content
				if err := os.WriteFile(secret, []byte("short\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			} else if edited == src {
				t.Fatal("edit changed nothing")
			}
			cfg, diags := Parse([]byte(edited), "gate.hcl")
			if cfg != nil {
				t.Fatal("accepted")
			}
			for _, d := range diags {
				if d.Summary == tc.summary {
					if d.Subject == nil || d.Subject.Start.Line != tc.line || d.Subject.Filename != "gate.hcl" {
						t.Fatalf("%q at %v, want gate.hcl line %d", d.Summary, d.Subject, tc.line)
					}
					return
				}
			}
			t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
		})
	}
}

// TestNotifyPlainHTTP: plain http is accepted to loopback, and beyond it
// only with allow_plain_http.
func TestNotifyPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		url   string
		allow bool
		ok    bool
	}{
		{"http://127.0.0.1/h", false, true}, {"http://127.3.4.5:9/h", false, true}, {"http://[::1]:80/h", false, true},
		{"http://localhost/h", false, true}, {"http://LOCALHOST/h", false, true},
		{"http://10.1.2.3/h", false, false}, {"http://[::ffff:127.0.0.1]/h", false, true}, {"http://hooks.internal/h", false, false},
		{"http://localhost.evil.example/h", false, false}, {"http://127.0.0.1.nip.io/h", false, false},
		{"http://10.1.2.3/h", true, true}, {"https://10.1.2.3/h", false, true},
		{"https://hooks.example.com/h#frag", false, false}, {"HTTPS://hooks.example.com/h", false, true},
	} {
		if got := checkNotifyURL(tc.url, tc.allow) == ""; got != tc.ok {
			t.Errorf("checkNotifyURL(%q, %v) ok = %v, want %v: %s", tc.url, tc.allow, got, tc.ok, checkNotifyURL(tc.url, tc.allow))
		}
	}
}
