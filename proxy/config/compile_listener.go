package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// The names of a listener's enumerated attributes; tlsVersions serves
// backends too.
var (
	listenerTLSModes  = enum[TLSMode]{{name: "explicit", value: Explicit}, {name: "implicit", value: Implicit}}
	uploadCloseNotify = enum[UploadCloseNotify]{{name: "require", value: RequireCloseNotify}, {name: "warn", value: WarnCloseNotify}}
	tlsVersions       = enum[uint16]{{name: "1.2", value: tls.VersionTLS12}, {name: "1.3", value: tls.VersionTLS13}}
)

// oldVersionsAreBad ends the error of a TLS version that is not allowed.
const oldVersionsAreBad = ": older versions are broken."

// listener compiles a listener block into cfg.Listeners, unless a
// listener of its name came before.
func (c *compiler) listener(lb *listenerBlock, cfg *Config) {
	if slices.ContainsFunc(cfg.Listeners, func(l *Listener) bool { return l.Name == lb.Name }) {
		c.errorf(&lb.DefRange, "Duplicate listener", "A listener named %q is already defined.", lb.Name)
		return
	}
	l := defaultListener()
	l.Name, l.Address = lb.Name, lb.Address
	if lb.RequireSessionReuse != nil {
		l.RequireSessionReuse = *lb.RequireSessionReuse
	}
	l.ActiveAllowLocal = lb.ActiveAllowLocal != nil && *lb.ActiveAllowLocal
	if err := checkHostPort(lb.Address, true); err != nil {
		c.errorf(at(lb.AddressAt, lb.DefRange), "Invalid listener address", "%s", err)
	}
	choose(c, at(lb.UploadCloseNotifyAt, lb.DefRange), "Invalid upload_close_notify", "upload_close_notify",
		lb.UploadCloseNotify, &l.UploadCloseNotify, uploadCloseNotify, "")
	choose(c, at(lb.TLSAt, lb.DefRange), "Invalid TLS mode", "tls", lb.TLS, &l.TLS, listenerTLSModes, "")
	choose(c, at(lb.TLSMinVersionAt, lb.DefRange), "Invalid TLS version", "tls_min_version", lb.TLSMinVersion,
		&l.MinTLSVersion, tlsVersions, oldVersionsAreBad)
	l.CipherSuites = c.cipherSuites(lb, l)
	c.clientAuth(lb, l)
	c.listenerACME(lb, l, cfg)
	pr, err := ParsePortRange(lb.PassivePorts)
	if err != nil {
		c.errorf(at(lb.PassivePortsAt, lb.DefRange), "Invalid passive port range", "%s", err)
	}
	l.PassivePorts = pr
	c.publicAddress(lb, l)
	c.passiveOverrides(lb, l)
	if lb.Greeting != nil {
		if strings.ContainsAny(*lb.Greeting, "\r\n\x00") {
			c.errorf(at(lb.GreetingAt, lb.DefRange), "Invalid greeting", "greeting must be one line.")
		} else {
			l.Greeting = *lb.Greeting
		}
	}
	if pb := lb.ProxyProtocol; pb != nil {
		l.ProxyProtocol = c.proxyProtocol(pb)
	}
	c.addressFilter(lb, l)
	c.rate(at(lb.RateDownAt, lb.DefRange), "rate_down", lb.RateDown, &l.RateDown)
	c.rate(at(lb.RateUpAt, lb.DefRange), "rate_up", lb.RateUp, &l.RateUp)
	b, ok := cfg.Backends[lb.Backend]
	if !ok {
		c.errorf(at(lb.BackendAt, lb.DefRange), "Unknown backend",
			"Listener %q names backend %q, which no backend block defines.", lb.Name, lb.Backend)
	}
	l.Backend = b
	l.Scan = c.scanNamed(cfg, at(lb.ScanAt, lb.DefRange), "Listener "+strconv.Quote(lb.Name), lb.Scan)
	cfg.Listeners = append(cfg.Listeners, l)
	c.listeners = append(c.listeners, lb)
}

// certificate loads a listener's key pair, and warns when the key file
// is readable by others.
func (c *compiler) certificate(lb *listenerBlock, l *Listener) {
	l.CertFile, l.KeyFile = lb.CertFile, lb.KeyFile
	cert, err := LoadKeyPair(lb.CertFile, lb.KeyFile)
	if err != nil {
		c.errorf(at(lb.CertFileAt, lb.DefRange), "Cannot load certificate",
			"Loading cert_file %q and key_file %q: %s", lb.CertFile, lb.KeyFile, err)
		return
	}
	l.Certificate = &cert
	c.secretFile(at(lb.KeyFileAt, lb.DefRange), "key_file", lb.KeyFile, "the private key")
}

// publicAddress compiles public_address: an IPv4 address, since PASV
// replies carry only IPv4.
func (c *compiler) publicAddress(lb *listenerBlock, l *Listener) {
	if lb.PublicAddress == nil || *lb.PublicAddress == "" {
		return
	}
	r := at(lb.PublicAddressAt, lb.DefRange)
	a, err := netip.ParseAddr(*lb.PublicAddress)
	switch {
	case err != nil:
		c.errorf(r, "Invalid public address", "public_address must be an IP address: %s", err)
	case !a.Unmap().Is4():
		c.errorf(r, "Invalid public address",
			"public_address is advertised in PASV replies, which carry only IPv4; %s is not IPv4.", a)
	default:
		l.PublicAddress = a.Unmap()
	}
}

// proxyProtocol compiles a listener's proxy_protocol block.
func (c *compiler) proxyProtocol(pb *proxyProtocolBlock) *ProxyProtocol {
	pp := defaultProxyProtocol()
	pp.Trusted = c.cidrs(at(pb.TrustedCIDRsAt, pb.DefRange), "trusted_cidrs", &pb.TrustedCIDRs)
	if len(pb.TrustedCIDRs) == 0 {
		c.errorf(at(pb.TrustedCIDRsAt, pb.DefRange), "Invalid proxy_protocol",
			"trusted_cidrs must name the load balancers whose PROXY headers are believed.")
	}
	c.duration(at(pb.HeaderTimeoutAt, pb.DefRange), "header_timeout", pb.HeaderTimeout, &pp.HeaderTimeout)
	pp.AllowDirect = pb.AllowDirect != nil && *pb.AllowDirect
	return pp
}

// addressFilter compiles allow_cidrs and deny_cidrs; an allowed range
// inside a denied one is unreachable.
func (c *compiler) addressFilter(lb *listenerBlock, l *Listener) {
	allowAt := at(lb.AllowCIDRsAt, lb.DefRange)
	l.AllowCIDRs = c.cidrs(allowAt, "allow_cidrs", lb.AllowCIDRs)
	l.DenyCIDRs = c.cidrs(at(lb.DenyCIDRsAt, lb.DefRange), "deny_cidrs", lb.DenyCIDRs)
	for _, a := range l.AllowCIDRs {
		for _, d := range l.DenyCIDRs {
			if d.Bits() <= a.Bits() && d.Contains(a.Addr()) {
				c.errorf(allowAt, "Unreachable rule",
					"allow_cidrs entry %s lies inside deny_cidrs entry %s, which wins.", a, d)
			}
		}
	}
}

// cipherSuites compiles a listener's tls_cipher_suites: Go's names
// (tls.CipherSuiteName) of TLS 1.2 suites that Go does not mark insecure.
// A suite outside DefaultCipherSuites is a warning naming the listener:
// it is there for some old client, and should go when that client does.
func (c *compiler) cipherSuites(lb *listenerBlock, l *Listener) []uint16 {
	if lb.TLSCipherSuites == nil {
		return l.CipherSuites
	}
	r := at(lb.TLSCipherSuitesAt, lb.DefRange)
	if len(*lb.TLSCipherSuites) == 0 {
		c.errorf(r, "Invalid tls_cipher_suites",
			"tls_cipher_suites is empty: leave it out for the default (ECDHE with AES-GCM or ChaCha20-Poly1305).")
		return l.CipherSuites
	}
	if l.MinTLSVersion == tls.VersionTLS13 {
		c.errorf(r, "Invalid tls_cipher_suites",
			"tls_cipher_suites chooses TLS 1.2 suites, and tls_min_version = \"1.3\" turns TLS 1.2 off.")
	}
	var out []uint16
	var extra []string
	for i, name := range *lb.TLSCipherSuites {
		cs, ok := c.cipherSuite(c.elemRange(r, i), name, out)
		if !ok {
			continue
		}
		out = append(out, cs.ID)
		if !slices.Contains(DefaultCipherSuites(), cs.ID) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		c.warnf(r, "Weak cipher suites",
			"Listener %q accepts %s, outside Mozilla's intermediate profile: CBC with a SHA-1 MAC, open to "+
				"Lucky Thirteen-class padding attacks (CVE-2013-0169). Keep them only while an old client needs them.",
			l.Name, strings.Join(extra, ", "))
	}
	return out
}

// cipherSuite is the TLS 1.2 suite of Go's name name, unless it is
// insecure, unknown, a TLS 1.3 suite or already in chosen: then the
// problem is reported at r.
func (c *compiler) cipherSuite(r *hcl.Range, name string, chosen []uint16) (*tls.CipherSuite, bool) {
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.Name == name {
			c.errorf(r, "Insecure cipher suite",
				"%s is one Go marks insecure (RC4, 3DES, CBC-SHA256, or RSA key exchange without forward secrecy); it cannot be enabled.", name)
			return nil, false
		}
	}
	i := slices.IndexFunc(tls.CipherSuites(), func(cs *tls.CipherSuite) bool { return cs.Name == name })
	switch {
	case i < 0:
		c.errorf(r, "Unknown cipher suite",
			"%q is not a cipher suite name of Go's crypto/tls (such as \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\").", name)
		return nil, false
	case !slices.Contains(tls.CipherSuites()[i].SupportedVersions, tls.VersionTLS12):
		c.errorf(r, "Invalid cipher suite",
			"%s is a TLS 1.3 suite: Go does not let TLS 1.3 suites be chosen (all three are always on).", name)
		return nil, false
	case slices.Contains(chosen, tls.CipherSuites()[i].ID):
		c.errorf(r, "Invalid tls_cipher_suites", "%s is listed twice.", name)
		return nil, false
	}
	return tls.CipherSuites()[i], true
}

// ParsePortRange parses "first-last" (or a single port) into a range of
// unprivileged ports.
func ParsePortRange(s string) (PortRange, error) {
	a, b, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		b = a
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("passive_ports must look like \"50000-50999\", not %q", s)
	}
	if first < 1024 || last < first {
		return PortRange{}, fmt.Errorf("passive_ports %q must be a rising range of ports from 1024 to 65535", s)
	}
	return PortRange{uint16(first), uint16(last)}, nil
}

// checkOverlaps refuses two listeners whose passive ranges overlap: each
// listener owns its range, and two owners would steal each other's ports.
func (c *compiler) checkOverlaps(cfg *Config) {
	for i, a := range cfg.Listeners {
		for _, b := range cfg.Listeners[:i] {
			if a.PassivePorts.Len() > 0 && b.PassivePorts.Len() > 0 &&
				a.PassivePorts.First <= b.PassivePorts.Last && b.PassivePorts.First <= a.PassivePorts.Last {
				lb := c.listeners[i]
				c.errorf(at(lb.PassivePortsAt, lb.DefRange), "Overlapping passive ranges",
					"Listener %q's passive_ports %s overlap listener %q's %s.", a.Name, a.PassivePorts, b.Name, b.PassivePorts)
			}
		}
	}
}

// socket is a host:port as the checks below compare them: a host of ""
// (or 0.0.0.0, ::) takes every address.
type socket struct {
	host string
	port uint16
}

func parseSocket(s string) (socket, bool) {
	host, port, err := net.SplitHostPort(s)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil {
		return socket{}, false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() {
			host = ""
		} else {
			host = a.Unmap().String()
		}
	}
	return socket{host, uint16(p)}, true
}

// meets reports whether a socket bound at a and one at b would take the
// same connections: same port, and the same host or a wildcard.
func (a socket) meets(b socket) bool {
	return a.port == b.port && a.port != 0 && (a.host == b.host || a.host == "" || b.host == "")
}

// bound is an address the proxy listens on, for checkSockets.
type bound struct {
	what string
	s    socket
	r    *hcl.Range
}

// checkSockets refuses what validate used to pass and run would then hit:
// two listeners on one address, a control or admin port inside a passive
// range, and a backend server that is the proxy's own listener (every
// session would loop through the proxy until it runs out of sessions).
func (c *compiler) checkSockets(cfg *Config) {
	var binds []bound
	for i, l := range cfg.Listeners {
		if s, ok := parseSocket(l.Address); ok {
			lb := c.listeners[i]
			binds = append(binds, bound{fmt.Sprintf("listener %q", l.Name), s, at(lb.AddressAt, lb.DefRange)})
		}
	}
	if s, ok := parseSocket(cfg.Admin); ok && cfg.Admin != "" {
		binds = append(binds, bound{"the admin listener", s, c.adminAt})
	}
	binds = append(binds, c.acmeSockets(cfg)...)
	if al := cfg.AgentListener; al != nil {
		if s, ok := parseSocket(al.Address); ok {
			binds = append(binds, bound{"the agent listener", s, c.agentAt})
		}
	}
	for i, a := range binds {
		for _, b := range binds[:i] {
			if a.s.meets(b.s) {
				c.errorf(a.r, "Address in use twice", "%s and %s both listen on port %d of the same address.", a.what, b.what, a.s.port)
			}
		}
	}
	for i, l := range cfg.Listeners {
		lhost, ok := parseSocket(l.Address)
		if !ok {
			continue
		}
		for _, b := range binds {
			if l.PassivePorts.First <= b.s.port && b.s.port <= l.PassivePorts.Last && (b.s.host == lhost.host || b.s.host == "" || lhost.host == "") {
				lb := c.listeners[i]
				c.errorf(at(lb.PassivePortsAt, lb.DefRange), "Passive range takes a listening port",
					"Listener %q's passive_ports %s include port %d, where %s listens.", l.Name, l.PassivePorts, b.s.port, b.what)
			}
		}
	}
	c.checkLoops(cfg, binds)
}

// checkLoops refuses a backend server that is one of the proxy's own
// listeners.
func (c *compiler) checkLoops(cfg *Config, binds []bound) {
	for _, bb := range c.backends {
		b := cfg.Backends[bb.Name]
		for _, addr := range b.Servers {
			s, ok := parseSocket(addr)
			if !ok {
				continue
			}
			for _, l := range binds {
				loop := l.s.port == s.port && (l.s.host == s.host || (l.s.host == "" && isLocalHost(s.host)))
				if loop && l.what != "the admin listener" {
					c.errorf(&bb.DefRange, "Backend is the proxy itself",
						"Backend %q's server %s is %s of this proxy: sessions would loop through it. Point it at the FTP server.", bb.Name, addr, l.what)
				}
			}
		}
	}
}

// isLocalHost reports whether host names this machine for certain:
// loopback, or localhost.
func isLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
