// Command ftpsload is ftpsgate's load generator: it measures FTP and FTPS
// servers and proxies the way their users would (make bench drives it).
//
//	ftpsload transfer  -addr A -user U -password-file F [-tls -ca C] -dir down|up -streams N -size S -path P
//	ftpsload setup     -addr A ... -clients 32 -duration 10s
//	ftpsload latency   -addr A ... -n 3000
//	ftpsload latency   -path LABEL=tls://A -path LABEL=ftp://A ... -base LABEL  (paths in turn, added latency over base)
//	ftpsload idle      -addr A ... -sessions N -ready-file F   (holds them until SIGTERM)
//	ftpsload responder -listen A                                 (a minimal FTP server for idle sessions)
//	ftpsload tls-sink  -listen A -cert C -key K                  (the Go TLS ceiling's server side)
//	ftpsload ceiling   -addr A -ca C -dir down|up -streams N -size S
//	ftpsload handshakes -addr A -ca C -server-pid P -clients N -duration D   (full TLS handshakes per server core-second)
//	ftpsload report    -in results.jsonl -json out.json -svg out.svg
//	ftpsload reap      COMMAND [ARG…]                            (runs a server, adopting what it orphans)
//
// Each measurement prints one JSON object on stdout; report turns a run's
// objects into the table, the JSON document and the chart.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmds := map[string]func([]string) error{
		"transfer": runTransfer, "setup": runSetup, "latency": runLatency, "idle": runIdle,
		"responder": runResponder, "tls-sink": runTLSSink, "ceiling": runCeiling, "report": runReport,
		"reap": runReap, "handshakes": runHandshakes,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		usage()
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "ftpsload %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ftpsload transfer|setup|latency|idle|responder|tls-sink|ceiling|handshakes|report|reap [flags]")
	os.Exit(2)
}

// result is one measurement, as one JSON line.
type result struct {
	Test     string  `json:"test"`  // e.g. "download", set by -test
	Path     string  `json:"path"`  // e.g. "ftpsgate", set by -label
	Value    float64 `json:"value"` // in Unit
	Unit     string  `json:"unit"`
	Failures int     `json:"failures"`
	// Extra figures of the same run (bytes, seconds, percentiles…).
	Extra map[string]float64 `json:"extra,omitempty"`
}

func emit(r result) {
	if r.Extra != nil {
		r.Extra["cpu_s"] = cpuSeconds()
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// cpuSeconds is the user and system CPU time this process has used, so
// that make bench can add the client's share to what the servers and
// proxies on a path spent.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// common holds the flags every client subcommand shares.
type common struct {
	addr, user, passwordFile string
	useTLS                   bool
	ca, serverName           string
	timeout                  time.Duration
	test, label              string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "", "control address, host:port")
	fs.StringVar(&c.user, "user", "", "user name")
	fs.StringVar(&c.passwordFile, "password-file", "", "file holding the password")
	fs.BoolVar(&c.useTLS, "tls", false, "explicit FTPS (AUTH TLS, PROT P)")
	fs.StringVar(&c.ca, "ca", "", "PEM file of the CA (or self-signed certificate) to trust")
	fs.StringVar(&c.serverName, "server-name", "localhost", "TLS server name")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "timeout of each network step")
	fs.StringVar(&c.test, "test", "", "test name written in the result")
	fs.StringVar(&c.label, "label", "", "path name written in the result")
}

func (c *common) target() (target, error) {
	t := target{addr: c.addr, user: c.user, timeout: c.timeout}
	if c.addr == "" {
		return t, fmt.Errorf("-addr is required")
	}
	if c.passwordFile != "" {
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return t, err
		}
		t.password = strings.TrimSpace(string(b))
	}
	if c.useTLS {
		conf, err := clientTLS(c.ca, c.serverName)
		if err != nil {
			return t, err
		}
		t.tls = conf
	}
	return t, nil
}

// clientTLS trusts ca (a PEM file) and names serverName, which also keys
// the session cache, so data connections find the control's ticket.
func clientTLS(ca, serverName string) (*tls.Config, error) {
	conf := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", ca)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// parseSize reads 1073741824, 64MiB, 1GiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
