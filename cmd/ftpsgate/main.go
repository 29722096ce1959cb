// Command ftpsgate is the FTPS-terminating reverse proxy for FTP.
//
//	ftpsgate run -config FILE       serve until SIGTERM or SIGINT
//	ftpsgate validate -config FILE  check a configuration and exit
//	ftpsgate passwd [-f FILE] USER  set a user's password in a user file
//	ftpsgate version                print the version
//
// This file is wiring only: flags, loggers and signals.
package main

import (
	"bytes"
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
	"github.com/redis/go-redis/v9"
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
	case "passwd":
		return cmdPasswd(args[1:], os.Stdin, stdout, stderr)
	case "agent":
		return cmdAgent(args[1:], stdout, stderr)
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
	fmt.Fprint(w, `ftpsgate: an FTPS-terminating reverse proxy for FTP.

Usage:
  ftpsgate run [-config] FILE [-log-format json|console] [-log-level debug|info|warn|error]
      serve until SIGTERM or SIGINT; SIGHUP reloads FILE, SIGUSR1 reopens the audit files
  ftpsgate validate [-config] FILE [-as-user USER]
      check FILE as run would, and exit: 0 valid, 1 not
  ftpsgate passwd [-f USERFILE] [-argon2id|-bcrypt] USER
      set USER's password in USERFILE (default /etc/ftpsgate/users), read from the
      terminal (twice, not shown) or from standard input; never from the command line
  ftpsgate agent [-config] FILE [-check] [-log-format json|console] [-log-level …]
      the outbound-only agent: dial the edge named in FILE and carry its connections,
      until SIGTERM or SIGINT; SIGHUP reloads FILE
  ftpsgate version

FILE defaults to `+defaultConfig+`. "ftpsgate run -h" lists a command's flags.
`)
}

// defaultConfig is the configuration file when none is named.
const defaultConfig = "/etc/ftpsgate/ftpsgate.hcl"

// parseArgs parses a command's flags and its one optional positional
// argument, the configuration file (also -config). It reports the file and
// whether to go on; when not, code is the exit status (0 after -h).
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (path string, code int, ok bool) {
	return parseArgsDefault(fs, args, stderr, defaultConfig)
}

// parseArgsDefault is parseArgs with another default file.
func parseArgsDefault(fs *flag.FlagSet, args []string, stderr io.Writer, def string) (path string, code int, ok bool) {
	cfg := fs.String("config", def, "configuration `file`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ftpsgate %s [-config] FILE [flags]\n\nFlags:\n", fs.Name())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	path = *cfg
	switch rest := fs.Args(); {
	case len(rest) > 1:
		fmt.Fprintf(stderr, "ftpsgate %s: one configuration file, not %q\n", fs.Name(), rest)
		return "", 2, false
	case len(rest) == 1:
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
		if explicit && rest[0] != *cfg {
			fmt.Fprintf(stderr, "ftpsgate %s: two configuration files: -config %s and %s\n", fs.Name(), *cfg, rest[0])
			return "", 2, false
		}
		path = rest[0]
	}
	return path, 0, true
}

// plural is "1 listener", "2 listeners".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
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
	asUser := fs.String("as-user", "", "also check that `user` (the service's, e.g. the systemd unit's) can read the key and certificate files and write the audit files")
	p, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	path := &p
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
	if *asUser != "" {
		problems, err := checkAccess(cfg, *asUser)
		if err != nil {
			fmt.Fprintf(stderr, "%s: error: -as-user %s: %v\n", *path, *asUser, err)
			return 2
		}
		for _, pr := range problems {
			fmt.Fprintf(stderr, "%s: error: %s\n", *path, pr)
		}
		if len(problems) > 0 {
			fmt.Fprintf(stderr, "%s: configuration is not valid for user %s\n", *path, *asUser)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: configuration is valid (%s, %s)\n", *path, plural(len(cfg.Listeners), "listener"), plural(len(cfg.Backends), "backend"))
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("log-format", "json", "diagnostic log `format`: json or console")
	level := fs.String("log-level", "info", "diagnostic log `level`: debug, info, warn or error")
	p, code, ok := parseArgs(fs, args, stderr)
	if !ok {
		return code
	}
	path := &p
	log, err := newLogger(*format, *level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate: %v\n", err)
		return 2
	}
	defer log.Sync()

	cfg, diags := config.Load(*path)
	logDiags(log, *path, diags)
	if diags.HasErrors() {
		log.Error("configuration is not valid", zap.String("config", *path), zap.Int("errors", len(diags.Errs())))
		return 1
	}
	if cfg.State.Redis != nil {
		redis.SetLogger(redisLog{log})
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
	stopAdmin, err := startAdmin(log, srv, cfg)
	if err != nil {
		srv.Close()
		return 1
	}
	defer stopAdmin()
	log.Info("ftpsgate started", zap.String("version", versionString()), zap.String("config", *path))
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("systemd readiness notification failed", zap.Error(err))
	}

	sig := serveSignals(log, sigs, srv, *path, cfg, files)
	sdNotify("STOPPING=1")
	log.Info("shutting down: waiting for transfers to finish", zap.Stringer("signal", sig),
		zap.Duration("timeout", shutdownTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("shutdown deadline passed; remaining sessions were closed", zap.Error(err))
	}
	log.Info("ftpsgate stopped")
	return 0
}

// startAdmin opens the admin listener, if the configuration names one, and
// serves it; stop closes it. A listener that cannot be opened is logged.
func startAdmin(log *zap.Logger, srv *proxy.Server, cfg *config.Config) (stop func(), err error) {
	if cfg.Admin == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.Admin)
	if err != nil {
		log.Error("cannot open the admin listener", zap.String("address", cfg.Admin), zap.Error(err))
		return nil, err
	}
	hs := srv.AdminServer()
	go hs.Serve(ln)
	log.Info("admin listener: /metrics, /status, /healthz, /readyz", zap.Stringer("address", ln.Addr()),
		zap.Bool("bearer_token", cfg.AdminAuth.BearerToken != ""), zap.Bool("basic_auth", cfg.AdminAuth.BasicUser != ""),
		zap.Bool("pprof", cfg.AdminPprof))
	return func() { hs.Close() }, nil
}

// serveSignals answers SIGUSR1 (reopen the audit files, which logrotate
// renamed) and SIGHUP (reload) until a signal to stop comes, and returns
// that one.
func serveSignals(log *zap.Logger, sigs <-chan os.Signal, srv *proxy.Server, path string, cfg *config.Config, files *audit.Files) os.Signal {
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			if err := files.Reopen(); err != nil {
				log.Error("reopening the audit files failed; writing on to the old ones", zap.Error(err))
			} else {
				log.Info("audit files reopened", zap.String("audit", cfg.Audit.File), zap.String("xferlog", cfg.Audit.Xferlog))
			}
		case syscall.SIGHUP:
			reload(log, srv, path, cfg)
		default:
			return sig
		}
	}
	return nil
}

// reload reads and checks the configuration and, if it is valid and every
// listener it names can be bound, makes it the configuration of new
// sessions; if not, every diagnostic is logged and the proxy runs on as
// before, on its old listeners and configuration. systemd hears RELOADING=1,
// then READY=1 with a STATUS= line saying how the reload went. The audit
// files and the admin listener are kept as they were at start.
func reload(log *zap.Logger, srv *proxy.Server, path string, started *config.Config) {
	sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	status := "configuration reloaded at " + time.Now().Format(time.RFC3339)
	defer func() { sdNotify("READY=1\nSTATUS=" + status) }()
	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		logDiags(log, path, onlyErrors(diags))
		log.Error("configuration reload refused: running on the previous configuration", zap.String("config", path))
		srv.ReloadFailed(diags)
		status = "reload refused, running on the previous configuration: " + diags.Errs()[0].Error()
		return
	}
	logDiags(log, path, diags)
	if cfg.Admin != started.Admin || cfg.AdminPprof != started.AdminPprof || cfg.AdminAuth.BearerToken != started.AdminAuth.BearerToken ||
		cfg.AdminAuth.BasicUser != started.AdminAuth.BasicUser || !bytes.Equal(cfg.AdminAuth.BasicHash, started.AdminAuth.BasicHash) ||
		cfg.Audit.File != started.Audit.File || cfg.Audit.Xferlog != started.Audit.Xferlog {
		log.Warn("the admin block and the audit files are read at start only: restart ftpsgate to apply their changes",
			zap.String("config", path))
	}
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
		return nil, fmt.Errorf("bad -log-level %q: want debug, info, warn or error", level)
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
// logDiags logs each diagnostic as one structured line: run's standard
// error is the JSON log, and a plain line would break it.
func logDiags(log *zap.Logger, path string, diags hcl.Diagnostics) {
	for _, d := range diags {
		loc, msg := diagText(path, d)
		if d.Severity == hcl.DiagWarning {
			log.Warn("configuration warning: "+d.Summary, zap.String("at", loc), zap.String("detail", msg))
		} else {
			log.Error("configuration error: "+d.Summary, zap.String("at", loc), zap.String("detail", msg))
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
