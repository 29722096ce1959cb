package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// alpnFTP is the ALPN protocol id of FTP (IANA registry; RFC 7301). A
// client that offers ALPN without it is refused at the handshake, which
// stops cross-protocol attacks such as ALPACA (a browser's HTTPS request
// redirected to the FTP port).
const alpnFTP = "ftp"

// frontTLSConfig is the server-side TLS configuration of a listener, shared
// by its control and data connections: data connections resume the control
// connection's session from the tickets this configuration issues.
func frontTLSConfig(l *config.Listener) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*l.Certificate},
		MinVersion:   l.MinTLSVersion,
		NextProtos:   []string{alpnFTP},
		// Go servers never renegotiate; session tickets are on, with
		// keys rotated by crypto/tls.
	}
}

// eofConn records whether its reader reached the end of the TCP stream.
// Under TLS, (*tls.Conn).Read returns io.EOF both for a close_notify alert
// and for a TCP FIN at a record boundary; a close_notify is read without the
// TCP stream ending, so "TLS said EOF and TCP did not" means the peer ended
// the stream with close_notify, and an upload's end is verified.
type eofConn struct {
	net.Conn
	eof atomic.Bool
}

func (c *eofConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

// sawTCPEOF reports whether the TCP stream ended.
func (c *eofConn) sawTCPEOF() bool { return c.eof.Load() }
