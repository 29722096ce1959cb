package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
// The certificate comes from cert at each handshake, so that a reload or
// a renewal can replace it; the minimum version and the TLS 1.2 cipher suites are set
// per session from the listener's configuration (tlsBinding), which a
// reload may change.
func frontTLSConfig(cert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		GetCertificate: cert,
		MinVersion:     tls.VersionTLS12,
		// Never Go's default, which accepts CBC-SHA1 suites; sessions
		// replace this with their listener's tls_cipher_suites.
		CipherSuites: config.DefaultCipherSuites(),
		NextProtos:   []string{alpnFTP},
		// Go servers never renegotiate; session tickets are on, with
		// keys rotated by crypto/tls.
	}
}

// ---- binding data connections to their control connection ----

// The session-ticket entries (tls.SessionState.Extra) of the binding:
// bindTag marks the one that names the control session a ticket was issued
// to; ownerTag the one that names who that session is logged in as, in
// tickets issued after its login.
// addrTag marks the one that names the client address the ticket was
// issued to, which a later control connection must come from to resume it
// (tlsBinding.control).
const (
	bindTag  = "ftpsgate-bind/"
	ownerTag = "ftpsgate-owner/"
	addrTag  = "ftpsgate-addr/"
)

// tlsBinding ties a client's data connections to the TLS sessions of its
// own control connections (RFC 4217 §10 leaves this to the server;
// vsftpd's require_ssl_reuse is the model). Every ticket the proxy issues
// to the session carries, inside its encryption, the session's random
// binding id and, once the session has logged in, its owner: the client's
// address, the user and the backend. A data connection may resume a ticket
// carrying its own session's id, or a sibling's: a ticket whose owner is
// the data connection's own (same client address, same user, same
// backend), or, for a ticket issued before a login (on a control
// connection's handshake), one whose session is open and has that owner.
// Clients that keep one TLS session cache for all their connections to a
// server (rclone, and every Go client built on tls.ClientSessionCache)
// resume whichever ticket they received last, often a sibling's, and
// sometimes one of a sibling that has closed since (issue 15). A ticket of
// another user or of another address is refused. ConnectionState.DidResume
// alone would accept any ticket this listener ever issued, including
// another client's.
type tlsBinding struct {
	id        []byte
	sessionID string           // the control session's id, for logs and the audit
	client    netip.Addr       // the client's address (a trusted PROXY header's, behind a balancer)
	base      *tls.Config      // the listener's: its ticket keys encrypt every ticket
	listen    *config.Listener // the session's listener configuration: versions, suites
	// peer returns the binding of the open session whose binding id is
	// id, or nil (Server.binding). Nil: no open sibling is ever found.
	peer func(id []byte) *tlsBinding
	// owner is who the session is: set when it logs in, nil before and
	// once it closes. settled is closed at the first of the two.
	owner   atomic.Pointer[bindOwner]
	settled chan struct{}
	settle  sync.Once
}

// bindOwner is who a logged-in session is, as far as the resumption of
// its tickets by a sibling's data connections goes.
type bindOwner struct {
	client  netip.Addr // the client's address (a trusted PROXY header's, behind a balancer)
	user    string     // the logged-in user's policy key (policy.Rules.Key)
	backend string     // the backend block the session logged in to
}

func newTLSBinding(base *tls.Config, lc *config.Listener, session string, client netip.Addr, peer func([]byte) *tlsBinding) *tlsBinding {
	id := make([]byte, 16)
	rand.Read(id)
	return &tlsBinding{id: append([]byte(bindTag), id...), sessionID: session, client: client, base: base, listen: lc,
		peer: peer, settled: make(chan struct{})}
}

// login records who the session is, for its tickets' resumption by its
// siblings' data connections; release, when the session closes, forgets
// it (tickets issued since its login still carry it).
func (b *tlsBinding) login(o bindOwner) {
	b.owner.Store(&o)
	b.settle.Do(func() { close(b.settled) })
}

func (b *tlsBinding) release() {
	b.owner.Store(nil)
	b.settle.Do(func() { close(b.settled) })
}

// siblingLoginWait bounds how long a data connection's handshake waits
// for the login of the open session whose pre-login ticket it offers:
// a client that opens its control connections in parallel (rclone) may
// resume the ticket of one still logging in.
const siblingLoginWait = 5 * time.Second

// whenSettled returns the session's owner once it has logged in or
// closed, waiting at most wait, or until done is closed; onWait, if not
// nil, is called before it waits.
func (b *tlsBinding) whenSettled(wait time.Duration, done <-chan struct{}, onWait func(session string)) *bindOwner {
	if o := b.owner.Load(); o != nil {
		return o
	}
	select {
	case <-b.settled:
		return b.owner.Load()
	default:
	}
	if onWait != nil {
		onWait(b.sessionID)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-b.settled:
	case <-t.C:
	case <-done:
	}
	return b.owner.Load()
}

// session is the listener's configuration with the session's listener
// settings; control and data connections share them.
func (b *tlsBinding) session() *tls.Config {
	c := b.base.Clone()
	c.MinVersion = b.listen.MinTLSVersion
	if b.listen.CipherSuites != nil {
		c.CipherSuites = b.listen.CipherSuites
	}
	c.WrapSession = b.wrap
	if b.listen.ClientAuth != config.ClientCertNone {
		// Data connections, and the control connection of an optional
		// listener: a certificate is asked for, and one given must
		// verify. Never NoClientCert: crypto/tls would then refuse to
		// resume a session that carries a certificate, which every data
		// connection of a mutual-TLS session must.
		c.ClientCAs = b.listen.ClientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c
}

// wrap issues a ticket bound to this session, and to its owner once it
// has logged in, replacing any binding the state carried.
func (b *tlsBinding) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	extra := ss.Extra[:0:0]
	for _, e := range ss.Extra {
		if !bytes.HasPrefix(e, []byte(bindTag)) && !bytes.HasPrefix(e, []byte(ownerTag)) && !bytes.HasPrefix(e, []byte(addrTag)) {
			extra = append(extra, e)
		}
	}
	extra = append(extra, b.id, append([]byte(addrTag), b.client.String()...))
	if o := b.owner.Load(); o != nil {
		if e := o.entry(b.sessionID); e != nil {
			extra = append(extra, e)
		}
	}
	ss.Extra = extra
	return b.base.EncryptTicket(cs, ss)
}

// entry is the ticket entry naming o as the owner of session's tickets:
// ownerTag, then session, client address, user and backend, each with a
// two-byte length; nil if one is longer (a ticket without it resumes on
// its own session only, or on a sibling while its session is open).
func (o *bindOwner) entry(session string) []byte {
	e := []byte(ownerTag)
	for _, f := range []string{session, o.client.String(), o.user, o.backend} {
		if len(f) > 0xFFFF {
			return nil
		}
		e = binary.BigEndian.AppendUint16(e, uint16(len(f)))
		e = append(e, f...)
	}
	return e
}

// ticketOwner reads the owner entry of a ticket's state: the session it
// was issued to and that session's owner. ok is false when the ticket
// carries none (it was issued before a login) or a malformed one.
func ticketOwner(ss *tls.SessionState) (session string, o bindOwner, ok bool) {
	var e []byte
	for _, x := range ss.Extra {
		if bytes.HasPrefix(x, []byte(ownerTag)) {
			e = x[len(ownerTag):]
		}
	}
	if e == nil {
		return "", bindOwner{}, false
	}
	var f [4]string
	for i := range f {
		if len(e) < 2 || len(e) < 2+int(binary.BigEndian.Uint16(e)) {
			return "", bindOwner{}, false
		}
		n := int(binary.BigEndian.Uint16(e))
		f[i], e = string(e[2:2+n]), e[2+n:]
	}
	client, err := netip.ParseAddr(f[1])
	if err != nil || len(e) != 0 {
		return "", bindOwner{}, false
	}
	return f[0], bindOwner{client: client, user: f[2], backend: f[3]}, true
}

// boundID is the binding id a ticket's state carries, or nil.
func boundID(ss *tls.SessionState) []byte {
	for _, e := range ss.Extra {
		if bytes.HasPrefix(e, []byte(bindTag)) {
			return e
		}
	}
	return nil
}

// owns reports whether a ticket's state is bound to this session.
func (b *tlsBinding) owns(ss *tls.SessionState) bool {
	return subtle.ConstantTimeCompare(boundID(ss), b.id) == 1
}

// sibling judges a ticket bound to another session: it returns that
// session's id if the ticket may be resumed here, else why not. A ticket
// issued before its session's login waits for that login (see
// siblingLoginWait), or until done is closed; onWait is called if it
// waits.
func (b *tlsBinding) sibling(ss *tls.SessionState, done <-chan struct{}, onWait func(string)) (string, foreignTicket) {
	me := b.owner.Load()
	if me == nil { // a data connection comes only after a login
		return "", ticketOfNoLogin
	}
	session, them, ok := ticketOwner(ss)
	if !ok {
		// Issued before its session's login: that session must be open,
		// and logged in (it may be logging in right now).
		var o *tlsBinding
		if id := boundID(ss); id != nil && b.peer != nil {
			o = b.peer(id)
		}
		var t *bindOwner
		if o != nil {
			t = o.whenSettled(siblingLoginWait, done, onWait)
		}
		if t == nil {
			return "", ticketOfNoLogin
		}
		session, them = o.sessionID, *t
	}
	switch {
	case them.client != me.client:
		return "", ticketOfOtherAddress
	case them.user != me.user || them.backend != me.backend:
		return "", ticketOfOtherUser
	}
	return session, notForeign
}

// foreignTicket says why a data connection's ticket, bound to another
// session, was not resumed.
type foreignTicket int

const (
	notForeign foreignTicket = iota
	ticketOfNoLogin
	ticketOfOtherAddress
	ticketOfOtherUser
)

func (f foreignTicket) String() string {
	switch f {
	case ticketOfNoLogin:
		return "a session that did not log in (or has closed since)"
	case ticketOfOtherAddress:
		return "a session from another client address"
	case ticketOfOtherUser:
		return "another user's session"
	}
	return "none"
}

// ticketAddr is the client address a ticket's state was issued to, or
// the zero Addr when it names none.
func ticketAddr(ss *tls.SessionState) netip.Addr {
	for _, e := range ss.Extra {
		if bytes.HasPrefix(e, []byte(addrTag)) {
			if a, err := netip.ParseAddr(string(e[len(addrTag):])); err == nil {
				return a
			}
		}
	}
	return netip.Addr{}
}

// control is the configuration of the control connection. It resumes a
// ticket issued, on any earlier connection of this listener's, to the same
// client address, and no other: a client that reconnects (lftp's parallel
// mirror, rclone, a script with one session per file) is spared a full
// handshake, which costs the proxy most of a session's setup (issue 22).
// What a resumed control connection is granted is unchanged: it logs in
// like any other. Every ticket it then issues is bound to this session
// (wrap replaces the binding entries the resumed state carried), and
// crypto/tls issues new tickets after a resumed handshake under TLS 1.3
// and 1.2 alike, so the session's data connections resume tickets of
// their own session, as before.
func (b *tlsBinding) control() *tls.Config {
	c := b.session()
	if b.listen.ClientAuth == config.ClientCertRequire {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := b.base.DecryptTicket(identity, cs)
		if err != nil || ss == nil || !b.client.IsValid() || ticketAddr(ss) != b.client {
			return nil, nil // a full handshake
		}
		return ss, nil
	}
	return c
}

// dataHandshake is what one data connection's handshake offered.
type dataHandshake struct {
	// hello: the peer sent a ClientHello, so it is a TLS client (and,
	// from the client's address, most likely the FTP client itself).
	hello bool
	// foreign: it offered a valid ticket of a session it may not resume,
	// and why.
	foreign foreignTicket
	// sibling: the id of the sibling session whose ticket it resumed, if
	// it resumed one (see tlsBinding).
	sibling string
	// onHello, if not nil, is called when the ClientHello arrives;
	// waiting, if not nil, when the handshake waits for the login of
	// the session whose pre-login ticket it offers.
	onHello func()
	waiting func(session string)
	// idOnly: a TLS 1.2-only client that offered no session ticket. It
	// can resume only by session ID, which Go's TLS server does not
	// support (curl with OpenSSL under TLS 1.2 does this): crypto/tls
	// sends an empty session ID in every full TLS 1.2 handshake, so such
	// a client is never given an ID to resume, and no hook sees the ID
	// a client offers.
	idOnly bool
}

// extSessionTicket is the session_ticket extension (RFC 5077).
const extSessionTicket = 35

// data is the configuration of one data connection: only tickets bound to
// this session or to a sibling are resumed; another is noted and ignored
// (a full handshake follows, which the caller refuses when reuse is
// required).
func (b *tlsBinding) data(h *dataHandshake, done <-chan struct{}) *tls.Config {
	c := b.session()
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		h.hello = true
		if h.onHello != nil {
			h.onHello()
		}
		h.idOnly = !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) &&
			!slices.Contains(hello.Extensions, extSessionTicket)
		return nil, nil
	}
	// Under TLS 1.3 a client may offer several tickets: crypto/tls calls
	// this for each until one is resumed, so the last state returned is
	// the one resumed, if any was.
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := b.base.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, nil // not ours to judge: unreadable or expired
		}
		if b.owns(ss) {
			h.sibling = ""
			return ss, nil
		}
		sib, why := b.sibling(ss, done, h.waiting)
		if sib == "" {
			h.foreign = why
			return nil, nil
		}
		h.sibling = sib
		return ss, nil
	}
	return c
}

// errNotResumed refuses a data connection whose TLS session is not bound to
// its control connection (or a sibling's).
type errNotResumed struct {
	foreign foreignTicket
	idOnly  bool
}

func (e *errNotResumed) Error() string {
	switch {
	case e.foreign != notForeign:
		return "the data connection's TLS session belongs to " + e.foreign.String()
	case e.idOnly:
		return "the data connection's TLS session does not resume the control connection's: " +
			"the client offered no session ticket under TLS 1.2 (resumption by session ID is not supported)"
	}
	return "the data connection's TLS session does not resume the control connection's"
}

// notResumedText is the reply to a transfer whose data connection was
// refused for not resuming the control connection's TLS session.
func notResumedText(e *errNotResumed) string {
	switch e.foreign {
	case ticketOfOtherAddress:
		return "Data connection refused: its TLS session belongs to a connection from another address."
	case ticketOfOtherUser:
		return "Data connection refused: its TLS session belongs to another user's connection."
	case ticketOfNoLogin:
		return "Data connection refused: its TLS session belongs to a connection that is not logged in; resume this connection's TLS session."
	}
	if e.idOnly {
		return "Data connection refused: TLS session reuse required, and your client offered no TLS 1.2 session ticket (this server cannot resume by session ID); allow TLS 1.3 (see ftpsgate's README)."
	}
	return "Data connection refused: TLS session reuse required; the data connection must resume the control connection's TLS session (see ftpsgate's README for your client)."
}
