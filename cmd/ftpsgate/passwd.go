package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// defaultUserFile is the user file passwd writes when -f is not given.
const defaultUserFile = "/etc/ftpsgate/users"

// maxPassword bounds a password read from standard input.
const maxPassword = 1024

// cmdPasswd sets a user's entry in a user file (an auth block's
// user_file). The password is read from the terminal, without echo and
// twice, or, when standard input is not a terminal, as its first line:
// never from the command line, where ps and the shell's history would
// show it. The file is replaced atomically (a new file renamed over it)
// with the old file's mode and owner; a new file gets mode 0600.
func cmdPasswd(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", defaultUserFile, "the user `file` to write")
	useArgon := fs.Bool("argon2id", false, "hash with argon2id (the default)")
	useBcrypt := fs.Bool("bcrypt", false, "hash with bcrypt (passwords of at most 72 bytes)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ftpsgate passwd [-f FILE] [-argon2id|-bcrypt] USER\n\n"+
			"Sets USER's password in FILE; the password is read from the terminal (twice, not shown) or from standard input.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if *useArgon && *useBcrypt {
		fmt.Fprintln(stderr, "ftpsgate passwd: -argon2id and -bcrypt exclude each other")
		return 2
	}
	user := fs.Arg(0)
	if err := userfile.ValidUser(user); err != nil {
		fmt.Fprintf(stderr, "ftpsgate passwd: %v\n", err)
		return 2
	}
	scheme := userfile.Argon2id
	if *useBcrypt {
		scheme = userfile.Bcrypt
	}
	old, mode, owner, err := readUserFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate passwd: %v\n", err)
		return 1
	}
	pw, err := readPassword(stdin, stderr, user)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate passwd: %v\n", err)
		return 1
	}
	h, err := userfile.Hash(pw, scheme)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate passwd: %v\n", err)
		return 1
	}
	existed := false
	if f, _ := userfile.Parse(old); f != nil {
		existed = f.Has(user)
	}
	data, err := userfile.Set(old, user, h)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate passwd: %v\n", err)
		return 1
	}
	if err := replaceFile(*file, data, mode, owner); err != nil {
		fmt.Fprintf(stderr, "ftpsgate passwd: %v\n", err)
		return 1
	}
	verb := "added to"
	if existed {
		verb = "updated in"
	}
	fmt.Fprintf(stdout, "%s: %s %s (%s)\n", user, verb, *file, scheme)
	return 0
}

// readUserFile reads the user file at path, which must parse (an entry
// is not added to a file the proxy would refuse); a file that does not
// exist yet is empty, with mode 0600. owner is nil for a new file.
func readUserFile(path string) (data []byte, mode os.FileMode, owner *syscall.Stat_t, err error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0o600, nil, nil
	}
	if err != nil {
		return nil, 0, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, 0, nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, 0, nil, err
	}
	if _, errs := userfile.Parse(data); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = fmt.Sprintf("%s:%d: %v", path, e.Line, e.Err)
		}
		return nil, 0, nil, fmt.Errorf("%s\nfix these lines first: the proxy does not load the file as it is", strings.Join(msgs, "\n"))
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	return data, st.Mode().Perm(), sys, nil
}

// readPassword reads the password: from the terminal without echo, asked
// twice, when stdin is one; else the first line of stdin.
func readPassword(stdin *os.File, stderr io.Writer, user string) (string, error) {
	var pw string
	if term.IsTerminal(int(stdin.Fd())) {
		r := bufio.NewReader(io.LimitReader(stdin, 2*(maxPassword+2)))
		first, err := readHidden(stdin, stderr, "Password for "+user+": ", r)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		again, err := readHidden(stdin, stderr, "Again: ", r)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if !bytes.Equal(first, again) {
			return "", errors.New("the passwords differ; nothing changed")
		}
		if len(first) > maxPassword {
			return "", fmt.Errorf("the password is longer than %d bytes", maxPassword)
		}
		pw = string(first)
	} else {
		line, err := bufio.NewReader(io.LimitReader(stdin, maxPassword+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		pw = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if len(pw) > maxPassword {
			return "", fmt.Errorf("the password is longer than %d bytes", maxPassword)
		}
	}
	if pw == "" {
		return "", errors.New("empty password; nothing changed")
	}
	// FTP carries PASS on one line: such a password could never be sent.
	if strings.ContainsAny(pw, "\r\n\x00") {
		return "", errors.New("the password holds a line end or NUL, which FTP cannot send")
	}
	return pw, nil
}

// readHidden reads one line from the terminal f with its echo off, after
// showing prompt: echo goes off before the prompt is shown, so that
// nothing typed once the prompt is visible (or typed ahead) is echoed.
// (golang.org/x/term's ReadPassword turns echo off only once called, after
// the prompt: a fast typist, or a script on a pseudo-terminal, saw the
// password echoed.) The line is read in canonical mode, through r.
func readHidden(f *os.File, stderr io.Writer, prompt string, r *bufio.Reader) ([]byte, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	hidden := *old
	hidden.Lflag &^= unix.ECHO
	hidden.Lflag |= unix.ICANON | unix.ISIG
	hidden.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &hidden); err != nil {
		return nil, err
	}
	// An interrupt must not leave the terminal without echo.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go restoreOnSignal(fd, old, sigs, done)
	defer func() {
		signal.Stop(sigs)
		close(done)
		unix.IoctlSetTermios(fd, unix.TCSETS, old)
	}()
	fmt.Fprint(stderr, prompt)
	line, err := r.ReadString('\n')
	fmt.Fprintln(stderr)
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return nil, err
	}
	return []byte(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")), nil
}

// restoreOnSignal puts the terminal back as it was and exits when an
// interrupt comes while readHidden waits; done ends it.
func restoreOnSignal(fd int, old *unix.Termios, sigs <-chan os.Signal, done <-chan struct{}) {
	select {
	case <-sigs:
		unix.IoctlSetTermios(fd, unix.TCSETS, old)
		os.Exit(130)
	case <-done:
	}
}

// replaceFile writes data to a new file beside path and renames it over
// path, so that a reader (the proxy's watch) sees the old file or the new
// one, never a part. The new file gets mode and, when known, the old
// file's owner and group.
func replaceFile(path string, data []byte, mode os.FileMode, owner *syscall.Stat_t) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if owner != nil && os.Geteuid() == 0 {
		if err := tmp.Chown(int(owner.Uid), int(owner.Gid)); err != nil {
			return err
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename itself, durable
		d.Close()
	}
	return nil
}
