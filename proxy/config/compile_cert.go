package config

import (
	"fmt"
)

var (
	clientAuthModes = enum[ClientAuthMode]{{name: "none", value: ClientCertNone, note: "the default"},
		{name: "optional", value: ClientCertOptional}, {name: "require", value: ClientCertRequire}}
	certModes = enum[CertMode]{{name: "cert_and_password", value: CertAndPassword, note: "the default"},
		{name: "cert", value: CertOnly}}
	certUserFrom = enum[CertUserFrom]{{name: "cn", value: FromCN, note: "the default"},
		{name: "san_email", value: FromSANEmail}, {name: "san_dns", value: FromSANDNS}}
)

// clientAuth compiles a listener's client_auth and client_ca_file: a
// mode other than none needs the CA file, and the CA file a mode.
func (c *compiler) clientAuth(lb *listenerBlock, l *Listener) {
	choose(c, at(lb.ClientAuthAt, lb.DefRange), "Invalid client_auth", "client_auth", lb.ClientAuth, &l.ClientAuth, clientAuthModes, "")
	switch {
	case l.ClientAuth != ClientCertNone && lb.ClientCAFile == nil:
		c.errorf(at(lb.ClientAuthAt, lb.DefRange), "Missing client_ca_file",
			"Listener %q: client_auth = %q needs client_ca_file, the CA that issues the clients' certificates.", lb.Name, l.ClientAuth)
	case l.ClientAuth == ClientCertNone && lb.ClientCAFile != nil:
		c.errorf(at(lb.ClientCAFileAt, lb.DefRange), "client_ca_file without client_auth",
			"Listener %q: client_ca_file is set but client_auth is not: set client_auth = \"optional\" or \"require\".", lb.Name)
	case lb.ClientCAFile != nil:
		l.ClientCAFile = *lb.ClientCAFile
		l.ClientCAs = c.pemPool(at(lb.ClientCAFileAt, lb.DefRange), "client_ca_file", l.ClientCAFile)
	}
}

// certAuth compiles an auth block's cert block.
func (c *compiler) certAuth(cb *certBlock) *CertAuth {
	a := &CertAuth{}
	choose(c, at(cb.ModeAt, cb.DefRange), "Invalid cert mode", "mode", cb.Mode, &a.Mode, certModes, "")
	choose(c, at(cb.UserFromAt, cb.DefRange), "Invalid user_from", "user_from", cb.UserFrom, &a.UserFrom, certUserFrom, "")
	return a
}

// checkCertListeners refuses a listener whose auth block takes the user
// from a certificate the listener never asks for: every login would fail.
func (c *compiler) checkCertListener(l *Listener, lb *listenerBlock) {
	if l.Auth == nil || l.Auth.Cert == nil || l.ClientAuth != ClientCertNone {
		return
	}
	c.errorf(at(lb.AuthAt, lb.DefRange), "Certificate auth without client_auth",
		"%s", fmt.Sprintf("Listener %q uses auth %q, whose cert block needs a client certificate, but the listener asks for none: "+
			"set client_auth and client_ca_file on the listener.", l.Name, l.Auth.Name))
}
