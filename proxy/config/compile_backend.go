package config

import (
	"net"

	"github.com/hashicorp/hcl/v2"
)

// The names of a backend's enumerated attributes.
var (
	backendTLSModes = enum[BackendTLS]{{name: "none", value: BackendPlain}, {name: "explicit", value: BackendExplicit},
		{name: "implicit", value: BackendImplicit}}
	proxyProtocolVersions = enum[ProxyProtocolVersion]{{name: "v1", value: ProxyProtocolV1}, {name: "v2", value: ProxyProtocolV2},
		{name: "none", value: NoProxyProtocol}}
	dataModes = enum[bool]{{name: "passive", value: false}, {name: "active", value: true}}
	balances  = enum[Balance]{{name: "round_robin", value: RoundRobin}, {name: "least_conn", value: LeastConn},
		{name: "sticky_user", value: StickyUser}}
)

// backend compiles a backend block into cfg.Backends, unless a backend of
// its name came before.
func (c *compiler) backend(bb *backendBlock, cfg *Config) {
	if _, dup := cfg.Backends[bb.Name]; dup {
		c.errorf(&bb.DefRange, "Duplicate backend", "A backend named %q is already defined.", bb.Name)
		return
	}
	b := defaultBackend()
	b.Name = bb.Name
	c.servers(bb, b)
	choose(c, at(bb.TLSAt, bb.DefRange), "Invalid backend TLS mode", "tls", bb.TLS, &b.TLS, backendTLSModes, "")
	c.backendTLS(bb, b)
	b.SendHost = bb.SendHost != nil && *bb.SendHost
	choose(c, at(bb.ProxyProtocolAt, bb.DefRange), "Invalid proxy_protocol", "proxy_protocol", bb.ProxyProtocol,
		&b.ProxyProtocol, proxyProtocolVersions, "")
	if bb.ProxyProtocolTLVs != nil && *bb.ProxyProtocolTLVs {
		b.ProxyProtocolTLVs = true
		if b.ProxyProtocol != ProxyProtocolV2 {
			c.errorf(at(bb.ProxyProtocolTLVsAt, bb.DefRange), "Invalid proxy_protocol_tlvs",
				"TLVs exist only in PROXY protocol v2: set proxy_protocol = \"v2\".")
		}
	}
	choose(c, at(bb.DataModeAt, bb.DefRange), "Invalid data mode", "data_mode", bb.DataMode, &b.ActiveData, dataModes, "")
	c.backendLimits(bb, b)
	cfg.Backends[bb.Name] = b
	c.backends = append(c.backends, bb)
}

// servers compiles a backend's address, or its pool: servers, balance and
// health_check.
func (c *compiler) servers(bb *backendBlock, b *Backend) {
	switch {
	case bb.Address != nil && bb.Servers != nil:
		c.errorf(at(bb.ServersAt, bb.DefRange), "Invalid backend", "Set address (one server) or servers (a pool), not both.")
		return
	case bb.Address != nil:
		b.Servers = []string{*bb.Address}
	case len(bb.Servers) == 0:
		c.errorf(&bb.DefRange, "Invalid backend", "A backend needs an address, or servers for a pool.")
		return
	default:
		b.Servers = bb.Servers
	}
	r := at(bb.ServersAt, bb.DefRange)
	if bb.Address != nil {
		r = at(bb.AddressAt, bb.DefRange)
	}
	seen := map[string]bool{}
	for _, a := range b.Servers {
		if err := checkHostPort(a, false); err != nil {
			c.errorf(r, "Invalid backend address", "%s", err)
		}
		if seen[a] {
			c.errorf(r, "Invalid backend", "Server %q is listed twice.", a)
		}
		seen[a] = true
	}
	b.Address = b.Servers[0]
	choose(c, at(bb.BalanceAt, bb.DefRange), "Invalid balance", "balance", bb.Balance, &b.Balance, balances, "")
	if hb := bb.HealthCheck; hb != nil {
		b.HealthCheck = c.healthCheck(hb)
	}
}

// healthCheck compiles a backend's health_check block.
func (c *compiler) healthCheck(hb *healthCheckBlock) *HealthCheck {
	hc := defaultHealthCheck()
	c.duration(at(hb.IntervalAt, hb.DefRange), "interval", hb.Interval, &hc.Interval)
	c.duration(at(hb.TimeoutAt, hb.DefRange), "timeout", hb.Timeout, &hc.Timeout)
	c.bounded(at(hb.RiseAt, hb.DefRange), "Invalid health check", "rise", hb.Rise, &hc.Rise, 1, 100, "1 to 100")
	c.bounded(at(hb.FallAt, hb.DefRange), "Invalid health check", "fall", hb.Fall, &hc.Fall, 1, 100, "1 to 100")
	return hc
}

// bounded sets *dst to *v, if v is set; outside [least, most] (which what
// words) it is an error, and set all the same.
func (c *compiler) bounded(r *hcl.Range, summary, name string, v *int, dst *int, least, most int, what string) {
	if v == nil {
		return
	}
	if *v < least || *v > most {
		c.errorf(r, summary, "%s must be from %s, not %d.", name, what, *v)
	}
	*dst = *v
}

// backendLimits compiles max_sessions, queue_timeout, max_dials and
// retries.
func (c *compiler) backendLimits(bb *backendBlock, b *Backend) {
	l := &b.Limits
	const summary = "Invalid backend limit"
	c.bounded(at(bb.MaxSessionsAt, bb.DefRange), summary, "max_sessions", bb.MaxSessions, &l.MaxSessions, 0, 1<<20, "0 (no bound) to 1048576")
	c.bounded(at(bb.MaxDialsAt, bb.DefRange), summary, "max_dials", bb.MaxDials, &l.MaxDials, 1, 1<<16, "1 to 65536")
	c.bounded(at(bb.RetriesAt, bb.DefRange), summary, "retries", bb.Retries, &l.Retries, 0, 10, "0 (none) to 10")
	c.duration(at(bb.QueueTimeoutAt, bb.DefRange), "queue_timeout", bb.QueueTimeout, &l.QueueTimeout)
}

// backendTLS compiles a backend's TLS settings; they are refused on a
// plain backend, where they would silently do nothing.
func (c *compiler) backendTLS(bb *backendBlock, b *Backend) {
	if b.TLS == BackendPlain {
		for _, s := range []struct {
			name string
			set  bool
			r    hcl.Range
		}{
			{"ca_file", bb.CAFile != nil, bb.CAFileAt}, {"server_name", bb.ServerName != nil, bb.ServerNameAt},
			{"insecure_skip_verify", bb.InsecureSkipVerify != nil, bb.InsecureSkipVerifyAt},
			{"tls_min_version", bb.TLSMinVersion != nil, bb.TLSMinVersionAt},
			{"tls_max_version", bb.TLSMaxVersion != nil, bb.TLSMaxVersionAt},
		} {
			if s.set {
				c.errorf(at(s.r, bb.DefRange), "TLS setting on a plain backend",
					"%s applies only to a backend with tls = \"explicit\" or \"implicit\".", s.name)
			}
		}
		return
	}
	conf := defaultBackendTLS()
	host, _, _ := net.SplitHostPort(b.Address)
	conf.ServerName = host
	b.ServerNameFromAddress = bb.ServerName == nil
	if bb.ServerName != nil {
		if *bb.ServerName == "" {
			c.errorf(at(bb.ServerNameAt, bb.DefRange), "Invalid server name", "server_name must not be empty.")
		}
		conf.ServerName = *bb.ServerName
	}
	if bb.CAFile != nil {
		r := at(bb.CAFileAt, bb.DefRange)
		conf.RootCAs = c.pemPool(r, "ca_file", *bb.CAFile)
	}
	if bb.InsecureSkipVerify != nil && *bb.InsecureSkipVerify {
		conf.InsecureSkipVerify = true
		b.InsecureSkipVerify = true
	}
	choose(c, at(bb.TLSMinVersionAt, bb.DefRange), "Invalid TLS version", "tls_min_version", bb.TLSMinVersion,
		&conf.MinVersion, tlsVersions, oldVersionsAreBad)
	choose(c, at(bb.TLSMaxVersionAt, bb.DefRange), "Invalid TLS version", "tls_max_version", bb.TLSMaxVersion,
		&conf.MaxVersion, tlsVersions, oldVersionsAreBad)
	if conf.MinVersion > conf.MaxVersion {
		c.errorf(at(bb.TLSMaxVersionAt, bb.DefRange), "Invalid TLS versions", "tls_max_version is below tls_min_version.")
	}
	b.TLSConfig = conf
}

// checkQueueTimeouts warns of a backend's queue_timeout at or past the
// login timeout, which would end every wait first.
func (c *compiler) checkQueueTimeouts(cfg *Config) {
	for _, bb := range c.backends {
		if b := cfg.Backends[bb.Name]; bb.QueueTimeout != nil && b.Limits.QueueTimeout >= cfg.Timeouts.Login {
			c.warnf(at(bb.QueueTimeoutAt, bb.DefRange), "Queue timeout past the login timeout",
				"Backend %q: queue_timeout (%s) is not less than timeouts.login (%s), which ends every wait first: "+
					"clients would be told 421 Login timeout, not that the server is busy.",
				bb.Name, b.Limits.QueueTimeout, cfg.Timeouts.Login)
		}
	}
}
