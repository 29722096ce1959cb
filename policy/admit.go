package policy

import "net/netip"

// Rule names of the proxy's admission of connections, as they appear in
// logs and audit events.
const (
	// RuleServerSessions: the server holds limits.max_sessions sessions.
	RuleServerSessions = "max_sessions"
	// RuleClientSessions: the client (its address, or its IPv6 prefix:
	// ClientKey) holds limits.max_sessions_per_ip.
	RuleClientSessions = "max_sessions_per_ip"
	// RuleAuditUnavailable: the audit stream cannot be written and
	// audit.on_error is "refuse".
	RuleAuditUnavailable = "audit_unavailable"
	// RuleDataPeer: a data connection came from an address that is not
	// the client's (DataPeer).
	RuleDataPeer = "data_peer"
)

// Refusals the proxy decides from the protocol itself, not from a rule of
// the configuration, by the names the audit gives them.
const (
	// RuleStartTLSInjection: plaintext pipelined after AUTH TLS
	// (CVE-2011-0411).
	RuleStartTLSInjection = "starttls_injection"
	// RuleTLSOnPlaintextPort: a TLS ClientHello on the explicit
	// listener's plaintext port.
	RuleTLSOnPlaintextPort = "tls_on_plaintext_port"
	// RuleTLSHandshake: a client's control TLS handshake failed.
	RuleTLSHandshake = "tls_handshake"
	// RuleNoCertificate: the listener takes its certificate from an acme
	// block that has obtained none yet (AUTH TLS answered 431; an
	// implicit listener's connection closed).
	RuleNoCertificate = "no_certificate"
	// RuleDataHandshake: a data connection's TLS handshake failed, or a
	// passive port took too many attempts.
	RuleDataHandshake = "data_handshake"
	// RuleSessionReuse: a data connection's TLS session does not resume
	// its control connection's (require_session_reuse).
	RuleSessionReuse = "session_reuse"
	// RuleBackendPassivePort: a backend's PASV or EPSV named a
	// privileged port.
	RuleBackendPassivePort = "backend_passive_port"
)

// Admission is what the proxy knows of the server when a connection comes,
// the new session counted in.
type Admission struct {
	// Sessions is how many sessions the server holds; MaxSessions bounds
	// them (0: no bound).
	Sessions, MaxSessions int
	// FromClient is how many of them come from the new session's client
	// (ClientKey); MaxPerClient bounds them (0: no bound).
	FromClient, MaxPerClient int
	// AuditRefuses: the audit stream cannot be written and
	// audit.on_error is "refuse".
	AuditRefuses bool
}

// Admit decides whether a new connection is served, once its address has
// passed Address and Bans.Check: not while the audit refuses, and not past
// the server's or the client's session bound.
func Admit(a Admission) *Denial {
	switch {
	case a.AuditRefuses:
		return &Denial{RuleAuditUnavailable, 421, "Service not available: the audit log cannot be written; try again later."}
	case a.MaxSessions > 0 && a.Sessions > a.MaxSessions:
		return &Denial{RuleServerSessions, 421, "Too many users connected; try again later."}
	case a.MaxPerClient > 0 && a.FromClient > a.MaxPerClient:
		return &Denial{RuleClientSessions, 421, "Too many connections from your address."}
	}
	return nil
}

// DataPeer decides whether a connection from peer to a session's passive
// port may be its data connection: it must come from the client's address
// (RFC 2577 §5: port stealing), or from balancer, the load balancer whose
// PROXY header named the client (invalid when none), which may forward
// the passive ports too. A refusal's reason says what came, for the log
// and the audit; clientKey is the client's block (ClientKey), named when
// peer is another address in it.
func DataPeer(peer, client, balancer netip.Addr, clientKey netip.Prefix) (refused bool, reason string) {
	if peer == client || (balancer.IsValid() && peer == balancer) {
		return false, ""
	}
	why := "data connection from " + peer.String()
	if clientKey.Contains(peer.Unmap()) {
		// Another address of the client's IPv6 prefix (a privacy
		// address, or a neighbour): still not the client.
		why += ", within the client's " + clientKey.String() + " but not its address"
	}
	return true, why
}
