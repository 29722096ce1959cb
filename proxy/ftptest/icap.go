package ftptest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/scan"
)

// CICAP is a c-icap server started for one test.
type CICAP struct {
	// URL is its virus_scan service (icap://127.0.0.1:port/virus_scan),
	// TLSURL the same over TLS (icaps://…), when CICAPOptions asked for it.
	URL, TLSURL string
	Log         string // its server log, for failure messages
	stop        func()
}

// Stop stops c-icap, and returns once it has exited. Safe to call twice.
func (c *CICAP) Stop() { c.stop() }

// CICAPOptions tunes StartCICAP.
type CICAPOptions struct {
	// MaxObjectSize is virus_scan.MaxObjectSize in bytes: c-icap passes a
	// larger object unscanned. Zero: 200 MiB.
	MaxObjectSize int64
	// TLSCert and TLSKey, if set, are PEM files for a TLS port too.
	TLSCert, TLSKey string
}

// StartCICAP starts Debian's c-icap in the foreground with its virus_scan
// service (libc-icap-mod-virus-scan) scanning through clamd_mod with the
// test's own clamd, on a free loopback port, with a configuration of its
// own (the system's c-icap and its configuration are not used). Every
// file type is scanned, and nothing is sent before the verdict
// (SendPercentData 0). It is ready (OPTIONS answered 200 with RESPMOD)
// when StartCICAP returns, and stops when the test ends.
func StartCICAP(t testing.TB, clamd *Clamd, opts CICAPOptions) *CICAP {
	t.Helper()
	bin := Tool(t, "c-icap")
	const lib = "/usr/lib/x86_64-linux-gnu/c_icap"
	if _, err := os.Stat(filepath.Join(lib, "virus_scan.so")); err != nil {
		t.Fatalf("c-icap's virus_scan module is not installed (libc-icap-mod-virus-scan): %s", setupHint)
	}
	if opts.MaxObjectSize == 0 {
		opts.MaxObjectSize = 200 << 20
	}
	dir := t.TempDir()
	logFile := filepath.Join(dir, "server.log")
	var lastErr error
	for try := 0; try < 5; try++ {
		port := strconv.Itoa(FreePort(t))
		conf := []string{
			"PidFile " + filepath.Join(dir, "c-icap.pid"), "CommandsSocket " + filepath.Join(dir, "c-icap.ctl"),
			"Port 127.0.0.1:" + port, "Timeout 60", "StartServers 1", "MaxServers 2", "MinSpareThreads 2",
			"MaxSpareThreads 8", "ThreadsPerChild 8", "TmpDir " + dir, "MaxMemObject 131072", "DebugLevel 1",
			"ModulesDir " + lib, "ServicesDir " + lib, "TemplateDir /usr/share/c_icap/templates/",
			"TemplateDefaultLanguage en", "LoadMagicFile /etc/c-icap/c-icap.magic",
			"ServerLog " + logFile, "AccessLog " + filepath.Join(dir, "access.log"),
			"Module common clamd_mod.so", "clamd_mod.ClamdSocket " + clamd.Unix,
			"Service antivirus_module virus_scan.so", "virus_scan.DefaultEngine clamd",
			"virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GRAPHICS STREAM DOCUMENT",
			"virus_scan.SendPercentData 0", "virus_scan.MaxObjectSize " + strconv.FormatInt(opts.MaxObjectSize, 10),
		}
		c := &CICAP{URL: "icap://127.0.0.1:" + port + "/virus_scan", Log: logFile}
		if opts.TLSCert != "" {
			tport := strconv.Itoa(FreePort(t))
			conf = append(conf, fmt.Sprintf("TlsPort 127.0.0.1:%s cert=%s key=%s", tport, opts.TLSCert, opts.TLSKey))
			c.TLSURL = "icaps://127.0.0.1:" + tport + "/virus_scan"
		}
		confFile := filepath.Join(dir, "c-icap.conf")
		if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		stop, err := startProcess(bin, func() error { return waitOPTIONS(c, 60*time.Second) }, "-N", "-f", confFile)
		if err != nil {
			lastErr = err
			continue
		}
		c.stop = stop
		t.Cleanup(stop)
		return c
	}
	log, _ := os.ReadFile(logFile)
	t.Fatalf("c-icap did not start: %v; log: %s", lastErr, log)
	return nil
}

// waitOPTIONS polls c-icap's service with OPTIONS until it answers 200
// offering RESPMOD, or timeout. Over TLS, only the plain port is polled:
// c-icap opens both before it serves either.
func waitOPTIONS(c *CICAP, timeout time.Duration) error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return err
	}
	cl := &scan.ICAP{URL: u, Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if _, err = cl.Options(context.Background()); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // a poll's interval, not a wait for readiness
	}
}
