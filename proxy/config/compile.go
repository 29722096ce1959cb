// Package config loads ftpsgate's HCL configuration into an immutable
// runtime snapshot, or reports every problem it finds with its file and line.
//
// The snapshot's types are in types.go, every default in defaults.go, the
// file's shape (gohcl structs) in schema.go; Parse decodes the file and
// compiles it block by block (compile*.go).
package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Load reads and compiles the configuration file at path. On any problem it
// returns a nil Config and diagnostics naming each problem's file and line.
func Load(path string) (*Config, hcl.Diagnostics) {
	src, err := readSmallFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   err.Error(),
		}}
	}
	return Parse(src, path)
}

// Parse compiles configuration source; filename is used in diagnostics and
// to resolve nothing else (certificate paths are taken as given).
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var fs fileSchema
	diags = append(diags, gohcl.DecodeBody(file.Body, nil, &fs)...)
	if diags.HasErrors() {
		return nil, diags
	}
	c := &compiler{src: src, filename: filename}
	cfg := c.compile(&fs)
	diags = append(diags, c.diags...)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// compiler turns the decoded file into a Config, collecting every problem.
type compiler struct {
	src      []byte // the file, for the ranges of list elements (elemRange)
	filename string
	diags    hcl.Diagnostics
	// The blocks that became cfg.Listeners and cfg.Backends, in the
	// file's order (a duplicate is skipped), for checks that name them.
	listeners  []*listenerBlock
	backends   []*backendBlock
	acmeBlocks []*acmeBlock
	// adminAt is where the admin listener's address is set (its block,
	// when it is the default).
	adminAt *hcl.Range
	// agentAt is where the agent listener's address is set.
	agentAt *hcl.Range
	// exposed are the secret files already warned about: listeners
	// often share one key.
	exposed map[string]bool
}

// compile builds the Config from the defaults (defaults.go) and what the
// file sets, block by block, then checks what spans blocks.
func (c *compiler) compile(fs *fileSchema) *Config {
	cfg := defaultConfig()
	c.auths(fs, cfg)
	c.scans(fs, cfg)
	c.notifies(fs, cfg)
	for i := range fs.Backends {
		c.backend(&fs.Backends[i], cfg)
	}
	for i := range fs.ACME {
		c.acme(&fs.ACME[i], cfg)
	}
	for i := range fs.Listeners {
		c.listener(&fs.Listeners[i], cfg)
	}
	if len(fs.Listeners) == 0 {
		c.errorf(nil, "No listener", "The configuration needs at least one listener block.")
	}
	c.checkOverlaps(cfg)
	c.agentListener(fs, cfg)
	if fs.Policy != nil {
		c.policy(fs.Policy, cfg)
	}
	c.routes(fs, cfg)
	c.authLinks(fs, cfg)
	if fs.Audit != nil {
		c.audit(fs.Audit, cfg)
	}
	if fs.Timeouts != nil {
		c.timeouts(fs.Timeouts, cfg)
	}
	c.checkQueueTimeouts(cfg)
	if fs.Limits != nil {
		c.limits(fs.Limits, cfg)
	}
	if fs.Rates != nil {
		c.rates(fs.Rates, cfg)
	}
	if fs.Admin != nil {
		c.admin(fs.Admin, cfg)
	}
	if fs.Bans != nil {
		c.bans(fs.Bans, cfg)
	}
	cfg.Bans.IPv6Prefix = cfg.Limits.IPv6Prefix
	if fs.State != nil {
		c.state(fs.State, cfg)
	}
	c.acmeStorageRedis(cfg)
	c.checkSockets(cfg)
	return cfg
}

func (c *compiler) errorf(subject *hcl.Range, summary, format string, args ...any) {
	c.diags = append(c.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject,
	})
}

// warnf records a warning: the configuration is valid, but weaker than it
// should be. validate prints it; run logs it.
func (c *compiler) warnf(subject *hcl.Range, summary, format string, args ...any) {
	c.diags = append(c.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject,
	})
}

// at is where a diagnostic about an attribute points: the attribute's
// value (attr, from an attr_value_range field), or, when the attribute is
// not set (attr is zero), the header of its block (block).
func at(attr, block hcl.Range) *hcl.Range {
	if attr.Filename == "" {
		return &block
	}
	return &attr
}

// elemRange is the range of the i-th element of the list attribute whose
// value is at r, or r itself when the value is not a literal list.
func (c *compiler) elemRange(r *hcl.Range, i int) *hcl.Range {
	if r.Start.Byte < 0 || r.End.Byte > len(c.src) || r.Start.Byte >= r.End.Byte {
		return r
	}
	expr, diags := hclsyntax.ParseExpression(c.src[r.Start.Byte:r.End.Byte], c.filename, r.Start)
	if t, ok := expr.(*hclsyntax.TupleConsExpr); ok && !diags.HasErrors() && i < len(t.Exprs) {
		er := t.Exprs[i].Range()
		return &er
	}
	return r
}

// An enum is the names an enumerated attribute may take and what each
// compiles to, in the order its error message lists them; a note, if
// set, follows its name there ("the default").
type enum[T any] []struct {
	name  string
	value T
	note  string
}

// choose sets *dst to the value of the name *v, if v is set. Another name
// is an error: summary, with the detail "attr must be "a", "b" or "c", not
// "x"." and why, if set, after the name (": older versions are broken").
func choose[T any](c *compiler, r *hcl.Range, summary, attr string, v *string, dst *T, e enum[T], why string) {
	if v == nil {
		return
	}
	names := make([]string, len(e))
	for i, o := range e {
		if o.name == *v {
			*dst = o.value
			return
		}
		names[i] = strconv.Quote(o.name)
		if o.note != "" {
			names[i] += " (" + o.note + ")"
		}
	}
	list := names[0]
	if len(names) > 1 {
		list = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	}
	if why == "" {
		why = "."
	}
	c.errorf(r, summary, "%s must be %s, not %q%s", attr, list, *v, why)
}

// duration compiles a positive duration attribute into *dst, if v is set.
func (c *compiler) duration(r *hcl.Range, name string, v *string, dst *time.Duration) {
	if v == nil {
		return
	}
	d, err := time.ParseDuration(*v)
	if err != nil || d <= 0 {
		c.errorf(r, "Invalid duration",
			"%s must be a positive duration such as \"30s\" or \"5m\", not %q.", name, *v)
		return
	}
	*dst = d
}

// cidrs compiles a list of address ranges. An address with host bits set
// ("10.0.0.1/8") is refused, as it likely means something else; so is an
// entry already covered by another of the same list.
func (c *compiler) cidrs(r *hcl.Range, attr string, v *[]string) []netip.Prefix {
	if v == nil {
		return nil
	}
	var out []netip.Prefix
	for _, s := range *v {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen()) // a lone address
			} else {
				c.errorf(r, "Invalid address range", "%s: %q is not a CIDR range such as \"10.0.0.0/8\".", attr, s)
				continue
			}
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Masked() != p {
			c.errorf(r, "Invalid address range",
				"%s: %s has host bits set; did you mean %s?", attr, s, p.Masked())
			continue
		}
		for _, q := range out {
			if q.Overlaps(p) {
				c.errorf(r, "Overlapping address ranges", "%s: %s overlaps %s.", attr, p, q)
			}
		}
		out = append(out, p)
	}
	return out
}

// checkHostPort reports what is wrong with s as an address to listen on
// (listen: the host may be empty, the port 0) or to connect to.
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (p == 0 && !listen) {
		return fmt.Errorf("%q has an invalid port", s)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}
