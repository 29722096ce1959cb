package main

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestValidateAsUserSpoolAndAuth: validate -as-user checks what run would
// meet with a scan block in spool mode and an auth block: a spool_dir
// another user owns (the proxy refuses it), or one it could not create,
// and a user file the service user cannot read. Once the directory is the
// user's and the file readable, it passes.
func TestValidateAsUserSpoolAndAuth(t *testing.T) {
	ftptest.RequireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	dir := filepath.Dir(certs.KeyFile)
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(certs.CertFile, 0o644)
	os.Chmod(certs.KeyFile, 0o644)
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil { // root's
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked") // root's, 0755: nobody cannot create in it
	if err := os.Mkdir(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, nil, 0o600); err != nil { // root's only
		t.Fatal(err)
	}
	path := writeMinimalConfig(t, certs, fmt.Sprintf(`scan "av" {
  engine    = "clamd"
  address   = "tcp:127.0.0.1:3310"
  mode      = "spool"
  spool_dir = %q
}
scan "av2" {
  engine    = "clamd"
  address   = "tcp:127.0.0.1:3310"
  mode      = "spool"
  spool_dir = %q
}
auth "staff" {
  user_file = %q
}
`, spool, filepath.Join(locked, "spool"), users))
	var out, errOut bytes.Buffer
	code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut)
	for _, want := range []string{
		fmt.Sprintf("user nobody cannot use %s as scan \"av\"'s spool_dir: owned by uid 0", spool),
		fmt.Sprintf("user nobody cannot use %s as scan \"av2\"'s spool_dir: cannot create it in %s", filepath.Join(locked, "spool"), locked),
		"user nobody cannot read " + users,
	} {
		if code != 1 || !strings.Contains(errOut.String(), want) {
			t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, errOut.String())
		}
	}
	if err := os.Chown(spool, uid, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(locked, uid, -1); err != nil {
		t.Fatal(err)
	}
	os.Chmod(users, 0o644)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"validate", "-as-user", "nobody", path}, &out, &errOut); code != 0 {
		t.Fatalf("the spool the user's, the user file readable: exit %d:\n%s", code, errOut.String())
	}
}
