// Command ftpsgate is the FTPS-terminating reverse proxy for FTP.
//
//	ftpsgate run -config FILE       serve until SIGTERM or SIGINT
//	ftpsgate validate -config FILE  check a configuration and exit
//	ftpsgate version                print the version
//
// This file is wiring only: flags, loggers and signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// shutdownTimeout bounds how long SIGTERM waits for transfers to finish.
const shutdownTimeout = 30 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "ftpsgate", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "ftpsgate: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  ftpsgate run -config FILE [-log-format json|console] [-log-level debug|info|warn|error]
  ftpsgate validate -config FILE
  ftpsgate version
`)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/ftpsgate/ftpsgate.hcl", "configuration `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, diags := config.Load(*path)
	writeDiags(stderr, *path, diags)
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%s: configuration is not valid\n", *path)
		return 1
	}
	warnings, err := proxy.CheckConfig(cfg)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", *path, w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n%s: configuration is not valid\n", *path, err, *path)
		return 1
	}
	fmt.Fprintf(stdout, "%s: configuration is valid (%d listeners, %d backends)\n", *path, len(cfg.Listeners), len(cfg.Backends))
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/ftpsgate/ftpsgate.hcl", "configuration `file`")
	format := fs.String("log-format", "json", "diagnostic log format: json or console")
	level := fs.String("log-level", "info", "diagnostic log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(*format, *level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate: %v\n", err)
		return 2
	}
	defer log.Sync()

	cfg, diags := config.Load(*path)
	writeDiags(stderr, *path, onlyErrors(diags))
	logWarnings(log, *path, diags)
	if diags.HasErrors() {
		log.Error("configuration is not valid", zap.String("config", *path), zap.Int("errors", len(diags.Errs())))
		return 1
	}
	// A reader of the audit stream on standard output (audit.file = "-")
	// that goes away must not kill the proxy: with SIGPIPE ignored, the
	// write fails with EPIPE, and the audit sink logs and counts it.
	signal.Ignore(syscall.SIGPIPE)
	aud, files, err := audit.Open(cfg.Audit.File, cfg.Audit.Xferlog, audit.Options{Log: log})
	if err != nil {
		log.Error("cannot open the audit stream", zap.Error(err))
		return 1
	}
	// After the sessions have ended (Shutdown below): write what is
	// queued, for at most ten seconds, and close the files.
	defer func() {
		if err := files.Close(); err != nil {
			log.Error("the audit stream was not written completely", zap.Error(err))
		}
	}()

	// Signals are caught before the listeners open, so that none is
	// missed once the proxy answers.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	srv := proxy.New(cfg, proxy.Options{Logger: log, Audit: aud})
	if err := srv.Start(); err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	if cfg.Admin != "" {
		ln, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			log.Error("cannot open the admin listener", zap.String("address", cfg.Admin), zap.Error(err))
			srv.Close()
			return 1
		}
		hs := srv.AdminServer()
		go hs.Serve(ln)
		defer hs.Close()
		log.Info("admin listener: /metrics, /status, /healthz, /readyz", zap.Stringer("address", ln.Addr()),
			zap.Bool("bearer_token", cfg.AdminAuth.BearerToken != ""), zap.Bool("basic_auth", cfg.AdminAuth.BasicUser != ""),
			zap.Bool("pprof", cfg.AdminPprof))
	}
	log.Info("ftpsgate started", zap.String("version", versionString()), zap.String("config", *path))
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("systemd readiness notification failed", zap.Error(err))
	}

	for sig := range sigs {
		if sig == syscall.SIGUSR1 {
			// logrotate renamed the files: write to new ones.
			if err := files.Reopen(); err != nil {
				log.Error("reopening the audit files failed; writing on to the old ones", zap.Error(err))
			} else {
				log.Info("audit files reopened", zap.String("audit", cfg.Audit.File), zap.String("xferlog", cfg.Audit.Xferlog))
			}
			continue
		}
		if sig == syscall.SIGHUP {
			reload(log, srv, *path, stderr)
			continue
		}
		sdNotify("STOPPING=1")
		log.Info("shutting down: waiting for transfers to finish", zap.Stringer("signal", sig),
			zap.Duration("timeout", shutdownTimeout))
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("shutdown deadline passed; remaining sessions were closed", zap.Error(err))
	}
	log.Info("ftpsgate stopped")
	return 0
}

// reload reads and checks the configuration and, if it is valid and every
// listener it names can be bound, makes it the configuration of new
// sessions; if not, every diagnostic is logged and the proxy runs on as
// before, on its old listeners and configuration. systemd hears RELOADING=1,
// then READY=1 with a STATUS= line saying how the reload went. The audit
// files and the admin listener are kept as they were at start.
func reload(log *zap.Logger, srv *proxy.Server, path string, stderr io.Writer) {
	sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	status := "configuration reloaded at " + time.Now().Format(time.RFC3339)
	defer func() { sdNotify("READY=1\nSTATUS=" + status) }()
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		for _, d := range diags.Errs() {
			log.Error("configuration reload refused", zap.String("config", path), zap.Error(d))
		}
		writeDiags(stderr, path, diags)
		log.Error("configuration reload refused: running on the previous configuration", zap.String("config", path))
		srv.ReloadFailed(diags)
		status = "reload refused, running on the previous configuration: " + diags.Errs()[0].Error()
		return
	}
	logWarnings(log, path, diags)
	if err := srv.Reload(cfg); err != nil {
		log.Error("configuration reload refused: running on the previous configuration", zap.String("config", path), zap.Error(err))
		status = "reload refused, running on the previous configuration: " + err.Error()
		return
	}
	log.Info("configuration reloaded: new sessions use it, open sessions keep theirs", zap.String("config", path))
}

func newLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q", level)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("bad -log-format %q: want json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// writeDiags prints one line per diagnostic, as compilers do:
// "file:line:col: error: summary: detail".
func writeDiags(w io.Writer, path string, diags hcl.Diagnostics) {
	for _, d := range diags {
		loc, msg := diagText(path, d)
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		fmt.Fprintf(w, "%s: %s: %s\n", loc, sev, msg)
	}
}

// logWarnings logs each warning of diags (a valid configuration weaker
// than it should be: a readable key, a CBC cipher suite, an open admin
// listener) at warn level, where the service's journal keeps it.
func logWarnings(log *zap.Logger, path string, diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			loc, msg := diagText(path, d)
			log.Warn("configuration warning: "+d.Summary, zap.String("at", loc), zap.String("detail", msg))
		}
	}
}

// onlyErrors is diags without its warnings.
func onlyErrors(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

// diagText is where a diagnostic points ("file:line:col", or path) and
// what it says on one line.
func diagText(path string, d *hcl.Diagnostic) (loc, msg string) {
	loc = path
	if d.Subject != nil {
		loc = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	msg = d.Summary
	if d.Detail != "" {
		msg += ": " + strings.Join(strings.Fields(d.Detail), " ")
	}
	return loc, msg
}
