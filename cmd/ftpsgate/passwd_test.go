package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// passwdStdin runs ftpsgate passwd with input on a pipe as its standard
// input (not a terminal).
func passwdStdin(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(input)
	w.Close()
	defer r.Close()
	var out, errOut bytes.Buffer
	code = cmdPasswd(args, r, &out, &errOut)
	return code, out.String(), errOut.String()
}

// verify reports whether the user file at path gives user the password pw.
func verify(t *testing.T, path, user, pw string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, errs := userfile.Parse(data)
	if errs != nil {
		t.Fatalf("%s does not parse: %v", path, errs)
	}
	_, ok := f.Verify(user, pw)
	return ok
}

// TestPasswd: entries are added and replaced, the file's other lines,
// mode and owner kept; the password comes from standard input, and is
// refused when empty or when it holds a line end; a file that does not
// parse is not touched.
func TestPasswd(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "users")

	code, out, errOut := passwdStdin(t, "alice-pw\n", "-f", f, "alice")
	if code != 0 || out != "alice: added to "+f+" (argon2id)\n" {
		t.Fatalf("new file: %d %q %q", code, out, errOut)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
		t.Fatalf("a new file has mode %v", st.Mode())
	}
	if !verify(t, f, "alice", "alice-pw") {
		t.Fatal("alice's password does not verify")
	}
	data, _ := os.ReadFile(f)
	if !strings.HasPrefix(string(data), "alice:$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("file %q", data)
	}

	// Another user with bcrypt, from input without a line end; the file
	// is group-readable now and stays so.
	os.WriteFile(f, append([]byte("# staff\n"), data...), 0o600)
	os.Chmod(f, 0o640)
	if code, out, errOut := passwdStdin(t, "bob-pw", "-f", f, "-bcrypt", "bob"); code != 0 || !strings.HasSuffix(out, "(bcrypt)\n") {
		t.Fatalf("bob: %d %q %q", code, out, errOut)
	}
	// Alice's password changed in place.
	if code, out, _ := passwdStdin(t, "alice-new\r\n", "-f", f, "alice"); code != 0 || !strings.Contains(out, "updated in") {
		t.Fatalf("alice again: %d %q", code, out)
	}
	data, _ = os.ReadFile(f)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "# staff" || !strings.HasPrefix(lines[1], "alice:$argon2id$") || !strings.HasPrefix(lines[2], "bob:$2a$") {
		t.Fatalf("file:\n%s", data)
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode became %v", st.Mode())
	}
	if !verify(t, f, "alice", "alice-new") || verify(t, f, "alice", "alice-pw") || !verify(t, f, "bob", "bob-pw") {
		t.Fatal("passwords do not verify as set")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".users.*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}

	for _, tc := range []struct {
		name, input string
		args        []string
		code        int
		want        string
	}{
		{"empty password", "\n", []string{"-f", f, "carol"}, 1, "empty password"},
		{"no input", "", []string{"-f", f, "carol"}, 1, "empty password"},
		{"two lines", "a\rb\n", []string{"-f", f, "carol"}, 1, "line end"},
		{"password in argv", "x\n", []string{"-f", f, "carol", "secret"}, 2, "Usage"},
		{"bad name", "x\n", []string{"-f", f, "ca:rol"}, 2, "colon"},
		{"both schemes", "x\n", []string{"-f", f, "-bcrypt", "-argon2id", "carol"}, 2, "exclude"},
		{"bcrypt too long", strings.Repeat("x", 73) + "\n", []string{"-f", f, "-bcrypt", "carol"}, 1, "72 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(f)
			code, _, errOut := passwdStdin(t, tc.input, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, %q; want %d and %q", code, errOut, tc.code, tc.want)
			}
			if after, _ := os.ReadFile(f); !bytes.Equal(before, after) {
				t.Fatal("the file changed")
			}
		})
	}

	// A file the proxy would refuse is not touched.
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("alice:$apr1$x$y\n"), 0o600)
	if code, _, errOut := passwdStdin(t, "pw\n", "-f", bad, "bob"); code != 1 || !strings.Contains(errOut, bad+":1:") {
		t.Fatalf("bad file: %d %q", code, errOut)
	}
}

// ptyDriver runs a command on a pseudo-terminal, answers its two password
// prompts only once each is shown (typing earlier would be echoed by the
// terminal before the command turns echo off), and prints everything the
// terminal showed, then the exit status.
const ptyDriver = `
import os, pty, select, signal, sys
first, second = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[3], sys.argv[3:])
seen = b""
def until(marker):
    global seen
    while marker not in seen:
        if not select.select([fd], [], [], 60)[0]:
            seen += b"\n(no output for 60 s)"
            os.kill(pid, signal.SIGKILL)
            return False
        try:
            b = os.read(fd, 1024)
        except OSError:
            return False
        if not b:
            return False
        seen += b
    return True
if until(b"Password for alice: "):
    os.write(fd, first.encode() + b"\n")
    if until(b"Again: "):
        os.write(fd, second.encode() + b"\n")
until(b"\x00never")
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.stdout.write("\nEXIT %d\n" % os.waitstatus_to_exitcode(status))
`

// TestPasswdTerminal: on a terminal, the password is asked twice and not
// shown; two different answers change nothing.
func TestPasswdTerminal(t *testing.T) {
	bin := gateBinary(t)
	py := ftptest.Tool(t, "python3")
	f := filepath.Join(t.TempDir(), "users")
	run := func(first, second string) string {
		out, err := exec.Command(py, "-c", ptyDriver, first, second, bin, "passwd", "-f", f, "alice").CombinedOutput()
		if err != nil {
			t.Fatalf("pty driver: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run("typed-secret-1", "typed-secret-2")
	if !strings.Contains(out, "the passwords differ") || !strings.Contains(out, "EXIT 1") {
		t.Fatalf("different answers:\n%s", out)
	}
	if _, err := os.Stat(f); err == nil {
		t.Fatal("the file was written after different answers")
	}
	out = run("typed-secret-1", "typed-secret-1")
	if !strings.Contains(out, "EXIT 0") || !strings.Contains(out, "alice: added to") {
		t.Fatalf("same answers:\n%s", out)
	}
	if strings.Contains(out, "typed-secret") {
		t.Fatalf("the password was shown on the terminal:\n%s", out)
	}
	if !verify(t, f, "alice", "typed-secret-1") {
		t.Fatal("the typed password does not verify")
	}
}
