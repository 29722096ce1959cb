package proxy

import (
	"crypto/x509"
	"slices"

	"go.uber.org/zap"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// Client certificates (mutual TLS): a listener with client_auth asks for
// a certificate at the control connection's handshake (implicit FTPS: on
// connect; explicit: at AUTH TLS) and verifies it against client_ca_file;
// one that does not verify fails the handshake. An auth block's cert
// block then takes the user from the verified certificate, and USER must
// name that user. Data connections do not ask again: they resume the
// control connection's TLS session (bound to it, tls.go), which carries
// its certificate; a client that presents one there anyway must present a
// valid one.

// Why a certificate refused a login (the audit's reason).
const (
	reasonCertMissing  = "cert_missing"       // no verified client certificate
	reasonCertMismatch = "cert_user_mismatch" // it names another user than USER
)

// clientCert is the client's certificate, if the control connection's
// handshake verified one against the listener's client_ca_file: the leaf
// of the first verified chain. A certificate crypto/tls did not verify
// (none asked for, or a listener without client_auth) is never returned.
func (s *session) clientCert() *x509.Certificate {
	if s.tls == nil {
		return nil
	}
	cs := s.tls.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// clientCertSubject is the subject of the client's verified certificate,
// for the log and the audit; "" without one.
func (s *session) clientCertSubject() string {
	if c := s.clientCert(); c != nil {
		return c.Subject.String()
	}
	return ""
}

// certCheck checks that the client's verified certificate names l.user
// as e's cert block reads it; the refusal's reason, or "".
func (l *login) certCheck(e *edgeLogin) string {
	s := l.s
	c := s.clientCert()
	if c == nil {
		return reasonCertMissing
	}
	names := certUsers(c, e.auth.Cert.UserFrom)
	if !slices.Contains(names, l.user) {
		s.log.Info("client certificate names another user", zap.String("subject", c.Subject.String()),
			zap.Stringer("user_from", e.auth.Cert.UserFrom), zap.Strings("names", names))
		return reasonCertMismatch
	}
	return ""
}

// certUsers are the user names certificate c gives, read from its part
// from: the subject's common name, or every rfc822Name or dNSName
// subject alternative name (a certificate the CA issued for several
// names logs in as each of them).
func certUsers(c *x509.Certificate, from config.CertUserFrom) []string {
	switch from {
	case config.FromSANEmail:
		return c.EmailAddresses
	case config.FromSANDNS:
		return c.DNSNames
	}
	if c.Subject.CommonName == "" {
		return nil
	}
	return []string{c.Subject.CommonName}
}
