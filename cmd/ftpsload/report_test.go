package main

import "testing"

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
