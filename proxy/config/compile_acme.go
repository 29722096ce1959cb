package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// acme compiles an acme block into cfg.ACME, unless one of its name came
// before.
func (c *compiler) acme(ab *acmeBlock, cfg *Config) {
	if cfg.ACMEByName(ab.Name) != nil {
		c.errorf(&ab.DefRange, "Duplicate acme block", "An acme block named %q is already defined.", ab.Name)
		return
	}
	a := defaultACME()
	a.Name = ab.Name
	c.acmeDomains(ab, a, cfg)
	if ab.Email != nil {
		a.Email = strings.TrimSpace(*ab.Email)
		if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \r\n,<>")) {
			c.errorf(at(ab.EmailAt, ab.DefRange), "Invalid email", "email must be one address such as \"ops@example.com\", not %q.", a.Email)
		}
	}
	if a.Email == "" {
		// certmagic remembers, for the whole process, the account email
		// the first block without one ended up with; a second block
		// without one then registers as "mailto:default", which CAs
		// refuse, and never obtains a certificate.
		for _, o := range cfg.ACME {
			if o.Email == "" {
				c.errorf(&ab.DefRange, "Missing email",
					"acme %q and acme %q both have no email: with several acme blocks, give each its email (certmagic would register the second with an invalid one).", o.Name, ab.Name)
				break
			}
		}
	}
	if ab.Directory != nil {
		a.Directory = *ab.Directory
		u, err := url.Parse(a.Directory)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			c.errorf(at(ab.DirectoryAt, ab.DefRange), "Invalid directory",
				"directory must be the https URL of the CA's ACME directory (such as %q), not %q.", DefaultACMEDirectory, a.Directory)
		}
	}
	if ab.CARoots != nil {
		a.CARootsFile = *ab.CARoots
		a.CARoots = c.pemPool(at(ab.CARootsAt, ab.DefRange), "ca_roots", a.CARootsFile)
	}
	if ab.Storage != nil {
		a.Storage = *ab.Storage
		if !filepath.IsAbs(a.Storage) {
			c.errorf(at(ab.StorageAt, ab.DefRange), "Invalid storage",
				"storage must be an absolute directory path (it holds the certificates' private keys), not %q.", a.Storage)
		}
	}
	if ab.StorageRedis != nil {
		a.StorageRedis = *ab.StorageRedis
		if a.StorageRedis && ab.Storage != nil {
			c.errorf(at(ab.StorageRedisAt, ab.DefRange), "Two storages",
				"acme %q sets both storage and storage_redis = true: choose one.", ab.Name)
		}
	}
	if eb := ab.EAB; eb != nil {
		a.EAB = c.externalAccount(eb)
	}
	for _, ch := range []struct {
		name string
		b    *challengeBlock
		dst  *string
	}{{"http01", ab.HTTP01, &a.HTTP01}, {"tls_alpn01", ab.TLSALPN01, &a.TLSALPN01}} {
		if ch.b == nil {
			continue
		}
		*ch.dst = ch.b.Address
		r := at(ch.b.AddressAt, ch.b.DefRange)
		if err := checkHostPort(ch.b.Address, true); err != nil {
			c.errorf(r, "Invalid "+ch.name+" address", "%s", err)
		} else if strings.HasSuffix(ch.b.Address, ":0") {
			c.errorf(r, "Invalid "+ch.name+" address", "%q needs a port: the CA's connections are forwarded to it.", ch.b.Address)
		}
	}
	if a.HTTP01 != "" && a.TLSALPN01 != "" {
		h1, _, _ := net.SplitHostPort(a.HTTP01)
		h2, _, _ := net.SplitHostPort(a.TLSALPN01)
		if h1 != h2 {
			// certmagic takes one host for both (ACMEIssuer.ListenHost),
			// and binds a challenge port itself where it finds none bound.
			c.errorf(at(ab.TLSALPN01.AddressAt, ab.TLSALPN01.DefRange), "Invalid tls_alpn01 address",
				"The http01 (%s) and tls_alpn01 (%s) listeners of one acme block must have the same host.", a.HTTP01, a.TLSALPN01)
		}
	}
	if ab.DNS01 != nil {
		a.DNS01 = c.dns01(ab.DNS01)
		if a.HTTP01 != "" || a.TLSALPN01 != "" {
			// certmagic uses DNS-01 alone when it has a DNS solver.
			c.errorf(&ab.DNS01.DefRange, "Two kinds of challenge",
				"acme %q has a dns01 block and an http01 or tls_alpn01 block: DNS-01 is used alone, so remove the others "+
					"(or put the domains that need them in an acme block of their own).", ab.Name)
		}
	}
	if ab.OnDemand != nil {
		a.OnDemand = c.onDemand(ab.OnDemand)
	}
	if a.HTTP01 == "" && a.TLSALPN01 == "" && ab.DNS01 == nil {
		c.errorf(&ab.DefRange, "No ACME challenge",
			"acme %q needs an http01, a tls_alpn01 or a dns01 block: the CA must reach one of the first two (on port 80 or 443 "+
				"of each domain), or find a TXT record set through the third, to validate the domains. FTP's own ports never "+
				"answer a challenge.", ab.Name)
	}
	cfg.ACME = append(cfg.ACME, a)
	c.acmeBlocks = append(c.acmeBlocks, ab)
}

// acmeDomains compiles an acme block's domains: DNS names, lower case,
// each in one acme block only (two would race for one certificate).
// Wildcards ("*." and a name) need the DNS-01 challenge, which HTTP-01
// and TLS-ALPN-01 cannot replace (RFC 8555 §7.1.3).
func (c *compiler) acmeDomains(ab *acmeBlock, a *ACME, cfg *Config) {
	r := at(ab.DomainsAt, ab.DefRange)
	if len(ab.Domains) == 0 {
		c.errorf(r, "Invalid domains", "domains must name at least one DNS name, such as [\"ftp.example.com\"].")
	}
	for i, d := range ab.Domains {
		er := c.elemRange(r, i)
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		switch {
		case strings.Contains(d, "*") && ab.DNS01 == nil:
			c.errorf(er, "Invalid domain", "%q is a wildcard: it needs the DNS-01 challenge (a dns01 block); "+
				"HTTP-01 and TLS-ALPN-01 cannot validate it (RFC 8555 §7.1.3).", d)
			continue
		case !validDNSName(strings.TrimPrefix(d, "*.")):
			c.errorf(er, "Invalid domain", "%q is not a DNS name such as \"ftp.example.com\".", d)
			continue
		case slices.Contains(a.Domains, d):
			c.errorf(er, "Invalid domain", "%q is listed twice.", d)
			continue
		}
		for _, o := range cfg.ACME {
			if slices.Contains(o.Domains, d) {
				c.errorf(er, "Invalid domain", "%q is also in acme %q: one block must own each name.", d, o.Name)
			}
		}
		a.Domains = append(a.Domains, d)
	}
}

// validDNSName reports whether s is a DNS name of at least two labels,
// each of letters, digits and inner hyphens (RFC 1123), and not an IP
// address.
func validDNSName(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	tld := labels[len(labels)-1]
	return strings.Trim(tld, "0123456789") != "" // 192.0.2.1 is an address
}

// externalAccount compiles an eab block: the key id, and the MAC key
// from hmac_file (base64url, as CAs hand it out).
func (c *compiler) externalAccount(eb *eabBlock) *ACMEExternalAccount {
	e := &ACMEExternalAccount{KeyID: eb.KeyID, HMACFile: eb.HMACFile}
	if strings.TrimSpace(eb.KeyID) == "" {
		c.errorf(at(eb.KeyIDAt, eb.DefRange), "Invalid eab", "key_id must not be empty.")
	}
	r := at(eb.HMACFileAt, eb.DefRange)
	b, err := readSmallFile(eb.HMACFile)
	if err != nil {
		c.errorf(r, "Cannot read hmac_file", "%s", err)
		return e
	}
	key := strings.TrimSpace(string(b))
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(key, "=")); err != nil || key == "" {
		c.errorf(r, "Invalid hmac_file", "%q must hold the CA's MAC key, base64url-encoded as the CA gave it.", eb.HMACFile)
		return e
	}
	e.HMACKey = key
	c.secretFile(r, "hmac_file", eb.HMACFile, "the ACME account's MAC key")
	return e
}

// listenerACME compiles a listener's acme attribute: the block it names
// replaces cert_file and key_file, and exactly one of the two ways is
// set.
func (c *compiler) listenerACME(lb *listenerBlock, l *Listener, cfg *Config) {
	files := lb.CertFile != "" || lb.KeyFile != ""
	switch {
	case lb.ACME != nil && files:
		c.errorf(at(lb.ACMEAt, lb.DefRange), "Two certificate sources",
			"Listener %q sets both acme and cert_file/key_file: choose one.", lb.Name)
	case lb.ACME == nil && !files:
		c.errorf(&lb.DefRange, "No certificate",
			"Listener %q needs cert_file and key_file, or acme = \"NAME\" naming an acme block.", lb.Name)
	case lb.ACME == nil:
		c.certificate(lb, l)
	default:
		l.ACME = cfg.ACMEByName(*lb.ACME)
		if l.ACME == nil {
			c.errorf(at(lb.ACMEAt, lb.DefRange), "Unknown acme block",
				"Listener %q names acme %q, which no acme block defines.", lb.Name, *lb.ACME)
		}
	}
}

// acmeSockets are the challenge listeners' addresses, each once (acme
// blocks may share one), for checkSockets.
func (c *compiler) acmeSockets(cfg *Config) []bound {
	var binds []bound
	seen := map[string]bool{}
	for i, a := range cfg.ACME {
		ab := c.acmeBlocks[i]
		for _, ch := range []struct {
			name, addr string
			b          *challengeBlock
		}{{"http01", a.HTTP01, ab.HTTP01}, {"tls_alpn01", a.TLSALPN01, ab.TLSALPN01}} {
			s, ok := parseSocket(ch.addr)
			if ch.addr == "" || !ok || seen[ch.name+" "+ch.addr] {
				continue
			}
			seen[ch.name+" "+ch.addr] = true
			binds = append(binds, bound{"the " + ch.name + " listener of acme " + `"` + a.Name + `"`, s, at(ch.b.AddressAt, ch.b.DefRange)})
		}
	}
	return binds
}

// dns01 compiles a dns01 block: the provider it names, built from its
// own attributes (dnsProviders), and the propagation check.
func (c *compiler) dns01(b *dns01Block) *ACMEDNS01 {
	d := &ACMEDNS01{Provider: b.Provider, PropagationTimeout: DefaultDNSPropagationTimeout}
	build, ok := dnsProviders[b.Provider]
	if !ok {
		c.errorf(at(b.ProviderAt, b.DefRange), "Unknown DNS provider",
			"provider must be one of %s, not %q (the README's DNS-01 section says how another libdns provider is added).",
			strings.Join(DNSProviderNames(), ", "), b.Provider)
	} else {
		build(c, b.Settings, b.DefRange, d)
	}
	if b.Resolvers != nil {
		r := at(b.ResolversAt, b.DefRange)
		for i, s := range *b.Resolvers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
			}
			if err := checkHostPort(s, false); err != nil {
				c.errorf(c.elemRange(r, i), "Invalid resolver", "resolvers are DNS servers as host or host:port (port 53 by default): %s", err)
				continue
			}
			d.Resolvers = append(d.Resolvers, s)
		}
	}
	c.duration(at(b.PropagationTimeoutAt, b.DefRange), "propagation_timeout", b.PropagationTimeout, &d.PropagationTimeout)
	return d
}

// onDemand compiles an on_demand block: its patterns, and its rate as
// "N/DURATION" ("10/1h": ten orders an hour).
func (c *compiler) onDemand(b *onDemandBlock) *ACMEOnDemand {
	o := &ACMEOnDemand{}
	r := at(b.AllowAt, b.DefRange)
	if len(b.Allow) == 0 {
		c.errorf(r, "Invalid allow", "allow must name at least one pattern, such as [\"*.customers.example.com\"].")
	}
	for i, p := range b.Allow {
		p = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(p)), ".")
		if !validDNSName(strings.TrimPrefix(p, "*.")) || strings.Count(p, "*") > 1 ||
			strings.Contains(p, "*") && !strings.HasPrefix(p, "*.") || strings.Count(strings.TrimPrefix(p, "*."), ".") < 1 {
			// "*.com" would let any client order a certificate for a
			// name under a public suffix.
			c.errorf(c.elemRange(r, i), "Invalid allow pattern",
				"%q is not a DNS name (\"ftp.example.com\") or \"*.\" and a name of at least two labels "+
					"(\"*.customers.example.com\": one label in place of the \"*\").", p)
			continue
		}
		o.Allow = append(o.Allow, p)
	}
	rate := DefaultOnDemandRate
	if b.Rate != nil {
		rate = *b.Rate
	}
	n, per, err := parseOrderRate(rate)
	if err != nil {
		c.errorf(at(b.RateAt, b.DefRange), "Invalid rate", "%s", err)
	}
	o.Orders, o.Per = n, per
	return o
}

// parseOrderRate parses "N/DURATION" ("10/1h", "1/30s"), N at least 1.
func parseOrderRate(s string) (int, time.Duration, error) {
	ns, ds, ok := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.Atoi(strings.TrimSpace(ns))
	if !ok || err != nil || n < 1 || n > 10000 {
		return 0, 0, fmt.Errorf("rate must be a number of orders from 1 to 10000, a slash and a duration, such as %q, not %q", DefaultOnDemandRate, s)
	}
	d, err := time.ParseDuration(strings.TrimSpace(ds))
	if err != nil || d < time.Second {
		return 0, 0, fmt.Errorf("rate's period must be a duration of at least a second, such as \"1h\", not %q", ds)
	}
	return n, d, nil
}

// acmeStorageRedis checks that the acme blocks with storage_redis have a
// state block's Redis to use (the state block is compiled after them).
func (c *compiler) acmeStorageRedis(cfg *Config) {
	for i, a := range cfg.ACME {
		if a.StorageRedis && cfg.State.Redis == nil {
			ab := c.acmeBlocks[i]
			c.errorf(at(ab.StorageRedisAt, ab.DefRange), "No Redis for storage_redis",
				"acme %q sets storage_redis = true, but there is no state { redis { … } } block: add one, or keep "+
					"the storage directory.", a.Name)
		}
	}
}
