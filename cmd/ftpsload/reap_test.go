package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for ftpsload reap.
func TestMain(m *testing.M) {
	if os.Getenv("FTPSLOAD_TEST_REAP") == "1" {
		if err := runReap(os.Args[1:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A server whose process exits and leaves a busy child behind, as vsftpd's
// session parent can: reap must adopt the orphan, wait for it, and so
// carry its CPU time, which make bench counts.
func TestReapAdoptsOrphans(t *testing.T) {
	done := filepath.Join(t.TempDir(), "done")
	// The same server with no orphan: what reap and sh cost by themselves.
	base, err := reapCPU("exit 3", done)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := reapCPU(`(i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; : >"$1") & exit 3`, done)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(done); err != nil {
		t.Fatalf("reap returned before the orphan ended: %v", err)
	}
	// A million shell loop turns take about a second of CPU; without
	// adoption, none of it would be reap's.
	if cpu-base < 200*time.Millisecond {
		t.Fatalf("reap's CPU time %v (%v without the orphan) does not hold the orphan's", cpu, base)
	}
}

// reapCPU runs sh -c script under reap (the test binary standing in) and
// returns the CPU time reap's wait4 reports for it and all it waited for.
func reapCPU(script, arg string) (time.Duration, error) {
	cmd := exec.Command(os.Args[0], "sh", "-c", script, "sh", arg)
	cmd.Env = append(os.Environ(), "FTPSLOAD_TEST_REAP=1")
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		return 0, fmt.Errorf("reap should exit with the server's status 3, got %v", err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
