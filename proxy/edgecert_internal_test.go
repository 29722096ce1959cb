package proxy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// TestCertUsers: the names a certificate gives, by user_from.
func TestCertUsers(t *testing.T) {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "alice", Organization: []string{"Example"}},
		EmailAddresses: []string{"alice@example.com", "a@example.com"}, DNSNames: []string{"host1.example.com"}}
	for _, tc := range []struct {
		cert *x509.Certificate
		from config.CertUserFrom
		want string
	}{
		{c, config.FromCN, "[alice]"},
		{c, config.FromSANEmail, "[alice@example.com a@example.com]"},
		{c, config.FromSANDNS, "[host1.example.com]"},
		{&x509.Certificate{}, config.FromCN, "[]"}, // no CN names no user, not ""
		{&x509.Certificate{}, config.FromSANEmail, "[]"},
	} {
		if got := fmt.Sprint(certUsers(tc.cert, tc.from)); got != tc.want {
			t.Errorf("%v of %v: %s, want %s", tc.from, tc.cert.Subject, got, tc.want)
		}
	}
}
