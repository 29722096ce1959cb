package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runHandshakes measures what a full TLS handshake costs the server: for
// -duration, -clients connections at a time each run a full handshake (no
// session cache, so nothing resumes) to a tls-sink and hang up. The figure
// is handshakes per second of the server process's CPU time (-server-pid,
// read from /proc), which is what bounds session setups on the proxy's
// cores; the wall-clock rate rides along.
func runHandshakes(args []string) error {
	fs := flag.NewFlagSet("handshakes", flag.ExitOnError)
	addr := fs.String("addr", "", "tls-sink address")
	ca := fs.String("ca", "", "PEM file to trust")
	clients := fs.Int("clients", 8, "handshakes at a time")
	duration := fs.Duration("duration", 5*time.Second, "how long to measure")
	pid := fs.Int("server-pid", 0, "the tls-sink's process, whose CPU time is counted")
	version := fs.String("tls", "1.3", "TLS version: 1.2 or 1.3")
	test := fs.String("test", "full TLS handshakes", "test name written in the result")
	label := fs.String("label", "", "path name written in the result (the certificate)")
	fs.Parse(args)
	if *pid <= 0 {
		return fmt.Errorf("-server-pid is required")
	}
	conf, err := clientTLS(*ca, "localhost")
	if err != nil {
		return err
	}
	switch *version {
	case "1.2":
		conf.MaxVersion = tls.VersionTLS12
	case "1.3":
		conf.MinVersion = tls.VersionTLS13
	default:
		return fmt.Errorf("-tls %q: want 1.2 or 1.3", *version)
	}
	conf.ClientSessionCache = nil // every handshake is a full one
	cpu0, err := procCPU(*pid)
	if err != nil {
		return err
	}
	var done, failures atomic.Int64
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			d := tls.Dialer{Config: conf}
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := d.DialContext(ctx, "tcp", *addr)
				cancel()
				if err != nil {
					if failures.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "ftpsload handshakes:", err)
					}
					continue
				}
				c.Close()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu1, err := procCPU(*pid)
	if err != nil {
		return err
	}
	serverCPU := cpu1 - cpu0
	if serverCPU <= 0 {
		return fmt.Errorf("the server used no measurable CPU time in %d handshakes", done.Load())
	}
	n := float64(done.Load())
	emit(result{Test: *test, Path: *label, Value: n / serverCPU, Unit: "handshakes/core-s",
		Failures: int(failures.Load()), Extra: map[string]float64{"handshakes": n, "seconds": secs,
			"per_second": n / secs, "server_cpu_s": serverCPU}})
	if failures.Load() > 0 {
		return fmt.Errorf("%d handshakes failed", failures.Load())
	}
	return nil
}

// procCPU is the user and system CPU time, in seconds, of process pid
// (its threads included), from /proc/PID/stat.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	secs, ok := statCPU(string(b))
	if !ok {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format %q", pid, b)
	}
	return secs, nil
}

// statCPU reads utime and stime (fields 14 and 15) from a /proc/PID/stat
// line, in seconds. The command name, in parentheses, may hold spaces and
// parentheses: fields are counted from after its last closing parenthesis.
func statCPU(line string) (float64, bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return float64(utime+stime) / clockTicks, true
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times: 100
// on every Linux architecture Go supports.
const clockTicks = 100
