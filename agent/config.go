package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Config is a loaded agent configuration (agent.hcl). It is not modified
// after Load returns it.
type Config struct {
	// Edge is the host:port of the edge's agent_listener.
	Edge string
	// TLS is the client configuration toward the edge: the agent's
	// certificate, the edge's CA (pinned: the system roots are not
	// used), the name the edge's certificate must carry, TLS 1.3 and
	// the ALPN name.
	TLS *tls.Config
	// Sessions is how many connections to the edge the agent keeps, each
	// carrying any number of streams: more than one, so that a connection
	// being re-established never leaves the edge without an agent.
	Sessions int
	// AllowTargets are the only connections the agent opens: the FTP
	// server's control port and its passive range. Everything else is
	// refused and logged.
	AllowTargets []Target
	// DialTimeout bounds a connection to a target.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TCP connection and TLS handshake with
	// the edge.
	HandshakeTimeout time.Duration
	// HealthAddress, if not empty, is the host:port of an HTTP listener
	// with /healthz and /metrics (Agent.Handler); "" (the default): none.
	HealthAddress string
}

// Target is an address and a range of ports the agent may connect to.
type Target struct {
	Addr        netip.Addr
	First, Last uint16
}

// Permits reports whether ap is inside t.
func (t Target) Permits(ap netip.AddrPort) bool {
	return ap.Addr().Unmap() == t.Addr && t.First <= ap.Port() && ap.Port() <= t.Last
}

func (t Target) String() string {
	if t.First == t.Last {
		return netip.AddrPortFrom(t.Addr, t.First).String()
	}
	return fmt.Sprintf("%s-%d", netip.AddrPortFrom(t.Addr, t.First), t.Last)
}

// Permitted reports whether the configuration lets the agent connect to
// ap.
func (c *Config) Permitted(ap netip.AddrPort) bool {
	for _, t := range c.AllowTargets {
		if t.Permits(ap) {
			return true
		}
	}
	return false
}

// ParseTarget parses "10.0.0.5:21" or "10.0.0.5:40000-40100" ("[::1]:21"
// for IPv6). The host must be an IP address: a name would be resolved at
// each request, and DNS would then decide what the agent reaches.
func ParseTarget(s string) (Target, error) {
	host, ports, err := net.SplitHostPort(s)
	if err != nil {
		if i := strings.LastIndex(s, ":"); i > 0 && strings.Contains(s[i:], "-") {
			host, ports = strings.Trim(s[:i], "[]"), s[i+1:]
			err = nil
		}
	}
	if err != nil {
		return Target{}, fmt.Errorf("%q is not IP:port or IP:first-last", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return Target{}, fmt.Errorf("%q: the host must be an IP address, not %q", s, host)
	}
	lo, hi, found := strings.Cut(ports, "-")
	if !found {
		hi = lo
	}
	first, err1 := strconv.ParseUint(lo, 10, 16)
	last, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return Target{}, fmt.Errorf("%q: ports must be a port or a rising range of ports", s)
	}
	return Target{Addr: a.Unmap(), First: uint16(first), Last: uint16(last)}, nil
}

// The defaults.
const (
	DefaultSessions         = 2
	DefaultDialTimeout      = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

type fileSchema struct {
	Edge               string    `hcl:"edge"`
	EdgeAt             hcl.Range `hcl:"edge,attr_value_range"`
	ServerName         *string   `hcl:"server_name"`
	CAFile             string    `hcl:"ca_file"`
	CAFileAt           hcl.Range `hcl:"ca_file,attr_value_range"`
	CertFile           string    `hcl:"cert_file"`
	CertFileAt         hcl.Range `hcl:"cert_file,attr_value_range"`
	KeyFile            string    `hcl:"key_file"`
	Sessions           *int      `hcl:"sessions"`
	SessionsAt         hcl.Range `hcl:"sessions,attr_value_range"`
	AllowTargets       []string  `hcl:"allow_targets"`
	AllowTargetsAt     hcl.Range `hcl:"allow_targets,attr_value_range"`
	DialTimeout        *string   `hcl:"dial_timeout"`
	DialTimeoutAt      hcl.Range `hcl:"dial_timeout,attr_value_range"`
	HandshakeTimeout   *string   `hcl:"handshake_timeout"`
	HandshakeTimeoutAt hcl.Range `hcl:"handshake_timeout,attr_value_range"`
	HealthAddress      *string   `hcl:"health_address"`
	HealthAddressAt    hcl.Range `hcl:"health_address,attr_value_range"`
}

// Load reads and checks the agent configuration at path; on any problem
// it returns diagnostics naming each one's file and line.
func Load(path string) (*Config, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration", Detail: err.Error()}}
	}
	return Parse(src, path)
}

// Parse compiles agent configuration source; filename names it in
// diagnostics.
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var fs fileSchema
	if diags = gohcl.DecodeBody(file.Body, nil, &fs); diags.HasErrors() {
		return nil, diags
	}
	errorf := func(r hcl.Range, summary, format string, args ...any) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary,
			Detail: fmt.Sprintf(format, args...), Subject: &r})
	}
	cfg := &Config{Sessions: DefaultSessions, DialTimeout: DefaultDialTimeout, HandshakeTimeout: DefaultHandshakeTimeout}
	host, _, err := net.SplitHostPort(fs.Edge)
	if err != nil || host == "" {
		errorf(fs.EdgeAt, "Invalid edge", "edge must be the host:port of the edge's agent_listener, not %q.", fs.Edge)
	}
	cfg.Edge = fs.Edge
	serverName := host
	if fs.ServerName != nil {
		serverName = *fs.ServerName
	}
	roots := x509.NewCertPool()
	if pem, err := os.ReadFile(fs.CAFile); err != nil {
		errorf(fs.CAFileAt, "Cannot read ca_file", "%s", err)
	} else if !roots.AppendCertsFromPEM(pem) {
		errorf(fs.CAFileAt, "Invalid ca_file", "%s holds no PEM certificate.", fs.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(fs.CertFile, fs.KeyFile)
	if err != nil {
		errorf(fs.CertFileAt, "Cannot load certificate", "Loading cert_file %q and key_file %q: %s", fs.CertFile, fs.KeyFile, err)
	}
	cfg.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS13, // both ends are ftpsgate
		NextProtos:   []string{ALPN},
	}
	if fs.Sessions != nil {
		if *fs.Sessions < 1 || *fs.Sessions > 16 {
			errorf(fs.SessionsAt, "Invalid sessions", "sessions must be from 1 to 16, not %d.", *fs.Sessions)
		}
		cfg.Sessions = *fs.Sessions
	}
	if len(fs.AllowTargets) == 0 {
		errorf(fs.AllowTargetsAt, "Invalid allow_targets",
			"allow_targets must name the FTP server's control port and its passive range (\"10.0.0.5:21\", \"10.0.0.5:40000-40100\").")
	}
	for _, s := range fs.AllowTargets {
		t, err := ParseTarget(s)
		if err != nil {
			errorf(fs.AllowTargetsAt, "Invalid allow_targets", "%s", err)
			continue
		}
		if t.Addr.IsUnspecified() {
			errorf(fs.AllowTargetsAt, "Invalid allow_targets", "%q names every address; name the FTP server's.", s)
			continue
		}
		cfg.AllowTargets = append(cfg.AllowTargets, t)
	}
	duration := func(r hcl.Range, name string, v *string, dst *time.Duration) {
		if v == nil {
			return
		}
		d, err := time.ParseDuration(*v)
		if err != nil || d <= 0 {
			errorf(r, "Invalid duration", "%s must be a positive duration such as \"10s\", not %q.", name, *v)
			return
		}
		*dst = d
	}
	if fs.HealthAddress != nil {
		if _, _, err := net.SplitHostPort(*fs.HealthAddress); err != nil {
			errorf(fs.HealthAddressAt, "Invalid health_address", "health_address must be host:port, not %q.", *fs.HealthAddress)
		}
		cfg.HealthAddress = *fs.HealthAddress
	}
	duration(fs.DialTimeoutAt, "dial_timeout", fs.DialTimeout, &cfg.DialTimeout)
	duration(fs.HandshakeTimeoutAt, "handshake_timeout", fs.HandshakeTimeout, &cfg.HandshakeTimeout)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}
