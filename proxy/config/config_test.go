package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ftpsgate/ftpsgate/policy"
)

// testCert writes a self-signed certificate and key, for load tests.
func testCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

const validTmpl = `listener "ftps" {
  address        = "0.0.0.0:21"
  tls            = "explicit"
  cert_file      = "%[1]s"
  key_file       = "%[2]s"
  passive_ports  = "50000-50999"
  public_address = "203.0.113.10"
  backend        = "legacy"
}
listener "ftps-implicit" {
  address       = "[::]:990"
  tls           = "implicit"
  cert_file     = "%[1]s"
  key_file      = "%[2]s"
  passive_ports = "51000-51999"
  backend       = "legacy"
}
backend "legacy" {
  address = "10.0.0.5:21"
  tls     = "none"
}
policy {
  require_tls    = true
  require_prot_p = true
  allow_users    = []
}
audit {
  file = "/tmp/ftpsgate-audit.log"
}
`

func TestLoadContractExample(t *testing.T) {
	cert, key := testCert(t)
	cfg, diags := Parse([]byte(fmt.Sprintf(validTmpl, cert, key)), "ftpsgate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	l := cfg.Listeners[0]
	if l.Name != "ftps" || l.TLS != Explicit || l.PassivePorts != (PortRange{50000, 50999}) ||
		l.PublicAddress.String() != "203.0.113.10" || l.Backend != cfg.Backends["legacy"] ||
		l.MinTLSVersion != tls.VersionTLS12 || l.Certificate == nil {
		t.Fatalf("listener %+v", l)
	}
	if cfg.Listeners[1].TLS != Implicit || cfg.Listeners[1].PublicAddress.IsValid() {
		t.Fatalf("implicit listener %+v", cfg.Listeners[1])
	}
	if !cfg.Policy.RequireTLS || !cfg.Policy.RequireProtP || len(cfg.Policy.AllowUsers) != 0 {
		t.Fatalf("policy %+v", cfg.Policy)
	}
	if cfg.Audit.File != "/tmp/ftpsgate-audit.log" || cfg.Audit.OnError != AuditContinue || cfg.Timeouts != DefaultTimeouts() {
		t.Fatalf("audit %+v timeouts %+v", cfg.Audit, cfg.Timeouts)
	}
	refuse := strings.Replace(fmt.Sprintf(validTmpl, cert, key), `file = "/tmp/ftpsgate-audit.log"`,
		`file = "/tmp/ftpsgate-audit.log"`+"\n  on_error = \"refuse\"", 1)
	if cfg, diags := Parse([]byte(refuse), "ftpsgate.hcl"); diags.HasErrors() || cfg.Audit.OnError != AuditRefuse {
		t.Fatalf("on_error = \"refuse\": %v", diags)
	}
}

func TestDefaults(t *testing.T) {
	cert, key := testCert(t)
	src := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "b"
}
backend "b" { address = "127.0.0.1:21" }
`, cert, key)
	cfg, diags := Parse([]byte(src), "min.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	// Secure defaults: TLS and PROT P required when no policy block.
	if !cfg.Policy.RequireTLS || !cfg.Policy.RequireProtP || cfg.Listeners[0].TLS != Explicit {
		t.Fatalf("defaults %+v %+v", cfg.Policy, cfg.Listeners[0])
	}
	// Active mode never reaches the proxy's own host; lingering data
	// connections are bounded.
	if cfg.Listeners[0].ActiveAllowLocal || cfg.Limits != DefaultLimits() || cfg.Limits.MaxLingeringDataLegs != 256 {
		t.Fatalf("defaults %+v %+v", cfg.Listeners[0], cfg.Limits)
	}
	// An upload must end with the client's close_notify.
	if m := cfg.Listeners[0].UploadCloseNotify; m != RequireCloseNotify || m.String() != "require" {
		t.Fatalf("upload_close_notify defaults to %v", m)
	}
	for _, v := range []struct {
		hcl  string
		want UploadCloseNotify
	}{{"require", RequireCloseNotify}, {"warn", WarnCloseNotify}} {
		cfg, diags := Parse([]byte(strings.Replace(src, `backend = "b"`+"\n}", fmt.Sprintf("backend = \"b\"\n  upload_close_notify = %q\n}", v.hcl), 1)), "min.hcl")
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		if got := cfg.Listeners[0].UploadCloseNotify; got != v.want || got.String() != v.hcl {
			t.Fatalf("upload_close_notify = %q compiled to %v", v.hcl, got)
		}
	}
}

// TestBackendTLS: an FTPS backend's settings compile into its client
// configuration; the defaults verify the certificate against the host of
// the address.
func TestBackendTLS(t *testing.T) {
	cert, key := testCert(t)
	src := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "explicit"
}
backend "explicit" {
  address = "10.0.0.5:21"
  tls = "explicit"
}
backend "implicit" {
  address = "ftp.internal:990"
  tls = "implicit"
  ca_file = %q
  server_name = "files.example.com"
  tls_min_version = "1.3"
}
backend "lab" {
  address = "10.0.0.6:21"
  tls = "explicit"
  data_mode = "active"
  insecure_skip_verify = true
  tls_max_version = "1.2"
}
`, cert, key, cert)
	cfg, diags := Parse([]byte(src), "b.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	e, i, l := cfg.Backends["explicit"], cfg.Backends["implicit"], cfg.Backends["lab"]
	if e.TLS != BackendExplicit || e.TLSConfig.ServerName != "10.0.0.5" || e.TLSConfig.RootCAs != nil ||
		e.TLSConfig.MinVersion != tls.VersionTLS12 || e.TLSConfig.MaxVersion != tls.VersionTLS13 || e.InsecureSkipVerify {
		t.Fatalf("explicit backend %+v %+v", e, e.TLSConfig)
	}
	if i.TLS != BackendImplicit || i.TLSConfig.ServerName != "files.example.com" || i.TLSConfig.RootCAs == nil ||
		i.TLSConfig.MinVersion != tls.VersionTLS13 {
		t.Fatalf("implicit backend %+v %+v", i, i.TLSConfig)
	}
	if e.ActiveData || !l.ActiveData {
		t.Fatalf("data modes: explicit %v, lab %v", e.ActiveData, l.ActiveData)
	}
	if !l.InsecureSkipVerify || !l.TLSConfig.InsecureSkipVerify || l.TLSConfig.MaxVersion != tls.VersionTLS12 {
		t.Fatalf("lab backend %+v %+v", l, l.TLSConfig)
	}
	if cfg.Backends["explicit"].TLSConfig == nil || cfg.Listeners[0].Backend.TLSConfig == nil {
		t.Fatal("no TLS config")
	}
}

// TestDiagnostics: every problem is reported, each with its file and line.
func TestDiagnostics(t *testing.T) {
	cert, key := testCert(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	shortToken := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(shortToken, []byte("letmein\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(string) string
		line    int
		summary string
	}{
		{"unknown backend", func(s string) string {
			return strings.Replace(s, `backend        = "legacy"`, `backend        = "nope"`, 1)
		}, 8, "Unknown backend"},
		{"bad TLS mode", func(s string) string { return strings.Replace(s, `"explicit"`, `"starttls"`, 1) }, 3, "Invalid TLS mode"},
		{"bad range", func(s string) string { return strings.Replace(s, `"50000-50999"`, `"50999-50000"`, 1) }, 6, "Invalid passive port range"},
		{"privileged range", func(s string) string { return strings.Replace(s, `"50000-50999"`, `"20-21"`, 1) }, 6, "Invalid passive port range"},
		{"overlapping ranges", func(s string) string { return strings.Replace(s, `"51000-51999"`, `"50500-51999"`, 1) }, 15, "Overlapping passive ranges"},
		{"public address not IPv4", func(s string) string { return strings.Replace(s, `"203.0.113.10"`, `"2001:db8::1"`, 1) }, 7, "Invalid public address"},
		{"public address not an IP", func(s string) string { return strings.Replace(s, `"203.0.113.10"`, `"ftp.example.com"`, 1) }, 7, "Invalid public address"},
		{"bad listen address", func(s string) string { return strings.Replace(s, `"0.0.0.0:21"`, `"0.0.0.0"`, 1) }, 2, "Invalid listener address"},
		{"bad upload_close_notify", func(s string) string {
			return strings.Replace(s, `backend        = "legacy"`, "backend        = \"legacy\"\n  upload_close_notify = \"ignore\"", 1)
		}, 9, "Invalid upload_close_notify"},
		{"missing certificate", func(s string) string { return strings.Replace(s, cert, "/nonexistent.pem", 1) }, 4, "Cannot load certificate"},
		{"duplicate listener", func(s string) string { return strings.Replace(s, `"ftps-implicit"`, `"ftps"`, 1) }, 10, "Duplicate listener"},
		{"bad backend TLS mode", func(s string) string { return strings.Replace(s, `tls     = "none"`, `tls     = "starttls"`, 1) }, 20, "Invalid backend TLS mode"},
		{"TLS setting on a plain backend", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"none\"\n  ca_file = \"/etc/ssl/ca.pem\"", 1)
		}, 21, "TLS setting on a plain backend"},
		{"bad backend TLS version", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"explicit\"\n  tls_max_version = \"1.1\"", 1)
		}, 21, "Invalid TLS version"},
		{"backend TLS versions crossed", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"explicit\"\n  tls_min_version = \"1.3\"\n  tls_max_version = \"1.2\"", 1)
		}, 22, "Invalid TLS versions"},
		{"missing backend CA", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"implicit\"\n  ca_file = \"/nonexistent/ca.pem\"", 1)
		}, 21, "Cannot read ca_file"},
		{"bad data mode", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"none\"\n  data_mode = \"sideways\"", 1)
		}, 21, "Invalid data mode"},
		{"backend CA a FIFO", func(s string) string { // opening it must not wait for a writer
			return strings.Replace(s, `tls     = "none"`, "tls     = \"implicit\"\n  ca_file = \""+fifo+"\"", 1)
		}, 21, "Cannot read ca_file"},
		{"backend CA a device", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"implicit\"\n  ca_file = \"/dev/zero\"", 1)
		}, 21, "Cannot read ca_file"},
		{"certificate a device", func(s string) string { return strings.Replace(s, cert, "/dev/zero", 1) }, 4, "Cannot load certificate"},
		{"backend CA not PEM", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"implicit\"\n  ca_file = \"/etc/hostname\"", 1)
		}, 21, "Invalid ca_file"},
		{"TLVs without v2", func(s string) string {
			return strings.Replace(s, `tls     = "none"`, "tls     = \"none\"\n  proxy_protocol = \"v1\"\n  proxy_protocol_tlvs = true", 1)
		}, 22, "Invalid proxy_protocol_tlvs"},
		{"backend without host", func(s string) string { return strings.Replace(s, `"10.0.0.5:21"`, `":21"`, 1) }, 19, "Invalid backend address"},
		{"unknown attribute", func(s string) string { return strings.Replace(s, `require_tls    = true`, `require_tsl    = true`, 1) }, 23, "Unsupported argument"},
		{"wrong type", func(s string) string {
			return strings.Replace(s, `require_tls    = true`, `require_tls    = "yes please"`, 1)
		}, 23, "Unsuitable value type"},
		{"bad pattern", func(s string) string { return strings.Replace(s, `allow_users    = []`, `allow_users    = ["a["]`, 1) }, 25, "Invalid policy"},
		{"bad duration", func(s string) string { return s + "timeouts {\n  idle = \"forever\"\n}\n" }, 31, "Invalid duration"},
		{"bad audit on_error", func(s string) string {
			return strings.Replace(s, `file = "/tmp/ftpsgate-audit.log"`, "file = \"/tmp/ftpsgate-audit.log\"\n  on_error = \"ignore\"", 1)
		}, 29, "Invalid on_error"},
		{"small line limit", func(s string) string { return s + "limits {\n  max_line = 10\n}\n" }, 31, "Invalid limit"},
		{"bad CIDR", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+"\n  allow_cidrs = [\"10.0.0.0/33\"]", 1)
		}, 8, "Invalid address range"},
		{"CIDR with host bits", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+"\n  deny_cidrs = [\"10.1.2.3/8\"]", 1)
		}, 8, "Invalid address range"},
		{"overlapping CIDRs", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+"\n  allow_cidrs = [\"10.0.0.0/8\", \"10.2.0.0/16\"]", 1)
		}, 8, "Overlapping address ranges"},
		{"allow inside deny", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+"\n  allow_cidrs = [\"10.2.0.0/16\"]\n  deny_cidrs = [\"10.0.0.0/8\"]", 1)
		}, 8, "Unreachable rule"},
		{"bad deny_users pattern", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, `deny_users = ["a["]`, 1)
		}, 25, "Invalid policy"},
		{"malformed command entry", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, `deny_commands = ["SITE CH-MOD"]`, 1)
		}, 25, "Invalid policy"},
		{"bad unknown_commands", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, `unknown_commands = "allow"`, 1)
		}, 25, "Invalid policy"},
		{"bad user_names", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, `user_names = "folded"`, 1)
		}, 25, "Invalid policy"},
		{"command allowed and denied", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, "allow_commands = [\"RETR\", \"DELE\"]\n  deny_commands = [\"DELE\"]", 1)
		}, 25, "Unreachable rule"},
		{"user allowed and denied", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, "allow_users = [\"root\", \"alice\"]\n  deny_users = [\"ro*\"]", 1)
		}, 25, "Unreachable rule"},
		{"negative session bound", func(s string) string {
			return strings.Replace(s, `allow_users    = []`, `max_sessions_per_user = -1`, 1)
		}, 25, "Invalid policy"},
		{"route to unknown backend", func(s string) string { return s + "route \"r\" {\n  users = [\"a*\"]\n  backend = \"nope\"\n}\n" }, 32, "Unknown backend"},
		{"route after a catch-all", func(s string) string {
			return s + "route \"all\" {\n  backend = \"legacy\"\n}\nroute \"late\" {\n  users = [\"a\"]\n  backend = \"legacy\"\n}\n"
		}, 33, "Unreachable route"},
		{"route repeated", func(s string) string {
			return s + "route \"a\" {\n  hosts = [\"x.example\"]\n  backend = \"legacy\"\n}\nroute \"b\" {\n  hosts = [\"X.example\"]\n  backend = \"legacy\"\n}\n"
		}, 34, "Unreachable route"},
		{"route with an empty list", func(s string) string { return s + "route \"r\" {\n  sni = []\n  backend = \"legacy\"\n}\n" }, 31, "Invalid route"},
		{"syntax error", func(s string) string { return s + "listener {\n" }, 30, "Unclosed configuration block"},
		{"unknown cipher suite", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_cipher_suites = [\n    \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\",\n    \"ECDHE-RSA-AES128-GCM-SHA256\",\n  ]", 1)
		}, 10, "Unknown cipher suite"},
		{"insecure cipher suite", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_cipher_suites = [\"TLS_RSA_WITH_AES_128_CBC_SHA\"]", 1)
		}, 8, "Insecure cipher suite"},
		{"TLS 1.3 cipher suite", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_cipher_suites = [\"TLS_AES_128_GCM_SHA256\"]", 1)
		}, 8, "Invalid cipher suite"},
		{"cipher suite twice", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]", 1)
		}, 8, "Invalid tls_cipher_suites"},
		{"no cipher suite", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+"\n  tls_cipher_suites = []", 1)
		}, 8, "Invalid tls_cipher_suites"},
		{"cipher suites with TLS 1.3 only", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_min_version = \"1.3\"\n  tls_cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]", 1)
		}, 9, "Invalid tls_cipher_suites"},
		{"negative lingering bound", func(s string) string { return s + "limits {\n  max_lingering_data_legs = -1\n}\n" }, 31, "Invalid limit"},
		{"two listeners on one address", func(s string) string {
			return strings.Replace(s, `address       = "[::]:990"`, `address       = "127.0.0.1:21"`, 1)
		}, 11, "Address in use twice"},
		{"passive range takes the admin port", func(s string) string {
			return s + "admin {\n  address = \"127.0.0.1:50100\"\n}\n"
		}, 6, "Passive range takes a listening port"},
		{"passive range takes a control port", func(s string) string {
			return strings.Replace(s, `address       = "[::]:990"`, `address       = "[::]:50990"`, 1)
		}, 6, "Passive range takes a listening port"},
		{"backend is the proxy itself", func(s string) string {
			return strings.Replace(s, `address = "10.0.0.5:21"`, `address = "127.0.0.1:21"`, 1)
		}, 18, "Backend is the proxy itself"},
		{"missing audit directory", func(s string) string {
			return strings.Replace(s, `file = "/tmp/ftpsgate-audit.log"`, `file = "/nonexistent/ftpsgate/audit.log"`, 1)
		}, 28, "Missing audit directory"},
		{"pprof without authentication", func(s string) string { return s + "admin {\n  pprof = true\n}\n" }, 31, "pprof needs authentication"},
		{"missing token file", func(s string) string {
			return s + "admin {\n  bearer_token_file = \"/nonexistent/token\"\n}\n"
		}, 31, "Cannot read bearer_token_file"},
		{"short token", func(s string) string {
			return s + "admin {\n  bearer_token_file = \"" + shortToken + "\"\n}\n"
		}, 31, "Invalid bearer_token_file"},
		{"not a bcrypt hash", func(s string) string {
			return s + "admin {\n  basic_auth {\n    user = \"prometheus\"\n    password_hash = \"secret\"\n  }\n}\n"
		}, 33, "Invalid basic_auth"},
		{"user with a colon", func(s string) string {
			return s + "admin {\n  basic_auth {\n    user = \"prom:etheus\"\n    password_hash = \"" + testHash + "\"\n  }\n}\n"
		}, 32, "Invalid basic_auth"},
	}
	base := fmt.Sprintf(validTmpl, cert, key)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.edit(base)
			if src == base {
				t.Fatal("edit changed nothing")
			}
			cfg, diags := Parse([]byte(src), "gate.hcl")
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("accepted")
			}
			var found bool
			for _, d := range diags {
				if d.Summary == tc.summary {
					found = true
					if d.Subject == nil || d.Subject.Filename != "gate.hcl" || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want gate.hcl line %d", d.Summary, d.Subject, tc.line)
					}
				}
			}
			if !found {
				t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
			}
		})
	}
}

// TestAllProblemsReported: two independent mistakes give two diagnostics.
func TestAllProblemsReported(t *testing.T) {
	cert, key := testCert(t)
	src := strings.Replace(fmt.Sprintf(validTmpl, cert, key), `"explicit"`, `"bogus"`, 1)
	src = strings.Replace(src, `"51000-51999"`, `"x"`, 1)
	_, diags := Parse([]byte(src), "gate.hcl")
	if len(diags.Errs()) != 2 {
		t.Fatalf("want 2 diagnostics, got %s", diags.Error())
	}
}

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string]PortRange{"50000-50999": {50000, 50999}, " 1024 - 1024 ": {1024, 1024}, "6000": {6000, 6000}} {
		if got, err := ParsePortRange(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "a-b", "1023-2000", "2000-1999", "1-70000", "50000-"} {
		if _, err := ParsePortRange(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestPolicyAndRoutes: the policy block, a listener's address lists and
// route blocks compile into the runtime rules.
func TestPolicyAndRoutes(t *testing.T) {
	cert, key := testCert(t)
	src := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "main"
  allow_cidrs = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
  deny_cidrs = ["10.66.0.0/16"]
}
backend "main" { address = "10.0.0.5:21" }
backend "vault" { address = "10.0.0.6:21" }
policy {
  deny_users = ["root", "admin*"]
  read_only_users = ["audit-*"]
  deny_commands = ["site", "site  chmod", "xmkd"]
  read_only_commands = ["SITE UMASK"]
  unknown_commands = "relay"
  user_names = "exact"
  max_sessions_per_user = 4
}
limits { ipv6_prefix = 56 }
route "backups" {
  users = ["backup-*"]
  backend = "vault"
}
route "partner" {
  hosts = ["FTP.Partner.example"]
  sni = ["ftp.partner.example"]
  backend = "vault"
}
`, cert, key)
	cfg, diags := Parse([]byte(src), "p.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || diags[0].Summary != "Unknown commands relayed" || diags[0].Subject.Start.Line != 17 {
		t.Fatalf("want one warning, on unknown_commands (line 17): %v", diags)
	}
	l := cfg.Listeners[0]
	if fmt.Sprint(l.AllowCIDRs) != "[10.0.0.0/8 2001:db8::/32 192.0.2.7/32]" || fmt.Sprint(l.DenyCIDRs) != "[10.66.0.0/16]" {
		t.Fatalf("CIDRs %v %v", l.AllowCIDRs, l.DenyCIDRs)
	}
	p := cfg.Policy
	if !p.RequireTLS || fmt.Sprint(p.DenyUsers) != "[root admin*]" || fmt.Sprint(p.ReadOnlyUsers) != "[audit-*]" ||
		fmt.Sprint(p.DenyCommands) != "[SITE SITE CHMOD XMKD]" || fmt.Sprint(p.ReadOnlyCommands) != "[SITE UMASK]" ||
		!p.RelayUnknown || p.UserNames != policy.Exact || p.MaxSessionsPerUser != 4 {
		t.Fatalf("policy %+v", p)
	}
	if cfg.Limits.IPv6Prefix != 56 || cfg.Bans.IPv6Prefix != 56 {
		t.Fatalf("ipv6_prefix: limits %d, bans %d", cfg.Limits.IPv6Prefix, cfg.Bans.IPv6Prefix)
	}
	if len(cfg.Routes) != 2 || cfg.Routes[1].Hosts[0] != "ftp.partner.example" || cfg.Routes[0].Backend != "vault" {
		t.Fatalf("routes %+v", cfg.Routes)
	}
}

// TestBackendPools: servers, balance and health_check compile with their
// defaults; each mistake is reported on its line.
func TestBackendPools(t *testing.T) {
	cert, key := testCert(t)
	listener := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "pool"
}
`, cert, key)
	cfg, diags := Parse([]byte(listener+`backend "pool" {
  servers = ["10.0.0.5:21", "10.0.0.6:21"]
  balance = "least_conn"
  health_check {
    interval = "2s"
    rise = 1
  }
}
backend "one" {
  address = "10.0.0.7:21"
}
`), "pool.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	p, one := cfg.Backends["pool"], cfg.Backends["one"]
	if fmt.Sprint(p.Servers) != "[10.0.0.5:21 10.0.0.6:21]" || p.Address != "10.0.0.5:21" || p.Balance != LeastConn {
		t.Fatalf("pool %+v", p)
	}
	if hc := p.HealthCheck; hc == nil || *hc != (HealthCheck{Interval: 2 * time.Second, Timeout: 5 * time.Second, Rise: 1, Fall: 3}) {
		t.Fatalf("health check %+v", p.HealthCheck)
	}
	if fmt.Sprint(one.Servers) != "[10.0.0.7:21]" || one.Balance != RoundRobin || one.HealthCheck != nil {
		t.Fatalf("single server %+v", one)
	}
	for _, tt := range []struct {
		name, backend string
		line          int
		summary       string
	}{
		{"both", `address = "10.0.0.5:21"` + "\n  servers = [\"10.0.0.6:21\"]", 10, "Invalid backend"},
		{"neither", `tls = "none"`, 8, "Invalid backend"},
		{"empty pool", `servers = []`, 8, "Invalid backend"},
		{"duplicate", `servers = ["10.0.0.5:21", "10.0.0.5:21"]`, 9, "Invalid backend"},
		{"bad member", `servers = ["10.0.0.5"]`, 9, "Invalid backend address"},
		{"bad balance", `servers = ["10.0.0.5:21"]` + "\n  balance = \"random\"", 10, "Invalid balance"},
		{"bad rise", `servers = ["10.0.0.5:21"]` + "\n  health_check {\n    rise = 0\n  }", 11, "Invalid health check"},
		{"bad interval", `servers = ["10.0.0.5:21"]` + "\n  health_check {\n    interval = \"often\"\n  }", 11, "Invalid duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := listener + "backend \"pool\" {\n  " + tt.backend + "\n}\n"
			_, diags := Parse([]byte(src), "pool.hcl")
			if !diags.HasErrors() {
				t.Fatalf("accepted:\n%s", src)
			}
			d := diags[0]
			if d.Summary != tt.summary || d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Fatalf("got %q at %v, want %q at line %d\n%s", d.Summary, d.Subject, tt.summary, tt.line, src)
			}
		})
	}
}

// testHash is the bcrypt hash of "correct horse", cost 4 (htpasswd's
// $2y$ prefix).
const testHash = "$2y$04$Ep//Z7B6gUCtonDSyWHwa.9mp2dZh4hNJTkTTixt/lfRkkIi8nQxq"

// TestWarnings: a configuration that is valid but weaker than it should
// be loads, with a warning at the line that weakens it; the secure forms
// load with none.
func TestWarnings(t *testing.T) {
	cert, key := testCert(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// mode sets key's mode and, when owner is not 0, its owner (the
	// tests run as root, who may chown).
	type file struct {
		path  string
		mode  os.FileMode
		owner int
	}
	tests := []struct {
		name    string
		edit    func(string) string
		file    file
		line    int    // 0: no warning wanted
		summary string // of the warning
		detail  []string
	}{
		{"defaults", func(s string) string { return s }, file{}, 0, "", nil},
		{"CBC suite for an old client", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_cipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\"]", 1)
		}, file{}, 8, "Weak cipher suites", []string{`Listener "ftps"`, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "CVE-2013-0169"}},
		{"AEAD suites only, narrowed", func(s string) string {
			return strings.Replace(s, `public_address = "203.0.113.10"`, `public_address = "203.0.113.10"`+
				"\n  tls_cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]", 1)
		}, file{}, 0, "", nil},
		{"key readable by everyone", func(s string) string { return s }, file{key, 0o644, 0}, 5, "Readable key_file",
			[]string{key, "mode 0644", "every user", "chmod 600", "defaultMode: 0440"}},
		{"key readable by others only", func(s string) string { return s }, file{key, 0o604, 0}, 5, "Readable key_file", []string{"mode 0604"}},
		{"key readable by the group of its non-root owner", func(s string) string { return s }, file{key, 0o640, 65534}, 5,
			"Readable key_file", []string{"mode 0640", "uid 65534"}},
		{"key readable by the group of root (ssl-cert, fsGroup)", func(s string) string { return s }, file{key, 0o440, 0}, 0, "", nil},
		{"key of the service alone", func(s string) string { return s }, file{key, 0o400, 65534}, 0, "", nil},
		{"admin on every address without credentials", func(s string) string {
			return s + "admin {\n  address = \"0.0.0.0:9100\"\n}\n"
		}, file{}, 31, "Admin listener without authentication", []string{"0.0.0.0:9100", "/status.json"}},
		{"admin on loopback without credentials", func(s string) string {
			return s + "admin {\n  address = \"[::1]:9100\"\n}\n"
		}, file{}, 0, "", nil},
		{"admin with a token", func(s string) string {
			return s + "admin {\n  address = \"0.0.0.0:9100\"\n  bearer_token_file = \"" + token + "\"\n}\n"
		}, file{}, 0, "", nil},
		{"admin token readable by everyone", func(s string) string {
			return s + "admin {\n  address = \"0.0.0.0:9100\"\n  bearer_token_file = \"" + token + "\"\n}\n"
		}, file{token, 0o644, 0}, 32, "Readable bearer_token_file", []string{token, "mode 0644"}},
	}
	base := fmt.Sprintf(validTmpl, cert, key)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if f := tc.file; f.path != "" {
				if err := os.Chown(f.path, f.owner, 0); err != nil {
					t.Fatalf("the test needs root: %v", err)
				}
				if err := os.Chmod(f.path, f.mode); err != nil {
					t.Fatal(err)
				}
				defer os.Chown(f.path, 0, 0)
				defer os.Chmod(f.path, 0o600)
			}
			cfg, diags := Parse([]byte(tc.edit(base)), "gate.hcl")
			if cfg == nil || diags.HasErrors() {
				t.Fatalf("refused: %s", diags.Error())
			}
			if tc.line == 0 {
				if len(diags) != 0 {
					t.Fatalf("unwanted warnings: %s", diags.Error())
				}
				return
			}
			if len(diags) != 1 {
				t.Fatalf("want one warning, got %s", diags.Error())
			}
			d := diags[0]
			if d.Severity != hcl.DiagWarning || d.Summary != tc.summary || d.Subject == nil || d.Subject.Start.Line != tc.line {
				t.Fatalf("got %v %q at %v, want a warning %q at line %d", d.Severity, d.Summary, d.Subject, tc.summary, tc.line)
			}
			for _, want := range tc.detail {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("the warning lacks %q: %s", want, d.Detail)
				}
			}
		})
	}
}

// TestTLSAndAdminSettings: the listener's cipher suites (Mozilla's
// intermediate profile unless set) and the admin listener's credentials
// compile into the snapshot.
func TestTLSAndAdminSettings(t *testing.T) {
	cert, key := testCert(t)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("  0123456789abcdef0123456789abcdef\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(validTmpl, cert, key) + fmt.Sprintf(`admin {
  address = "0.0.0.0:9100"
  pprof = true
  bearer_token_file = %q
  basic_auth {
    user          = "prometheus"
    password_hash = %q
  }
}
`, token, testHash)
	src = strings.Replace(src, `passive_ports = "51000-51999"`, `passive_ports = "51000-51999"`+
		"\n  tls_cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA\", \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]", 1)
	cfg, diags := Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
	if got := cfg.Listeners[0].CipherSuites; !slices.Equal(got, want) {
		t.Errorf("default suites %v, want %v", got, want)
	}
	for _, id := range DefaultCipherSuites() {
		name := tls.CipherSuiteName(id)
		if !strings.Contains(name, "_GCM_") && !strings.Contains(name, "CHACHA20") || !strings.HasPrefix(name, "TLS_ECDHE_") {
			t.Errorf("default suite %s is not ECDHE with an AEAD", name)
		}
	}
	if got := cfg.Listeners[1].CipherSuites; !slices.Equal(got, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}) {
		t.Errorf("configured suites %v", got)
	}
	a := cfg.AdminAuth
	if !cfg.AdminPprof || !a.Enabled() || a.BearerToken != "0123456789abcdef0123456789abcdef" || a.BasicUser != "prometheus" ||
		string(a.BasicHash) != testHash {
		t.Errorf("admin %+v", a)
	}
	for addr, want := range map[string]bool{"127.0.0.1:9100": true, "127.3.4.5:1": true, "[::1]:9100": true, "localhost:9100": true,
		"LOCALHOST:1": true, "0.0.0.0:9100": false, ":9100": false, "[::]:9100": false, "10.0.0.1:9100": false, "[::ffff:127.0.0.1]:1": true} {
		if LoopbackAddress(addr) != want {
			t.Errorf("LoopbackAddress(%q) = %v", addr, !want)
		}
	}
}

// TestDataConnectionKnobs: active_allow_local and max_lingering_data_legs
// compile as written, 0 included (no data connection lingers).
func TestDataConnectionKnobs(t *testing.T) {
	cert, key := testCert(t)
	src := strings.Replace(fmt.Sprintf(validTmpl, cert, key), `backend        = "legacy"`,
		"backend        = \"legacy\"\n  active_allow_local = true", 1) + "limits {\n  max_lingering_data_legs = 0\n}\n"
	cfg, diags := Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if !cfg.Listeners[0].ActiveAllowLocal || cfg.Listeners[1].ActiveAllowLocal || cfg.Limits.MaxLingeringDataLegs != 0 {
		t.Fatalf("listeners %+v %+v, limits %+v", cfg.Listeners[0], cfg.Listeners[1], cfg.Limits)
	}
}

// TestBackendLimits: max_sessions, queue_timeout, max_dials and retries
// compile per backend, with their defaults when unset; values out of
// range are refused at their line, and a queue_timeout the login timeout
// always ends first is a warning.
func TestBackendLimits(t *testing.T) {
	cert, key := testCert(t)
	listener := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "fragile"
}
`, cert, key)
	cfg, diags := Parse([]byte(listener+`backend "fragile" {
  address       = "10.0.0.5:21"
  max_sessions  = 95
  queue_timeout = "20s"
  max_dials     = 4
  retries       = 0
}
backend "sturdy" {
  address = "10.0.0.6:21"
}
`), "limits.hcl")
	if diags.HasErrors() || len(diags) != 0 {
		t.Fatal(diags.Error())
	}
	if got, want := cfg.Backends["fragile"].Limits, (BackendLimits{MaxSessions: 95, QueueTimeout: 20 * time.Second, MaxDials: 4}); got != want {
		t.Fatalf("fragile: %+v, want %+v", got, want)
	}
	if got, want := cfg.Backends["sturdy"].Limits, (BackendLimits{QueueTimeout: 30 * time.Second, MaxDials: 16, Retries: 2}); got != want || got != DefaultBackendLimits() {
		t.Fatalf("defaults: %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		name, attr string
		summary    string
	}{
		{"negative max_sessions", "max_sessions = -1", "Invalid backend limit"},
		{"max_dials 0", "max_dials = 0", "Invalid backend limit"},
		{"too many retries", "retries = 11", "Invalid backend limit"},
		{"negative retries", "retries = -1", "Invalid backend limit"},
		{"bad queue_timeout", `queue_timeout = "soon"`, "Invalid duration"},
		{"zero queue_timeout", `queue_timeout = "0s"`, "Invalid duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := listener + "backend \"fragile\" {\n  address = \"10.0.0.5:21\"\n  " + tt.attr + "\n}\n"
			_, diags := Parse([]byte(src), "limits.hcl")
			if !diags.HasErrors() {
				t.Fatalf("accepted:\n%s", src)
			}
			if d := diags[0]; d.Summary != tt.summary || d.Subject == nil || d.Subject.Start.Line != 10 {
				t.Fatalf("got %q at %v, want %q at line 10", d.Summary, d.Subject, tt.summary)
			}
		})
	}
	src := listener + `backend "fragile" {
  address       = "10.0.0.5:21"
  queue_timeout = "2m"
}
`
	cfg, diags = Parse([]byte(src), "limits.hcl")
	if cfg == nil || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning ||
		diags[0].Summary != "Queue timeout past the login timeout" || diags[0].Subject.Start.Line != 10 ||
		!strings.Contains(diags[0].Detail, "timeouts.login (1m0s)") {
		t.Fatalf("want one warning at line 10, got %v", diags)
	}
}

// TestDiagnosticsAfterDuplicateListener: a duplicate listener is skipped,
// and the checks across listeners still name the right block's line (they
// once looked blocks up by position, and a skipped one shifted them).
func TestDiagnosticsAfterDuplicateListener(t *testing.T) {
	cert, key := testCert(t)
	listener := func(name, addr, ports string) string {
		return fmt.Sprintf("listener %q {\n  address = %q\n  cert_file = %q\n  key_file = %q\n  passive_ports = %q\n  backend = \"b\"\n}\n",
			name, addr, cert, key, ports)
	}
	// Each listener block is 7 lines: the third one's address is on line
	// 16, its passive_ports on line 19.
	src := listener("a", "127.0.0.1:2121", "50000-50999") + listener("a", "127.0.0.1:2122", "52000-52999") +
		listener("c", "%s", "%s") + "backend \"b\" {\n  address = \"10.0.0.5:21\"\n}\n"
	tests := []struct {
		name, addr, ports, summary string
		line                       int
	}{
		{"overlapping passive ranges", "127.0.0.1:2123", "50500-51999", "Overlapping passive ranges", 19},
		{"address in use twice", "127.0.0.1:2121", "53000-53999", "Address in use twice", 16},
		{"passive range takes the first listener's port", "127.0.0.1:2123", "2100-2200", "Passive range takes a listening port", 19},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse([]byte(fmt.Sprintf(src, tc.addr, tc.ports)), "gate.hcl")
			var found bool
			for _, d := range diags {
				if d.Summary == tc.summary {
					found = true
					if d.Subject == nil || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want line %d", d.Summary, d.Subject, tc.line)
					}
				}
			}
			if !found {
				t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
			}
		})
	}
}

// TestXferlogDirectory: an xferlog in a directory that does not exist is
// refused at its line, as the audit file is: run could not open it.
func TestXferlogDirectory(t *testing.T) {
	cert, key := testCert(t)
	src := strings.Replace(fmt.Sprintf(validTmpl, cert, key), `file = "/tmp/ftpsgate-audit.log"`,
		"file = \"/tmp/ftpsgate-audit.log\"\n  xferlog = \"/nonexistent/ftpsgate/xferlog\"", 1)
	_, diags := Parse([]byte(src), "gate.hcl")
	for _, d := range diags {
		if d.Summary == "Missing audit directory" && d.Subject != nil && d.Subject.Start.Line == 29 {
			return
		}
	}
	t.Fatalf("no Missing audit directory at line 29 in %s", diags.Error())
}
