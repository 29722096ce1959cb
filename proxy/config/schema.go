package config

import "github.com/hashicorp/hcl/v2"

// The file's shape, as gohcl decodes it. Optional attributes are
// pointers (nil: not set, the default holds). Each block records where it
// is (DefRange, its header) and where each attribute a diagnostic may
// name is (…At, the attribute's value; zero when it is not set: the
// diagnostic then names the block, see at).

type fileSchema struct {
	Listeners []listenerBlock `hcl:"listener,block"`
	Backends  []backendBlock  `hcl:"backend,block"`
	Policy    *policyBlock    `hcl:"policy,block"`
	Routes    []routeBlock    `hcl:"route,block"`
	Audit     *auditBlock     `hcl:"audit,block"`
	Timeouts  *timeoutsBlock  `hcl:"timeouts,block"`
	Limits    *limitsBlock    `hcl:"limits,block"`
	Rates     *ratesBlock     `hcl:"rates,block"`
	Bans      *bansBlock      `hcl:"bans,block"`
	Admin     *adminBlock     `hcl:"admin,block"`
	Auths     []authBlock     `hcl:"auth,block"`
	Scans     []scanBlock     `hcl:"scan,block"`
	Notifies  []notifyBlock   `hcl:"notify,block"`
	ACME      []acmeBlock     `hcl:"acme,block"`

	// AgentListener accepts outbound-only agents (compile_agent.go).
	AgentListener *agentListenerBlock `hcl:"agent_listener,block"`
	State         *stateBlock         `hcl:"state,block"`
}

type listenerBlock struct {
	Name       string    `hcl:"name,label"`
	DefRange   hcl.Range `hcl:",def_range"`
	Address    string    `hcl:"address"`
	AddressAt  hcl.Range `hcl:"address,attr_value_range"`
	TLS        *string   `hcl:"tls"`
	TLSAt      hcl.Range `hcl:"tls,attr_value_range"`
	CertFile   string    `hcl:"cert_file,optional"`
	CertFileAt hcl.Range `hcl:"cert_file,attr_value_range"`
	KeyFile    string    `hcl:"key_file,optional"`
	KeyFileAt  hcl.Range `hcl:"key_file,attr_value_range"`
	// ACME names an acme block, in place of cert_file and key_file.
	ACME            *string   `hcl:"acme"`
	ACMEAt          hcl.Range `hcl:"acme,attr_value_range"`
	PassivePorts    string    `hcl:"passive_ports"`
	PassivePortsAt  hcl.Range `hcl:"passive_ports,attr_value_range"`
	PublicAddress   *string   `hcl:"public_address"`
	PublicAddressAt hcl.Range `hcl:"public_address,attr_value_range"`
	Backend         string    `hcl:"backend"`
	BackendAt       hcl.Range `hcl:"backend,attr_value_range"`
	Greeting        *string   `hcl:"greeting"`
	GreetingAt      hcl.Range `hcl:"greeting,attr_value_range"`
	TLSMinVersion   *string   `hcl:"tls_min_version"`
	TLSMinVersionAt hcl.Range `hcl:"tls_min_version,attr_value_range"`
	// TLSCipherSuites replaces DefaultCipherSuites, by Go's names.
	TLSCipherSuites     *[]string           `hcl:"tls_cipher_suites"`
	TLSCipherSuitesAt   hcl.Range           `hcl:"tls_cipher_suites,attr_value_range"`
	RequireSessionReuse *bool               `hcl:"require_session_reuse"`
	UploadCloseNotify   *string             `hcl:"upload_close_notify"` // "require" (the default) or "warn"
	UploadCloseNotifyAt hcl.Range           `hcl:"upload_close_notify,attr_value_range"`
	AllowCIDRs          *[]string           `hcl:"allow_cidrs"`
	AllowCIDRsAt        hcl.Range           `hcl:"allow_cidrs,attr_value_range"`
	DenyCIDRs           *[]string           `hcl:"deny_cidrs"`
	DenyCIDRsAt         hcl.Range           `hcl:"deny_cidrs,attr_value_range"`
	ProxyProtocol       *proxyProtocolBlock `hcl:"proxy_protocol,block"`
	ActiveAllowLocal    *bool               `hcl:"active_allow_local"`
	RateDown            *string             `hcl:"rate_down"`
	RateDownAt          hcl.Range           `hcl:"rate_down,attr_value_range"`
	RateUp              *string             `hcl:"rate_up"`
	RateUpAt            hcl.Range           `hcl:"rate_up,attr_value_range"`
	Auth                *string             `hcl:"auth"`
	AuthAt              hcl.Range           `hcl:"auth,attr_value_range"`
	Scan                *string             `hcl:"scan"`
	ScanAt              hcl.Range           `hcl:"scan,attr_value_range"`
	// ClientAuth asks clients for a certificate ("optional", "require"),
	// verified against ClientCAFile (compile_cert.go).
	ClientAuth     *string   `hcl:"client_auth"`
	ClientAuthAt   hcl.Range `hcl:"client_auth,attr_value_range"`
	ClientCAFile   *string   `hcl:"client_ca_file"`
	ClientCAFileAt hcl.Range `hcl:"client_ca_file,attr_value_range"`

	// PassiveAddressOverrides are public_address per client network: a
	// list of objects, decoded by passiveOverrides (gohcl would drop an
	// unknown attribute of an object silently).
	PassiveAddressOverrides *hcl.Attribute `hcl:"passive_address_overrides,optional"`
}

type agentListenerBlock struct {
	DefRange       hcl.Range `hcl:",def_range"`
	Address        string    `hcl:"address"`
	AddressAt      hcl.Range `hcl:"address,attr_value_range"`
	CertFile       string    `hcl:"cert_file"`
	CertFileAt     hcl.Range `hcl:"cert_file,attr_value_range"`
	KeyFile        string    `hcl:"key_file"`
	KeyFileAt      hcl.Range `hcl:"key_file,attr_value_range"`
	ClientCAFile   string    `hcl:"client_ca_file"`
	ClientCAFileAt hcl.Range `hcl:"client_ca_file,attr_value_range"`
	AllowedNames   []string  `hcl:"allowed_names"`
	AllowedNamesAt hcl.Range `hcl:"allowed_names,attr_value_range"`
}

type proxyProtocolBlock struct {
	DefRange        hcl.Range `hcl:",def_range"`
	TrustedCIDRs    []string  `hcl:"trusted_cidrs"`
	TrustedCIDRsAt  hcl.Range `hcl:"trusted_cidrs,attr_value_range"`
	HeaderTimeout   *string   `hcl:"header_timeout"`
	HeaderTimeoutAt hcl.Range `hcl:"header_timeout,attr_value_range"`
	AllowDirect     *bool     `hcl:"allow_direct"`
}

type backendBlock struct {
	Name                 string            `hcl:"name,label"`
	DefRange             hcl.Range         `hcl:",def_range"`
	Address              *string           `hcl:"address"`
	AddressAt            hcl.Range         `hcl:"address,attr_value_range"`
	Servers              []string          `hcl:"servers,optional"`
	ServersAt            hcl.Range         `hcl:"servers,attr_value_range"`
	Balance              *string           `hcl:"balance"`
	BalanceAt            hcl.Range         `hcl:"balance,attr_value_range"`
	HealthCheck          *healthCheckBlock `hcl:"health_check,block"`
	TLS                  *string           `hcl:"tls"`
	TLSAt                hcl.Range         `hcl:"tls,attr_value_range"`
	CAFile               *string           `hcl:"ca_file"`
	CAFileAt             hcl.Range         `hcl:"ca_file,attr_value_range"`
	ServerName           *string           `hcl:"server_name"`
	ServerNameAt         hcl.Range         `hcl:"server_name,attr_value_range"`
	InsecureSkipVerify   *bool             `hcl:"insecure_skip_verify"`
	InsecureSkipVerifyAt hcl.Range         `hcl:"insecure_skip_verify,attr_value_range"`
	TLSMinVersion        *string           `hcl:"tls_min_version"`
	TLSMinVersionAt      hcl.Range         `hcl:"tls_min_version,attr_value_range"`
	TLSMaxVersion        *string           `hcl:"tls_max_version"`
	TLSMaxVersionAt      hcl.Range         `hcl:"tls_max_version,attr_value_range"`
	DataMode             *string           `hcl:"data_mode"`
	DataModeAt           hcl.Range         `hcl:"data_mode,attr_value_range"`
	SendHost             *bool             `hcl:"send_host"`
	ProxyProtocol        *string           `hcl:"proxy_protocol"`
	ProxyProtocolAt      hcl.Range         `hcl:"proxy_protocol,attr_value_range"`
	ProxyProtocolTLVs    *bool             `hcl:"proxy_protocol_tlvs"`
	ProxyProtocolTLVsAt  hcl.Range         `hcl:"proxy_protocol_tlvs,attr_value_range"`
	MaxSessions          *int              `hcl:"max_sessions"`
	MaxSessionsAt        hcl.Range         `hcl:"max_sessions,attr_value_range"`
	QueueTimeout         *string           `hcl:"queue_timeout"`
	QueueTimeoutAt       hcl.Range         `hcl:"queue_timeout,attr_value_range"`
	MaxDials             *int              `hcl:"max_dials"`
	MaxDialsAt           hcl.Range         `hcl:"max_dials,attr_value_range"`
	Retries              *int              `hcl:"retries"`
	RetriesAt            hcl.Range         `hcl:"retries,attr_value_range"`

	// ViaAgent names the agents through which the backend is reached.
	ViaAgent   *string   `hcl:"via_agent"`
	ViaAgentAt hcl.Range `hcl:"via_agent,attr_value_range"`
}

type healthCheckBlock struct {
	DefRange   hcl.Range `hcl:",def_range"`
	Interval   *string   `hcl:"interval"`
	IntervalAt hcl.Range `hcl:"interval,attr_value_range"`
	Timeout    *string   `hcl:"timeout"`
	TimeoutAt  hcl.Range `hcl:"timeout,attr_value_range"`
	Rise       *int      `hcl:"rise"`
	RiseAt     hcl.Range `hcl:"rise,attr_value_range"`
	Fall       *int      `hcl:"fall"`
	FallAt     hcl.Range `hcl:"fall,attr_value_range"`
}

type routeBlock struct {
	Name                  string    `hcl:"name,label"`
	DefRange              hcl.Range `hcl:",def_range"`
	Users                 *[]string `hcl:"users"`
	UsersAt               hcl.Range `hcl:"users,attr_value_range"`
	Hosts                 *[]string `hcl:"hosts"`
	HostsAt               hcl.Range `hcl:"hosts,attr_value_range"`
	SNI                   *[]string `hcl:"sni"`
	SNIAt                 hcl.Range `hcl:"sni,attr_value_range"`
	Backend               string    `hcl:"backend"`
	BackendAt             hcl.Range `hcl:"backend,attr_value_range"`
	Auth                  *string   `hcl:"auth"`
	AuthAt                hcl.Range `hcl:"auth,attr_value_range"`
	BackendUser           *string   `hcl:"backend_user"`
	BackendUserAt         hcl.Range `hcl:"backend_user,attr_value_range"`
	BackendPasswordFile   *string   `hcl:"backend_password_file"`
	BackendPasswordFileAt hcl.Range `hcl:"backend_password_file,attr_value_range"`
	BackendPasswordEnv    *string   `hcl:"backend_password_env"`
	BackendPasswordEnvAt  hcl.Range `hcl:"backend_password_env,attr_value_range"`
	Scan                  *string   `hcl:"scan"`
	ScanAt                hcl.Range `hcl:"scan,attr_value_range"`
}

type authBlock struct {
	Name                  string    `hcl:"name,label"`
	DefRange              hcl.Range `hcl:",def_range"`
	UserFile              *string   `hcl:"user_file"`
	UserFileAt            hcl.Range `hcl:"user_file,attr_value_range"`
	TOTPSecretsFile       *string   `hcl:"totp_secrets_file"`
	TOTPSecretsFileAt     hcl.Range `hcl:"totp_secrets_file,attr_value_range"`
	BackendUser           *string   `hcl:"backend_user"`
	BackendUserAt         hcl.Range `hcl:"backend_user,attr_value_range"`
	BackendPasswordFile   *string   `hcl:"backend_password_file"`
	BackendPasswordFileAt hcl.Range `hcl:"backend_password_file,attr_value_range"`
	BackendPasswordEnv    *string   `hcl:"backend_password_env"`
	BackendPasswordEnvAt  hcl.Range `hcl:"backend_password_env,attr_value_range"`
	// LDAP is the block's password source when it has no user_file
	// (compile_ldap.go).
	LDAP *ldapBlock `hcl:"ldap,block"`
	// Hook and Cert are the HTTP hook and the client certificate
	// (compile_hook.go, compile_cert.go).
	Hook *hookBlock `hcl:"hook,block"`
	Cert *certBlock `hcl:"cert,block"`
}

// ldapBlock is an auth block's directory: bind by a DN template, or
// search-then-bind through a service account.
type ldapBlock struct {
	DefRange              hcl.Range        `hcl:",def_range"`
	URL                   string           `hcl:"url"`
	URLAt                 hcl.Range        `hcl:"url,attr_value_range"`
	StartTLS              *bool            `hcl:"start_tls"`
	StartTLSAt            hcl.Range        `hcl:"start_tls,attr_value_range"`
	CAFile                *string          `hcl:"ca_file"`
	CAFileAt              hcl.Range        `hcl:"ca_file,attr_value_range"`
	BindDNTemplate        *string          `hcl:"bind_dn_template"`
	BindDNTemplateAt      hcl.Range        `hcl:"bind_dn_template,attr_value_range"`
	ServiceDN             *string          `hcl:"service_dn"`
	ServiceDNAt           hcl.Range        `hcl:"service_dn,attr_value_range"`
	ServicePasswordFile   *string          `hcl:"service_password_file"`
	ServicePasswordFileAt hcl.Range        `hcl:"service_password_file,attr_value_range"`
	BaseDN                *string          `hcl:"base_dn"`
	BaseDNAt              hcl.Range        `hcl:"base_dn,attr_value_range"`
	UserFilter            *string          `hcl:"user_filter"`
	UserFilterAt          hcl.Range        `hcl:"user_filter,attr_value_range"`
	GroupFilter           *string          `hcl:"group_filter"`
	GroupFilterAt         hcl.Range        `hcl:"group_filter,attr_value_range"`
	Timeout               *string          `hcl:"timeout"`
	TimeoutAt             hcl.Range        `hcl:"timeout,attr_value_range"`
	MaxConnections        *int             `hcl:"max_connections"`
	MaxConnectionsAt      hcl.Range        `hcl:"max_connections,attr_value_range"`
	IdleTimeout           *string          `hcl:"idle_timeout"`
	IdleTimeoutAt         hcl.Range        `hcl:"idle_timeout,attr_value_range"`
	Groups                []ldapGroupBlock `hcl:"group,block"`
}

// ldapGroupBlock is a group "DN" { } block: members are allowed, read-only
// or sent to a route.
type ldapGroupBlock struct {
	DN         string    `hcl:"dn,label"`
	DefRange   hcl.Range `hcl:",def_range"`
	ReadOnly   *bool     `hcl:"read_only"`
	ReadOnlyAt hcl.Range `hcl:"read_only,attr_value_range"`
	Route      *string   `hcl:"route"`
	RouteAt    hcl.Range `hcl:"route,attr_value_range"`
}

type hookBlock struct {
	DefRange     hcl.Range `hcl:",def_range"`
	URL          string    `hcl:"url"`
	URLAt        hcl.Range `hcl:"url,attr_value_range"`
	Timeout      *string   `hcl:"timeout"`
	TimeoutAt    hcl.Range `hcl:"timeout,attr_value_range"`
	CAFile       *string   `hcl:"ca_file"`
	CAFileAt     hcl.Range `hcl:"ca_file,attr_value_range"`
	SecretFile   *string   `hcl:"secret_file"`
	SecretFileAt hcl.Range `hcl:"secret_file,attr_value_range"`
	CacheTTL     *string   `hcl:"cache_ttl"`
	CacheTTLAt   hcl.Range `hcl:"cache_ttl,attr_value_range"`
	// BackendPasswordFiles maps a backend_user the hook may answer to
	// the file of its password.
	BackendPasswordFiles   *map[string]string `hcl:"backend_password_files"`
	BackendPasswordFilesAt hcl.Range          `hcl:"backend_password_files,attr_value_range"`
}

type certBlock struct {
	DefRange   hcl.Range `hcl:",def_range"`
	Mode       *string   `hcl:"mode"`
	ModeAt     hcl.Range `hcl:"mode,attr_value_range"`
	UserFrom   *string   `hcl:"user_from"`
	UserFromAt hcl.Range `hcl:"user_from,attr_value_range"`
}

type policyBlock struct {
	DefRange       hcl.Range `hcl:",def_range"`
	RequireTLS     *bool     `hcl:"require_tls"`
	RequireProtP   *bool     `hcl:"require_prot_p"`
	AllowUsers     *[]string `hcl:"allow_users"`
	AllowUsersAt   hcl.Range `hcl:"allow_users,attr_value_range"`
	DenyUsers      *[]string `hcl:"deny_users"`
	DenyUsersAt    hcl.Range `hcl:"deny_users,attr_value_range"`
	ReadOnly       *[]string `hcl:"read_only_users"`
	ReadOnlyAt     hcl.Range `hcl:"read_only_users,attr_value_range"`
	AllowCmds      *[]string `hcl:"allow_commands"`
	AllowCmdsAt    hcl.Range `hcl:"allow_commands,attr_value_range"`
	DenyCmds       *[]string `hcl:"deny_commands"`
	DenyCmdsAt     hcl.Range `hcl:"deny_commands,attr_value_range"`
	ReadOnlyCmds   *[]string `hcl:"read_only_commands"`
	ReadOnlyCmdsAt hcl.Range `hcl:"read_only_commands,attr_value_range"`
	Unknown        *string   `hcl:"unknown_commands"`
	UnknownAt      hcl.Range `hcl:"unknown_commands,attr_value_range"`
	UserNames      *string   `hcl:"user_names"`
	UserNamesAt    hcl.Range `hcl:"user_names,attr_value_range"`
	MaxPerUser     *int      `hcl:"max_sessions_per_user"`
	MaxPerUserAt   hcl.Range `hcl:"max_sessions_per_user,attr_value_range"`
}

type auditBlock struct {
	DefRange  hcl.Range `hcl:",def_range"`
	File      *string   `hcl:"file"`
	FileAt    hcl.Range `hcl:"file,attr_value_range"`
	Xferlog   *string   `hcl:"xferlog"`
	XferlogAt hcl.Range `hcl:"xferlog,attr_value_range"`
	OnError   *string   `hcl:"on_error"`
	OnErrorAt hcl.Range `hcl:"on_error,attr_value_range"`
}

type timeoutsBlock struct {
	DefRange          hcl.Range `hcl:",def_range"`
	TLSHandshake      *string   `hcl:"tls_handshake"`
	TLSHandshakeAt    hcl.Range `hcl:"tls_handshake,attr_value_range"`
	Login             *string   `hcl:"login"`
	LoginAt           hcl.Range `hcl:"login,attr_value_range"`
	Idle              *string   `hcl:"idle"`
	IdleAt            hcl.Range `hcl:"idle,attr_value_range"`
	PassiveAccept     *string   `hcl:"passive_accept"`
	PassiveAcceptAt   hcl.Range `hcl:"passive_accept,attr_value_range"`
	DataStall         *string   `hcl:"data_stall"`
	DataStallAt       hcl.Range `hcl:"data_stall,attr_value_range"`
	BackendDial       *string   `hcl:"backend_dial"`
	BackendDialAt     hcl.Range `hcl:"backend_dial,attr_value_range"`
	BackendGreeting   *string   `hcl:"backend_greeting"`
	BackendGreetingAt hcl.Range `hcl:"backend_greeting,attr_value_range"`
	BackendReply      *string   `hcl:"backend_reply"`
	BackendReplyAt    hcl.Range `hcl:"backend_reply,attr_value_range"`
}

type adminBlock struct {
	DefRange          hcl.Range       `hcl:",def_range"`
	Address           *string         `hcl:"address"`
	AddressAt         hcl.Range       `hcl:"address,attr_value_range"`
	Pprof             *bool           `hcl:"pprof"`
	PprofAt           hcl.Range       `hcl:"pprof,attr_value_range"`
	BearerTokenFile   *string         `hcl:"bearer_token_file"`
	BearerTokenFileAt hcl.Range       `hcl:"bearer_token_file,attr_value_range"`
	BasicAuth         *basicAuthBlock `hcl:"basic_auth,block"`
}

type basicAuthBlock struct {
	DefRange       hcl.Range `hcl:",def_range"`
	User           string    `hcl:"user"`
	UserAt         hcl.Range `hcl:"user,attr_value_range"`
	PasswordHash   string    `hcl:"password_hash"`
	PasswordHashAt hcl.Range `hcl:"password_hash,attr_value_range"`
}

type bansBlock struct {
	DefRange   hcl.Range `hcl:",def_range"`
	Failures   *int      `hcl:"failures"`
	FailuresAt hcl.Range `hcl:"failures,attr_value_range"`
	Window     *string   `hcl:"window"`
	WindowAt   hcl.Range `hcl:"window,attr_value_range"`
	Duration   *string   `hcl:"duration"`
	DurationAt hcl.Range `hcl:"duration,attr_value_range"`
	Safelist   *[]string `hcl:"safelist"`
	SafelistAt hcl.Range `hcl:"safelist,attr_value_range"`
}

type limitsBlock struct {
	DefRange           hcl.Range `hcl:",def_range"`
	MaxLine            *int      `hcl:"max_line"`
	MaxLineAt          hcl.Range `hcl:"max_line,attr_value_range"`
	MaxSessions        *int      `hcl:"max_sessions"`
	MaxSessionsAt      hcl.Range `hcl:"max_sessions,attr_value_range"`
	MaxSessionsPerIP   *int      `hcl:"max_sessions_per_ip"`
	MaxSessionsPerIPAt hcl.Range `hcl:"max_sessions_per_ip,attr_value_range"`
	IPv6Prefix         *int      `hcl:"ipv6_prefix"`
	IPv6PrefixAt       hcl.Range `hcl:"ipv6_prefix,attr_value_range"`
	MaxLingeringData   *int      `hcl:"max_lingering_data_legs"`
	MaxLingeringDataAt hcl.Range `hcl:"max_lingering_data_legs,attr_value_range"`
	MaxFileSize        *string   `hcl:"max_file_size"`
	MaxFileSizeAt      hcl.Range `hcl:"max_file_size,attr_value_range"`
}

// ratesBlock: each rate is a size per second ("2MiB"), "0" or absent for
// no limit.
type ratesBlock struct {
	DefRange       hcl.Range        `hcl:",def_range"`
	UserDown       *string          `hcl:"user_down"`
	UserDownAt     hcl.Range        `hcl:"user_down,attr_value_range"`
	UserUp         *string          `hcl:"user_up"`
	UserUpAt       hcl.Range        `hcl:"user_up,attr_value_range"`
	AddressDown    *string          `hcl:"address_down"`
	AddressDownAt  hcl.Range        `hcl:"address_down,attr_value_range"`
	AddressUp      *string          `hcl:"address_up"`
	AddressUpAt    hcl.Range        `hcl:"address_up,attr_value_range"`
	TransferDown   *string          `hcl:"transfer_down"`
	TransferDownAt hcl.Range        `hcl:"transfer_down,attr_value_range"`
	TransferUp     *string          `hcl:"transfer_up"`
	TransferUpAt   hcl.Range        `hcl:"transfer_up,attr_value_range"`
	Classes        []rateClassBlock `hcl:"class,block"`

	// Each user's quota (sizes per quota_period), which a class may
	// replace.
	QuotaDown     *string   `hcl:"quota_down"`
	QuotaDownAt   hcl.Range `hcl:"quota_down,attr_value_range"`
	QuotaUp       *string   `hcl:"quota_up"`
	QuotaUpAt     hcl.Range `hcl:"quota_up,attr_value_range"`
	QuotaPeriod   *string   `hcl:"quota_period"`
	QuotaPeriodAt hcl.Range `hcl:"quota_period,attr_value_range"`
}

type rateClassBlock struct {
	Name     string    `hcl:"name,label"`
	DefRange hcl.Range `hcl:",def_range"`
	Users    []string  `hcl:"users"`
	UsersAt  hcl.Range `hcl:"users,attr_value_range"`
	Down     *string   `hcl:"down"`
	DownAt   hcl.Range `hcl:"down,attr_value_range"`
	Up       *string   `hcl:"up"`
	UpAt     hcl.Range `hcl:"up,attr_value_range"`
	Shared   *bool     `hcl:"shared"`

	// The class's quota; an attribute left out is the rates block's.
	QuotaDown     *string   `hcl:"quota_down"`
	QuotaDownAt   hcl.Range `hcl:"quota_down,attr_value_range"`
	QuotaUp       *string   `hcl:"quota_up"`
	QuotaUpAt     hcl.Range `hcl:"quota_up,attr_value_range"`
	QuotaPeriod   *string   `hcl:"quota_period"`
	QuotaPeriodAt hcl.Range `hcl:"quota_period,attr_value_range"`
}

type scanBlock struct {
	Name       string    `hcl:"name,label"`
	DefRange   hcl.Range `hcl:",def_range"`
	Engine     string    `hcl:"engine"`
	EngineAt   hcl.Range `hcl:"engine,attr_value_range"`
	Address    string    `hcl:"address"`
	AddressAt  hcl.Range `hcl:"address,attr_value_range"`
	Timeout    *string   `hcl:"timeout"`
	TimeoutAt  hcl.Range `hcl:"timeout,attr_value_range"`
	MaxSize    *string   `hcl:"max_size"` // bytes, or with K, M or G as clamd's StreamMaxLength
	MaxSizeAt  hcl.Range `hcl:"max_size,attr_value_range"`
	AboveMax   *string   `hcl:"above_max"`
	AboveMaxAt hcl.Range `hcl:"above_max,attr_value_range"`
	OnError    *string   `hcl:"on_error"`
	OnErrorAt  hcl.Range `hcl:"on_error,attr_value_range"`
	Verbs      *[]string `hcl:"verbs"`
	VerbsAt    hcl.Range `hcl:"verbs,attr_value_range"`
	CAFile     *string   `hcl:"ca_file"` // icaps:// only
	CAFileAt   hcl.Range `hcl:"ca_file,attr_value_range"`
	Mode       *string   `hcl:"mode"`
	ModeAt     hcl.Range `hcl:"mode,attr_value_range"`
	SpoolDir   *string   `hcl:"spool_dir"`
	SpoolDirAt hcl.Range `hcl:"spool_dir,attr_value_range"`
	SpoolMax   *string   `hcl:"spool_max"`
	SpoolMaxAt hcl.Range `hcl:"spool_max,attr_value_range"`
}

type notifyBlock struct {
	Name           string    `hcl:"name,label"`
	DefRange       hcl.Range `hcl:",def_range"`
	URL            string    `hcl:"url"`
	URLAt          hcl.Range `hcl:"url,attr_value_range"`
	Events         []string  `hcl:"events"`
	EventsAt       hcl.Range `hcl:"events,attr_value_range"`
	SecretFile     string    `hcl:"secret_file"`
	SecretFileAt   hcl.Range `hcl:"secret_file,attr_value_range"`
	AllowPlainHTTP *bool     `hcl:"allow_plain_http"`
	Timeout        *string   `hcl:"timeout"`
	TimeoutAt      hcl.Range `hcl:"timeout,attr_value_range"`
	Queue          *int      `hcl:"queue"`
	QueueAt        hcl.Range `hcl:"queue,attr_value_range"`
	Workers        *int      `hcl:"workers"`
	WorkersAt      hcl.Range `hcl:"workers,attr_value_range"`
	Retries        *int      `hcl:"retries"`
	RetriesAt      hcl.Range `hcl:"retries,attr_value_range"`
	Backoff        *string   `hcl:"backoff"`
	BackoffAt      hcl.Range `hcl:"backoff,attr_value_range"`
	MaxBackoff     *string   `hcl:"max_backoff"`
	MaxBackoffAt   hcl.Range `hcl:"max_backoff,attr_value_range"`
	MaxAge         *string   `hcl:"max_age"`
	MaxAgeAt       hcl.Range `hcl:"max_age,attr_value_range"`
	DrainTimeout   *string   `hcl:"drain_timeout"`
	DrainTimeoutAt hcl.Range `hcl:"drain_timeout,attr_value_range"`
}

type acmeBlock struct {
	Name        string    `hcl:"name,label"`
	DefRange    hcl.Range `hcl:",def_range"`
	Domains     []string  `hcl:"domains"`
	DomainsAt   hcl.Range `hcl:"domains,attr_value_range"`
	Email       *string   `hcl:"email"`
	EmailAt     hcl.Range `hcl:"email,attr_value_range"`
	Directory   *string   `hcl:"directory"`
	DirectoryAt hcl.Range `hcl:"directory,attr_value_range"`
	CARoots     *string   `hcl:"ca_roots"`
	CARootsAt   hcl.Range `hcl:"ca_roots,attr_value_range"`
	Storage     *string   `hcl:"storage"`
	StorageAt   hcl.Range `hcl:"storage,attr_value_range"`
	// StorageRedis keeps the storage in the state block's Redis.
	StorageRedis   *bool           `hcl:"storage_redis"`
	StorageRedisAt hcl.Range       `hcl:"storage_redis,attr_value_range"`
	EAB            *eabBlock       `hcl:"eab,block"`
	HTTP01         *challengeBlock `hcl:"http01,block"`
	TLSALPN01      *challengeBlock `hcl:"tls_alpn01,block"`
	DNS01          *dns01Block     `hcl:"dns01,block"`
	OnDemand       *onDemandBlock  `hcl:"on_demand,block"`
}

// dns01Block: the DNS-01 challenge through a libdns provider; the
// provider's own attributes stay in Settings and are decoded by its entry
// of dnsProviders (dnsproviders.go).
type dns01Block struct {
	DefRange             hcl.Range `hcl:",def_range"`
	Provider             string    `hcl:"provider"`
	ProviderAt           hcl.Range `hcl:"provider,attr_value_range"`
	Resolvers            *[]string `hcl:"resolvers"`
	ResolversAt          hcl.Range `hcl:"resolvers,attr_value_range"`
	PropagationTimeout   *string   `hcl:"propagation_timeout"`
	PropagationTimeoutAt hcl.Range `hcl:"propagation_timeout,attr_value_range"`
	Settings             hcl.Body  `hcl:",remain"`
}

// rfc2136Block: the rfc2136 provider's attributes of a dns01 block.
type rfc2136Block struct {
	Server         string    `hcl:"server"`
	ServerAt       hcl.Range `hcl:"server,attr_value_range"`
	KeyName        string    `hcl:"key_name"`
	KeyNameAt      hcl.Range `hcl:"key_name,attr_value_range"`
	KeyAlgorithm   *string   `hcl:"key_algorithm"`
	KeyAlgorithmAt hcl.Range `hcl:"key_algorithm,attr_value_range"`
	KeyFile        string    `hcl:"key_file"`
	KeyFileAt      hcl.Range `hcl:"key_file,attr_value_range"`
}

// onDemandBlock: certificates obtained during the handshake for the
// names a pattern allows.
type onDemandBlock struct {
	DefRange hcl.Range `hcl:",def_range"`
	Allow    []string  `hcl:"allow"`
	AllowAt  hcl.Range `hcl:"allow,attr_value_range"`
	Rate     *string   `hcl:"rate"`
	RateAt   hcl.Range `hcl:"rate,attr_value_range"`
}

type eabBlock struct {
	DefRange   hcl.Range `hcl:",def_range"`
	KeyID      string    `hcl:"key_id"`
	KeyIDAt    hcl.Range `hcl:"key_id,attr_value_range"`
	HMACFile   string    `hcl:"hmac_file"`
	HMACFileAt hcl.Range `hcl:"hmac_file,attr_value_range"`
}

// challengeBlock is an ACME challenge's listener (http01, tls_alpn01).
type challengeBlock struct {
	DefRange  hcl.Range `hcl:",def_range"`
	Address   string    `hcl:"address"`
	AddressAt hcl.Range `hcl:"address,attr_value_range"`
}

// stateBlock: where the instances behind one balancer share their bans
// and session counts (compile_state.go).
type stateBlock struct {
	DefRange hcl.Range   `hcl:",def_range"`
	Redis    *redisBlock `hcl:"redis,block"`
}

type redisBlock struct {
	DefRange  hcl.Range `hcl:",def_range"`
	Address   string    `hcl:"address"`
	AddressAt hcl.Range `hcl:"address,attr_value_range"`
	// TLS is true, false, or an object { ca_file = "…" }.
	TLS            hcl.Expression `hcl:"tls,optional"`
	PasswordFile   *string        `hcl:"password_file"`
	PasswordFileAt hcl.Range      `hcl:"password_file,attr_value_range"`
	Prefix         *string        `hcl:"prefix"`
	PrefixAt       hcl.Range      `hcl:"prefix,attr_value_range"`
	DB             *int           `hcl:"db"`
	DBAt           hcl.Range      `hcl:"db,attr_value_range"`
}
