package proxy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestLDAPPool: the pool opens at most max_connections at once (a get
// beyond them waits, then fails with errLDAPBusy after the timeout),
// reuses an idle connection, and closes one idle for idle_timeout (slapd
// sees it closed).
func TestLDAPPool(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	d := ftptest.StartSlapd(t, certs, "")
	cfg, diags := config.Parse([]byte(`listener "l" {
  address       = "127.0.0.1:0"
  tls           = "explicit"
  cert_file     = "`+certs.CertFile+`"
  key_file      = "`+certs.KeyFile+`"
  passive_ports = "50000-50009"
  backend       = "b"
  auth          = "dir"
}
backend "b" {
  address = "127.0.0.1:21"
  tls     = "none"
}
auth "dir" {
  ldap {
    url              = "`+d.LDAPSURL+`"
    ca_file          = "`+certs.CAFile+`"
    bind_dn_template = "uid={user},dc=test"
    max_connections  = 2
    timeout          = "300ms"
    idle_timeout     = "500ms"
  }
}`), "t.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p := newLDAPPool(cfg.Auths["dir"].LDAP)
	defer p.close()
	c1, reused, err := p.get()
	if err != nil || reused {
		t.Fatal(err, reused)
	}
	c2, _, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := p.get(); !errors.Is(err, errLDAPBusy) {
		t.Fatalf("a third connection with max_connections = 2: %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", el)
	}
	p.put(c1, true)
	c3, reused, err := p.get()
	if err != nil || !reused || c3 != c1 {
		t.Fatalf("after a put: reused %v, same %v, %v", reused, c3 == c1, err)
	}
	p.put(c3, true)
	p.put(c2, false) // unhealthy: closed at once
	if n := p.idleCount(); n != 1 {
		t.Fatalf("%d idle connections; want 1", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.idleCount() != 0 || strings.Count(d.Log(), " closed") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("idle connections %d after idle_timeout; slapd's log:\n%s", p.idleCount(), d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLDAPEscaping: a user name goes into a DN or a filter as a value
// only: no wildcard, no filter of its own, no other RDN, no NUL that
// would end the string early.
func TestLDAPEscaping(t *testing.T) {
	cfg := &config.LDAP{BindDNTemplate: "uid={user},ou=people,dc=test", UserFilter: "(&(objectClass=person)(uid={user}))"}
	for _, tc := range []struct{ user, dn, filter string }{
		{"alice", "uid=alice,ou=people,dc=test", "(&(objectClass=person)(uid=alice))"},
		{"*", "uid=*,ou=people,dc=test", `(&(objectClass=person)(uid=\2a))`},
		{"ali*", "uid=ali*,ou=people,dc=test", `(&(objectClass=person)(uid=ali\2a))`},
		{"a)(uid=*", "uid=a)(uid=*,ou=people,dc=test", `(&(objectClass=person)(uid=a\29\28uid=\2a))`},
		{"mole,ou=contractors", `uid=mole\,ou=contractors,ou=people,dc=test`, "(&(objectClass=person)(uid=mole,ou=contractors))"},
		{"a+cn=b", `uid=a\+cn=b,ou=people,dc=test`, "(&(objectClass=person)(uid=a+cn=b))"},
		{"alice\x00x", `uid=alice\00x,ou=people,dc=test`, `(&(objectClass=person)(uid=alice\00x))`},
		{`a\2a`, `uid=a\\2a,ou=people,dc=test`, `(&(objectClass=person)(uid=a\5c2a))`},
		{"{user}", "uid={user},ou=people,dc=test", "(&(objectClass=person)(uid={user}))"}, // replaced once
	} {
		if got := ldapBindDN(cfg, tc.user); got != tc.dn {
			t.Errorf("DN of %q: %q, want %q", tc.user, got, tc.dn)
		}
		if got := ldapUserFilter(cfg, tc.user); got != tc.filter {
			t.Errorf("filter of %q: %q, want %q", tc.user, got, tc.filter)
		}
	}
}

// TestLDAPPoolsReload: a reload closes the pools of the ldap blocks the
// new configuration no longer has (their idle connections with them), and
// keeps the others.
func TestLDAPPoolsReload(t *testing.T) {
	old := &config.LDAP{MaxConnections: 1, Timeout: time.Second, IdleTimeout: time.Minute}
	kept := &config.LDAP{MaxConnections: 1, Timeout: time.Second, IdleTimeout: time.Minute}
	var ps ldapPools
	po, pk := ps.get(old), ps.get(kept)
	if ps.get(old) != po {
		t.Fatal("a second get made a second pool")
	}
	ps.set(&config.Config{Auths: map[string]*config.Auth{"k": {Name: "k", LDAP: kept}}})
	po.mu.Lock()
	closed := po.closed
	po.mu.Unlock()
	if !closed || ps.get(kept) != pk {
		t.Fatalf("after the reload: old pool closed %v, kept pool kept %v", closed, ps.get(kept) == pk)
	}
	ps.close()
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if !pk.closed {
		t.Fatal("close left a pool open")
	}
}
