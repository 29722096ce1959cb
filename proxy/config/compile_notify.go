package config

import (
	"bytes"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/ftpsgate/ftpsgate/proxy/audit"
)

// Bounds of a notify block's counts: enough for any receiver, small
// enough that a typo cannot make the proxy hold a million events or
// start a thousand goroutines.
const (
	maxNotifyQueue   = 1 << 20
	maxNotifyWorkers = 64
	maxNotifyRetries = 100
	// minNotifySecret is the shortest secret_file accepted, in bytes.
	minNotifySecret = 16
)

// notifies compiles the notify blocks into cfg.Notifies.
func (c *compiler) notifies(fs *fileSchema, cfg *Config) {
	seen := map[string]bool{}
	for i := range fs.Notifies {
		nb := &fs.Notifies[i]
		if seen[nb.Name] {
			c.errorf(&nb.DefRange, "Duplicate notify", "A notify block named %q is already defined.", nb.Name)
			continue
		}
		seen[nb.Name] = true
		cfg.Notifies = append(cfg.Notifies, c.notify(nb))
	}
}

func (c *compiler) notify(nb *notifyBlock) *Notify {
	n := defaultNotify()
	n.Name = nb.Name
	if nb.AllowPlainHTTP != nil {
		n.AllowPlainHTTP = *nb.AllowPlainHTTP
	}
	n.URL = nb.URL
	if err := checkNotifyURL(nb.URL, n.AllowPlainHTTP); err != "" {
		c.errorf(at(nb.URLAt, nb.DefRange), "Invalid notify url", "%s", err)
	}

	r := at(nb.EventsAt, nb.DefRange)
	if len(nb.Events) == 0 {
		c.errorf(r, "Invalid events", "events is empty: name at least one of %s.", strings.Join(kindList(audit.Kinds), ", "))
	}
	for i, e := range nb.Events {
		switch {
		case !slices.Contains(audit.Kinds, e):
			c.errorf(c.elemRange(r, i), "Invalid events", "%q is not an event a notify block can post: events may name %s.",
				e, strings.Join(kindList(audit.Kinds), ", "))
		case slices.Contains(n.Events, e):
			c.errorf(c.elemRange(r, i), "Invalid events", "%q is listed twice.", e)
		default:
			n.Events = append(n.Events, e)
		}
	}

	r = at(nb.SecretFileAt, nb.DefRange)
	n.SecretFile = nb.SecretFile
	b, err := readSmallFile(nb.SecretFile)
	secret := bytes.TrimSpace(b)
	switch {
	case err != nil:
		c.errorf(r, "Cannot read secret_file", "%s", err)
	case len(secret) < minNotifySecret:
		c.errorf(r, "Invalid secret_file",
			"%q holds %d bytes: the signing secret needs at least %d (e.g. from `openssl rand -hex 32`).", nb.SecretFile, len(secret), minNotifySecret)
	default:
		n.Secret = secret
		c.secretFile(r, "secret_file", nb.SecretFile, "the notifications' signing secret")
	}

	c.duration(at(nb.TimeoutAt, nb.DefRange), "timeout", nb.Timeout, &n.Timeout)
	c.duration(at(nb.BackoffAt, nb.DefRange), "backoff", nb.Backoff, &n.Backoff)
	c.duration(at(nb.MaxBackoffAt, nb.DefRange), "max_backoff", nb.MaxBackoff, &n.MaxBackoff)
	c.duration(at(nb.MaxAgeAt, nb.DefRange), "max_age", nb.MaxAge, &n.MaxAge)
	c.duration(at(nb.DrainTimeoutAt, nb.DefRange), "drain_timeout", nb.DrainTimeout, &n.DrainTimeout)
	if n.Backoff > n.MaxBackoff {
		c.errorf(at(nb.BackoffAt, nb.DefRange), "Invalid backoff", "backoff (%v) is longer than max_backoff (%v).", n.Backoff, n.MaxBackoff)
	}
	c.notifyCount(at(nb.QueueAt, nb.DefRange), "queue", nb.Queue, 1, maxNotifyQueue, &n.Queue)
	c.notifyCount(at(nb.WorkersAt, nb.DefRange), "workers", nb.Workers, 1, maxNotifyWorkers, &n.Workers)
	c.notifyCount(at(nb.RetriesAt, nb.DefRange), "retries", nb.Retries, 0, maxNotifyRetries, &n.Retries)
	return n
}

// notifyCount compiles an integer attribute in [lo, hi] into *dst, if v is set.
func (c *compiler) notifyCount(r *hcl.Range, name string, v *int, lo, hi int, dst *int) {
	if v == nil {
		return
	}
	if *v < lo || *v > hi {
		c.errorf(r, "Invalid "+name, "%s must be between %d and %d, not %d.", name, lo, hi, *v)
		return
	}
	*dst = *v
}

// checkNotifyURL says what is wrong with a notify block's url, or "".
// A body names users, client addresses and files: plain http is for a
// receiver on this machine only, unless allowPlain.
func checkNotifyURL(raw string, allowPlain bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return strconv.Quote(raw) + " is not a URL: " + err.Error()
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return strconv.Quote(raw) + " is not an https URL (such as \"https://hooks.example.com/ftp\")."
	case u.Host == "" || u.Hostname() == "":
		return strconv.Quote(raw) + " names no host."
	case u.User != nil:
		return strconv.Quote(raw) + " holds credentials: a notify block's URL is logged; requests are signed with secret_file's secret instead."
	case u.Fragment != "" || u.RawFragment != "":
		return strconv.Quote(raw) + " has a fragment (#…), which is never sent."
	case u.Scheme == "http" && !allowPlain && !notifyLoopback(u.Hostname()):
		return strconv.Quote(raw) + " is plain http to a host that is not loopback: the events (user names, client addresses, " +
			"file names) would cross the network readable. Use https, or set allow_plain_http = true."
	}
	return ""
}

// notifyLoopback reports whether host is a loopback address or "localhost".
func notifyLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func kindList(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
