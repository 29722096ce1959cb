package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/ftpsgate/ftpsgate/policy"
	"github.com/ftpsgate/ftpsgate/proxy/userfile"
)

// auths compiles the auth blocks into cfg.Auths: each loads its user file,
// and a problem on one of the file's lines is reported at that line of
// that file.
func (c *compiler) auths(fs *fileSchema, cfg *Config) {
	cfg.Auths = map[string]*Auth{}
	for i := range fs.Auths {
		ab := &fs.Auths[i]
		if _, dup := cfg.Auths[ab.Name]; dup {
			c.errorf(&ab.DefRange, "Duplicate auth block", "An auth block named %q is already defined.", ab.Name)
			continue
		}
		a := &Auth{Name: ab.Name}
		cfg.Auths[ab.Name] = a
		if ab.Cert != nil {
			a.Cert = c.certAuth(ab.Cert)
		}
		c.passwordSource(ab, a)
		if ab.TOTPSecretsFile != nil {
			a.TOTPFile = *ab.TOTPSecretsFile
			a.TOTP = c.totpSecrets(at(ab.TOTPSecretsFileAt, ab.DefRange), ab.Name, a.TOTPFile)
		}
		a.Backend = c.backendLogin(ab.DefRange, ab.BackendUser, ab.BackendUserAt, ab.BackendPasswordFile, ab.BackendPasswordFileAt,
			ab.BackendPasswordEnv, ab.BackendPasswordEnvAt)
		if a.CertOnly() && a.Backend == nil && a.Hook == nil {
			c.warnf(&ab.Cert.DefRange, "Certificate login without a backend account",
				"auth %q logs in on a certificate alone, but maps no backend_user: its logins are refused unless their route maps one.", ab.Name)
		}
	}
}

// passwordSource compiles the block's one password source: user_file or
// hook. Two are refused (which would decide?); none is refused unless the
// certificate alone logs in (cert mode "cert").
func (c *compiler) passwordSource(ab *authBlock, a *Auth) {
	type source struct {
		name string
		r    *hcl.Range
	}
	var set []source
	if ab.UserFile != nil {
		set = append(set, source{"user_file", at(ab.UserFileAt, ab.DefRange)})
	}
	if ab.LDAP != nil {
		set = append(set, source{"ldap", &ab.LDAP.DefRange})
	}
	if ab.Hook != nil {
		set = append(set, source{"hook", &ab.Hook.DefRange})
	}
	if len(set) > 1 {
		c.errorf(set[1].r, "Two password sources", "auth %q has both %s (at %s) and %s: a block has one password source.",
			ab.Name, set[0].name, set[0].r, set[1].name)
		return
	}
	switch {
	case ab.Hook != nil:
		a.Hook = c.hook(ab.Name, ab.Hook)
	case ab.LDAP != nil:
		if a.CertOnly() {
			c.errorf(&ab.LDAP.DefRange, "Invalid auth block",
				"auth %q: cert mode \"cert\" checks no password, so its ldap block would check nothing; use mode \"cert_and_password\", or remove the ldap block.", ab.Name)
			return
		}
		a.LDAP = c.ldap(ab.Name, ab.LDAP)
	case ab.UserFile != nil && *ab.UserFile != "":
		if a.CertOnly() {
			c.errorf(at(ab.UserFileAt, ab.DefRange), "Invalid auth block",
				"auth %q: cert mode \"cert\" checks no password, so its user_file would check nothing; use mode \"cert_and_password\", or remove user_file.", ab.Name)
			return
		}
		a.UserFile = *ab.UserFile
		a.Users = c.userFile(at(ab.UserFileAt, ab.DefRange), a, ab.Name, a.UserFile)
	case !a.CertOnly():
		c.errorf(&ab.DefRange, "Invalid auth block",
			"auth %q needs a password source: user_file, an ldap block or a hook (or a cert block with mode \"cert\").", ab.Name)
	}
}

// userFile loads the user file at path for the auth block name; nil after
// a problem, which is reported.
func (c *compiler) userFile(r *hcl.Range, a *Auth, name, path string) *userfile.File {
	a.UserFileStamp = FileStamp(path)
	data, err := readSmallFile(path)
	if err != nil {
		c.errorf(r, "Unreadable user file", "auth %q: user_file: %s", name, err)
		return nil
	}
	// The hashes are what an attacker who reads the file can attack
	// offline.
	c.secretFile(r, "user_file", path, "the password hashes of its users")
	f, errs := userfile.Parse(data)
	for _, e := range errs {
		c.errorf(fileLine(path, e.Line),
			"Invalid user file line", "auth %q: %s", name, e.Err)
	}
	return f
}

// fileLine is the range of line of the file at path, for a diagnostic
// about a file the configuration names (a user file's bad line).
func fileLine(path string, line int) *hcl.Range {
	p := hcl.Pos{Line: line, Column: 1}
	return &hcl.Range{Filename: path, Start: p, End: p}
}

// totpSecrets loads the TOTP secrets file at path for the auth block
// name; nil after a problem, which is reported at the file's line.
func (c *compiler) totpSecrets(r *hcl.Range, name, path string) *userfile.Secrets {
	data, err := readSmallFile(path)
	if err != nil {
		c.errorf(r, "Unreadable TOTP secrets file", "auth %q: totp_secrets_file: %s", name, err)
		return nil
	}
	c.secretFile(r, "totp_secrets_file", path, "every user's second factor")
	s, errs := userfile.ParseSecrets(data)
	for _, e := range errs {
		c.errorf(fileLine(path, e.Line),
			"Invalid TOTP secrets line", "auth %q: %s", name, e.Err)
	}
	return s
}

// FileStamp is the path, size, modification time and mode of the file at
// path, or "" when it cannot be read: what tells the server's watch that
// a user file changed.
func FileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s|%d|%d|%d", path, fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
}

// ParseUserFile parses the user file of a, as Load does; the error names
// the file and the line of each problem. The server calls it when the
// file changes.
func ParseUserFile(path string) (*userfile.File, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, err
	}
	f, errs := userfile.Parse(data)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = fmt.Sprintf("%s:%d: %v", path, e.Line, e.Err)
		}
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return f, nil
}

// backendLogin compiles backend_user with backend_password_file or
// backend_password_env; nil when none is set.
func (c *compiler) backendLogin(block hcl.Range, user *string, userAt hcl.Range, file *string, fileAt hcl.Range,
	env *string, envAt hcl.Range) *BackendLogin {
	if user == nil && file == nil && env == nil {
		return nil
	}
	if user == nil {
		c.errorf(&block, "Invalid backend account", "backend_password_file and backend_password_env need backend_user.")
		return nil
	}
	if d := policy.UserName(*user); d != nil || strings.ContainsAny(*user, " \t") {
		c.errorf(at(userAt, block), "Invalid backend account", "backend_user %q is not a user name an FTP server takes.", *user)
		return nil
	}
	bl := &BackendLogin{User: *user}
	var pw string
	var pwAt *hcl.Range
	switch {
	case file != nil && env != nil:
		c.errorf(at(envAt, block), "Invalid backend account", "Set backend_password_file or backend_password_env, not both.")
		return nil
	case file != nil:
		pwAt = at(fileAt, block)
		data, err := readSmallFile(*file)
		if err != nil {
			c.errorf(pwAt, "Unreadable backend password", "backend_password_file: %s", err)
			return nil
		}
		c.secretFile(pwAt, "backend_password_file", *file, "the backend account's password")
		pw = strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	case env != nil:
		pwAt = at(envAt, block)
		v, ok := os.LookupEnv(*env)
		if !ok {
			c.errorf(pwAt, "Missing backend password", "backend_password_env: the environment variable %s is not set.", *env)
			return nil
		}
		pw = v
	default:
		c.errorf(at(userAt, block), "Invalid backend account",
			"backend_user %q needs backend_password_file or backend_password_env: the client's own password is never sent for another user.", *user)
		return nil
	}
	if pw == "" {
		c.errorf(pwAt, "Invalid backend password", "The backend password is empty.")
		return nil
	}
	// A line end would end PASS early and send the rest as a command.
	if strings.ContainsAny(pw, "\r\n\x00") || len(pw) > 1024 {
		c.errorf(pwAt, "Invalid backend password", "The backend password must be one line of at most 1024 bytes.")
		return nil
	}
	bl.Password = pw
	return bl
}

// authRef resolves an auth attribute (a listener's or a route's) to its
// block.
func (c *compiler) authRef(cfg *Config, name *string, r, block hcl.Range, who string) *Auth {
	if name == nil {
		return nil
	}
	a, ok := cfg.Auths[*name]
	if !ok {
		c.errorf(at(r, block), "Unknown auth block", "%s names auth %q, which no auth block defines.", who, *name)
		return nil
	}
	return a
}

// authLinks sets each listener's auth block and compiles what each route
// adds to a login. A backend account on a route is refused unless every
// login the route takes is checked by the proxy: otherwise any password
// would log in as that account.
func (c *compiler) authLinks(fs *fileSchema, cfg *Config) {
	unchecked := "" // a listener without auth
	for i, l := range cfg.Listeners {
		lb := c.listeners[i]
		l.Auth = c.authRef(cfg, lb.Auth, lb.AuthAt, lb.DefRange, fmt.Sprintf("Listener %q", l.Name))
		c.checkCertListener(l, lb)
		if l.Auth == nil && unchecked == "" {
			unchecked = l.Name
		}
	}
	c.ldapRoutes(fs)
	cfg.RouteLogins = map[string]*RouteLogin{}
	seen := map[string]bool{}
	for i := range fs.Routes {
		rb := &fs.Routes[i]
		if seen[rb.Name] {
			continue // a duplicate, reported by routes
		}
		seen[rb.Name] = true
		rl := &RouteLogin{
			Auth: c.authRef(cfg, rb.Auth, rb.AuthAt, rb.DefRange, fmt.Sprintf("Route %q", rb.Name)),
			Backend: c.backendLogin(rb.DefRange, rb.BackendUser, rb.BackendUserAt, rb.BackendPasswordFile, rb.BackendPasswordFileAt,
				rb.BackendPasswordEnv, rb.BackendPasswordEnvAt),
		}
		if rl.Backend != nil && rl.Auth == nil && rb.Auth == nil && unchecked != "" {
			c.errorf(at(rb.BackendUserAt, rb.DefRange), "Backend account without auth",
				"Route %q maps logins to backend_user %q, but listener %q has no auth block and the route names none: "+
					"any password would log in. Set auth on the route or on every listener.", rb.Name, rl.Backend.User, unchecked)
		}
		if rl.Auth != nil || rl.Backend != nil {
			cfg.RouteLogins[rb.Name] = rl
		}
	}
}
