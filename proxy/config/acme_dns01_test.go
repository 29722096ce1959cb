package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libdns/rfc2136"
)

// dns01Tmpl is a valid acme block with DNS-01 and on-demand issuance;
// tests edit it. Line numbers matter.
const dns01Tmpl = `listener "ftps" {
  address       = "0.0.0.0:21"
  acme          = "public"
  passive_ports = "50000-50999"
  backend       = "legacy"
}
acme "public" {
  domains = ["ftp.example.com", "*.files.example.com"]
  dns01 {
    provider      = "rfc2136"
    server        = "ns1.example.com"
    key_name      = "acme-update."
    key_algorithm = "HMAC-SHA512"
    key_file      = "KEY"
    resolvers     = ["127.0.0.1:5353", "ns2.example.com"]
    propagation_timeout = "30s"
  }
  on_demand {
    allow = ["*.customers.example.com", "ftp2.example.com"]
    rate  = "5/10m"
  }
}
backend "legacy" {
  address = "10.0.0.5:21"
}
`

// tsigKey writes a TSIG secret file of mode 0600.
func tsigKey(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestACMEDNS01AndOnDemand(t *testing.T) {
	key := tsigKey(t, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n")
	cfg, diags := Parse([]byte(strings.Replace(dns01Tmpl, "KEY", key, 1)), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	a := cfg.ACME[0]
	d := a.DNS01
	if d == nil || d.Provider != "rfc2136" || strings.Join(d.Resolvers, ",") != "127.0.0.1:5353,ns2.example.com:53" ||
		d.PropagationTimeout != 30*time.Second || strings.Join(a.Domains, ",") != "ftp.example.com,*.files.example.com" {
		t.Fatalf("dns01 %+v, acme %+v", d, a)
	}
	p, ok := d.DNS.(*rfc2136.Provider)
	if !ok || p.Server != "ns1.example.com:53" || p.KeyName != "acme-update" || p.KeyAlg != "hmac-sha512." ||
		p.Key != "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==" {
		t.Fatalf("provider %#v", d.DNS)
	}
	if strings.Contains(d.Settings, p.Key) || !strings.Contains(d.Settings, "key_sha256=") {
		t.Fatalf("settings %q show the secret or no digest of it", d.Settings)
	}
	o := a.OnDemand
	if o == nil || strings.Join(o.Allow, ",") != "*.customers.example.com,ftp2.example.com" || o.Orders != 5 || o.Per != 10*time.Minute {
		t.Fatalf("on_demand %+v", o)
	}
	// The defaults: hmac-sha256, two minutes, 10 orders an hour.
	src := strings.Replace(dns01Tmpl, "KEY", key, 1)
	for _, line := range []string{"    key_algorithm = \"HMAC-SHA512\"\n", "    propagation_timeout = \"30s\"\n", "    rate  = \"5/10m\"\n",
		"    resolvers     = [\"127.0.0.1:5353\", \"ns2.example.com\"]\n"} {
		src = strings.Replace(src, line, "", 1)
	}
	cfg, diags = Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	a = cfg.ACME[0]
	if a.DNS01.DNS.(*rfc2136.Provider).KeyAlg != "hmac-sha256." || a.DNS01.PropagationTimeout != DefaultDNSPropagationTimeout ||
		a.DNS01.Resolvers != nil || a.OnDemand.Orders != 10 || a.OnDemand.Per != time.Hour {
		t.Fatalf("defaults: dns01 %+v, on_demand %+v", a.DNS01, a.OnDemand)
	}
}

// TestACMEDNS01Diagnostics: every mistake in a dns01 or on_demand block,
// or with storage_redis, is refused at its line.
func TestACMEDNS01Diagnostics(t *testing.T) {
	key := tsigKey(t, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n")
	notBase64 := tsigKey(t, "key \"acme-update\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n")
	base := strings.Replace(dns01Tmpl, "KEY", key, 1)
	tests := []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"unknown provider", `"rfc2136"`, `"route53"`, 10, "Unknown DNS provider"},
		{"unknown provider attribute", `    server        = "ns1.example.com"`,
			`    server        = "ns1.example.com"` + "\n    access_key = \"x\"", 12, "Unsupported argument"},
		{"no server", "    server        = \"ns1.example.com\"\n", "", 9, "Missing required argument"},
		{"bad server", `"ns1.example.com"`, `"ns1.example.com:99999"`, 11, "Invalid server"},
		{"bad key name", `"acme-update."`, `"acme update"`, 12, "Invalid key_name"},
		{"md5", `"HMAC-SHA512"`, `"hmac-md5"`, 13, "Invalid key_algorithm"},
		{"missing key file", key, "/nonexistent/tsig.key", 14, "Cannot read key_file"},
		{"key file not a bare secret", key, notBase64, 14, "Invalid key_file"},
		{"bad resolver", `"ns2.example.com"`, `"ns2.example.com:0"`, 15, "Invalid resolver"},
		{"bad propagation timeout", `"30s"`, `"soon"`, 16, "Invalid duration"},
		{"dns01 with http01", "  dns01 {", "  http01 {\n    address = \":80\"\n  }\n  dns01 {", 12, "Two kinds of challenge"},
		{"wildcard without dns01", "  dns01 {\n    provider      = \"rfc2136\"\n    server        = \"ns1.example.com\"\n    key_name      = \"acme-update.\"\n    key_algorithm = \"HMAC-SHA512\"\n    key_file      = \"" + key + "\"\n    resolvers     = [\"127.0.0.1:5353\", \"ns2.example.com\"]\n    propagation_timeout = \"30s\"\n  }\n",
			"  http01 {\n    address = \":80\"\n  }\n", 8, "Invalid domain"},
		{"wildcard in the middle", `"*.files.example.com"`, `"files.*.example.com"`, 8, "Invalid domain"},
		{"no pattern", `["*.customers.example.com", "ftp2.example.com"]`, `[]`, 19, "Invalid allow"},
		{"pattern under a public suffix", `"ftp2.example.com"`, `"*.com"`, 19, "Invalid allow pattern"},
		{"pattern with an inner wildcard", `"ftp2.example.com"`, `"ftp.*.example.com"`, 19, "Invalid allow pattern"},
		{"pattern with two wildcards", `"ftp2.example.com"`, `"*.*.example.com"`, 19, "Invalid allow pattern"},
		{"rate without period", `"5/10m"`, `"5"`, 20, "Invalid rate"},
		{"rate of zero", `"5/10m"`, `"0/1h"`, 20, "Invalid rate"},
		{"rate below a second", `"5/10m"`, `"5/10ms"`, 20, "Invalid rate"},
		{"storage_redis without a state block", "  dns01 {", "  storage_redis = true\n  dns01 {", 9, "No Redis for storage_redis"},
		{"storage_redis and storage", "  dns01 {", "  storage = \"/var/lib/x\"\n  storage_redis = true\n  dns01 {", 10, "Two storages"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, tc.old, tc.new, 1)
			if src == base {
				t.Fatal("edit changed nothing")
			}
			cfg, diags := Parse([]byte(src), "gate.hcl")
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("accepted:\n%s", src)
			}
			for _, d := range diags {
				if d.Summary == tc.summary {
					if d.Subject == nil || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want line %d", d.Summary, d.Subject, tc.line)
					}
					return
				}
			}
			t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
		})
	}
}

func TestOnDemandAllows(t *testing.T) {
	o := &ACMEOnDemand{Allow: []string{"*.customers.example.com", "ftp2.example.com"}}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"a.customers.example.com", true},
		{"A.Customers.Example.COM.", true},
		{"ftp2.example.com", true},
		{"customers.example.com", false},     // "*" is one label, not none
		{"a.b.customers.example.com", false}, // nor two
		{"*.customers.example.com", false},   // not a name
		{"a.customers.example.com.evil.test", false},
		{"acustomers.example.com", false},
		{"ftp3.example.com", false},
		{"", false},
		{"127.0.0.1", false},
		{"a_b.customers.example.com", false},
		{"-a.customers.example.com", false},
	} {
		if got := o.Allows(tc.name); got != tc.want {
			t.Errorf("Allows(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// readmeBlock is the hcl block that follows marker in README.md.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), marker)
	_, block, ok2 := strings.Cut(sec, "```hcl\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("README.md has no hcl block after %q", marker)
	}
	return block
}

// TestACMEReadmeQuickStartAndDNS01: the quick start's "with Let's
// Encrypt" block is three lines of config and a closing brace, and
// valid with a listener naming it; so is the DNS-01 section's example.
func TestACMEReadmeQuickStartAndDNS01(t *testing.T) {
	listener := `listener "ftps" {
  address       = ":21"
  acme          = "%s"
  passive_ports = "50000-50999"
  backend       = "legacy"
}
backend "legacy" {
  address = "10.0.0.5:21"
}
`
	block := readmeBlock(t, "<!-- quick-start: acme -->")
	if lines := strings.Split(strings.TrimSpace(block), "\n"); len(lines) != 4 || lines[3] != "}" {
		t.Fatalf("the quick start's acme block is not three lines and a brace:\n%s", block)
	}
	cfg, diags := Parse([]byte(block+strings.Replace(listener, "%s", "le", 1)), "README.md")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), block)
	}
	if a := cfg.ACME[0]; a.Directory != DefaultACMEDirectory || a.HTTP01 != ":80" || cfg.Listeners[0].ACME != a {
		t.Fatalf("%+v", a)
	}

	key := tsigKey(t, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n")
	block = strings.Replace(readmeBlock(t, "#### DNS-01"), "/etc/ftpsgate/tsig.key", key, 1)
	cfg, diags = Parse([]byte(block+strings.Replace(listener, "%s", "internal", 1)), "README.md")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), block)
	}
	if a := cfg.ACME[0]; a.DNS01 == nil || a.DNS01.DNS == nil || len(a.Domains) != 2 {
		t.Fatalf("%+v", a)
	}
}

func TestACMEStorageRedis(t *testing.T) {
	key := tsigKey(t, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n")
	src := strings.Replace(strings.Replace(dns01Tmpl, "KEY", key, 1), "  dns01 {", "  storage_redis = true\n  dns01 {", 1) +
		"state {\n  redis {\n    address = \"127.0.0.1:6379\"\n  }\n}\n"
	cfg, diags := Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if a := cfg.ACME[0]; !a.StorageRedis || cfg.State.Redis == nil {
		t.Fatalf("acme %+v, state %+v", a, cfg.State)
	}
}
