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

// TestValidateAsUserNotify: validate -as-user also checks a notify
// block's secret_file, which the service reads at start and at each
// reload.
func TestValidateAsUserNotify(t *testing.T) {
	ftptest.RequireRoot(t)
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	for d := filepath.Dir(certs.KeyFile); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(certs.CertFile, 0o644)
	os.Chmod(certs.KeyFile, 0o644)
	secret := filepath.Join(filepath.Dir(certs.KeyFile), "notify.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil { // root's only
		t.Fatal(err)
	}
	path := writeMinimalConfig(t, certs, fmt.Sprintf(`notify "hook" {
  url         = "https://hooks.example.com/ftp"
  events      = ["upload_complete"]
  secret_file = %q
}
`, secret))
	var out, errOut bytes.Buffer
	code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "user nobody cannot read "+secret) {
		t.Fatalf("exit %d:\n%s", code, errOut.String())
	}
	os.Chmod(secret, 0o644)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut); code != 0 {
		t.Fatalf("readable secret: exit %d:\n%s", code, errOut.String())
	}
}
