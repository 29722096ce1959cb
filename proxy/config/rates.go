package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsgate/ftpsgate/policy"
)

// Rate is a data rate in bytes per second; 0 means no limit.
type Rate int64

func (r Rate) String() string {
	if r == 0 {
		return "unlimited"
	}
	return FormatSize(int64(r)) + "/s"
}

// RatePair is a limit for each direction: Down for downloads (RETR and
// listings), Up for uploads (STOR, STOU, APPE).
type RatePair struct{ Down, Up Rate }

// IsZero reports whether neither direction is limited.
func (p RatePair) IsZero() bool { return p.Down == 0 && p.Up == 0 }

// Rates are the token-bucket limits on data bytes at the levels below the
// listener's (Listener.RateDown and RateUp); a transfer runs at the
// smallest of every limit that applies to it. Each limit is per instance
// of the proxy: two instances behind a balancer each allow the full rate.
type Rates struct {
	// User is each user's limit, shared by all of that user's sessions
	// and transfers, for users no class names; zero: none.
	User RatePair
	// Address is each client's limit (policy.ClientKey: an IPv4
	// address, or an IPv6 prefix of limits.ipv6_prefix bits), shared by
	// all of its sessions; zero: none.
	Address RatePair
	// Transfer is each transfer's own limit; zero: none.
	Transfer RatePair
	// Classes give the users they name their own limit instead of User;
	// the first class that names a user wins.
	Classes []RateClass
	// Quota is each user's volume limit per period, for users no class
	// names; zero directions: none.
	Quota Quota
}

// Quota bounds the bytes of the files a user (or a shared class) may
// download (Down: RETR) and upload (Up: STOR, STOU, APPE) per Period.
// Listings are neither counted nor refused, so that a user past a quota
// can still look around and delete. Periods are fixed windows aligned to
// the Unix epoch (24h resets at 00:00 UTC), so that every instance
// sharing the state (the state block) counts the same window. Unlike
// rates, quotas count across instances when they share a Redis. It stops
// one partner from taking more than its share of the backend's traffic
// or disk over a day, which a rate alone does not bound.
type Quota struct {
	// Down and Up are bytes per Period; 0: no quota that way.
	Down, Up int64
	// Period is the window's length, DefaultQuotaPeriod by default.
	Period time.Duration
}

// IsZero reports whether neither direction has a quota.
func (q Quota) IsZero() bool { return q.Down == 0 && q.Up == 0 }

// Limit is the quota of one direction (up: uploads).
func (q Quota) Limit(up bool) int64 {
	if up {
		return q.Up
	}
	return q.Down
}

// Window is the period that holds t: [start, end), aligned to the epoch.
func (q Quota) Window(t time.Time) (start, end time.Time) {
	p := q.Period
	if p <= 0 {
		p = DefaultQuotaPeriod
	}
	n := t.UnixNano() / int64(p)
	start = time.Unix(0, n*int64(p))
	return start, start.Add(p)
}

// String describes a direction's quota: "10GiB per 24h0m0s".
func (q Quota) String(up bool) string {
	return FormatSize(q.Limit(up)) + " per " + FormatPeriod(q.Period)
}

// FormatPeriod writes a quota period shortly: "24h", "90m", "1h30m".
func FormatPeriod(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// RateClass is a user class's limit.
type RateClass struct {
	Name string
	// Users are glob patterns, compared as policy.user_names says.
	Users []string
	// Rate applies to each user of the class (all of that user's
	// sessions together), or, when Shared, to all its users together.
	// A direction at zero is not limited for the class's users.
	Rate   RatePair
	Shared bool
	// Quota is the class's quota: each user's, or, when Shared, all its
	// users' together. An attribute the class leaves out is the rates
	// block's (Rates.Quota), so that a class made for a rate never lifts
	// a quota by omission; "0" lifts it.
	Quota Quota
}

// IsZero reports whether no rate is set at these levels.
func (r *Rates) IsZero() bool {
	return r.User.IsZero() && r.Address.IsZero() && r.Transfer.IsZero() && len(r.Classes) == 0
}

// ForUser is the user-level limit of user, and the key of the bucket it
// shares: "user:NAME" (the name as rules compares it, policy.Rules.Key),
// or "class:NAME" for a shared class. An empty user (not logged in) has
// no user-level limit.
func (r *Rates) ForUser(rules *policy.Rules, user string) (key string, rate RatePair) {
	if user == "" {
		return "", RatePair{}
	}
	for _, c := range r.Classes {
		if rules.MatchUser(c.Users, user) {
			if c.Shared {
				return "class:" + c.Name, c.Rate
			}
			return "user:" + rules.Key(user), c.Rate
		}
	}
	return "user:" + rules.Key(user), r.User
}

// QuotaForUser is user's quota and the key of the count it shares, as
// ForUser keys the rate: "class:NAME" for a shared class, else
// "user:NAME" (policy.Rules.Key). An empty user has no quota.
func (r *Rates) QuotaForUser(rules *policy.Rules, user string) (key string, q Quota) {
	if user == "" {
		return "", Quota{}
	}
	for _, c := range r.Classes {
		if rules.MatchUser(c.Users, user) {
			if c.Shared {
				return "class:" + c.Name, c.Quota
			}
			return "user:" + rules.Key(user), c.Quota
		}
	}
	return "user:" + rules.Key(user), r.Quota
}

// sizeUnits are the suffixes ParseSize takes, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1},
}

// ParseSize parses a size in bytes: a whole or decimal number with an
// optional unit, binary ("KiB", "MiB", "GiB", "TiB") or decimal ("KB",
// "MB", "GB", "TB"), or "B"; "2MiB", "1.5 GB", "65536". A rate may end in
// "/s" ("2MiB/s"), which ParseSize ignores when perSecond is set.
func ParseSize(s string, perSecond bool) (int64, error) {
	v := strings.TrimSpace(s)
	if perSecond {
		v = strings.TrimSpace(strings.TrimSuffix(v, "/s"))
	}
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			mult = u.mult
			v = strings.TrimSpace(strings.TrimSuffix(v, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || v == "" || strings.ContainsAny(v, "eExXpP_+") || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a size: write a number with an optional unit, such as \"2MiB\", \"500KiB\", \"10GB\" or \"65536\"", s)
	}
	n := f * float64(mult)
	if n < 0 || n > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return int64(n), nil
}

// FormatSize writes n bytes in the largest binary unit that divides it
// to one decimal ("2MiB", "1.5GiB", "100B").
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult {
			return strconv.FormatFloat(math.Round(float64(n)/float64(u.mult)*100)/100, 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
