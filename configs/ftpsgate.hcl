# ftpsgate configuration: a documented example.
# Check it with: ftpsgate validate -config /etc/ftpsgate/ftpsgate.hcl
# Durations are Go durations ("30s", "5m"). Every problem is reported with
# its file and line.

# A listener is one front socket. Several may run in one process.
listener "ftps" {
  # host:port to listen on.
  address = "0.0.0.0:21"
  # "explicit": plaintext 220 greeting, then AUTH TLS (RFC 4217).
  # "implicit": TLS from the first byte (customarily port 990).
  tls = "explicit"
  # PEM certificate chain and key, RSA or ECDSA.
  cert_file = "/etc/ftpsgate/tls.crt"
  key_file  = "/etc/ftpsgate/tls.key"
  # Or, instead of cert_file and key_file, certificates obtained and renewed
  # automatically by the acme block of this name (see below).
  # acme = "public"
  # Oldest TLS version accepted: "1.2" (default) or "1.3".
  # tls_min_version = "1.2"
  # TLS 1.2 cipher suites, by Go's names. Default: ECDHE with AES-GCM or
  # ChaCha20-Poly1305 (Mozilla's intermediate profile). Add a CBC suite only
  # for a named old client; validate warns while one is listed. TLS 1.3
  # suites are always on and cannot be chosen.
  # tls_cipher_suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]
  # PROT P data connections must resume the TLS session of their control
  # connection, or of another session of the same address and user (a
  # stranger cannot race the passive port). Turn off only for clients that
  # cannot resume (the README's compatibility matrix lists them).
  # require_session_reuse = true
  # An upload under PROT P must end with the client's TLS close_notify; a bare
  # FIN (a connection cut on the path) fails it with 426. "warn" accepts it
  # with a warning, for clients known to close uncleanly.
  # upload_close_notify = "require"
  # Client addresses served (empty: all) and refused, before TLS (421).
  # allow_cidrs = ["198.51.100.0/24", "2001:db8:42::/48"]
  # deny_cidrs  = []
  # The proxy's own passive ports: open these in the firewall, and nothing
  # toward the backend. Ranges of two listeners must not overlap.
  passive_ports = "50000-50999"
  # The address advertised in 227 replies when clients reach the proxy
  # through NAT. Default: the address the client connected to.
  public_address = "203.0.113.10"
  # Another address for 227 replies to clients of some networks: internal
  # clients reach the proxy at its internal address, not through hairpin
  # NAT. The first element whose networks hold the client's address wins,
  # otherwise public_address. EPSV replies carry no address.
  # passive_address_overrides = [
  #   { networks = ["10.0.0.0/8", "192.168.0.0/16"], address = "10.1.2.3" },
  # ]
  # Where sessions go (see the backend blocks).
  backend = "legacy"
  # Text of the proxy's 220 greeting.
  # greeting = "ftpsgate ready"
  # Let PORT/EPRT name loopback or an address of this host or a backend
  # (when the client's address is one of those). Off, a local client could
  # aim the proxy at local services.
  # active_allow_local = false
  # Data bytes per second of all this listener's transfers together
  # ("100MiB"); "0" or absent: no limit. See the rates block.
  # rate_down = "0"
  # rate_up   = "0"

  # Check logins here, against an auth block, before any connection to the
  # backend opens: a wrong password, an unknown user or a refused name
  # never reaches it. Omitted: the backend checks the client's password.
  # auth = "staff"
  # Mutual TLS: ask clients for a certificate at the handshake (implicit
  # FTPS: on connect; explicit: at AUTH TLS), verified against this CA. One
  # from another CA fails the handshake. "optional": a client may present
  # one; "require": the handshake fails without one. An auth block's cert
  # block maps the certificate to a user. Default: none asked for.
  # client_auth    = "require"
  # client_ca_file = "/etc/ftpsgate/client-ca.pem"
  # Behind a load balancer that sends the PROXY protocol (HAProxy
  # send-proxy, AWS NLB): the client's address comes from its header, which
  # is required from these balancers and believed from no one else.
  # proxy_protocol {
  #   trusted_cidrs  = ["10.0.0.0/24"]
  #   header_timeout = "5s"
  #   allow_direct   = false  # true: also serve clients that connect directly
  # }
  # Uploads go through this scan block's scanner before their 226 (see the
  # scan blocks below). Default: not scanned.
  # scan = "clamav"
}

listener "ftps-implicit" {
  address       = "0.0.0.0:990"
  tls           = "implicit"
  cert_file     = "/etc/ftpsgate/tls.crt"
  key_file      = "/etc/ftpsgate/tls.key"
  passive_ports = "51000-51999"
  backend       = "legacy"
}

# Automatic certificates over ACME (Let's Encrypt, or a private CA such as
# step-ca): a listener names the block with acme = "public" in place of
# cert_file and key_file. Obtained at start (or loaded from storage while
# valid), renewed in the background; new handshakes take the new certificate.
# Until a first certificate exists, AUTH TLS is answered 431 and an implicit
# listener closes its connections. The CA validates the domains on this
# host's port 80 (http01) or 443 (tls_alpn01): FTP's own ports never answer
# a challenge. Read at start only: changing it needs a restart.
# acme "public" {
#   domains = ["ftp.example.com"]   # one certificate each; the first is served without SNI
#   email   = "ops@example.com"     # the CA's expiry and policy notices
#   # The CA's ACME directory. Default: Let's Encrypt's production directory.
#   directory = "https://acme-v02.api.letsencrypt.org/directory"
#   # The only roots trusted for the directory's HTTPS (a private CA's root
#   # file, e.g. step-ca's or Pebble's). Default: the system's roots.
#   ca_roots = "/etc/ftpsgate/acme-ca.pem"
#   # Account key, certificates, keys and locks (created 0700). Instances
#   # sharing it on a shared volume issue once.
#   storage = "/var/lib/ftpsgate/acme"
#   # Or all of it in the state block's Redis (needs state { redis { … } }),
#   # locks expiring unless refreshed: instances issue once, no shared volume.
#   storage_redis = false
#   # External account binding, for CAs that require one (ZeroSSL, Google,
#   # step-ca with EAB): the key id and a file holding the MAC key.
#   eab {
#     key_id    = "kid-1"
#     hmac_file = "/etc/ftpsgate/acme-eab.key"
#   }
#   # The challenge listeners: at least one, the same host for both.
#   http01 {
#     address = ":80"     # the CA's requests; 404 to anything else, never a redirect
#   }
#   tls_alpn01 {
#     address = ":443"    # acme-tls/1 handshakes only
#   }
#   # Or DNS-01 (used alone: no http01 or tls_alpn01 in the same block): a TXT
#   # record set through a DNS provider; the only way to wildcard domains
#   # ("*.example.com") and to hosts the CA cannot reach.
#   dns01 {
#     provider = "rfc2136"            # dynamic updates with a TSIG key: BIND, Knot, PowerDNS
#     server        = "ns1.example.com:53"  # the zone's primary, which takes updates
#     key_name      = "acme-update"
#     key_algorithm = "hmac-sha256"   # default; hmac-sha1/224/384/512 also
#     key_file      = "/etc/ftpsgate/tsig.key"  # the key's base64 secret alone
#     # Servers asked whether the record is visible yet. Default: the zone's
#     # authoritative servers, found through the system's resolvers.
#     resolvers = ["ns1.example.com:53"]
#     propagation_timeout = "2m"      # then the attempt fails and is retried
#   }
#   # On-demand issuance: a handshake whose SNI matches a pattern ("*" is one
#   # label) gets a certificate for that name on the spot; other names, and
#   # clients sending no SNI, get the first domain's. At most rate orders
#   # (N/period; default "10/1h"), so that made-up names cannot spend the
#   # CA's rate limits.
#   on_demand {
#     allow = ["*.customers.example.com"]
#     rate  = "10/1h"
#   }
# }

# A backend is an FTP server behind the proxy. The proxy connects to it when
# the client sends USER, and opens data connections to its control host
# only, whatever address its PASV replies name.
backend "legacy" {
  address = "10.0.0.5:21"
  # Or a pool of equivalent servers (instead of address): a session whose
  # server fails is moved to the next; 421 only when all have failed.
  # servers = ["10.0.0.5:21", "10.0.0.6:21"]
  # balance = "least_conn"   # or "round_robin" (default), "sticky_user"
  # health_check {
  #   interval = "10s"       # a TCP connection and a 220 greeting
  #   timeout  = "5s"
  #   rise     = 2
  #   fall     = 3
  # }
  # Shield a fragile server from bursts; each bound applies to each server.
  # Sessions at once (0: no bound; set it a little below the server's own
  # cap, e.g. 95 for pure-ftpd -c 100): past it a login waits in a queue,
  # first come first served, up to queue_timeout (then 421 Server busy).
  # max_sessions  = 0
  # queue_timeout = "30s"
  # Connections being set up at once (dial to greeting), so that a burst
  # never overflows a short listen backlog (pure-ftpd's is -c/8 + 3).
  # max_dials     = 16
  # Tries again after a refused, reset or closed connection or a 421
  # greeting, with a short jittered backoff, before the next server.
  # retries       = 2
  # "none": plain FTP toward the backend. "explicit": the proxy sends
  # AUTH TLS, PBSZ 0 and PROT P; "implicit": TLS from the first byte.
  tls = "none"
  # For an FTPS backend: the CA that signed its certificate (default: the
  # system roots) and the name it must carry (default: the address's host).
  # ca_file         = "/etc/ftpsgate/backend-ca.pem"
  # server_name     = "ftp.internal.example.com"
  # tls_min_version = "1.2"
  # tls_max_version = "1.3"
  # insecure_skip_verify = false  # true: no verification (logged at start)
  # How the proxy opens the backend's data connections: "passive" (EPSV,
  # then PASV) or "active" (EPRT, then PORT: the backend connects back).
  # data_mode = "passive"
  # Pass a client's HOST (RFC 7151) on, for servers with virtual hosts.
  # send_host = false
  # Start each control connection with a PROXY header naming the client,
  # for servers that read it: "v1", "v2" or "none"; with v2, TLVs can say
  # what the client's TLS was.
  # proxy_protocol      = "none"
  # proxy_protocol_tlvs = false
  # Reach this backend through the outbound-only agents of this name
  # (ftpsgate agent, inside; see agent_listener below and configs/agent.hcl):
  # control and data connections are streams the agent opens, and this
  # proxy never connects into the internal network. Needs an IP address
  # above (the agent resolves no names) and data_mode = "passive".
  # via_agent = "dc1"
}

policy {
  # Refuse USER/PASS before AUTH TLS (530). Default true.
  require_tls = true
  # Refuse PROT C (534) and data transfers before PROT P (521). Default true.
  require_prot_p = true
  # Who may log in, as glob patterns ("backup-*"); empty: anyone the backend
  # accepts. Checked before the backend sees the user or the password; a
  # refused name is answered as a wrong password is (331, then 530).
  allow_users = []
  # Who may never log in (wins over allow_users); answered the same way.
  deny_users = ["root", "anonymous", "ftp"]
  # How names are compared with the lists and routes: "case_insensitive"
  # (default: "Root" is "root", as case-insensitive backends see it) or
  # "exact".
  # user_names = "case_insensitive"
  # Users who may only read, list and set up the session (550 for anything
  # else, unknown SITE subcommands included), and what they may send anyway.
  # read_only_users    = ["audit-*"]
  # read_only_commands = ["SITE UMASK"]
  # Commands refused to everyone (502), or the only ones allowed besides the
  # essentials (AUTH PBSZ PROT USER PASS HOST QUIT FEAT NOOP ABOR): a verb
  # (which covers its aliases: MKD is XMKD too), SITE, or "SITE CHMOD".
  # deny_commands  = ["SITE"]
  # allow_commands = []
  # Verbs ftpsgate does not know: "reject" (502, default) or "relay" (sent
  # on, counted as writes; validate warns).
  # unknown_commands = "reject"
  # Sessions one user may hold at once; 0: no bound.
  # max_sessions_per_user = 0
}

# Routes choose a session's backend by user, HOST and TLS SNI (glob
# patterns); the first route whose lists all match wins, else the
# listener's backend.
# route "backups" {
#   users   = ["backup-*"]
#   backend = "vault"
# }
# route "partner" {
#   hosts   = ["ftp.partner.example.com"]  # the client's HOST
#   sni     = ["ftp.partner.example.com"]  # the client's TLS SNI
#   backend = "vault"
#   # The auth block for this route's logins (instead of the listener's),
#   # and the backend account they use (instead of the auth block's).
#   auth                  = "staff"
#   backend_user          = "partner-drop"
#   backend_password_file = "/etc/ftpsgate/partner-drop.pass"
#   # or, instead of the file, an environment variable:
#   backend_password_env = "PARTNER_DROP_PASSWORD"
#   scan                  = "clamav"  # replaces the listener's scan for these sessions
# }

# Edge authentication: ftpsgate checks the login itself and connects to the
# backend only after it accepted it (see "Authenticate at the edge" in the
# README). A listener or route names the block with auth = "NAME".
# auth "staff" {
#   # htpasswd-style "user:hash" lines, bcrypt or argon2id; written by
#   # "ftpsgate passwd -f FILE USER"; reloaded when it changes and on
#   # SIGHUP (a broken file is logged and the previous one kept).
#   user_file = "/etc/ftpsgate/users"
#   # A second factor (TOTP, RFC 6238): "user:BASE32SECRET" lines (mode
#   # 0600); each user then appends the current six-digit code of an
#   # authenticator app to the password, and a code once used is refused.
#   totp_secrets_file = "/etc/ftpsgate/totp"
#   # Map every login this block accepts to one backend account; its
#   # password from a file (mode 0600) or the environment, never from this
#   # file. Omitted: the client's own user name and password are passed on.
#   backend_user          = "ftpsvc"
#   backend_password_file = "/etc/ftpsgate/ftpsvc.pass"
#   # or, instead of the file, an environment variable:
#   backend_password_env = "FTPSVC_PASSWORD"
#
#   # Instead of user_file (one password source per block; TOTP combines
#   # with it), a directory checks each password by a bind as the user.
#   ldap {
#     # ldaps://, or ldap:// with start_tls = true: never in clear. The
#     # certificate is always verified, for the URL's host name.
#     url       = "ldaps://ldap.example.com"
#     start_tls = false
#     ca_file   = "/etc/ftpsgate/ldap-ca.pem" # omitted: the system's roots
#     # Bind as the user directly ({user} is escaped as a DN value)...
#     bind_dn_template = "uid={user},ou=people,dc=example,dc=com"
#     # ...or, instead, search as a service account, then bind as the entry
#     # found ({user} escaped as a filter value; found twice: refused):
#     service_dn            = "cn=ftpsgate,ou=services,dc=example,dc=com"
#     service_password_file = "/etc/ftpsgate/ldap.pass"
#     base_dn               = "ou=people,dc=example,dc=com"
#     user_filter           = "(uid={user})"
#     # Whether a group holds the user: the group's entry read with this
#     # filter ({dn}: the user's DN); no memberOf overlay needed.
#     group_filter    = "(|(member={dn})(uniqueMember={dn}))"
#     timeout         = "5s" # each connect, bind, search; then 421
#     max_connections = 8    # to the directory, at once
#     idle_timeout    = "1m"
#     # With group blocks, a user must be in one; the first that holds
#     # the user decides, in this order. Without: any user who binds.
#     group "cn=ftp-auditors,ou=groups,dc=example,dc=com" {
#       read_only = true
#     }
#     group "cn=finance,ou=groups,dc=example,dc=com" {
#       route = "finance" # that route's backend and backend account
#     }
#     group "cn=ftp,ou=groups,dc=example,dc=com" {}
#   }
#
#   # Instead of user_file (one password source per block), an HTTP hook
#   # decides each login: it gets a JSON POST (user, client address,
#   # listener, TLS version and cipher, the client certificate's subject;
#   # the password unless cert mode is "cert") and answers
#   # {"allow": true, "backend": "legacy", "backend_user": "svc", "read_only": false}.
#   # A timeout, a status other than 200 or an answer that does not parse
#   # refuses the login with 421 (fail closed); "allow": false with 530.
#   hook {
#     url         = "https://auth.internal.example/ftp-login" # https, or http to 127.0.0.1/::1 only
#     timeout     = "5s"                        # the default
#     ca_file     = "/etc/ftpsgate/hook-ca.pem" # default: the system's roots
#     secret_file = "/etc/ftpsgate/hook.secret" # sent as "Authorization: Bearer ..."
#     cache_ttl   = "30s"                       # reuse an allow this long; default 0: ask every time
#     # The accounts the hook may name as backend_user, each with its password
#     # file: the hook names an account, never sends a password.
#     backend_password_files = { svc = "/etc/ftpsgate/svc.pass" }
#   }
#   # The user from the client's certificate (the listener's client_auth):
#   # USER must name it. mode "cert": the certificate alone logs in (needs a
#   # backend_user); "cert_and_password" (the default): the password source
#   # checks the password too. user_from: "cn" (default), "san_email", "san_dns".
#   cert {
#     mode      = "cert_and_password"
#     user_from = "cn"
#   }
# }

# A scan block is a malware scanner uploads go through, as a listener or a
# route names it (a route's replaces its listener's; none turns it off). The
# upload streams to the backend and to clamd at once; the backend's 226 is
# held until the verdict (NOOP and STAT are answered meanwhile). Infected:
# the file is deleted on the backend and the client gets
# "550 Upload rejected: malware detected (NAME)".
# scan "clamav" {
#   # "clamd" (clamd's INSTREAM) or "icap" (an ICAP server's RESPMOD, RFC
#   # 3507: c-icap, Kaspersky, ESET, Trend Micro, Symantec, DLP servers);
#   # both written in-house.
#   engine = "clamd"
#   # clamd's LocalSocket ("unix:/path") or TCPSocket ("tcp:host:port"); for
#   # "icap", the service's URL: "icap://host:1344/virus_scan", or
#   # "icaps://host:11344/virus_scan" over TLS (the certificate verified).
#   address = "unix:/run/clamav/clamd.ctl"
#   # icaps:// only: the CA that signed the ICAP server's certificate
#   # (default: the system's roots).
#   # ca_file = "/etc/ftpsgate/icap-ca.pem"
#   # Bounds the connection to clamd, each write to it without progress, and
#   # the wait for the verdict after the last byte (the 226 waits meanwhile).
#   timeout = "60s"
#   # The most bytes of one upload sent to the scanner: at most clamd's own
#   # StreamMaxLength (its default, 25M), or clamd refuses larger ones; at most
#   # c-icap's virus_scan.MaxObjectSize, above which c-icap passes a file
#   # unscanned.
#   max_size = "25M"
#   # A larger upload whose first max_size bytes are clean: "reject" (552,
#   # deleted; the default) or "pass" (accepted, logged as partly scanned).
#   above_max = "reject"
#   # No verdict (scanner down, timeout): "reject" (451, deleted; the default)
#   # or "pass" (accepted unscanned). Both are logged and audited.
#   on_error = "reject"
#   # Which uploads are scanned. APPE and a STOR after REST are scanned for
#   # the bytes they send, not the whole file.
#   verbs = ["STOR", "APPE", "STOU"]
#   # "inline" (the default: streamed to the backend and to clamd at once, an
#   # infected file deleted after) or "spool": the upload is received whole
#   # into spool_dir and scanned there, and only a clean file is sent on (the
#   # proxy's own EPSV and STOR): the backend never holds malware, at the cost
#   # of disk and of the whole file's latency before the backend's 226.
#   mode = "inline"
#   # mode = "spool" only. Created 0700; files 0600, removed on every path, and
#   # a crashed run's removed at start: one directory per scan block and per
#   # proxy. Default: /var/lib/ftpsgate/spool/NAME (the unit's state directory).
#   spool_dir = "/var/lib/ftpsgate/spool/clamav"
#   # mode = "spool" only: the spool's bytes, all sessions together. An upload
#   # that finds it full, or fills it, gets 452. Default 1GiB.
#   spool_max = "1GiB"
# }

# A notify block posts audit events to an HTTP endpoint (README: "Notify on
# upload"): each event's audit line as the JSON body, after the client has
# its final reply, signed with HMAC-SHA256 (X-Ftpsgate-Signature, over
# X-Ftpsgate-Timestamp, X-Ftpsgate-Event-Id and the body). A bounded queue
# and a few workers per block: a transfer never waits for the receiver, and
# an event that finds the queue full is dropped and counted
# (ftpsgate_notify_dropped_total). A reload applies to the events after it.
# notify "intake" {
#   # https; plain http only to loopback (127.0.0.0/8, ::1, localhost).
#   url = "https://intake.example.com/ftp-events"
#   # upload_complete, download_complete, upload_rejected (scan verdict,
#   # max_file_size, policy), login_failed, ban. No default.
#   events = ["upload_complete", "upload_rejected"]
#   # The signing secret, at least 16 bytes (openssl rand -hex 32 > FILE;
#   # chmod 600); re-read on reload. Never written in this file.
#   secret_file = "/etc/ftpsgate/notify-intake.secret"
#   # Plain http to a host that is not loopback: the body names users,
#   # client addresses and files. Off by default.
#   allow_plain_http = false
#   # One attempt: connect, TLS, request, the receiver's answer.
#   timeout = "10s"
#   # Events waiting for a worker, at most; workers post concurrently.
#   queue   = 1024
#   workers = 2
#   # A network error, a timeout, 5xx or 429 is tried again up to retries
#   # times, waiting backoff, doubled each time up to max_backoff (with
#   # jitter); another 4xx or a redirect is final (logged, counted failed).
#   retries     = 8
#   backoff     = "1s"
#   max_backoff = "1m"
#   # An event older than this is given up, whatever retries says.
#   max_age = "15m"
#   # At shutdown (and for the old blocks at a reload), how long what is
#   # queued may still be delivered; the rest is counted dropped.
#   drain_timeout = "5s"
# }

audit {
  # JSON lines, one per session fact; "-" for stdout; omit for none.
  file = "/var/log/ftpsgate/audit.log"
  # Classic wu-ftpd xferlog lines, one per file transfer, for log tools and
  # fail2ban. SIGUSR1 reopens both files after logrotate.
  # xferlog = "/var/log/ftpsgate/xferlog"
  # While the audit cannot be written (full disk, reader gone): "continue"
  # serving, or "refuse" new sessions (421, /readyz 503) until it can.
  # on_error = "continue"
}

# Every phase has a deadline; these are the defaults.
timeouts {
  tls_handshake  = "10s" # client TLS handshake, control and data
  login          = "60s" # from connect to a successful login
  idle           = "5m"  # control connection with no command (transfers count as activity)
  passive_accept = "30s" # wait for the client's data connection
  data_stall     = "2m"  # a transfer with no bytes moved on either leg
  backend_dial     = "10s" # connecting to the backend, control or data
  backend_greeting = "10s" # a new backend connection, up to its 220
  backend_reply    = "60s" # waiting for the backend's reply to a command
}

# The admin HTTP listener: /metrics, /status, /status.json, /healthz,
# /readyz. On loopback, requests must name localhost (DNS rebinding); beyond
# it, require a credential (/status.json names users, addresses and files).
# /healthz and /readyz never need one.
# admin {
#   address           = "127.0.0.1:9100"
#   bearer_token_file = "/etc/ftpsgate/admin-token"  # chmod 600; openssl rand -hex 32
#   basic_auth {
#     user          = "prometheus"
#     password_hash = "$2y$10$..."                    # htpasswd -nbBC 10 prometheus PASSWORD
#   }
#   pprof = false                                     # needs one of the credentials
# }

limits {
  # Longest command line accepted; longer ones get 500, and the third bad
  # line closes the session.
  max_line = 4096
  # Sessions of the whole proxy, and from one client (address, or IPv6
  # prefix); one more gets 421. 0: no bound.
  max_sessions        = 1000
  max_sessions_per_ip = 50
  # IPv6 clients count by this prefix for max_sessions_per_ip and bans.
  # ipv6_prefix = 64
  # Client data connections kept open (up to 10 s) after a transfer until
  # the client closes its end, in the whole proxy; past it they close at once.
  # max_lingering_data_legs = 256
  # Largest file an upload may make ("10GiB"); crossing it gets 552 at once,
  # and the partial file is removed (DELE) if the upload created it.
  # 0 or absent: no bound.
  # max_file_size = "0"
}

# Rate limits on data bytes, per second ("2MiB", "500KiB", "10MB"; "/s" may
# follow). "0" or absent: no limit at that level. A transfer runs at the
# smallest limit that applies: its listener's (rate_down/rate_up, in the
# listener block), its user's or class's, its client address's, its own.
# Limits are per ftpsgate instance, and a reload (SIGHUP) changes them for
# running transfers too. Downloads are RETR and listings; uploads STOR,
# STOU and APPE.
# rates {
#   user_down     = "0"  # each user, all of that user's sessions together
#   user_up       = "0"
#   address_down  = "0"  # each client address (or IPv6 prefix), all its sessions together
#   address_up    = "0"
#   transfer_down = "0"  # each transfer on its own
#   transfer_up   = "0"
#   # Quotas: the bytes of files each user may download (RETR) and upload
#   # (STOR, STOU, APPE) per quota_period ("10GiB"; "0" or absent: none).
#   # Periods are fixed windows aligned to the Unix epoch: "24h" resets at
#   # 00:00 UTC. A transfer that crosses a quota is cut there with 552 (an
#   # upload's partial file removed); past it, transfers get 552 until the
#   # reset. Listings never count. With a state block's Redis, quotas count
#   # across every instance.
#   quota_down    = "0"
#   quota_up      = "0"
#   quota_period  = "24h"
#   # Users of a class take its rates instead of user_down/user_up; the
#   # first class naming a user wins. Each user has the class's rate for
#   # all its sessions; shared = true: all the class's users share one.
#   class "partners" {
#     users  = ["acme-*", "globex"]
#     down   = "2MiB"
#     up     = "2MiB"
#     shared = false
#     # The class's quotas (all its users together when shared); each one
#     # left out is the rates block's, "0" lifts it.
#     quota_down   = "10GiB"
#     quota_up     = "10GiB"
#     quota_period = "24h"
#   }
# }

# Failed logins (a wrong password, or a name the policy refuses) from one
# client within window ban it for duration; 0 failures turns bans off.
bans {
  failures = 10
  window   = "10m"
  duration = "15m"
  # Never banned: your office, your monitoring.
  safelist = []
}

# Outbound-only agents (README: "In a DMZ"): an agent inside dials this
# listener over mutual TLS and carries the connections of via_agent
# backends; nothing connects from the DMZ inward. The address is read at
# start; names and certificates on reload, and a name removed from
# allowed_names drops its agents' connections (revoking a stolen
# certificate).
# agent_listener {
#   address        = "0.0.0.0:7443"
#   cert_file      = "/etc/ftpsgate/edge.crt"     # the agents check it against their ca_file
#   key_file       = "/etc/ftpsgate/edge.key"
#   client_ca_file = "/etc/ftpsgate/agents-ca.pem" # signs the agents' certificates; pinned
#   allowed_names  = ["dc1"]                       # the agents' certificate names (CN or DNS)
# }

# Shared state: without it (or without its redis block) each instance keeps
# bans, failed logins and session counts in its own memory. With it, every
# instance naming the same Redis and prefix shares them: a ban holds on all
# within a second, and max_sessions_per_user and max_sessions_per_ip count
# the sessions of all. Rate limits stay per instance. If Redis goes away,
# each instance falls back to its own state (logged, and counted in
# ftpsgate_state_fallbacks_total) and shares again when Redis returns. Read
# at start: a reload does not change it.
# state {
#   redis {
#     address       = "127.0.0.1:6379"
#     tls           = false  # true, or { ca_file = "/etc/ftpsgate/redis-ca.pem" }
#     password_file = "/etc/ftpsgate/redis.password"  # first line; chmod 600
#     prefix        = "ftpsgate:"
#     db            = 0
#   }
# }
