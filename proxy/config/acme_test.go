package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// acmeTmpl is a valid configuration whose listener takes its certificate
// from an acme block; tests edit it. Line numbers matter.
const acmeTmpl = `listener "ftps" {
  address       = "0.0.0.0:21"
  acme          = "public"
  passive_ports = "50000-50999"
  backend       = "legacy"
}
acme "public" {
  domains  = ["FTP.Example.com.", "files.example.com"]
  email    = "ops@example.com"
  ca_roots = "ROOTS"
  storage  = "/var/lib/ftpsgate/acme-test"
  http01 {
    address = ":80"
  }
  tls_alpn01 {
    address = ":443"
  }
}
backend "legacy" {
  address = "10.0.0.5:21"
}
`

// acmeFiles writes a CA root file, and a file holding an EAB MAC key.
func acmeFiles(t *testing.T) (roots, hmac string) {
	t.Helper()
	cert, _ := testCert(t)
	dir := t.TempDir()
	hmac = filepath.Join(dir, "hmac")
	if err := os.WriteFile(hmac, []byte("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, hmac
}

func TestACMEBlock(t *testing.T) {
	roots, hmac := acmeFiles(t)
	src := strings.Replace(acmeTmpl, "ROOTS", roots, 1)
	src = strings.Replace(src, "  http01 {", "  eab {\n    key_id = \"kid-1\"\n    hmac_file = \""+hmac+"\"\n  }\n  http01 {", 1)
	cfg, diags := Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	a := cfg.ACMEByName("public")
	l := cfg.Listeners[0]
	if a == nil || l.ACME != a || l.Certificate != nil || l.CertFile != "" {
		t.Fatalf("listener %+v, acme %+v", l, a)
	}
	if strings.Join(a.Domains, ",") != "ftp.example.com,files.example.com" || a.Email != "ops@example.com" ||
		a.Directory != DefaultACMEDirectory || a.CARoots == nil || a.CARootsFile != roots ||
		a.Storage != "/var/lib/ftpsgate/acme-test" || a.HTTP01 != ":80" || a.TLSALPN01 != ":443" ||
		a.EAB == nil || a.EAB.KeyID != "kid-1" || !strings.HasPrefix(a.EAB.HMACKey, "zWNDZM6") {
		t.Fatalf("acme %+v", a)
	}

	// The defaults: Let's Encrypt's production directory, the system's
	// roots, the storage under the state directory.
	src = strings.Replace(strings.Replace(acmeTmpl, "  ca_roots = \"ROOTS\"\n", "", 1), "  storage  = \"/var/lib/ftpsgate/acme-test\"\n", "", 1)
	cfg, diags = Parse([]byte(src), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if a := cfg.ACME[0]; a.Directory != "https://acme-v02.api.letsencrypt.org/directory" || a.CARoots != nil ||
		a.Storage != "/var/lib/ftpsgate/acme" || a.EAB != nil {
		t.Fatalf("defaults %+v", a)
	}
}

// TestACMEDiagnostics: every mistake in an acme block, or in a
// listener's choice of certificate, is refused at its line.
func TestACMEDiagnostics(t *testing.T) {
	roots, hmac := acmeFiles(t)
	cert, key := testCert(t)
	notPEM := filepath.Join(t.TempDir(), "roots")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	badHMAC := filepath.Join(t.TempDir(), "hmac")
	os.WriteFile(badHMAC, []byte("not base64url!\n"), 0o600)
	base := strings.Replace(acmeTmpl, "ROOTS", roots, 1)
	tests := []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"both acme and files", `  acme          = "public"`,
			`  acme          = "public"` + "\n  cert_file = \"" + cert + "\"\n  key_file = \"" + key + "\"", 3, "Two certificate sources"},
		{"neither acme nor files", `  acme          = "public"`, ``, 1, "No certificate"},
		{"unknown acme block", `  acme          = "public"`, `  acme          = "private"`, 3, "Unknown acme block"},
		{"no domain", `["FTP.Example.com.", "files.example.com"]`, `[]`, 8, "Invalid domains"},
		{"wildcard", `"files.example.com"`, `"*.example.com"`, 8, "Invalid domain"},
		{"IP address", `"files.example.com"`, `"192.0.2.1"`, 8, "Invalid domain"},
		{"one label", `"files.example.com"`, `"localhost"`, 8, "Invalid domain"},
		{"listed twice", `"files.example.com"`, `"ftp.example.com"`, 8, "Invalid domain"},
		{"bad email", `"ops@example.com"`, `"ops at example"`, 9, "Invalid email"},
		{"plain http directory", `  email    = "ops@example.com"`,
			`  email    = "ops@example.com"` + "\n  directory = \"http://127.0.0.1:14000/dir\"", 10, "Invalid directory"},
		{"missing ca_roots", roots, "/nonexistent/roots.pem", 10, "Cannot read ca_roots"},
		{"ca_roots not PEM", roots, notPEM, 10, "Invalid ca_roots"},
		{"relative storage", `"/var/lib/ftpsgate/acme-test"`, `"acme"`, 11, "Invalid storage"},
		{"no challenge", "  http01 {\n    address = \":80\"\n  }\n  tls_alpn01 {\n    address = \":443\"\n  }\n", "", 7, "No ACME challenge"},
		{"http01 port 0", `":80"`, `"127.0.0.1:0"`, 13, "Invalid http01 address"},
		{"http01 not host:port", `":80"`, `"80"`, 13, "Invalid http01 address"},
		{"challenge hosts differ", `":443"`, `"127.0.0.1:443"`, 16, "Invalid tls_alpn01 address"},
		{"challenge on an FTP port", `":443"`, `":21"`, 16, "Address in use twice"},
		{"eab without key id", "  http01 {", "  eab {\n    key_id = \"\"\n    hmac_file = \"" + hmac + "\"\n  }\n  http01 {", 13, "Invalid eab"},
		{"eab key not base64url", "  http01 {", "  eab {\n    key_id = \"kid\"\n    hmac_file = \"" + badHMAC + "\"\n  }\n  http01 {", 14, "Invalid hmac_file"},
		{"duplicate block", "backend \"legacy\" {", "acme \"public\" {\n  domains = [\"x.example.com\"]\n  http01 {\n    address = \":80\"\n  }\n}\nbackend \"legacy\" {", 19, "Duplicate acme block"},
		{"domain in two blocks", "backend \"legacy\" {", "acme \"other\" {\n  domains = [\"ftp.example.com\"]\n  http01 {\n    address = \":80\"\n  }\n}\nbackend \"legacy\" {", 20, "Invalid domain"},
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

// TestACMEReadmeExample: the README's acme example is a valid
// configuration (with the backend it names).
func TestACMEReadmeExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "### Automatic certificates (ACME)")
	_, block, ok2 := strings.Cut(sec, "```hcl\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no hcl example under \"Automatic certificates (ACME)\"")
	}
	cfg, diags := Parse([]byte(block+"backend \"legacy\" {\n  address = \"10.0.0.5:21\"\n}\n"), "README.md")
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags.Error(), block)
	}
	if cfg.Listeners[0].ACME == nil || cfg.ACME[0].HTTP01 != ":80" {
		t.Fatalf("%+v", cfg.ACME[0])
	}
}

// Two acme blocks without an email: certmagic would register the second
// with an invalid address and it would never get a certificate, so the
// second is refused at its line; one block without, or each with its
// own, is accepted.
func TestACMEBlocksWithoutEmail(t *testing.T) {
	roots, _ := acmeFiles(t)
	base := strings.Replace(acmeTmpl, "ROOTS", roots, 1)
	other := "acme \"other\" {\n  domains = [\"x.example.com\"]\n  EMAIL  storage = \"/var/lib/ftpsgate/acme-other\"\n  http01 {\n    address = \":80\"\n  }\n}\nbackend \"legacy\" {"
	for _, tc := range []struct {
		name, publicEmail, otherEmail string
		refused                       bool
	}{
		{"both without", "", "", true},
		{"one without", `  email    = "ops@example.com"` + "\n", "", false},
		{"each its own", `  email    = "ops@example.com"` + "\n", "email = \"dev@example.com\"\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, `  email    = "ops@example.com"`+"\n", tc.publicEmail, 1)
			src = strings.Replace(src, "backend \"legacy\" {", strings.Replace(other, "EMAIL", tc.otherEmail, 1), 1)
			cfg, diags := Parse([]byte(src), "gate.hcl")
			if !tc.refused {
				if cfg == nil || diags.HasErrors() {
					t.Fatalf("refused: %s\n%s", diags.Error(), src)
				}
				return
			}
			for _, d := range diags {
				if d.Summary == "Missing email" {
					if d.Subject == nil || d.Subject.Start.Line != 18 {
						t.Fatalf("%q at %v, want line 18", d.Summary, d.Subject)
					}
					return
				}
			}
			t.Fatalf("no \"Missing email\" diagnostic in %q\n%s", diags.Error(), src)
		})
	}
}
