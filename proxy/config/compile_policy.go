package config

import (
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/ftpsgate/ftpsgate/policy"
)

// The names of the policy block's enumerated attributes.
var (
	unknownCommands = enum[bool]{{name: "reject", value: false, note: "502, the default"}, {name: "relay", value: true}}
	userNames       = enum[policy.UserNames]{{name: "case_insensitive", value: policy.CaseInsensitive, note: "the default"},
		{name: "exact", value: policy.Exact}}
)

// policy compiles the policy block into cfg.Policy; policy.Rules.Problems
// judges the rules, and each problem is reported at its attribute.
func (c *compiler) policy(pb *policyBlock, cfg *Config) {
	r := &cfg.Policy
	if pb.RequireTLS != nil {
		r.RequireTLS = *pb.RequireTLS
	}
	if pb.RequireProtP != nil {
		r.RequireProtP = *pb.RequireProtP
	}
	for _, l := range []struct {
		v   *[]string
		dst *[]string
	}{{pb.AllowUsers, &r.AllowUsers}, {pb.DenyUsers, &r.DenyUsers}, {pb.ReadOnly, &r.ReadOnlyUsers}} {
		if l.v != nil {
			*l.dst = append([]string(nil), *l.v...)
		}
	}
	for _, l := range []struct {
		v   *[]string
		dst *[]string
	}{{pb.AllowCmds, &r.AllowCommands}, {pb.DenyCmds, &r.DenyCommands}, {pb.ReadOnlyCmds, &r.ReadOnlyCommands}} {
		if l.v == nil {
			continue
		}
		for _, v := range *l.v {
			// "site  chmod" is "SITE CHMOD": verbs are case-insensitive.
			*l.dst = append(*l.dst, strings.Join(strings.Fields(strings.ToUpper(v)), " "))
		}
	}
	unknownAt := at(pb.UnknownAt, pb.DefRange)
	choose(c, unknownAt, "Invalid policy", "unknown_commands", pb.Unknown, &r.RelayUnknown, unknownCommands, "")
	if r.RelayUnknown {
		c.warnf(unknownAt, "Unknown commands relayed",
			"unknown_commands = \"relay\" sends verbs ftpsgate does not know to the backend, whose effect no rule can judge (they count as writes for read-only users). Prefer naming the few your clients need.")
	}
	choose(c, at(pb.UserNamesAt, pb.DefRange), "Invalid policy", "user_names", pb.UserNames, &r.UserNames, userNames, "")
	if pb.MaxPerUser != nil {
		r.MaxSessionsPerUser = *pb.MaxPerUser
	}
	attrs := map[string]hcl.Range{
		"allow_users": pb.AllowUsersAt, "deny_users": pb.DenyUsersAt, "read_only_users": pb.ReadOnlyAt,
		"allow_commands": pb.AllowCmdsAt, "deny_commands": pb.DenyCmdsAt, "read_only_commands": pb.ReadOnlyCmdsAt,
		"max_sessions_per_user": pb.MaxPerUserAt,
	}
	for _, p := range r.Problems() {
		summary := "Invalid policy"
		if p.Unreachable {
			summary = "Unreachable rule"
		}
		c.errorf(at(attrs[p.Attr], pb.DefRange), summary, "%s", p.Detail)
	}
}

// routes compiles the route blocks: the backend must exist, the patterns
// parse, and every route must be reachable (a route after one that matches
// everything, or with the same lists as an earlier one, never takes a
// session).
func (c *compiler) routes(fs *fileSchema, cfg *Config) {
	for i := range fs.Routes {
		rb := &fs.Routes[i]
		if slices.ContainsFunc(cfg.Routes, func(rt policy.Route) bool { return rt.Name == rb.Name }) {
			c.errorf(&rb.DefRange, "Duplicate route", "A route named %q is already defined.", rb.Name)
			continue
		}
		rt := c.route(rb)
		if s := c.scanNamed(cfg, at(rb.ScanAt, rb.DefRange), "Route "+strconv.Quote(rb.Name), rb.Scan); s != nil {
			rt.Scan = s.Name
		}
		if _, ok := cfg.Backends[rb.Backend]; !ok {
			c.errorf(at(rb.BackendAt, rb.DefRange), "Unknown backend",
				"Route %q names backend %q, which no backend block defines.", rb.Name, rb.Backend)
		}
		for _, prev := range cfg.Routes {
			if prev.CatchAll() {
				c.errorf(&rb.DefRange, "Unreachable route",
					"Route %q comes after route %q, which matches every session.", rb.Name, prev.Name)
				break
			}
			if slices.Equal(prev.Users, rt.Users) && slices.Equal(prev.Hosts, rt.Hosts) && slices.Equal(prev.SNI, rt.SNI) {
				c.errorf(&rb.DefRange, "Unreachable route",
					"Route %q matches the same sessions as route %q, which comes first.", rb.Name, prev.Name)
				break
			}
		}
		cfg.Routes = append(cfg.Routes, rt)
	}
}

// route compiles one route block's lists: host names and SNI in lower
// case, each list not empty and its patterns valid.
func (c *compiler) route(rb *routeBlock) policy.Route {
	rt := policy.Route{Name: rb.Name, Backend: rb.Backend}
	for _, l := range []struct {
		attr  string
		v     *[]string
		r     hcl.Range
		dst   *[]string
		lower bool
	}{{"users", rb.Users, rb.UsersAt, &rt.Users, false}, {"hosts", rb.Hosts, rb.HostsAt, &rt.Hosts, true},
		{"sni", rb.SNI, rb.SNIAt, &rt.SNI, true}} {
		if l.v == nil {
			continue
		}
		r := at(l.r, rb.DefRange)
		if len(*l.v) == 0 {
			c.errorf(r, "Invalid route", "%s is empty: leave it out to match anything.", l.attr)
		}
		for _, p := range *l.v {
			if l.lower {
				p = strings.ToLower(p)
			}
			*l.dst = append(*l.dst, p)
		}
		if err := policy.ValidPatterns(*l.dst); err != nil {
			c.errorf(r, "Invalid route", "%s: %s", l.attr, err)
		}
	}
	return rt
}
