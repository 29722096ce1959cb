package config

import (
	"net/netip"
	"slices"
)

// agentListener compiles the agent_listener block, and checks each
// backend's via_agent against it: a name it allows, and passive data
// (the backend cannot reach the edge).
func (c *compiler) agentListener(fs *fileSchema, cfg *Config) {
	if ab := fs.AgentListener; ab != nil {
		al := &AgentListener{Address: ab.Address, CertFile: ab.CertFile, KeyFile: ab.KeyFile}
		c.agentAt = at(ab.AddressAt, ab.DefRange)
		if err := checkHostPort(ab.Address, true); err != nil {
			c.errorf(at(ab.AddressAt, ab.DefRange), "Invalid agent_listener address", "%s", err)
		}
		if cert, err := LoadKeyPair(ab.CertFile, ab.KeyFile); err != nil {
			c.errorf(at(ab.CertFileAt, ab.DefRange), "Cannot load certificate",
				"Loading cert_file %q and key_file %q: %s", ab.CertFile, ab.KeyFile, err)
		} else {
			al.Certificate = &cert
			c.secretFile(at(ab.KeyFileAt, ab.DefRange), "key_file", ab.KeyFile, "the private key")
		}
		r := at(ab.ClientCAFileAt, ab.DefRange)
		al.ClientCAs = c.pemPool(r, "client_ca_file", ab.ClientCAFile)
		nr := at(ab.AllowedNamesAt, ab.DefRange)
		if len(ab.AllowedNames) == 0 {
			c.errorf(nr, "Invalid allowed_names", "allowed_names must name the agents accepted (their certificates' names).")
		}
		for i, n := range ab.AllowedNames {
			if n == "" || slices.Contains(ab.AllowedNames[:i], n) {
				c.errorf(c.elemRange(nr, i), "Invalid allowed_names", "%q is empty or listed twice.", n)
			}
		}
		al.AllowedNames = ab.AllowedNames
		cfg.AgentListener = al
	}
	for _, bb := range c.backends {
		if bb.ViaAgent == nil {
			continue
		}
		b, r := cfg.Backends[bb.Name], at(bb.ViaAgentAt, bb.DefRange)
		b.ViaAgent = *bb.ViaAgent
		switch {
		case cfg.AgentListener == nil:
			c.errorf(r, "Invalid via_agent", "Backend %q is reached through agent %q, but no agent_listener block accepts agents.", bb.Name, b.ViaAgent)
		case !slices.Contains(cfg.AgentListener.AllowedNames, b.ViaAgent):
			c.errorf(r, "Invalid via_agent", "Backend %q names agent %q, which agent_listener's allowed_names does not list.", bb.Name, b.ViaAgent)
		}
		for _, addr := range b.Servers {
			if _, err := netip.ParseAddrPort(addr); err != nil {
				c.errorf(at(bb.AddressAt, *at(bb.ServersAt, bb.DefRange)), "Invalid via_agent",
					"Backend %q is reached through an agent, which connects only to IP addresses (its allow_targets): %q is not IP:port.", bb.Name, addr)
			}
		}
		if b.ActiveData {
			c.errorf(at(bb.DataModeAt, bb.DefRange), "Invalid data mode",
				"Backend %q is reached through an agent: it cannot connect to the edge, so data_mode must be \"passive\".", bb.Name)
		}
	}
}
