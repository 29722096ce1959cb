package config

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/crypto/bcrypt"
)

// The server-wide blocks: audit, timeouts, limits, bans and admin.

// auditOnError names audit.on_error's values.
var auditOnError = enum[AuditOnError]{{name: "continue", value: AuditContinue}, {name: "refuse", value: AuditRefuse}}

// audit compiles the audit block. The directory of each file must exist:
// run would fail to open it.
func (c *compiler) audit(ab *auditBlock, cfg *Config) {
	if ab.File != nil {
		cfg.Audit.File = *ab.File
	}
	if ab.Xferlog != nil {
		cfg.Audit.Xferlog = *ab.Xferlog
		if *ab.Xferlog == "-" || *ab.Xferlog == "" {
			c.errorf(at(ab.XferlogAt, ab.DefRange), "Invalid xferlog", "xferlog must be a file path.")
		}
	}
	for _, f := range []struct {
		path string
		r    *hcl.Range
	}{{cfg.Audit.File, at(ab.FileAt, ab.DefRange)}, {cfg.Audit.Xferlog, at(ab.XferlogAt, ab.DefRange)}} {
		if f.path == "" || f.path == "-" {
			continue
		}
		// (The systemd unit creates /var/log/ftpsgate with LogsDirectory=.)
		if fi, err := os.Stat(filepath.Dir(f.path)); err != nil || !fi.IsDir() {
			c.errorf(f.r, "Missing audit directory",
				"The directory of %s (%s) does not exist: create it, writable by the user ftpsgate runs as.", f.path, filepath.Dir(f.path))
		}
	}
	choose(c, at(ab.OnErrorAt, ab.DefRange), "Invalid on_error", "on_error", ab.OnError, &cfg.Audit.OnError, auditOnError, "")
}

// timeouts compiles the timeouts block.
func (c *compiler) timeouts(tb *timeoutsBlock, cfg *Config) {
	t := &cfg.Timeouts
	for _, d := range []struct {
		name string
		v    *string
		r    hcl.Range
		dst  *time.Duration
	}{
		{"tls_handshake", tb.TLSHandshake, tb.TLSHandshakeAt, &t.TLSHandshake},
		{"login", tb.Login, tb.LoginAt, &t.Login},
		{"idle", tb.Idle, tb.IdleAt, &t.Idle},
		{"passive_accept", tb.PassiveAccept, tb.PassiveAcceptAt, &t.PassiveAccept},
		{"data_stall", tb.DataStall, tb.DataStallAt, &t.DataStall},
		{"backend_dial", tb.BackendDial, tb.BackendDialAt, &t.BackendDial},
		{"backend_greeting", tb.BackendGreeting, tb.BackendGreetingAt, &t.BackendGreeting},
		{"backend_reply", tb.BackendReply, tb.BackendReplyAt, &t.BackendReply},
	} {
		c.duration(at(d.r, tb.DefRange), d.name, d.v, d.dst)
	}
}

// limits compiles the limits block.
func (c *compiler) limits(lb *limitsBlock, cfg *Config) {
	l := &cfg.Limits
	if lb.MaxLine != nil {
		if *lb.MaxLine < 512 || *lb.MaxLine > 1<<20 {
			c.errorf(at(lb.MaxLineAt, lb.DefRange), "Invalid limit",
				"max_line must be between 512 and 1048576 bytes (RFC 959 lines need at least 512).")
		} else {
			l.MaxLine = *lb.MaxLine
		}
	}
	for _, n := range []struct {
		attr string
		v    *int
		r    hcl.Range
		dst  *int
	}{{"max_sessions", lb.MaxSessions, lb.MaxSessionsAt, &l.MaxSessions},
		{"max_sessions_per_ip", lb.MaxSessionsPerIP, lb.MaxSessionsPerIPAt, &l.MaxSessionsPerIP}} {
		if n.v == nil {
			continue
		}
		if *n.v < 0 {
			c.errorf(at(n.r, lb.DefRange), "Invalid limit", "%s must be 0 (no bound) or more.", n.attr)
		}
		*n.dst = *n.v
	}
	if lb.IPv6Prefix != nil {
		if *lb.IPv6Prefix < 1 || *lb.IPv6Prefix > 128 {
			c.errorf(at(lb.IPv6PrefixAt, lb.DefRange), "Invalid limit", "ipv6_prefix must be between 1 and 128 (bits).")
		} else {
			l.IPv6Prefix = *lb.IPv6Prefix
		}
	}
	if v := lb.MaxLingeringData; v != nil {
		if *v < 0 {
			c.errorf(at(lb.MaxLingeringDataAt, lb.DefRange), "Invalid limit",
				"max_lingering_data_legs must be 0 (no data connection lingers) or more.")
		}
		l.MaxLingeringDataLegs = *v
	}
	if v := lb.MaxFileSize; v != nil {
		n, err := ParseSize(*v, false)
		if err != nil {
			c.errorf(at(lb.MaxFileSizeAt, lb.DefRange), "Invalid limit", "max_file_size: %s.", err)
		}
		l.MaxFileSize = n
	}
}

// bans compiles the bans block.
func (c *compiler) bans(bb *bansBlock, cfg *Config) {
	if bb.Failures != nil {
		if *bb.Failures < 0 {
			c.errorf(at(bb.FailuresAt, bb.DefRange), "Invalid bans", "failures must be 0 (bans off) or more.")
		}
		cfg.Bans.Failures = *bb.Failures
	}
	c.duration(at(bb.WindowAt, bb.DefRange), "window", bb.Window, &cfg.Bans.Window)
	c.duration(at(bb.DurationAt, bb.DefRange), "duration", bb.Duration, &cfg.Bans.Duration)
	cfg.Bans.Safelist = c.cidrs(at(bb.SafelistAt, bb.DefRange), "safelist", bb.Safelist)
}

// admin compiles the admin block: its listener's address (the block's
// presence turns it on), pprof and credentials.
func (c *compiler) admin(ab *adminBlock, cfg *Config) {
	cfg.Admin = DefaultAdminAddress
	c.adminAt = at(ab.AddressAt, ab.DefRange)
	if ab.Address != nil {
		cfg.Admin = *ab.Address
		if err := checkHostPort(*ab.Address, true); err != nil {
			c.errorf(c.adminAt, "Invalid admin address", "%s", err)
		}
	}
	cfg.AdminPprof = ab.Pprof != nil && *ab.Pprof
	c.adminAuth(ab, cfg)
}

// adminAuth compiles the admin block's credentials. pprof without them
// is refused: a heap profile holds memory contents (keys, passwords in
// flight). An admin listener on a non-loopback address without them is a
// warning: /status.json names users, client addresses and file paths.
func (c *compiler) adminAuth(ab *adminBlock, cfg *Config) {
	a := &cfg.AdminAuth
	if ab.BearerTokenFile != nil {
		c.bearerToken(at(ab.BearerTokenFileAt, ab.DefRange), *ab.BearerTokenFile, a)
	}
	if bb := ab.BasicAuth; bb != nil {
		switch {
		case bb.User == "" || strings.ContainsAny(bb.User, ":\r\n"):
			c.errorf(at(bb.UserAt, bb.DefRange), "Invalid basic_auth", "user must not be empty, and cannot hold a colon (RFC 7617).")
		default:
			a.BasicUser = bb.User
		}
		if _, err := bcrypt.Cost([]byte(bb.PasswordHash)); err != nil {
			c.errorf(at(bb.PasswordHashAt, bb.DefRange), "Invalid basic_auth",
				"password_hash must be a bcrypt hash (\"$2y$10$…\", from `htpasswd -nbBC 10 USER PASSWORD`): %s", err)
			a.BasicUser = ""
		} else {
			a.BasicHash = []byte(bb.PasswordHash)
		}
	}
	if cfg.AdminPprof && !a.Enabled() {
		c.errorf(at(ab.PprofAt, ab.DefRange), "pprof needs authentication",
			"pprof = true needs bearer_token_file or basic_auth in the admin block: a heap profile holds memory contents.")
	}
	if !a.Enabled() && !LoopbackAddress(cfg.Admin) {
		c.warnf(c.adminAt, "Admin listener without authentication",
			"The admin listener on %s is reachable beyond this machine and requires no credential: /status.json names users, "+
				"client addresses and file paths. Set bearer_token_file or basic_auth, or bind it to 127.0.0.1.", cfg.Admin)
	}
}

// bearerToken reads the admin token from path (set at r) into a.
func (c *compiler) bearerToken(r *hcl.Range, path string, a *AdminAuth) {
	b, err := readSmallFile(path)
	tok := strings.TrimSpace(string(b))
	switch {
	case err != nil:
		c.errorf(r, "Cannot read bearer_token_file", "%s", err)
	case len(tok) < 16:
		c.errorf(r, "Invalid bearer_token_file",
			"%q holds %d characters: a token needs at least 16 (e.g. from `openssl rand -hex 32`).", path, len(tok))
	case strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		c.errorf(r, "Invalid bearer_token_file",
			"%q holds spaces or characters outside printable ASCII; a bearer token cannot carry them (RFC 6750).", path)
	default:
		a.BearerToken = tok
		c.secretFile(r, "bearer_token_file", path, "the admin token")
	}
}

// LoopbackAddress reports whether the host of host:port addr is a
// loopback address or "localhost".
func LoopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
