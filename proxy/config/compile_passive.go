package config

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// passiveOverrides compiles a listener's passive_address_overrides, a list
// of objects { networks = [CIDR ranges or addresses], address = "IPv4" }.
// Each problem is reported at its element. An element whose networks a
// client could never match (each lies inside a network of an element
// before it, which wins) is refused: it would read as a rule and never
// apply.
func (c *compiler) passiveOverrides(lb *listenerBlock, l *Listener) {
	attr := lb.PassiveAddressOverrides
	if attr == nil {
		return
	}
	v, diags := attr.Expr.Value(nil)
	c.diags = append(c.diags, diags...)
	if diags.HasErrors() {
		return
	}
	r := attr.Expr.Range()
	if v.IsNull() || !(v.Type().IsTupleType() || v.Type().IsListType()) || !v.IsWhollyKnown() {
		c.errorf(&r, "Invalid passive_address_overrides",
			"passive_address_overrides must be a list of { networks = [\"10.0.0.0/8\"], address = \"10.1.2.3\" }.")
		return
	}
	var elems []int // the element number of each compiled override
	for i, ev := range v.AsValueSlice() {
		er := elemExprRange(attr.Expr, i)
		o, ok := c.passiveOverride(er, i+1, ev)
		if !ok {
			continue
		}
		for j, prev := range l.PassiveAddressOverrides {
			for _, n := range o.Networks {
				if k := slices.IndexFunc(prev.Networks, func(p netip.Prefix) bool {
					return p.Bits() <= n.Bits() && p.Contains(n.Addr())
				}); k >= 0 {
					c.errorf(er, "Unreachable passive_address_overrides",
						"Element %d's network %s lies inside element %d's %s, which comes first and wins.", i+1, n, elems[j], prev.Networks[k])
				}
			}
		}
		l.PassiveAddressOverrides = append(l.PassiveAddressOverrides, o)
		elems = append(elems, i+1)
	}
}

// passiveOverride compiles the n-th element of passive_address_overrides,
// ev, whose source is at r.
func (c *compiler) passiveOverride(r *hcl.Range, n int, ev cty.Value) (PassiveAddressOverride, bool) {
	var o PassiveAddressOverride
	if ev.IsNull() || !(ev.Type().IsObjectType() || ev.Type().IsMapType()) {
		c.errorf(r, "Invalid passive_address_overrides",
			"Element %d must be an object: { networks = [\"10.0.0.0/8\"], address = \"10.1.2.3\" }.", n)
		return o, false
	}
	attrs := ev.AsValueMap()
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	ok := true
	for _, name := range names {
		if name != "networks" && name != "address" {
			c.errorf(r, "Invalid passive_address_overrides",
				"Element %d has an attribute %q; an element has only networks and address.", n, name)
			ok = false
		}
	}
	nv, present := attrs["networks"]
	var err error
	if present {
		nv, err = convert.Convert(nv, cty.List(cty.String))
	}
	if !present || err != nil || nv.IsNull() {
		c.errorf(r, "Invalid passive_address_overrides",
			"Element %d needs networks, a list of client ranges (\"10.0.0.0/8\") it applies to.", n)
		return o, false
	}
	var networks []string
	for _, s := range nv.AsValueSlice() {
		if s.IsNull() {
			c.errorf(r, "Invalid passive_address_overrides", "Element %d: a network is null.", n)
			return o, false
		}
		networks = append(networks, s.AsString())
	}
	if len(networks) == 0 {
		c.errorf(r, "Invalid passive_address_overrides",
			"Element %d has no networks: name the client ranges (\"10.0.0.0/8\") it applies to.", n)
		ok = false
	}
	o.Networks = c.cidrs(r, "passive_address_overrides networks", &networks)
	av, present := attrs["address"]
	if present {
		av, err = convert.Convert(av, cty.String)
	}
	if !present || err != nil || av.IsNull() {
		c.errorf(r, "Invalid passive_address_overrides",
			"Element %d needs address, the IPv4 address its clients are told in 227 replies.", n)
		return o, false
	}
	a, perr := netip.ParseAddr(av.AsString())
	switch {
	case perr != nil:
		c.errorf(r, "Invalid passive_address_overrides", "Element %d: address must be an IP address: %s", n, perr)
		return o, false
	case !a.Unmap().Is4():
		c.errorf(r, "Invalid passive_address_overrides",
			"Element %d: address is advertised in PASV replies, which carry only IPv4; %s is not IPv4.", n, a)
		return o, false
	}
	o.Address = a.Unmap()
	return o, ok && len(o.Networks) == len(networks)
}

// elemExprRange is the range of the i-th element of a literal list
// expression, or of the whole expression otherwise.
func elemExprRange(expr hcl.Expression, i int) *hcl.Range {
	if t, ok := expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
		r := t.Exprs[i].Range()
		return &r
	}
	r := expr.Range()
	return &r
}
