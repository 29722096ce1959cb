package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestAgentCheck: "ftpsgate agent -check" accepts configs/agent.hcl once
// its files exist, and reports a mistake with its file and line.
func TestAgentCheck(t *testing.T) {
	src, err := os.ReadFile("../../configs/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	certFile, keyFile := certs.ClientCert(t, "dc1")
	s := strings.NewReplacer("/etc/ftpsgate/edge-ca.pem", certs.CAFile, "/etc/ftpsgate/agent.crt", certFile,
		"/etc/ftpsgate/agent.key", keyFile).Replace(string(src))
	dir := t.TempDir()
	good := filepath.Join(dir, "agent.hcl")
	os.WriteFile(good, []byte(s), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"agent", "-check", "-config", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "configuration is valid") {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte(strings.Replace(s, `"10.0.0.5:21"`, `"ftp.internal:21"`, 1)), 0o600)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"agent", "-check", bad}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "bad.hcl:") || !strings.Contains(errOut.String(), "Invalid allow_targets") {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
}

// TestValidateAsUserAgentListener: validate -as-user also checks the
// agent listener's key, which the service must read at start.
func TestValidateAsUserAgentListener(t *testing.T) {
	ftptest.RequireRoot(t)
	certs, edge := ftptest.NewCerts(t, ftptest.ECDSA), ftptest.NewCerts(t, ftptest.ECDSA)
	for _, c := range []*ftptest.Certs{certs, edge} {
		for d := filepath.Dir(c.KeyFile); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		os.Chmod(c.CertFile, 0o644)
		os.Chmod(c.CAFile, 0o644)
	}
	os.Chmod(certs.KeyFile, 0o644)
	os.Chmod(edge.KeyFile, 0o600) // root's only
	path := writeMinimalConfig(t, certs, fmt.Sprintf(`agent_listener {
  address        = "127.0.0.1:7443"
  cert_file      = %q
  key_file       = %q
  client_ca_file = %q
  allowed_names  = ["dc1"]
}
`, edge.CertFile, edge.KeyFile, edge.CAFile))
	var out, errOut bytes.Buffer
	code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "user nobody cannot read "+edge.KeyFile) {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
}
