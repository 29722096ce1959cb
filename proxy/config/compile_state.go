package config

import (
	"crypto/x509"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// state compiles the state block: without a redis block the state stays
// in this process, as without the block.
func (c *compiler) state(sb *stateBlock, cfg *Config) {
	rb := sb.Redis
	if rb == nil {
		return
	}
	r := &RedisState{Address: rb.Address, Prefix: DefaultRedisPrefix}
	if err := checkHostPort(rb.Address, false); err != nil {
		c.errorf(at(rb.AddressAt, rb.DefRange), "Invalid redis address", "address must be host:port: %s", err)
	}
	c.redisTLS(rb, r)
	if rb.PasswordFile != nil {
		r.Password = c.redisPassword(at(rb.PasswordFileAt, rb.DefRange), *rb.PasswordFile)
	}
	if rb.Prefix != nil {
		r.Prefix = *rb.Prefix
		if strings.ContainsAny(r.Prefix, " \t\r\n*?[]") {
			c.errorf(at(rb.PrefixAt, rb.DefRange), "Invalid redis prefix",
				"prefix %q holds spaces or glob characters; use letters, digits and ':' (as \"ftpsgate:\").", r.Prefix)
		}
	}
	if rb.DB != nil {
		if *rb.DB < 0 || *rb.DB > 15 {
			// 16 databases is Redis's default (databases 16); a higher
			// number needs that setting raised, and is refused at SELECT.
			c.errorf(at(rb.DBAt, rb.DefRange), "Invalid redis db", "db must be between 0 and 15 (Redis's default databases 16).")
		}
		r.DB = *rb.DB
	}
	cfg.State.Redis = r
}

// redisTLS reads tls: absent or false, true, or { ca_file = "…" }.
func (c *compiler) redisTLS(rb *redisBlock, r *RedisState) {
	if rb.TLS == nil {
		return
	}
	v, diags := rb.TLS.Value(nil)
	rng := rb.TLS.Range()
	if diags.HasErrors() {
		c.diags = append(c.diags, diags...)
		return
	}
	bad := func() {
		c.errorf(&rng, "Invalid redis tls", "tls must be true, false, or { ca_file = \"/path/ca.pem\" }.")
	}
	switch {
	case v.IsNull():
	case v.Type() == cty.Bool:
		r.TLS = v.True()
	case v.Type().IsObjectType():
		if !v.Type().HasAttribute("ca_file") || len(v.Type().AttributeTypes()) != 1 {
			bad()
			return
		}
		f := v.GetAttr("ca_file")
		if f.IsNull() || f.Type() != cty.String {
			bad()
			return
		}
		r.TLS, r.CAFile = true, f.AsString()
		b, err := readSmallFile(r.CAFile)
		switch {
		case err != nil:
			c.errorf(&rng, "Cannot read redis ca_file", "%s", err)
		case !x509.NewCertPool().AppendCertsFromPEM(b):
			c.errorf(&rng, "Invalid redis ca_file", "%q holds no PEM certificate.", r.CAFile)
		}
	default:
		bad()
	}
}

// redisPassword reads the Redis password from path (set at rng): its
// first line, without the line end.
func (c *compiler) redisPassword(rng *hcl.Range, path string) string {
	b, err := readSmallFile(path)
	if err != nil {
		c.errorf(rng, "Cannot read password_file", "%s", err)
		return ""
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		c.errorf(rng, "Invalid password_file", "%q is empty; remove password_file to send no password.", path)
		return ""
	}
	c.secretFile(rng, "password_file", path, "the Redis password")
	return pw
}
