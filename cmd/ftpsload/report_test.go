package main

import (
	"fmt"
	"strings"
	"testing"
)

// The cells of make bench's table, from results as the measurements and
// bench.sh write them.
func TestCellText(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     result
		ratio float64
		want  string
	}{
		{"subject's own rate", result{Value: 1236, Unit: "MB/s"}, 0, "1236"},
		{"baseline with ratio", result{Value: 954.4, Unit: "MB/s"}, 1.2951, "954 (1.30×)"},
		{"small value", result{Value: 7.71, Unit: "sessions/s"}, 4.2, "7.7 (4.20×)"},
		{"latency with p99", result{Value: 61.14, Unit: "µs p50", Extra: map[string]float64{"p99_us": 169.2}}, 0, "61.1, p99 169"},
		{"CPU through a proxy", result{Value: 1.604, Unit: "s/GiB", Extra: map[string]float64{"client_s": 0.571, "proxy_s": 0.982, "server_s": 0.051}},
			0.9, "1.60 (0.90×) = client 0.57 + proxy 0.98 + server 0.05"},
		{"CPU direct: no proxy share", result{Value: 0.9, Unit: "s/GiB", Extra: map[string]float64{"client_s": 0.6, "server_s": 0.3}},
			0, "0.90 = client 0.60 + server 0.30"},
		{"failures", result{Unit: "MB/s", Failures: 2}, 0, "0.0 ⚠ 2 failed"},
	} {
		if got := cellText(tc.r, tc.ratio); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// cpuSeconds must count this process's work: bench.sh adds it to the
// servers' share.
func TestCPUSeconds(t *testing.T) {
	before := cpuSeconds()
	x := uint64(1)
	for i := range 200_000_000 {
		x = x*6364136223846793005 + uint64(i)
	}
	if after := cpuSeconds(); after <= before || x == 0 {
		t.Fatalf("cpuSeconds went from %v to %v across a busy loop", before, after)
	}
}

// The proxy CPU rows, from the CPU rows of make bench's run of 2026-12-03
// (download 1GiB): each proxied path's own share, and the floor, the Go
// TLS ceiling's server plus plain FTP direct's client. Tests without both
// baselines get the proxy shares and no floor.
func TestWithProxyRows(t *testing.T) {
	cpu := func(test, path string, c, p, s float64) result {
		return result{Test: test, Path: path, Value: c + p + s, Unit: "s/GiB",
			Extra: map[string]float64{"client_s": c, "proxy_s": p, "server_s": s}}
	}
	const down = "download 1GiB, CPU per GiB"
	in := []result{
		{Test: "download 1GiB", Path: "ftpsgate", Value: 740, Unit: "MB/s"},
		cpu(down, "ftpsgate", 1.01, 1.31, 0.18),
		cpu(down, "plain FTP direct", 0.27, 0, 0.24),
		cpu(down, "mod_proxy", 0.95, 1.78, 0.15),
		cpu(down, "Go TLS ceiling", 1.24, 0, 1.13),
		{Test: "download 1GiB, CPU bound on 2 cores", Path: "ftpsgate", Value: 858, Unit: "MB/s"},
		cpu("upload 1GiB, CPU per GiB", "ftpsgate", 1.03, 1.60, 1.25),
	}
	got := withProxyRows(in)
	var text []string
	for _, r := range got {
		text = append(text, fmt.Sprintf("%s|%s|%.2f|%s", r.Test, r.Path, r.Value, cellText(r, 0)))
	}
	want := []string{
		"download 1GiB|ftpsgate|740.00|740",
		"download 1GiB, CPU per GiB|ftpsgate|2.50|2.50 = client 1.01 + proxy 1.31 + server 0.18",
		"download 1GiB, CPU per GiB|plain FTP direct|0.51|0.51 = client 0.27 + server 0.24",
		"download 1GiB, CPU per GiB|mod_proxy|2.88|2.88 = client 0.95 + proxy 1.78 + server 0.15",
		"download 1GiB, CPU per GiB|Go TLS ceiling|2.37|2.37 = client 1.24 + server 1.13",
		"download 1GiB, proxy CPU per GiB|ftpsgate|1.31|1.31",
		"download 1GiB, proxy CPU per GiB|mod_proxy|1.78|1.78",
		"download 1GiB, proxy CPU per GiB|" + floorPath + "|1.40|1.40 = TLS endpoint 1.13 + plain endpoint 0.27",
		"download 1GiB, CPU bound on 2 cores|ftpsgate|858.00|858",
		"upload 1GiB, CPU per GiB|ftpsgate|3.88|3.88 = client 1.03 + proxy 1.60 + server 1.25",
		"upload 1GiB, proxy CPU per GiB|ftpsgate|1.60|1.60",
	}
	if strings.Join(text, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(text, "\n"), strings.Join(want, "\n"))
	}
}
