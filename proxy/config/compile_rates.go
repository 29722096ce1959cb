package config

import (
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// MinRate is the smallest rate limit accepted: below it a transfer waits
// so long between its chunks that clients' own timeouts cut it.
const MinRate = 1 << 10

// rates compiles the rates block.
func (c *compiler) rates(rb *ratesBlock, cfg *Config) {
	r := &cfg.Rates
	for _, a := range []struct {
		name string
		v    *string
		at   hcl.Range
		dst  *Rate
	}{
		{"user_down", rb.UserDown, rb.UserDownAt, &r.User.Down},
		{"user_up", rb.UserUp, rb.UserUpAt, &r.User.Up},
		{"address_down", rb.AddressDown, rb.AddressDownAt, &r.Address.Down},
		{"address_up", rb.AddressUp, rb.AddressUpAt, &r.Address.Up},
		{"transfer_down", rb.TransferDown, rb.TransferDownAt, &r.Transfer.Down},
		{"transfer_up", rb.TransferUp, rb.TransferUpAt, &r.Transfer.Up},
	} {
		c.rate(at(a.at, rb.DefRange), a.name, a.v, a.dst)
	}
	c.quota(rb.DefRange, quotaAttrs{rb.QuotaDown, rb.QuotaDownAt, rb.QuotaUp, rb.QuotaUpAt, rb.QuotaPeriod, rb.QuotaPeriodAt}, &r.Quota)
	for i := range rb.Classes {
		cb := &rb.Classes[i]
		if slices.ContainsFunc(r.Classes, func(rc RateClass) bool { return rc.Name == cb.Name }) {
			c.errorf(&cb.DefRange, "Duplicate rate class", "A class named %q is already defined.", cb.Name)
			continue
		}
		rc := RateClass{Name: cb.Name, Users: cb.Users, Shared: cb.Shared != nil && *cb.Shared}
		if len(cb.Users) == 0 {
			c.errorf(at(cb.UsersAt, cb.DefRange), "Invalid rate class", "Class %q names no users.", cb.Name)
		}
		c.rate(at(cb.DownAt, cb.DefRange), "down", cb.Down, &rc.Rate.Down)
		c.rate(at(cb.UpAt, cb.DefRange), "up", cb.Up, &rc.Rate.Up)
		rc.Quota = r.Quota // what the class leaves out
		c.quota(cb.DefRange, quotaAttrs{cb.QuotaDown, cb.QuotaDownAt, cb.QuotaUp, cb.QuotaUpAt, cb.QuotaPeriod, cb.QuotaPeriodAt}, &rc.Quota)
		r.Classes = append(r.Classes, rc)
	}
}

// rate compiles a rate attribute into *dst, if v is set: a size per
// second ("2MiB", "2MiB/s"), at least MinRate, or 0 for no limit.
func (c *compiler) rate(r *hcl.Range, name string, v *string, dst *Rate) {
	if v == nil {
		return
	}
	n, err := ParseSize(*v, true)
	switch {
	case err != nil:
		c.errorf(r, "Invalid rate", "%s: %s per second.", name, err)
	case n != 0 && n < MinRate:
		c.errorf(r, "Invalid rate", "%s must be 0 (no limit) or at least %s per second, not %q.", name, FormatSize(MinRate), *v)
	default:
		*dst = Rate(n)
	}
}

// MinQuotaPeriod and MaxQuotaPeriod bound quota_period: shorter, a quota
// is a rate (use one); longer than a year, no one waits for its reset.
const (
	MinQuotaPeriod = time.Minute
	MaxQuotaPeriod = 366 * 24 * time.Hour
)

// quotaAttrs are the quota attributes of the rates block or of a class.
type quotaAttrs struct {
	down     *string
	downAt   hcl.Range
	up       *string
	upAt     hcl.Range
	period   *string
	periodAt hcl.Range
}

// quota compiles quota attributes into *q, leaving what is absent.
func (c *compiler) quota(block hcl.Range, a quotaAttrs, q *Quota) {
	for _, v := range []struct {
		name string
		v    *string
		at   hcl.Range
		dst  *int64
	}{{"quota_down", a.down, a.downAt, &q.Down}, {"quota_up", a.up, a.upAt, &q.Up}} {
		if v.v == nil {
			continue
		}
		n, err := ParseSize(*v.v, false)
		if err != nil {
			c.errorf(at(v.at, block), "Invalid quota", "%s: %s.", v.name, err)
			continue
		}
		*v.dst = n
	}
	if a.period == nil {
		return
	}
	d, err := time.ParseDuration(*a.period)
	switch {
	case err != nil || d < MinQuotaPeriod || d > MaxQuotaPeriod || d%time.Second != 0:
		c.errorf(at(a.periodAt, block), "Invalid quota period",
			"quota_period must be a duration of whole seconds from %s to %s, such as \"24h\" or \"168h\", not %q.",
			FormatPeriod(MinQuotaPeriod), FormatPeriod(MaxQuotaPeriod), *a.period)
	default:
		q.Period = d
	}
}
