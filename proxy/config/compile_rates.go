package config

import (
	"slices"

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
