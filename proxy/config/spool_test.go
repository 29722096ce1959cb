package config

import (
	"fmt"
	"strings"
	"testing"
)

// spoolTmpl is scanTmpl with its first block in spool mode (lines 1 to
// 12) and a third block, inline, after the route (lines 23 to 26).
const spoolTmpl = `scan "av" {
  engine    = "clamd"
  address   = "unix:/run/clamav/clamd.ctl"
  timeout   = "20s"
  max_size  = "100M"
  above_max = "reject"
  on_error  = "pass"
  verbs     = ["STOR", "stou"]
  mode      = "spool"
  spool_dir = "/srv/spool/av"
  spool_max = "2GiB"
}
scan "strict" {
  engine  = "clamd"
  address = "tcp:127.0.0.1:3310"
  mode    = "spool"
}
route "partners" {
  users   = ["partner-*"]
  backend = "legacy"
  scan    = "strict"
}
scan "inline" {
  engine  = "clamd"
  address = "tcp:127.0.0.1:3310"
}
`

// spoolConfig is spoolTmpl followed by validTmpl, whose listener names
// the scan block "av" (as scanConfig does with scanTmpl).
func spoolConfig(t *testing.T) string {
	t.Helper()
	cert, key := testCert(t)
	src := spoolTmpl + fmt.Sprintf(validTmpl, cert, key)
	return strings.Replace(src, `backend        = "legacy"`, "backend        = \"legacy\"\n  scan           = \"av\"", 1)
}

func TestScanSpoolSettings(t *testing.T) {
	cfg, diags := Parse([]byte(spoolConfig(t)), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	for _, tc := range []struct {
		name string
		mode ScanMode
		dir  string
		max  int64
	}{
		{"av", ScanSpool, "/srv/spool/av", 2 << 30},
		{"strict", ScanSpool, DefaultSpoolRoot + "/strict", 1 << 30}, // the defaults: a directory per block, 1 GiB
		{"inline", ScanInline, "", 1 << 30},
	} {
		s := cfg.Scans[tc.name]
		if s.Mode != tc.mode || s.SpoolDir != tc.dir || s.SpoolMax != tc.max {
			t.Errorf("scan %s: mode %v, spool_dir %q, spool_max %d; want %v, %q, %d", tc.name, s.Mode, s.SpoolDir, s.SpoolMax, tc.mode, tc.dir, tc.max)
		}
	}
}

func TestScanSpoolDiagnostics(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"mode", `mode      = "spool"`, `mode      = "disk"`, 9, "Invalid scan mode"},
		{"relative spool_dir", `"/srv/spool/av"`, `"spool/av"`, 10, "Invalid spool_dir"},
		{"root spool_dir", `"/srv/spool/av"`, `"/"`, 10, "Invalid spool_dir"},
		{"spool_max unit", `"2GiB"`, `"2Q"`, 11, "Invalid spool_max"},
		{"spool_max zero", `"2GiB"`, `"0"`, 11, "Invalid spool_max"},
		{"spool_max below max_size", `"2GiB"`, `"10MiB"`, 11, "Invalid spool_max"},
		{"spool_dir shared", "mode    = \"spool\"\n}", "mode    = \"spool\"\n  spool_dir = \"/srv/spool/av/\"\n}", 17, "Duplicate spool_dir"},
		{"spool_dir inline", "address = \"tcp:127.0.0.1:3310\"\n}\n", "address = \"tcp:127.0.0.1:3310\"\n  spool_dir = \"/srv/x\"\n}\n", 26, "Invalid spool_dir"},
		{"spool_max inline", "address = \"tcp:127.0.0.1:3310\"\n}\n", "address = \"tcp:127.0.0.1:3310\"\n  spool_max = \"1GiB\"\n}\n", 26, "Invalid spool_max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := spoolConfig(t)
			var edited string
			if strings.HasSuffix(tc.name, "inline") { // the last block's
				i := strings.LastIndex(src, tc.old)
				edited = src[:i] + tc.new + src[i+len(tc.old):]
			} else {
				edited = strings.Replace(src, tc.old, tc.new, 1)
			}
			if edited == src {
				t.Fatal("edit changed nothing")
			}
			cfg, diags := Parse([]byte(edited), "gate.hcl")
			if cfg != nil {
				t.Fatal("accepted")
			}
			for _, d := range diags {
				if d.Summary == tc.summary {
					if d.Subject == nil || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want line %d", d.Summary, d.Subject, tc.line)
					}
					return
				}
			}
			t.Fatalf("no %q diagnostic in %s", tc.summary, diags.Error())
		})
	}
}
