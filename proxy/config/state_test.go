package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStateBlock: the state block compiles into cfg.State; without it, or
// without its redis block, the state stays in memory (State.Redis nil).
func TestStateBlock(t *testing.T) {
	cert, key := testCert(t)
	base := fmt.Sprintf(validTmpl, cert, key)
	dir := t.TempDir()
	pw := filepath.Join(dir, "redis.password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		block string
		want  *RedisState
	}{
		{"absent", "", nil},
		{"without redis", "state {\n}\n", nil},
		{"address only", "state {\n  redis {\n    address = \"10.0.0.9:6379\"\n  }\n}\n",
			&RedisState{Address: "10.0.0.9:6379", Prefix: DefaultRedisPrefix}},
		{"every setting", fmt.Sprintf("state {\n  redis {\n    address = \"redis.internal:6380\"\n    tls = { ca_file = %q }\n"+
			"    password_file = %q\n    prefix = \"gate-a:\"\n    db = 3\n  }\n}\n", cert, pw),
			&RedisState{Address: "redis.internal:6380", TLS: true, CAFile: cert, Password: "s3cret", Prefix: "gate-a:", DB: 3}},
		{"tls = true", "state {\n  redis {\n    address = \"10.0.0.9:6379\"\n    tls = true\n  }\n}\n",
			&RedisState{Address: "10.0.0.9:6379", TLS: true, Prefix: DefaultRedisPrefix}},
		{"tls = false", "state {\n  redis {\n    address = \"10.0.0.9:6379\"\n    tls = false\n  }\n}\n",
			&RedisState{Address: "10.0.0.9:6379", Prefix: DefaultRedisPrefix}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(base+tc.block), "gate.hcl")
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			got := cfg.State.Redis
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("State.Redis = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestStateBlockProblems: each mistake in the state block is reported at
// its line (validate prints these).
func TestStateBlockProblems(t *testing.T) {
	cert, key := testCert(t)
	base := fmt.Sprintf(validTmpl, cert, key)
	first := strings.Count(base, "\n") + 1 // the line of "state {"
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		attrs   string // the redis block's body; its first line is first+2
		line    int    // relative to the redis block's first attribute
		summary string
	}{
		{"no port", "address = \"10.0.0.9\"", 0, "Invalid redis address"},
		{"port zero", "address = \"10.0.0.9:0\"", 0, "Invalid redis address"},
		{"no host", "address = \":6379\"", 0, "Invalid redis address"},
		{"unreadable password_file", "address = \"10.0.0.9:6379\"\n    password_file = \"/nonexistent/redis.password\"", 1, "Cannot read password_file"},
		{"password_file a directory", "address = \"10.0.0.9:6379\"\n    password_file = \"" + dir + "\"", 1, "Cannot read password_file"},
		{"empty password_file", "address = \"10.0.0.9:6379\"\n    password_file = \"" + empty + "\"", 1, "Invalid password_file"},
		{"tls a string", "address = \"10.0.0.9:6379\"\n    tls = \"yes\"", 1, "Invalid redis tls"},
		{"tls with another key", "address = \"10.0.0.9:6379\"\n    tls = { ca = \"x\" }", 1, "Invalid redis tls"},
		{"unreadable ca_file", "address = \"10.0.0.9:6379\"\n    tls = { ca_file = \"/nonexistent/ca.pem\" }", 1, "Cannot read redis ca_file"},
		{"ca_file without PEM", "address = \"10.0.0.9:6379\"\n    tls = { ca_file = \"" + notPEM + "\" }", 1, "Invalid redis ca_file"},
		{"prefix with a glob", "address = \"10.0.0.9:6379\"\n    prefix = \"gate*\"", 1, "Invalid redis prefix"},
		{"db out of range", "address = \"10.0.0.9:6379\"\n    db = 16", 1, "Invalid redis db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := base + "state {\n  redis {\n    " + tc.attrs + "\n  }\n}\n"
			cfg, diags := Parse([]byte(src), "gate.hcl")
			if cfg != nil || !diags.HasErrors() {
				t.Fatal("accepted")
			}
			want := first + 2 + tc.line
			for _, d := range diags {
				if d.Summary == tc.summary {
					if d.Subject == nil || d.Subject.Filename != "gate.hcl" || d.Subject.Start.Line != want {
						t.Fatalf("%q at %v, want gate.hcl line %d", d.Summary, d.Subject, want)
					}
					return
				}
			}
			t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
		})
	}
}
