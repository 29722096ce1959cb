package policy

import (
	"fmt"
	"net/netip"
	"slices"
)

// RuleActiveAddress is the rule name of a refused PORT or EPRT target.
const RuleActiveAddress = "active_address"

// ActiveTarget decides whether the proxy may open an active-mode data
// connection to target, which a client at client named in PORT or EPRT.
// The target must be the client's own address, or the proxy would attack
// another host for it (the FTP bounce attack, RFC 2577 §3), and a port from
// 1024, or it would write into a privileged service. Unless allowLocal (a
// listener's active_allow_local), the target must also not be loopback,
// unspecified, or one of own (the addresses of the proxy's host and of its
// backends): a client whose address is one of those, a local one or one a
// trusted PROXY header names so, would aim the proxy at services on those
// hosts. A nil Denial allows the target; otherwise reason says why in
// detail, for the log and the audit, while the Denial's text (the reply)
// does not.
func ActiveTarget(target netip.AddrPort, client netip.Addr, own []netip.Addr, allowLocal bool) (d *Denial, reason string) {
	a := target.Addr().Unmap()
	refuse := func(text, why string) (*Denial, string) {
		return &Denial{RuleActiveAddress, 504, text}, why
	}
	const bounce = "only your own address and ports from 1024 are allowed."
	switch {
	case a != client.Unmap():
		return refuse(bounce, "address "+a.String()+" is not the client's")
	case target.Port() < 1024:
		return refuse(bounce, fmt.Sprintf("privileged port %d", target.Port()))
	case allowLocal:
		return nil, ""
	}
	const local = "active mode to your address is not allowed here; use PASV or EPSV."
	switch {
	case a.IsLoopback():
		return refuse(local, "loopback address "+a.String()+" (listener active_allow_local is off)")
	case a.IsUnspecified():
		return refuse(local, "unspecified address "+a.String())
	case slices.ContainsFunc(own, func(o netip.Addr) bool { return o.Unmap().WithZone("") == a.WithZone("") }):
		return refuse(local, "address "+a.String()+" belongs to the proxy's host or a backend (listener active_allow_local is off)")
	}
	return nil, ""
}
