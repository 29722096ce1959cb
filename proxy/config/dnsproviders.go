package config

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/libdns/rfc2136"
	"github.com/miekg/dns"
)

// dnsProviders are the DNS-01 providers a dns01 block may name, each a
// function that decodes the provider's own attributes of the block (body:
// what is left once provider, resolvers and propagation_timeout are read),
// reports their mistakes at their lines, and fills d's DNS (the libdns
// provider; left nil when a mistake was reported), Settings (a
// description without secrets) and Files (the files it read).
//
// Adding a provider is one entry here and one such function: decode its
// attributes into a struct of hcl tags with gohcl, as rfc2136Provider does,
// and build the provider of its libdns module (github.com/libdns/NAME,
// which must implement libdns.RecordAppender and libdns.RecordDeleter).
var dnsProviders = map[string]func(c *compiler, body hcl.Body, block hcl.Range, d *ACMEDNS01){
	"rfc2136": (*compiler).rfc2136Provider,
}

// DNSProviderNames are the names dns01's provider attribute accepts,
// sorted.
func DNSProviderNames() []string {
	names := make([]string, 0, len(dnsProviders))
	for n := range dnsProviders {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// tsigAlgorithms are the TSIG algorithms rfc2136's key_algorithm accepts
// (RFC 8945 §6), by their names in BIND's and Knot's key files. HMAC-MD5
// is left out: RFC 8945 §6 deprecates it.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// rfc2136Provider builds the rfc2136 provider: dynamic updates (RFC 2136)
// signed with a TSIG key (RFC 8945), as BIND, Knot and PowerDNS take them.
func (c *compiler) rfc2136Provider(body hcl.Body, block hcl.Range, d *ACMEDNS01) {
	var b rfc2136Block
	if diags := gohcl.DecodeBody(body, nil, &b); diags.HasErrors() {
		c.diags = append(c.diags, diags...)
		return
	}
	d.Files = []string{b.KeyFile}
	ok := true
	server := b.Server
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	if err := checkHostPort(server, false); err != nil || strings.TrimSpace(b.Server) == "" {
		c.errorf(at(b.ServerAt, block), "Invalid server",
			"server must be the primary DNS server that takes the zone's updates, as host or host:port (port 53 by default), not %q.", b.Server)
		ok = false
	}
	keyName := strings.TrimSuffix(strings.TrimSpace(b.KeyName), ".")
	if !validKeyName(keyName) {
		c.errorf(at(b.KeyNameAt, block), "Invalid key_name",
			"key_name must be the TSIG key's name as the DNS server knows it (such as \"acme-update\"), not %q.", b.KeyName)
		ok = false
	}
	alg := "hmac-sha256"
	if b.KeyAlgorithm != nil {
		alg = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(*b.KeyAlgorithm), "."))
	}
	if _, known := tsigAlgorithms[alg]; !known {
		names := make([]string, 0, len(tsigAlgorithms))
		for n := range tsigAlgorithms {
			names = append(names, n)
		}
		slices.Sort(names)
		c.errorf(at(b.KeyAlgorithmAt, block), "Invalid key_algorithm",
			"key_algorithm must be one of %s (default hmac-sha256), not %q.", strings.Join(names, ", "), alg)
		ok = false
	}
	r := at(b.KeyFileAt, block)
	secret, err := readSmallFile(b.KeyFile)
	switch {
	case err != nil:
		c.errorf(r, "Cannot read key_file", "%s", err)
		ok = false
	default:
		s := strings.TrimSpace(string(secret))
		if dec, err := base64.StdEncoding.DecodeString(s); err != nil || len(dec) == 0 {
			c.errorf(r, "Invalid key_file",
				"%q must hold the TSIG key's secret alone, base64-encoded (the secret of `tsig-keygen` or `keymgr -t`).", b.KeyFile)
			ok = false
		} else {
			secret = []byte(s)
			c.secretFile(r, "key_file", b.KeyFile, "the TSIG key that may change the zone")
		}
	}
	if !ok {
		return
	}
	d.DNS = &rfc2136.Provider{Server: server, KeyName: keyName, KeyAlg: tsigAlgorithms[alg], Key: string(secret)}
	sum := sha256.Sum256(secret)
	d.Settings = fmt.Sprintf("server=%s key_name=%s key_algorithm=%s key_file=%s key_sha256=%x", server, keyName, alg, b.KeyFile, sum[:8])
}

// validKeyName reports whether s is a TSIG key name as BIND and Knot
// write them: labels of letters, digits, "-" and "_".
func validKeyName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || strings.Trim(strings.ToLower(l), "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}
