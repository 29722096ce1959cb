package config

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// The snapshot of edge authentication: auth blocks, their sources (user
// file, directory, hook, client certificates) and the backend accounts
// logins map to. Part of types.go's Config.

// ClientAuthMode is a listener's client_auth.
type ClientAuthMode int

const (
	// ClientCertNone: no client certificate is asked for (the default).
	ClientCertNone ClientAuthMode = iota
	// ClientCertOptional: a client may present one; if it does, it must
	// verify.
	ClientCertOptional
	// ClientCertRequire: the handshake fails without a verified
	// certificate (for explicit FTPS, the one after AUTH TLS).
	ClientCertRequire
)

func (m ClientAuthMode) String() string {
	switch m {
	case ClientCertNone:
		return "none"
	case ClientCertOptional:
		return "optional"
	case ClientCertRequire:
		return "require"
	}
	return "invalid"
}

// Auth is an auth block: the proxy checks a login itself, and opens a
// connection to the backend only once it has accepted it. A wrong
// password, an unknown user or a refusal by policy never reaches a
// backend: an unauthenticated client never sends a byte to it.
type Auth struct {
	Name string
	// UserFile is the path of the user file (userfile's format); Users is
	// its content as Load read it. The server reloads the file when it
	// changes, and keeps the last good one when a new one does not parse.
	UserFile string
	Users    *userfile.File
	// UserFileStamp is FileStamp of the user file taken before Load read
	// it: a change after that is seen by the server's watch.
	UserFileStamp string
	// TOTPFile, if set, is the path of a TOTP secrets file (userfile's
	// "user:BASE32SECRET" lines) and TOTP its content as Load read it:
	// every user must then append the current six-digit code to the
	// password, and a code once used is refused until its window has
	// passed. A user without a secret cannot log in. It stops a stolen
	// password alone from logging in. Read at Load (and SIGHUP) only.
	TOTPFile string
	TOTP     *userfile.Secrets
	// Backend, if set, is the account on the backend that every login
	// this block accepts uses; a route's own wins. Nil: the client's own
	// user name and password are passed on, after the proxy accepted them.
	Backend *BackendLogin
	// LDAP, if set, is the block's password source in place of a user
	// file: the directory that checks each password by a bind.
	LDAP *LDAP
	// Hook, if set, is the block's password source in place of a user
	// file: an HTTP service decides each login (one source per block).
	Hook *Hook
	// Cert, if set, takes the user from the client's verified
	// certificate: USER must name it.
	Cert *CertAuth
}

// Method is the audit's and the metrics' name of how Auth checks a login:
// the certificate ("cert", alone with mode "cert"), the password source
// ("file", "ldap", "hook"), "+totp" with a second factor; "cert+hook" is a
// certificate login the hook authorises without a password.
func (a *Auth) Method() string {
	var parts []string
	if a.Cert != nil {
		parts = append(parts, "cert")
	}
	switch {
	case a.Hook != nil:
		parts = append(parts, "hook")
	case a.LDAP != nil:
		parts = append(parts, "ldap")
	case a.Users != nil && !a.CertOnly():
		parts = append(parts, "file")
	}
	if a.TOTP != nil {
		parts = append(parts, "totp")
	}
	return strings.Join(parts, "+")
}

// CertOnly reports whether a login is accepted on its certificate alone,
// without a password check (cert mode "cert").
func (a *Auth) CertOnly() bool { return a.Cert != nil && a.Cert.Mode == CertOnly }

// Hook is an auth block's HTTP hook: each login is POSTed to URL as JSON,
// and the answer (allow, backend or route, backend_user, read_only) decides it.
// The hook fails closed: a timeout, an answer other than 200, or a body
// that does not parse strictly refuses the login with 421.
type Hook struct {
	// URL is https, or http to a loopback address (validate refuses any
	// other): the request may carry the password, and the answer decides
	// who logs in, so neither may cross a network in clear.
	URL string
	// Timeout bounds one request, connection to last byte of the
	// answer; DefaultHookTimeout when not set.
	Timeout time.Duration
	// RootCAs verify an https hook's certificate; nil: the system's
	// roots.
	RootCAs *x509.CertPool
	// Secret, read from secret_file, is sent as "Authorization: Bearer
	// …", so that the hook can tell the proxy from anyone else who can
	// reach it. Empty: no Authorization header.
	Secret string
	// CacheTTL is how long an answer that allowed a login is reused for
	// the same user, password, client address and certificate; 0 (the
	// default): every login asks the hook. Refusals are never cached: a
	// fix (a password reset, an account unlocked) applies at once, and
	// bans already stop an address that repeats a wrong password.
	CacheTTL time.Duration
	// BackendLogins are the backend accounts the hook may answer as
	// backend_user, each with its password from a file: the hook names
	// an account, never sends its password. A backend_user not here
	// refuses the login.
	BackendLogins map[string]*BackendLogin
}

// CertAuth is an auth block's cert block.
type CertAuth struct {
	Mode CertMode
	// UserFrom is the part of the certificate that names the user.
	UserFrom CertUserFrom
}

// CertMode is what a certificate login needs besides the certificate.
type CertMode int

const (
	// CertAndPassword (the default): the password is checked too, by
	// the block's password source.
	CertAndPassword CertMode = iota
	// CertOnly: the certificate alone logs in; PASS is still answered,
	// and its argument is ignored (or is the TOTP code alone).
	CertOnly
)

func (m CertMode) String() string {
	if m == CertOnly {
		return "cert"
	}
	return "cert_and_password"
}

// CertUserFrom is where a certificate names its user.
type CertUserFrom int

const (
	// FromCN: the subject's common name (the default).
	FromCN CertUserFrom = iota
	// FromSANEmail: an rfc822Name subject alternative name, whole.
	FromSANEmail
	// FromSANDNS: a dNSName subject alternative name.
	FromSANDNS
)

func (f CertUserFrom) String() string {
	switch f {
	case FromSANEmail:
		return "san_email"
	case FromSANDNS:
		return "san_dns"
	}
	return "cn"
}

// LDAP is an auth block's directory (an ldap block). A password is
// checked by binding as the user: with BindDNTemplate the user's DN is
// the template with {user} replaced by the name, escaped as a DN value
// (RFC 4514); otherwise the proxy binds as ServiceDN, searches BaseDN
// with UserFilter ({user} escaped as a filter value, RFC 4515), and binds
// as the one entry found. A name the directory does not know costs a
// bind too, against a DN that does not exist: the reply comes as late as
// for a wrong password. An empty password is refused without a bind: a
// simple bind with an empty password is an unauthenticated bind (RFC
// 4513 §5.1.2), which many directories answer with success.
type LDAP struct {
	// URL is ldaps://host[:port] or ldap://host[:port]; ldap:// needs
	// StartTLS: a password never crosses the network in clear.
	URL      string
	StartTLS bool
	// TLS verifies the directory's certificate, always: against CAFile's
	// certificates, or the system's roots when ca_file is not set, for the
	// URL's host name. There is no setting that turns the check off: a
	// directory an attacker impersonates would learn every password.
	TLS    *tls.Config
	CAFile string
	// BindDNTemplate, with {user}: bind as the user directly.
	BindDNTemplate string
	// ServiceDN and ServicePassword (read from service_password_file):
	// the account that searches; BaseDN and UserFilter, with {user}: where
	// and how (default "(uid={user})").
	ServiceDN, ServicePassword string
	BaseDN, UserFilter         string
	// GroupFilter is the filter that tells whether a group holds the
	// user: each group's entry is read (scope base) with it; {dn} is the
	// user's DN and {user} the name, both escaped. The default,
	// "(|(member={dn})(uniqueMember={dn}))", needs no memberOf overlay.
	GroupFilter string
	// Groups, if any, are checked in order and the first that holds the
	// user decides; a user in none is refused. Without groups, every
	// user who binds is allowed. They are searched as the service
	// account, or as the user with BindDNTemplate.
	Groups []LDAPGroup
	// Timeout bounds each step with the directory (connect and TLS
	// handshake, each bind and search, a wait for a pooled connection);
	// default 5 s. A directory that does not answer in time gets the
	// client 421, never a login.
	Timeout time.Duration
	// MaxConnections bounds the connections open to the directory at
	// once (default 8): a flood of logins does not become a flood of
	// connections to it. A connection idle for IdleTimeout (default 1m)
	// is closed.
	MaxConnections int
	IdleTimeout    time.Duration
}

// LDAPGroup is a group of an ldap block: its members log in, read-only
// when ReadOnly is set, and on the route Route (its backend and backend
// account) when it is set.
type LDAPGroup struct {
	DN       string
	ReadOnly bool
	Route    string
}

// BackendLogin is the account a login is mapped to on the backend. The
// password comes from a file or the environment, never from the
// configuration file itself.
type BackendLogin struct {
	User     string
	Password string
}

// String names the user only: a BackendLogin printed by mistake does not
// print the password.
func (b *BackendLogin) String() string { return b.User }

// RouteLogin is what a route adds to the logins of the sessions it takes.
type RouteLogin struct {
	// Auth, if set, replaces the listener's auth block for the route.
	Auth *Auth
	// Backend, if set, replaces the auth block's backend account.
	Backend *BackendLogin
}
