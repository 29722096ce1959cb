package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateReportsFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.hcl")
	src := `listener "ftps" {
  address       = "0.0.0.0:21"
  tls           = "sideways"
  cert_file     = "/nonexistent/tls.crt"
  key_file      = "/nonexistent/tls.key"
  passive_ports = "50000-50999"
  backend       = "legacy"
}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", path}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut.String())
	}
	msg := errOut.String()
	for _, want := range []string{
		"Invalid TLS mode", path + ":3",
		"Cannot load certificate", path + ":4",
		"Unknown backend", path + ":7",
		"configuration is not valid",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, msg)
		}
	}
}

func TestValidateMissingFile(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", "/nonexistent.hcl"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), "Cannot read configuration") {
		t.Fatalf("stderr %q", errOut.String())
	}
}

func TestExampleConfigIsValidButForItsCertificate(t *testing.T) {
	// configs/ftpsgate.hcl names certificate paths of a real install; all
	// else in it must be valid.
	var out, errOut bytes.Buffer
	run([]string{"validate", "-config", "../../configs/ftpsgate.hcl"}, &out, &errOut)
	for _, line := range strings.Split(errOut.String(), "\n") {
		if line != "" && !strings.Contains(line, ": error: Cannot load certificate: ") &&
			!strings.HasSuffix(line, ": configuration is not valid") {
			t.Errorf("example config: %s\n%s", line, errOut.String())
		}
	}
}

func TestUsageAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ftpsgate ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "Usage") {
		t.Fatalf("unknown command: %d %q", code, errOut.String())
	}
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no command: %d", code)
	}
	if code := run([]string{"run", "-log-format", "xml", "-config", "/nonexistent"}, &out, &errOut); code != 2 {
		t.Fatalf("bad log format: %d", code)
	}
}
