package config

import (
	"crypto/tls"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"
	"github.com/hashicorp/hcl/v2"
)

// ldap compiles the ldap block of the auth block name.
func (c *compiler) ldap(name string, lb *ldapBlock) *LDAP {
	l := defaultLDAP()
	l.URL = lb.URL
	urlAt := at(lb.URLAt, lb.DefRange)
	u, err := url.Parse(lb.URL)
	switch {
	case err != nil || u.Host == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		c.errorf(urlAt, "Invalid ldap url", "auth %q: url must be ldaps://host[:port] or ldap://host[:port], not %q.", name, lb.URL)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		c.errorf(urlAt, "Invalid ldap url", "auth %q: url must start with ldaps:// or ldap://, not %q.", name, lb.URL)
	}
	if lb.StartTLS != nil {
		l.StartTLS = *lb.StartTLS
	}
	if u != nil && u.Scheme == "ldap" && !l.StartTLS {
		c.errorf(urlAt, "Password in clear", "auth %q: url %q is plain LDAP: every password would cross the network in clear. "+
			"Use ldaps:// or set start_tls = true.", name, lb.URL)
	}
	if u != nil && u.Scheme == "ldaps" && l.StartTLS {
		c.errorf(at(lb.StartTLSAt, lb.DefRange), "Invalid start_tls", "auth %q: start_tls is for ldap:// URLs; ldaps:// is TLS from the start.", name)
	}
	l.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if u != nil {
		l.TLS.ServerName = u.Hostname()
	}
	if lb.CAFile != nil {
		l.CAFile = *lb.CAFile
		l.TLS.RootCAs = c.pemPool(at(lb.CAFileAt, lb.DefRange), "ca_file", *lb.CAFile)
	}

	search := lb.ServiceDN != nil || lb.ServicePasswordFile != nil || lb.BaseDN != nil || lb.UserFilter != nil
	switch {
	case lb.BindDNTemplate != nil && search:
		c.errorf(at(lb.BindDNTemplateAt, lb.DefRange), "Invalid ldap block",
			"auth %q: set bind_dn_template, or service_dn, service_password_file and base_dn (search then bind), not both.", name)
	case lb.BindDNTemplate != nil:
		l.BindDNTemplate = *lb.BindDNTemplate
		r := at(lb.BindDNTemplateAt, lb.DefRange)
		if !strings.Contains(l.BindDNTemplate, "{user}") {
			c.errorf(r, "Invalid bind_dn_template", "auth %q: bind_dn_template must hold {user}, where the user name goes.", name)
		} else if _, err := ldap.ParseDN(strings.ReplaceAll(l.BindDNTemplate, "{user}", "x")); err != nil {
			c.errorf(r, "Invalid bind_dn_template", "auth %q: %q is not a DN: %s", name, l.BindDNTemplate, err)
		}
	case lb.ServiceDN == nil || lb.ServicePasswordFile == nil || lb.BaseDN == nil:
		c.errorf(&lb.DefRange, "Invalid ldap block",
			"auth %q: set bind_dn_template, or service_dn, service_password_file and base_dn (search then bind).", name)
	default:
		l.ServiceDN, l.BaseDN = *lb.ServiceDN, *lb.BaseDN
		c.dn(at(lb.ServiceDNAt, lb.DefRange), name, "service_dn", l.ServiceDN)
		c.dn(at(lb.BaseDNAt, lb.DefRange), name, "base_dn", l.BaseDN)
		l.ServicePassword = c.servicePassword(at(lb.ServicePasswordFileAt, lb.DefRange), name, *lb.ServicePasswordFile)
		if lb.UserFilter != nil {
			l.UserFilter = *lb.UserFilter
			c.filter(at(lb.UserFilterAt, lb.DefRange), name, "user_filter", l.UserFilter, "{user}")
		}
	}
	if lb.GroupFilter != nil {
		l.GroupFilter = *lb.GroupFilter
		c.filter(at(lb.GroupFilterAt, lb.DefRange), name, "group_filter", l.GroupFilter, "{dn}", "{user}")
	}
	c.duration(at(lb.TimeoutAt, lb.DefRange), "timeout", lb.Timeout, &l.Timeout)
	c.duration(at(lb.IdleTimeoutAt, lb.DefRange), "idle_timeout", lb.IdleTimeout, &l.IdleTimeout)
	if lb.MaxConnections != nil {
		if n := *lb.MaxConnections; n < 1 || n > 1024 {
			c.errorf(at(lb.MaxConnectionsAt, lb.DefRange), "Invalid max_connections",
				"auth %q: max_connections must be between 1 and 1024, not %d.", name, n)
		} else {
			l.MaxConnections = n
		}
	}
	seen := map[string]bool{}
	for _, gb := range lb.Groups {
		r := gb.DefRange
		dn, err := ldap.ParseDN(gb.DN)
		if err != nil || len(dn.RDNs) == 0 {
			c.errorf(&r, "Invalid group", "auth %q: group %q is not a DN.", name, gb.DN)
			continue
		}
		if key := strings.ToLower(dn.String()); seen[key] {
			c.errorf(&r, "Duplicate group", "auth %q: group %q is listed twice; the first decides.", name, gb.DN)
		} else {
			seen[key] = true
		}
		g := LDAPGroup{DN: gb.DN}
		if gb.ReadOnly != nil {
			g.ReadOnly = *gb.ReadOnly
		}
		if gb.Route != nil {
			g.Route = *gb.Route
		}
		l.Groups = append(l.Groups, g)
	}
	return l
}

// dn reports attr's value v when it is not a DN.
func (c *compiler) dn(r *hcl.Range, name, attr, v string) {
	if _, err := ldap.ParseDN(v); err != nil || v == "" {
		c.errorf(r, "Invalid "+attr, "auth %q: %s %q is not a DN.", name, attr, v)
	}
}

// filter reports a filter that lacks all of its placeholders or does not
// compile once they are filled.
func (c *compiler) filter(r *hcl.Range, name, attr, f string, placeholders ...string) {
	filled, has := f, false
	for _, p := range placeholders {
		has = has || strings.Contains(f, p)
		filled = strings.ReplaceAll(filled, p, "x")
	}
	if !has {
		c.errorf(r, "Invalid "+attr, "auth %q: %s must hold %s.", name, attr, strings.Join(placeholders, " or "))
		return
	}
	if _, err := ldap.CompileFilter(filled); err != nil {
		c.errorf(r, "Invalid "+attr, "auth %q: %s %q is not an LDAP filter: %s", name, attr, f, err)
	}
}

// servicePassword reads the service account's password from path.
func (c *compiler) servicePassword(r *hcl.Range, name, path string) string {
	data, err := readSmallFile(path)
	if err != nil {
		c.errorf(r, "Unreadable service_password_file", "auth %q: %s", name, err)
		return ""
	}
	c.secretFile(r, "service_password_file", path, "the directory's service account")
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if pw == "" || strings.ContainsAny(pw, "\r\n\x00") {
		// Empty, the bind would be unauthenticated (RFC 4513 §5.1.2).
		c.errorf(r, "Invalid service_password_file", "auth %q: the service password must be one line, not empty.", name)
	}
	return pw
}

// ldapRoutes checks that each ldap group's route is a route block.
func (c *compiler) ldapRoutes(fs *fileSchema) {
	routes := map[string]bool{}
	for _, rb := range fs.Routes {
		routes[rb.Name] = true
	}
	for _, ab := range fs.Auths {
		if ab.LDAP == nil {
			continue
		}
		for _, gb := range ab.LDAP.Groups {
			if gb.Route != nil && !routes[*gb.Route] {
				c.errorf(at(gb.RouteAt, gb.DefRange), "Unknown route",
					"auth %q: group %q names route %q, which no route block defines.", ab.Name, gb.DN, *gb.Route)
			}
		}
	}
}
