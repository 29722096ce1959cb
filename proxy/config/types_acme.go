package config

import (
	"crypto/x509"
	"strings"
	"time"

	"github.com/libdns/libdns"
)

// The snapshot of acme blocks: the CA, the challenges, DNS-01 and
// on-demand issuance. Part of types.go's Config.

// ACME is an acme block: certificates for Domains obtained from an ACME
// CA (RFC 8555) and renewed before they expire, by certmagic. The
// challenges are answered on listeners of their own, never on an FTP
// port.
type ACME struct {
	Name string
	// Domains are the names certificates are obtained for, lower case;
	// one certificate each. The first is served to clients that send no
	// TLS SNI (most FTP clients connecting by address) or a name not in
	// the list.
	Domains []string
	// Email is the ACME account's contact, for the CA's expiry and
	// policy notices; "" registers an account without one.
	Email string
	// Directory is the CA's ACME directory URL (https). Default: Let's
	// Encrypt's production directory (DefaultACMEDirectory).
	Directory string
	// CARoots, if not nil, are the only roots trusted for the
	// directory's HTTPS (a private CA such as step-ca or Pebble); nil:
	// the system's roots. CARootsFile is where they were read from.
	CARoots     *x509.CertPool
	CARootsFile string
	// EAB is the external account binding some CAs require (ZeroSSL,
	// Google Trust Services, step-ca with EAB); nil: none.
	EAB *ACMEExternalAccount
	// Storage is the directory of the account key, the certificates and
	// their keys, and the locks that let several instances sharing it
	// issue once. Default DefaultACMEStorage.
	Storage string
	// StorageRedis keeps all of that in the state block's Redis instead
	// (keys under its prefix and "acme:"), with locks that expire unless
	// their holder refreshes them: instances behind one balancer issue
	// once without a shared volume. False: the Storage directory.
	StorageRedis bool
	// HTTP01 is the host:port of the HTTP-01 challenge listener ("" for
	// none): it answers the CA's challenge requests and 404 to anything
	// else. The CA connects to port 80 of each domain: forward it here.
	HTTP01 string
	// TLSALPN01 is the host:port of the TLS-ALPN-01 challenge listener
	// ("" for none): it answers handshakes offering only the acme-tls/1
	// protocol and refuses the rest. The CA connects to port 443.
	TLSALPN01 string
	// DNS01, if not nil, answers the challenges with TXT records set
	// through a DNS provider, in place of HTTP01 and TLSALPN01 (which are
	// then unset): the only challenge for wildcard domains, and for hosts
	// the CA cannot reach on port 80 or 443.
	DNS01 *ACMEDNS01
	// OnDemand, if not nil, lets a handshake whose SNI matches one of its
	// patterns obtain a certificate for that name on the spot; nil: only
	// Domains get certificates.
	OnDemand *ACMEOnDemand
}

// DNSProvider sets and removes DNS records: the libdns interfaces that
// certmagic's DNS-01 solver uses (certmagic.DNSProvider).
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// ACMEDNS01 is an acme block's dns01 block.
type ACMEDNS01 struct {
	// Provider is the provider's name in dns01's provider attribute
	// (DNSProviderNames lists them).
	Provider string
	// DNS is the provider, built from its attributes.
	DNS DNSProvider
	// Settings describe the provider's attributes, secrets as a digest:
	// for the log, and to tell a changed block at a reload.
	Settings string
	// Files are the files the provider's attributes name (its secrets),
	// which the service user must read: validate -as-user checks them.
	Files []string
	// Resolvers are the host:port of the DNS servers asked whether the
	// TXT record is visible yet; empty: the zone's authoritative servers,
	// found through the system's resolvers.
	Resolvers []string
	// PropagationTimeout is how long the record may take to become
	// visible before the attempt fails (and is retried with backoff).
	// Default DefaultDNSPropagationTimeout.
	PropagationTimeout time.Duration
}

// ACMEOnDemand is an acme block's on_demand block.
type ACMEOnDemand struct {
	// Allow are the patterns of the names that may get a certificate
	// during a handshake, lower case: a DNS name, or "*." and a DNS name,
	// whose "*" stands for exactly one label. A name no pattern matches
	// gets the default certificate and never causes an order.
	Allow []string
	// Orders and Per bound the on-demand orders: at most Orders in any
	// period of Per (a token bucket of Orders tokens, refilled over Per),
	// so that clients sending made-up names cannot spend the CA's rate
	// limits (Let's Encrypt: 300 new orders per account per 3 hours).
	// Default DefaultOnDemandRate.
	Orders int
	Per    time.Duration
}

// Allows reports whether name, a TLS SNI, is a DNS name that matches one
// of the patterns.
func (o *ACMEOnDemand) Allows(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if !validDNSName(name) { // "*.example.com" as an SNI, an address, a stray byte
		return false
	}
	for _, p := range o.Allow {
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			label, parent, found := strings.Cut(name, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// ACMEExternalAccount is an ACME external account binding (RFC 8555
// §7.3.4): a key id and the MAC key the CA issued with it.
type ACMEExternalAccount struct {
	KeyID string
	// HMACKey is the MAC key, base64url-encoded as CAs hand it out, read
	// from hmac_file.
	HMACKey  string
	HMACFile string
}

// ACMEByName is the acme block named name, or nil.
func (c *Config) ACMEByName(name string) *ACME {
	for _, a := range c.ACME {
		if a.Name == name {
			return a
		}
	}
	return nil
}
