package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/agent"
)

// defaultAgentConfig is the agent's configuration file when none is named.
const defaultAgentConfig = "/etc/ftpsgate/agent.hcl"

// cmdAgent runs the outbound-only agent until SIGTERM or SIGINT; SIGHUP
// reloads its configuration (agentReload). With -check it only validates
// the file.
func cmdAgent(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("log-format", "json", "diagnostic log `format`: json or console")
	level := fs.String("log-level", "info", "diagnostic log `level`: debug, info, warn or error")
	check := fs.Bool("check", false, "check the configuration file and exit: 0 valid, 1 not")
	p, code, ok := parseArgsDefault(fs, args, stderr, defaultAgentConfig)
	if !ok {
		return code
	}
	cfg, diags := agent.Load(p)
	writeDiags(stderr, p, diags)
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%s: configuration is not valid\n", p)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: configuration is valid (edge %s, %d allowed targets)\n", p, cfg.Edge, len(cfg.AllowTargets))
		return 0
	}
	log, err := newLogger(*format, *level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ftpsgate: %v\n", err)
		return 2
	}
	defer log.Sync()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	a := agent.New(cfg, agent.Options{Logger: log})
	if cfg.HealthAddress != "" {
		ln, err := net.Listen("tcp", cfg.HealthAddress)
		if err != nil {
			log.Error("cannot listen on health_address", zap.Error(err))
			return 1
		}
		hs := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
	}
	done := make(chan struct{})
	go func() {
		a.Run()
		close(done)
	}()
	log.Info("ftpsgate agent started", zap.String("version", versionString()), zap.String("config", p),
		zap.String("edge", cfg.Edge), zap.Strings("allow_targets", cfg.Targets()), zap.Int("sessions", cfg.Sessions))
	sig := <-sigs
	for ; sig == syscall.SIGHUP; sig = <-sigs {
		agentReload(log, a, p)
	}
	log.Info("agent stopping", zap.Stringer("signal", sig))
	a.Close()
	<-done
	return 0
}

// agentReload reads and checks the agent's configuration at path and, if
// it is valid, gives it to a (Agent.Reload: allow_targets at once for new
// streams, the certificate and the edge for new sessions with the edge);
// if not, every diagnostic is logged and the agent runs on with the
// configuration it had.
func agentReload(log *zap.Logger, a *agent.Agent, path string) {
	cfg, diags := agent.Load(path)
	if diags.HasErrors() {
		logDiags(log, path, onlyErrors(diags))
		log.Error("agent configuration reload refused: running on the previous configuration", zap.String("config", path))
		return
	}
	logDiags(log, path, diags)
	if startOnly := a.Reload(cfg); len(startOnly) > 0 {
		log.Warn("read at start only: restart the agent to apply their changes", zap.Strings("settings", startOnly),
			zap.String("config", path))
	}
	log.Info("agent configuration reloaded: new streams use its allow_targets, new sessions with the edge its certificate",
		zap.String("config", path), zap.String("edge", cfg.Edge), zap.Strings("allow_targets", cfg.Targets()))
}
