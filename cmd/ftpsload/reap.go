package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER (Linux 3.4).
const prSetChildSubreaper = 36

// runReap runs a server as a child subreaper: every process the server
// leaves behind (vsftpd's privileged session parent can exit before it has
// waited for its unprivileged child, which is then reparented) is adopted
// and waited for here, so its CPU time lands in this process's cutime
// instead of being lost to init. make bench reads this process and the
// server, its child, to count what a server spent. SIGTERM and SIGINT are
// passed to the server; reap returns once no child is left, with the
// server's exit status.
func runReap(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: ftpsload reap COMMAND [ARG…]")
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", errno)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	p, err := os.StartProcess(path, args, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		return err
	}
	go func() {
		for s := range sigs {
			p.Signal(s)
		}
	}()
	status := 0
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.ECHILD) {
			break // the server and everything it left are gone
		}
		if err != nil {
			return err
		}
		if pid == p.Pid {
			status = ws.ExitStatus()
			if ws.Signaled() {
				status = 128 + int(ws.Signal())
			}
		}
	}
	if status != 0 {
		os.Exit(status)
	}
	return nil
}
