package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/ftpsgate/ftpsgate/policy"
)

// hook compiles an auth block's hook block.
func (c *compiler) hook(auth string, hb *hookBlock) *Hook {
	h := &Hook{Timeout: DefaultHookTimeout}
	if err := checkHookURL(hb.URL); err != nil {
		c.errorf(at(hb.URLAt, hb.DefRange), "Invalid hook url", "auth %q: %s", auth, err)
	} else {
		h.URL = hb.URL
	}
	c.duration(at(hb.TimeoutAt, hb.DefRange), "timeout", hb.Timeout, &h.Timeout)
	if hb.CacheTTL != nil && *hb.CacheTTL != "0" && *hb.CacheTTL != "0s" {
		c.duration(at(hb.CacheTTLAt, hb.DefRange), "cache_ttl", hb.CacheTTL, &h.CacheTTL)
	}
	if hb.CAFile != nil {
		r := at(hb.CAFileAt, hb.DefRange)
		h.RootCAs = c.pemPool(r, "ca_file", *hb.CAFile)
		if h.URL != "" && !strings.HasPrefix(strings.ToLower(h.URL), "https:") {
			c.warnf(r, "ca_file unused", "auth %q: the hook's url is not https; ca_file verifies nothing.", auth)
		}
	}
	if hb.SecretFile != nil {
		r := at(hb.SecretFileAt, hb.DefRange)
		h.Secret = c.oneLineSecret(r, "secret_file", *hb.SecretFile, "the secret the hook knows the proxy by")
	}
	if hb.BackendPasswordFiles != nil {
		r := at(hb.BackendPasswordFilesAt, hb.DefRange)
		h.BackendLogins = map[string]*BackendLogin{}
		users := make([]string, 0, len(*hb.BackendPasswordFiles))
		for u := range *hb.BackendPasswordFiles {
			users = append(users, u)
		}
		sort.Strings(users)
		for _, u := range users {
			if d := policy.UserName(u); d != nil || strings.ContainsAny(u, " \t") {
				c.errorf(r, "Invalid backend account", "backend_password_files: %q is not a user name an FTP server takes.", u)
				continue
			}
			pw := c.oneLineSecret(r, "backend_password_files", (*hb.BackendPasswordFiles)[u], "the backend account's password")
			if pw != "" {
				h.BackendLogins[u] = &BackendLogin{User: u, Password: pw}
			}
		}
	}
	return h
}

// checkHookURL accepts https, or http to a loopback address literal
// (127.0.0.0/8, ::1). A hook over plain http on a network would hand the
// password to anyone on the path, and let anyone on the path answer
// "allow"; a name such as localhost is refused too, as what it resolves
// to is not the configuration's to say.
func checkHookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q does not parse: %v", raw, err)
	}
	if u.User != nil {
		return fmt.Errorf("url %q holds credentials: put the secret in secret_file", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q names no host", raw)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if HookLoopback(u) {
			return nil
		}
		return fmt.Errorf("url %q is plain http to a host that is not a loopback address: "+
			"the password and the hook's answer would cross the network in clear; use https (with ca_file for a private CA)", raw)
	}
	return fmt.Errorf("url %q must be https (or http to 127.0.0.1 or ::1)", raw)
}

// HookLoopback reports whether u's host is a loopback address literal.
func HookLoopback(u *url.URL) bool {
	a, err := netip.ParseAddr(u.Hostname())
	return err == nil && a.Unmap().IsLoopback()
}

// oneLineSecret reads a secret of one line (a trailing line end is
// dropped) from the file at path; "" after a problem, which is reported.
func (c *compiler) oneLineSecret(r *hcl.Range, attr, path, what string) string {
	data, err := readSmallFile(path)
	if err != nil {
		c.errorf(r, "Unreadable "+attr, "%s: %s", attr, err)
		return ""
	}
	c.secretFile(r, attr, path, what)
	v := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	switch {
	case v == "":
		c.errorf(r, "Invalid "+attr, "%s: %q is empty.", attr, path)
		return ""
	case strings.ContainsAny(v, "\r\n\x00") || len(v) > 1024:
		c.errorf(r, "Invalid "+attr, "%s: %q must hold one line of at most 1024 bytes.", attr, path)
		return ""
	}
	return v
}
