package userfile

import (
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

const testSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" // 160 bits

// TestParseSecrets: good files load; each bad line is named.
func TestParseSecrets(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		line       int
		want       string
	}{
		{"good", "# 2fa\nalice:" + testSecret + "\nbob:" + strings.ToLower(testSecret[:26]) + "\n", 0, ""},
		{"short", "alice:JBSWY3DPEHPK3PXP\n", 1, "at least 128"},
		{"not base32", "alice:" + testSecret[:30] + "!1\n", 1, "base32"},
		{"no colon", "\nalice\n", 2, "not user:secret"},
		{"duplicate", "alice:" + testSecret + "\nalice:" + testSecret + "\n", 2, "already defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, errs := ParseSecrets([]byte(tc.file))
			if tc.line == 0 {
				if errs != nil || !s.Has("alice") {
					t.Fatalf("errors %v", errs)
				}
				return
			}
			if s != nil || len(errs) != 1 || errs[0].Line != tc.line || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("got %v; want line %d with %q", errs, tc.line, tc.want)
			}
		})
	}
}

// TestTOTPCheck: the current code and its neighbours within the skew are
// accepted with their step; older or newer ones, other users' and
// unknown users' are not.
func TestTOTPCheck(t *testing.T) {
	s, errs := ParseSecrets([]byte("alice:" + testSecret + "\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	now := time.Unix(1_800_000_015, 0)
	step := uint64(now.Unix() / 30)
	for _, tc := range []struct {
		user  string
		at    time.Duration
		known bool
		ok    bool
		step  uint64
	}{
		{"alice", 0, true, true, step},
		{"alice", -30 * time.Second, true, true, step - 1},
		{"alice", 30 * time.Second, true, true, step + 1},
		{"alice", -90 * time.Second, true, false, 0},
		{"alice", 90 * time.Second, true, false, 0},
		{"bob", 0, false, false, 0},
	} {
		code, err := totp.GenerateCode(testSecret, now.Add(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		c, known, ok := s.Check(tc.user, code, now)
		if known != tc.known || ok != tc.ok || (ok && c != tc.step) {
			t.Errorf("%s at %v: step %d, known %v, ok %v; want %d %v %v", tc.user, tc.at, c, known, ok, tc.step, tc.known, tc.ok)
		}
	}
	if _, _, ok := s.Check("alice", "12345", now); ok {
		t.Error("a five-digit code was accepted")
	}
	if pw, code := SplitCode("secret123456"); pw != "secret" || code != "123456" {
		t.Errorf("SplitCode: %q %q", pw, code)
	}
	if pw, code := SplitCode("12345"); pw != "12345" || code != "" {
		t.Errorf("SplitCode short: %q %q", pw, code)
	}
}
