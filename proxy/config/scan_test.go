package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// scanTmpl is validTmpl with a scan block (line 1 to 9), named by the
// first listener and by a route.
const scanTmpl = `scan "av" {
  engine    = "clamd"
  address   = "unix:/run/clamav/clamd.ctl"
  timeout   = "20s"
  max_size  = "100M"
  above_max = "pass"
  on_error  = "pass"
  verbs     = ["STOR", "stou"]
}
scan "strict" {
  engine  = "clamd"
  address = "tcp:127.0.0.1:3310"
}
scan "icap" {
  engine  = "icap"
  address = "icap://icap.internal/avscan"
}
scan "icaps" {
  engine  = "icap"
  address = "icaps://icap.internal/avscan"
  ca_file = "CA_FILE"
}
route "partners" {
  users   = ["partner-*"]
  backend = "legacy"
  scan    = "strict"
}
`

func scanConfig(t *testing.T) string {
	cert, key := testCert(t)
	src := strings.Replace(scanTmpl, "CA_FILE", cert, 1) + fmt.Sprintf(validTmpl, cert, key)
	return strings.Replace(src, `backend        = "legacy"`, "backend        = \"legacy\"\n  scan           = \"av\"", 1)
}

func TestScanBlocks(t *testing.T) {
	cfg, diags := Parse([]byte(scanConfig(t)), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	av := cfg.Scans["av"]
	want := Scan{Name: "av", Engine: Clamd, Network: "unix", Address: "/run/clamav/clamd.ctl", Timeout: 20 * time.Second,
		MaxSize: 100 << 20, AboveMax: ScanPass, OnError: ScanPass, Verbs: []string{"STOR", "STOU"}}
	if av == nil || av.Name != want.Name || av.Engine != want.Engine || av.Network != want.Network || av.Address != want.Address ||
		av.Timeout != want.Timeout || av.MaxSize != want.MaxSize || av.AboveMax != want.AboveMax || av.OnError != want.OnError ||
		!slices.Equal(av.Verbs, want.Verbs) {
		t.Fatalf("scan av = %+v, want %+v", av, want)
	}
	if !av.Scans("STOR") || av.Scans("APPE") || (*Scan)(nil).Scans("STOR") {
		t.Fatal("Scans")
	}
	// The defaults: reject, 25 MiB (clamd's own StreamMaxLength), 60 s,
	// every upload verb.
	strict := cfg.Scans["strict"]
	if strict.Network != "tcp" || strict.Address != "127.0.0.1:3310" || strict.Timeout != time.Minute || strict.MaxSize != 25<<20 ||
		strict.AboveMax != ScanReject || strict.OnError != ScanReject || !slices.Equal(strict.Verbs, []string{"STOR", "APPE", "STOU"}) {
		t.Fatalf("scan strict = %+v", strict)
	}
	// An ICAP service: its URL with the default port; icaps:// with the
	// ca_file's roots.
	icap, icaps := cfg.Scans["icap"], cfg.Scans["icaps"]
	if icap.Engine != ICAP || icap.ICAP.String() != "icap://icap.internal:1344/avscan" || icap.Network != "tcp" ||
		icap.Address != "icap.internal:1344" || icap.RootCAs != nil {
		t.Fatalf("scan icap = %+v", icap)
	}
	if icaps.ICAP.String() != "icaps://icap.internal:11344/avscan" || icaps.RootCAs == nil {
		t.Fatalf("scan icaps = %+v", icaps)
	}
	if cfg.Listeners[0].Scan != av || cfg.Listeners[1].Scan != nil {
		t.Fatalf("listeners' scans: %v, %v", cfg.Listeners[0].Scan, cfg.Listeners[1].Scan)
	}
	if cfg.Routes[0].Scan != "strict" {
		t.Fatalf("route's scan %q", cfg.Routes[0].Scan)
	}
}

func TestScanDiagnostics(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"engine", `engine    = "clamd"`, `engine    = "sophos"`, 2, "Invalid scan engine"},
		{"clamd engine with an ICAP URL", `"unix:/run/clamav/clamd.ctl"`, `"icap://127.0.0.1/virus_scan"`, 3, "Invalid scanner address"},
		{"icap engine with a clamd address", `"icap://icap.internal/avscan"`, `"tcp:127.0.0.1:1344"`, 16, "Invalid scanner address"},
		{"icap without a service", `"icap://icap.internal/avscan"`, `"icap://icap.internal"`, 16, "Invalid scanner address"},
		{"ca_file on icap://", `"icaps://icap.internal/avscan"`, `"icap://icap.internal/avscan"`, 21, "Invalid ca_file"},
		{"ca_file unreadable", `ca_file = "/`, `ca_file = "/nonexistent/`, 21, "Cannot read ca_file"},
		{"ca_file not PEM", `ca_file = "/`, `ca_file = "scan_test.go"#`, 21, "Invalid ca_file"},
		{"address scheme", `"unix:/run/clamav/clamd.ctl"`, `"/run/clamav/clamd.ctl"`, 3, "Invalid scanner address"},
		{"relative socket", `"unix:/run/clamav/clamd.ctl"`, `"unix:clamd.ctl"`, 3, "Invalid scanner address"},
		{"tcp without port", `"tcp:127.0.0.1:3310"`, `"tcp:127.0.0.1"`, 12, "Invalid scanner address"},
		{"timeout", `"20s"`, `"0s"`, 4, "Invalid duration"},
		{"max_size unit", `"100M"`, `"100Q"`, 5, "Invalid max_size"},
		{"max_size zero", `"100M"`, `"0"`, 5, "Invalid max_size"},
		{"max_size negative", `"100M"`, `"-5K"`, 5, "Invalid max_size"},
		{"above_max", `above_max = "pass"`, `above_max = "skip"`, 6, "Invalid above_max"},
		{"on_error", `on_error  = "pass"`, `on_error  = "ignore"`, 7, "Invalid on_error"},
		{"verb not an upload", `["STOR", "stou"]`, `["STOR", "RETR"]`, 8, "Invalid verbs"},
		{"verb twice", `["STOR", "stou"]`, `["STOR", "stor"]`, 8, "Invalid verbs"},
		{"no verbs", `["STOR", "stou"]`, `[]`, 8, "Invalid verbs"},
		{"duplicate", `scan "strict"`, `scan "av"`, 10, "Duplicate scan"},
		{"route names unknown scan", `scan    = "strict"`, `scan    = "nope"`, 26, "Unknown scan"},
		{"listener names unknown scan", `scan           = "av"`, `scan           = "nope"`, 36, "Unknown scan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := scanConfig(t)
			edited := strings.Replace(src, tc.old, tc.new, 1)
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

func TestParseScanSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"25M", 25 << 20, true}, {"25MiB", 25 << 20, true}, {"1.5GiB", 3 << 29, true}, {"25m", 25 << 20, true}, {"4096", 4096, true}, {"512K", 512 << 10, true}, {"2G", 2 << 30, true},
		{"", 0, false}, {"M", 0, false}, {"0", 0, false}, {"-1", 0, false}, {"1.5M", 0, false}, {"1T", 0, false},
		{"9999999999999G", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}
