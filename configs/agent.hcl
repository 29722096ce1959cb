# ftpsgate agent configuration: the outbound-only agent, run inside next to
# the FTP server (ftpsgate agent -config /etc/ftpsgate/agent.hcl). It dials
# the edge (an ftpsgate in the DMZ whose backend says via_agent) and opens
# on its request only the connections allow_targets permit.
# Check it with: ftpsgate agent -check -config /etc/ftpsgate/agent.hcl
# SIGHUP rereads it: allow_targets at once for new streams, the edge and
# the certificate for new connections to the edge; sessions and
# health_address need a restart; a file that does not load is logged and
# the running configuration kept.

# The edge's agent_listener, host:port. The only connection the agent
# makes outward.
edge = "edge.dmz.example:7443"
# The name the edge's certificate must carry; default: the host of edge.
# server_name = "edge.dmz.example"
# The CA that signed the edge's certificate: pinned, the system roots are
# not used.
ca_file = "/etc/ftpsgate/edge-ca.pem"
# The agent's own certificate and key, signed by the edge's client_ca_file;
# its common name (or a DNS name) is the agent's name, which the edge's
# allowed_names must list and its backends' via_agent name.
cert_file = "/etc/ftpsgate/agent.crt"
key_file  = "/etc/ftpsgate/agent.key"
# Connections kept to the edge (1 to 16), each carrying any number of
# sessions; two, so that one being re-established leaves the other.
# sessions = 2
# The only connections the agent opens, IP:port or IP:first-last: the FTP
# server's control port and its passive range (vsftpd pasv_min_port and
# pasv_max_port). A request for anything else is refused and logged.
allow_targets = ["10.0.0.5:21", "10.0.0.5:40000-40100"]
# Bounds on a connection to a target, and on the TCP and TLS handshake
# with the edge.
# dial_timeout      = "10s"
# handshake_timeout = "10s"
# An HTTP listener with /healthz (200 while connected to the edge, else 503)
# and /metrics (sessions, reconnects, streams, refusals). No credentials:
# keep it on loopback or a management network. Default: none.
# health_address = "127.0.0.1:9101"
