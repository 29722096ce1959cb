package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runTransfer logs N sessions in, then starts one transfer on each at once
// and reports the aggregate rate (MB/s, 10^6 bytes) from the first byte
// asked for to the last reply read. Each stream must move exactly -size
// bytes; one that does not is a failure, and its bytes do not count.
func runTransfer(args []string) error {
	var c common
	fs := flag.NewFlagSet("transfer", flag.ExitOnError)
	c.register(fs)
	dir := fs.String("dir", "down", "down (RETR) or up (STOR)")
	streams := fs.Int("streams", 1, "parallel sessions, one transfer each")
	sizeFlag := fs.String("size", "64MiB", "bytes per stream")
	path := fs.String("path", "file.bin", "file to RETR; STOR writes path.N, then deletes it")
	runs := fs.Int("runs", 1, "runs; the median run is reported")
	fs.Parse(args)
	t, err := c.target()
	if err != nil {
		return err
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		return err
	}
	if *dir != "down" && *dir != "up" {
		return fmt.Errorf("-dir must be down or up")
	}
	ctx := context.Background()
	sessions := make([]*session, *streams)
	for i := range sessions {
		if sessions[i], err = dial(ctx, t); err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		defer sessions[i].quit()
		if _, _, err := sessions[i].cmd("TYPE I", 200); err != nil {
			return err
		}
	}
	upload := make([]byte, 256<<10)
	for i := range upload {
		upload[i] = byte(rand.Uint32())
	}
	var rates []float64
	var last result
	var total int64
	for range *runs {
		var moved, failures atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for i, s := range sessions {
			wg.Go(func() {
				buf := make([]byte, 256<<10)
				var n int64
				var err error
				if *dir == "down" {
					n, err = s.retrieve(ctx, *path, size, buf)
				} else {
					name := fmt.Sprintf("%s.%d", *path, i)
					if n, err = s.store(ctx, name, size, upload); err == nil {
						_, _, err = s.cmd("DELE "+name, 250)
					}
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "ftpsload transfer (%s): stream %d: %v\n", c.label, i, err)
					failures.Add(1)
					return
				}
				moved.Add(n)
			})
		}
		wg.Wait()
		secs := time.Since(start).Seconds()
		if failures.Load() > 0 {
			emit(result{Test: c.test, Path: c.label, Unit: "MB/s", Failures: int(failures.Load())})
			return fmt.Errorf("%d of %d streams failed", failures.Load(), *streams)
		}
		rate := float64(moved.Load()) / secs / 1e6
		rates = append(rates, rate)
		total += moved.Load()
		last = result{Test: c.test, Path: c.label, Unit: "MB/s", Extra: map[string]float64{
			"bytes_per_run": float64(moved.Load()), "streams": float64(*streams), "runs": float64(*runs)}}
	}
	slices.Sort(rates)
	last.Value = rates[len(rates)/2]
	last.Extra["min"], last.Extra["max"] = rates[0], rates[len(rates)-1]
	last.Extra["bytes"] = float64(total) // over all runs, for the CPU per GiB
	emit(last)
	return nil
}

// runSetup runs -clients loops, each opening full sessions (TCP, AUTH TLS
// and a full handshake, USER/PASS through to the server, PBSZ/PROT, QUIT)
// one after another for -duration, and reports sessions per second.
func runSetup(args []string) error {
	var c common
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	c.register(fs)
	clients := fs.Int("clients", 32, "concurrent clients")
	duration := fs.Duration("duration", 10*time.Second, "how long to keep opening sessions")
	resume := fs.Bool("resume", false, "each client keeps one TLS session cache across its sessions, as a client that reconnects does (its control connections may resume)")
	fs.Parse(args)
	t, err := c.target()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var done, failures atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	var resumed atomic.Int64
	for range *clients {
		wg.Go(func() {
			t := t
			if *resume {
				t.cache = tls.NewLRUClientSessionCache(4)
			}
			for time.Now().Before(deadline) {
				s, err := dial(ctx, t)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if tc, ok := s.conn.(*tls.Conn); ok && tc.ConnectionState().DidResume {
					resumed.Add(1)
				}
				s.quit()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	emit(result{Test: c.test, Path: c.label, Value: float64(done.Load()) / secs, Unit: "sessions/s",
		Failures: int(failures.Load()), Extra: map[string]float64{"sessions": float64(done.Load()), "seconds": secs,
			"clients": float64(*clients), "resumed": float64(resumed.Load())}})
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "ftpsload setup: %d failures, first: %s\n", failures.Load(), e)
	}
	if done.Load() == 0 {
		return fmt.Errorf("no session completed")
	}
	return nil
}

// runLatency times -n round trips of each verb on one logged-in session and
// reports the median and the 99th percentile in microseconds.
func runLatency(args []string) error {
	var c common
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	c.register(fs)
	n := fs.Int("n", 3000, "round trips per verb and path")
	var paths pathFlags
	fs.Var(&paths, "path", "LABEL=tls://HOST:PORT or LABEL=ftp://HOST:PORT, repeated: the paths are measured in turn, one round trip each, instead of -addr")
	block := fs.Int("block", 100, "round trips in a row on one path before the next path's turn")
	base := fs.String("base", "", "a -path LABEL: also report each other path's added latency over it")
	fs.Parse(args)
	if len(paths) == 0 {
		paths = pathFlags{{label: c.label, addr: c.addr, tls: c.useTLS}}
	}
	sessions := make([]*session, len(paths))
	baseIdx := -1
	for i, p := range paths {
		c.addr, c.useTLS = p.addr, p.tls
		t, err := c.target()
		if err != nil {
			return err
		}
		if sessions[i], err = dial(context.Background(), t); err != nil {
			return fmt.Errorf("%s: %w", p.label, err)
		}
		defer sessions[i].quit()
		if p.label == *base {
			baseIdx = i
		}
	}
	if *base != "" && baseIdx < 0 {
		return fmt.Errorf("-base %q names no -path", *base)
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	for _, verb := range []struct {
		name string
		code int
	}{{"NOOP", 200}, {"PWD", 257}} {
		// rtts[path] in blocks of -block round trips. Each path runs a
		// block in turn, starting at a different path each time, so that
		// whatever the machine does meanwhile (another process, a vCPU
		// moving) weighs on all alike; within a block the round trips
		// follow each other as in any one session.
		rtts := make([][]time.Duration, len(paths))
		blocks := (*n + *block - 1) / *block
		for b := range blocks {
			for k := range paths {
				i := (b + k) % len(paths)
				for range min(*block, *n-b**block) {
					start := time.Now()
					if _, _, err := sessions[i].cmd(verb.name, verb.code); err != nil {
						return fmt.Errorf("%s: %w", paths[i].label, err)
					}
					rtts[i] = append(rtts[i], time.Since(start))
				}
			}
		}
		median := func(d []time.Duration) time.Duration { return slices.Sorted(slices.Values(d))[len(d)/2] }
		for i, p := range paths {
			if baseIdx >= 0 && i != baseIdx {
				// The added latency: the median over blocks of the
				// difference between the block's median and the base's
				// block run just before or after it.
				added := make([]time.Duration, blocks)
				for b := range added {
					lo, hi := b**block, min((b+1)**block, *n)
					added[b] = median(rtts[i][lo:hi]) - median(rtts[baseIdx][lo:hi])
				}
				emit(result{Test: c.test + " " + verb.name + ", added over " + *base, Path: p.label,
					Value: us(median(added)), Unit: "µs p50", Extra: map[string]float64{"n": float64(*n), "blocks": float64(blocks)}})
			}
			sorted := slices.Sorted(slices.Values(rtts[i]))
			emit(result{Test: c.test + " " + verb.name, Path: p.label, Value: us(sorted[len(sorted)/2]), Unit: "µs p50",
				Extra: map[string]float64{"p99_us": us(sorted[len(sorted)*99/100]), "n": float64(*n)}})
		}
	}
	return nil
}

// pathFlags are repeated -path LABEL=tls://HOST:PORT flags.
type pathFlags []struct {
	label, addr string
	tls         bool
}

func (p *pathFlags) String() string { return fmt.Sprint(len(*p), " paths") }

func (p *pathFlags) Set(v string) error {
	label, url, ok := strings.Cut(v, "=")
	scheme, addr, ok2 := strings.Cut(url, "://")
	if !ok || !ok2 || label == "" || addr == "" || (scheme != "tls" && scheme != "ftp") {
		return fmt.Errorf("want LABEL=tls://HOST:PORT or LABEL=ftp://HOST:PORT, not %q", v)
	}
	*p = append(*p, struct {
		label, addr string
		tls         bool
	}{label, addr, scheme == "tls"})
	return nil
}

// runIdle logs -sessions sessions in (-concurrency at a time), creates
// -ready-file, and holds them idle until SIGTERM or SIGINT, then quits them.
// The script reads the proxy's memory while they are held.
func runIdle(args []string) error {
	var c common
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	c.register(fs)
	n := fs.Int("sessions", 1000, "sessions to hold")
	conc := fs.Int("concurrency", 32, "logins in flight at once")
	ready := fs.String("ready-file", "", "file created once every session is logged in")
	fs.Parse(args)
	t, err := c.target()
	if err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	sessions := make([]*session, *n)
	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	for i := range sessions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := dial(context.Background(), t)
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			s.conn.SetDeadline(time.Time{})
			sessions[i] = s
		})
	}
	wg.Wait()
	if f := failures.Load(); f > 0 {
		return fmt.Errorf("%d of %d sessions failed, first: %v", f, *n, firstErr.Load())
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(fmt.Sprintln(*n)), 0o644); err != nil {
			return err
		}
	}
	<-stop
	for _, s := range sessions {
		s.conn.Close()
	}
	return nil
}
