package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// runReport reads a run's JSON lines and prints the markdown table: one row
// per test, one column per path, each baseline cell with ftpsgate's ratio
// to it. It also writes the results as one JSON document and an SVG chart.
func runReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "JSON lines written by the measurements")
	jsonOut := fs.String("json", "", "write the JSON document here")
	svgOut := fs.String("svg", "", "write the chart here")
	subject := fs.String("subject", "ftpsgate", "the path the ratios are of")
	fs.Parse(args)
	results, err := readResults(*in)
	if err != nil {
		return err
	}
	results = withProxyRows(results)
	var tests, paths []string
	runs := map[[2]string][]result{}
	for _, r := range results {
		if !slices.Contains(tests, r.Test) {
			tests = append(tests, r.Test)
		}
		if !slices.Contains(paths, r.Path) {
			paths = append(paths, r.Path)
		}
		k := [2]string{r.Test, r.Path}
		runs[k] = append(runs[k], r)
	}
	// A measurement repeated in separate processes (the latency is, since
	// where the scheduler puts a process moves it by tens of µs here)
	// counts by its median run.
	cell := map[[2]string]result{}
	for k, rs := range runs {
		slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.Value, b.Value) })
		cell[k] = rs[len(rs)/2]
	}
	// The subject first, the baselines in the order they were measured.
	if i := slices.Index(paths, *subject); i > 0 {
		paths = append([]string{*subject}, append(paths[:i:i], paths[i+1:]...)...)
	}
	fmt.Printf("| measure | unit | %s |\n", strings.Join(paths, " | "))
	fmt.Printf("|---|---|%s\n", strings.Repeat("---:|", len(paths)))
	for _, test := range tests {
		var unit string
		row := make([]string, len(paths))
		own, haveOwn := cell[[2]string{test, *subject}]
		for i, p := range paths {
			r, ok := cell[[2]string{test, p}]
			if !ok {
				row[i] = "–"
				continue
			}
			unit = r.Unit
			var ratio float64
			if p != *subject && haveOwn && r.Value > 0 {
				ratio = own.Value / r.Value
			}
			row[i] = cellText(r, ratio)
		}
		fmt.Printf("| %s | %s | %s |\n", test, unit, strings.Join(row, " | "))
	}
	fmt.Printf("\n(x×) = %s's figure divided by that column's; higher is better for MB/s, sessions/s and handshakes/core-s, lower for µs, KiB and s/GiB.\n", *subject)
	if *jsonOut != "" {
		doc := map[string]any{
			"date": time.Now().UTC().Format(time.RFC3339), "cpus": runtime.NumCPU(),
			"subject": *subject, "results": results,
		}
		b, _ := json.MarshalIndent(doc, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *svgOut != "" {
		if err := os.WriteFile(*svgOut, []byte(chart(tests, paths, cell)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cellText is one table cell: r's value, ftpsgate's ratio to it (when
// not 0), and the figures behind it: the p99 of a latency, the share of
// each process in a CPU time, the failures.
func cellText(r result, ratio float64) string {
	text := number(r.Value)
	if r.Unit == "s/GiB" {
		text = fmt.Sprintf("%.2f", r.Value)
	}
	if ratio != 0 {
		text += fmt.Sprintf(" (%.2f×)", ratio)
	}
	if p99, ok := r.Extra["p99_us"]; ok {
		text += fmt.Sprintf(", p99 %s", number(p99))
	}
	var parts []string
	for _, k := range []string{"client", "proxy", "server"} {
		if v := r.Extra[k+"_s"]; v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	if v := r.Extra["tls_endpoint_s"]; v > 0 {
		parts = append(parts, fmt.Sprintf("TLS endpoint %.2f", v), fmt.Sprintf("plain endpoint %.2f", r.Extra["plain_endpoint_s"]))
	}
	if len(parts) > 0 {
		text += " = " + strings.Join(parts, " + ")
	}
	if r.Failures > 0 {
		text += fmt.Sprintf(" ⚠ %d failed", r.Failures)
	}
	return text
}

// floorPath is the column of the proxy's floor in the "proxy CPU per GiB"
// rows.
const floorPath = "floor: a lone TLS and a lone plain endpoint"

// withProxyRows adds, after each test's "…, CPU per GiB" rows, a "…, proxy
// CPU per GiB" row: the proxy's own share of each path that has a proxy,
// and the floor no proxy with one TLS leg and one plain leg can go below:
// what a Go TLS endpoint doing nothing else (the ceiling's server, the TLS
// sender of a download and the receiver of an upload) and a plain FTP
// endpoint doing nothing else (plain FTP direct's client, the plain
// receiver of a download and sender of an upload) spent per GiB in the
// same run. Without both baselines, no floor is given.
func withProxyRows(results []result) []result {
	const suffix = ", CPU per GiB"
	last := map[string]int{} // a CPU test's last result
	for i, r := range results {
		if strings.HasSuffix(r.Test, suffix) {
			last[r.Test] = i
		}
	}
	var out []result
	for i, r := range results {
		out = append(out, r)
		if !strings.HasSuffix(r.Test, suffix) || last[r.Test] != i {
			continue
		}
		test := strings.TrimSuffix(r.Test, suffix) + ", proxy CPU per GiB"
		var tlsEnd, plainEnd float64
		var rows []result
		for _, c := range results {
			if c.Test != r.Test {
				continue
			}
			switch {
			case c.Path == "Go TLS ceiling":
				tlsEnd = c.Extra["server_s"]
			case c.Path == "plain FTP direct":
				plainEnd = c.Extra["client_s"]
			case c.Extra["proxy_s"] > 0:
				rows = append(rows, result{Test: test, Path: c.Path, Value: c.Extra["proxy_s"], Unit: c.Unit})
			}
		}
		out = append(out, rows...)
		if len(rows) > 0 && tlsEnd > 0 && plainEnd > 0 {
			out = append(out, result{Test: test, Path: floorPath, Value: tlsEnd + plainEnd, Unit: r.Unit,
				Extra: map[string]float64{"tls_endpoint_s": tlsEnd, "plain_endpoint_s": plainEnd}})
		}
	}
	return out
}

func readResults(name string) ([]result, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []result
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func number(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// chart draws one group of horizontal bars per test, each bar scaled to
// the largest value of its test and labelled with its absolute value.
func chart(tests, paths []string, cell map[[2]string]result) string {
	colors := []string{"#1f6feb", "#8b949e", "#d29922", "#3fb950", "#a371f7", "#f85149", "#39c5cf"}
	const labelW, barW, rowH, pad = 300, 360, 16, 10
	var b strings.Builder
	y := pad + 20
	body := &strings.Builder{}
	for _, test := range tests {
		var top float64
		for _, p := range paths {
			if r, ok := cell[[2]string{test, p}]; ok && r.Value > top {
				top = r.Value
			}
		}
		fmt.Fprintf(body, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", pad, y, html.EscapeString(test))
		y += 4
		for i, p := range paths {
			r, ok := cell[[2]string{test, p}]
			if !ok || top == 0 {
				continue
			}
			w := int(r.Value / top * barW)
			fmt.Fprintf(body, `<text x="%d" y="%d">%s</text>`, pad+10, y+rowH-4, html.EscapeString(p))
			fmt.Fprintf(body, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, labelW, y+2, max(w, 1), rowH-4, colors[i%len(colors)])
			fmt.Fprintf(body, `<text x="%d" y="%d">%s %s</text>`+"\n", labelW+max(w, 1)+6, y+rowH-4, number(r.Value), html.EscapeString(r.Unit))
			y += rowH
		}
		y += 18
	}
	width := labelW + barW + 160
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, y)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="%d" font-size="14" font-weight="bold">make bench: ftpsgate and its baselines, one run</text>`+"\n", pad, pad+8)
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}
