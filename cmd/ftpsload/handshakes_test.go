package main

import (
	"os"
	"testing"
)

// TestStatCPU: utime and stime are read after the command name, whatever
// it holds; lines from this machine's /proc.
func TestStatCPU(t *testing.T) {
	for _, tc := range []struct {
		line string
		want float64
		ok   bool
	}{
		{"4242 (ftpsload) S 1 4242 4242 0 -1 4194560 1529 0 0 0 137 45 0 0 20 0 9 0 123456 1263464448 3300 18446744073709551615", 1.82, true},
		{"77 (tls sink (2)) R 1 77 77 0 -1 4194560 10 0 0 0 3 2 0 0 20 0 1 0 5 1 1 1", 0.05, true},
		{"77 (x) R 1 77", 0, false},
		{"no parenthesis 1 2 3", 0, false},
		{"77 (x) R 1 77 77 0 -1 4194560 10 0 0 0 a 2 0", 0, false},
	} {
		got, ok := statCPU(tc.line)
		if ok != tc.ok || (ok && (got < tc.want-1e-9 || got > tc.want+1e-9)) {
			t.Errorf("statCPU(%q) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Fatalf("this process's own stat: %v", err)
	}
}
