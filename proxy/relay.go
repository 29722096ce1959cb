package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The relay: the copy loop of a transfer's data, and the connection under
// each of its legs (eofConn), which measures progress, gathers TLS records
// into one send and records how the stream ended.

// Relay buffers adapt to the transfer (issue 22): a transfer reads in
// chunks of relayBufferSize until it has moved bulkAfter bytes, then in
// chunks of bulkBufferSize, which halve the reads, writes and wake-ups per
// byte of a long transfer. Listings and small files never take the large
// ones. Both come from pools and go back when the transfer ends; an idle
// session holds none.
const (
	relayBufferSize = 64 << 10
	bulkBufferSize  = 256 << 10
	bulkAfter       = 4 << 20
)

// sealedSize holds the TLS records of one chunk of n bytes: the payload
// plus each record's header, nonce and tag (at most 29 bytes in TLS 1.2, 22
// in 1.3; records are 16 KiB, smaller only in a connection's first 128 KiB,
// where crypto/tls sizes them to a TCP segment).
func sealedSize(n int) int { return n + n/16 }

// relayBuffers and sealedBuffers: the pools of the chunk buffers (index 0,
// relayBufferSize) and of the bulk ones (index 1, bulkBufferSize).
var relayBuffers, sealedBuffers [2]sync.Pool

func init() {
	for i, n := range [2]int{relayBufferSize, bulkBufferSize} {
		relayBuffers[i].New = func() any { b := make([]byte, n); return &b }
		sealedBuffers[i].New = func() any { b := make([]byte, sealedSize(n)); return &b }
	}
}

// relayBufs are the buffers one relay holds: its chunk buffer, and the
// gathering buffer of its sealed (TLS) destination, if it has one.
type relayBufs struct {
	size   int // index into the pools
	buf    *[]byte
	sealed *[]byte
}

func getRelayBufs(size int, sealed bool) relayBufs {
	b := relayBufs{size: size, buf: relayBuffers[size].Get().(*[]byte)}
	if sealed {
		b.sealed = sealedBuffers[size].Get().(*[]byte)
	}
	return b
}

func (b relayBufs) put() {
	relayBuffers[b.size].Put(b.buf)
	if b.sealed != nil {
		sealedBuffers[b.size].Put(b.sealed)
	}
}

// errClientLeg marks a relay error on the client's leg.
var errClientLeg = errors.New("client data leg")

// relay copies src to dst until src ends, and adds the bytes written to
// total. It fails when a leg makes no progress for stall: the raw
// connections under the legs measure it (eofConn.progress), so a slow
// reader or writer that keeps moving bytes is never cut, however long one
// TLS record or one chunk takes. It returns nil when src ended with io.EOF.
// An error on the client's leg (src when srcIsClient, else dst) is wrapped
// with errClientLeg. Each leg is an *eofConn, a *tls.Conn over one, or a
// plain connection (which the relay wraps).
//
// fl, if not nil, paces the writes (rate limits) and bounds what passes
// (max_file_size, errFileTooLarge after the last byte allowed). Its waits
// happen between a read and a write, outside every deadline: the stall
// deadline is armed per read and per write. tee, if not nil, is handed
// each chunk that passed, before it is written to dst (an upload's scan,
// scanner.go); it must copy what it keeps.
func relay(dst, src net.Conn, srcIsClient bool, stall time.Duration, total *atomic.Int64, fl *flow, tee func([]byte)) (int64, error) {
	dst, rawDst := rawLeg(dst)
	src, rawSrc := rawLeg(src)
	if rawDst == nil || rawSrc == nil {
		return 0, errors.New("relay: a TLS leg is not over an eofConn")
	}
	rawDst.progress(stall)
	defer rawDst.progress(0)
	rawSrc.progress(stall)
	defer rawSrc.progress(0)
	// Toward a TLS peer, each chunk's records leave in one send.
	var sealed *eofConn
	_, toTLS := dst.(*tls.Conn)
	bufs := getRelayBufs(0, toTLS)
	defer func() { bufs.put() }() // the buffers held at the end
	buf := *bufs.buf
	if toTLS {
		sealed = rawDst
		defer sealed.flush()
		sealed.hold(*bufs.sealed)
	}
	// From a TLS client, (*tls.Conn).Read returns one record (16 KiB) at
	// a time; the records it already holds are taken too, so that one
	// write carries up to a chunk.
	_, fromTLS := src.(*tls.Conn)
	var n int64
	for {
		rbuf := buf
		if fl != nil {
			rbuf = buf[:fl.chunk(len(buf))]
		}
		nr, rerr := src.Read(rbuf)
		if fromTLS {
			nr, rerr = readHeld(src, rbuf, nr, rerr)
		}
		var ferr error
		if nr > 0 && fl != nil {
			nr, ferr = fl.pass(nr)
		}
		if nr > 0 {
			if tee != nil {
				tee(buf[:nr])
			}
			nw, werr := dst.Write(buf[:nr])
			if werr == nil && sealed != nil {
				if werr = sealed.send(); werr != nil {
					nw = 0 // gathered, never sent
				}
			}
			n += int64(nw)
			total.Add(int64(nw))
			if werr != nil {
				return n, legError(!srcIsClient, werr)
			}
			if bufs.size == 0 && n >= bulkAfter && (fl == nil || fl.chunk(bulkBufferSize) > relayBufferSize) {
				// A bulk transfer, and no rate limit keeps its reads
				// small: what was gathered has been sent, so the
				// buffers can change hands.
				bufs.put()
				bufs = getRelayBufs(1, toTLS)
				buf = *bufs.buf
				if sealed != nil {
					sealed.hold(*bufs.sealed)
				}
			}
		}
		if ferr != nil {
			return n, ferr
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, legError(srcIsClient, rerr)
		}
	}
}

// rawLeg returns the connection to relay on for c, and the eofConn under
// it (nil for a *tls.Conn over anything else). A plain connection is
// wrapped in one.
func rawLeg(c net.Conn) (net.Conn, *eofConn) {
	switch v := c.(type) {
	case *eofConn:
		return v, v
	case *tls.Conn:
		ec, _ := v.NetConn().(*eofConn)
		return v, ec
	}
	ec := &eofConn{Conn: c}
	return ec, ec
}

// maxRecord is the most plaintext one TLS record carries.
const maxRecord = 16 << 10

// readHeld adds to buf[:nr] the records a TLS connection holds already,
// read without waiting: with a deadline in the past, crypto/tls returns
// what it has decrypted or buffered and a timeout (which leaves the
// connection usable; only write timeouts break a TLS connection) as soon as
// it would need the socket. The read deadline is cleared again after.
func readHeld(src net.Conn, buf []byte, nr int, rerr error) (int, error) {
	if rerr != nil || len(buf)-nr < maxRecord {
		return nr, rerr
	}
	defer src.SetReadDeadline(time.Time{})
	for rerr == nil && len(buf)-nr >= maxRecord {
		src.SetReadDeadline(pastDeadline)
		m, err := src.Read(buf[nr:])
		nr += m
		if err != nil {
			if !isTimeout(err) {
				rerr = err
			}
			break
		}
	}
	return nr, rerr
}

var pastDeadline = time.Unix(1, 0)

// legError wraps err with errClientLeg when it happened on the client leg.
func legError(client bool, err error) error {
	if client {
		return fmt.Errorf("%w: %w", errClientLeg, err)
	}
	return err
}

// eofConn is the raw connection under every data leg, client and backend,
// clear or TLS. It records whether its reader reached the end of the TCP
// stream: under TLS, (*tls.Conn).Read returns io.EOF both for a
// close_notify alert and for a TCP FIN at a record boundary; a close_notify
// is read without the TCP stream ending, so "TLS said EOF and TCP did not"
// means the peer ended the stream with close_notify, and an upload's end is
// verified.
//
// It also coalesces: between hold and flush, the TLS records written to it
// (crypto/tls writes each record with its own write) are gathered into one
// write, so a 64 KiB chunk leaves as one TCP send instead of four or more.
// On loopback and fast links that per-send cost, not the cipher, bounded
// downloads (see the relay).
//
// And it measures a transfer's progress in bytes (see progress): the stall
// deadline lives here, below TLS, because a TLS record or a chunk may take
// longer than the deadline to cross a slow link while bytes keep moving,
// and a *tls.Conn whose write hits a deadline is broken for good.
type eofConn struct {
	net.Conn
	eof  atomic.Bool
	out  []byte // non-nil between hold and flush; used by one goroutine
	werr error  // a failed coalesced write, reported by flush and later writes

	// stall, while positive, is the progress deadline of every read and
	// write; readBy is a read deadline set through the connection
	// meanwhile (readHeld's "do not wait"), which applies when it comes
	// first. Used by one goroutine, the relay's.
	stall  time.Duration
	readBy time.Time
	// firstRead, if set, runs once, after the first read that returned
	// data (a data connection's handshake deadline starts there).
	firstRead func()
}

// progress makes reads and writes fail only when stall passes with no
// byte moved, however long a whole read or write takes: each read gets a
// fresh deadline, and a write that times out after moving some bytes goes
// on with a fresh one. A reader that stops is thus cut after between stall
// and twice stall (the kernel accepts bytes into its buffer in steps).
// Zero turns it off; deadlines are then the caller's again.
func (c *eofConn) progress(stall time.Duration) {
	c.stall, c.readBy = stall, time.Time{}
}

// SetReadDeadline sets the read deadline; while progress is on, it is
// applied at the next read, with the stall deadline.
func (c *eofConn) SetReadDeadline(t time.Time) error {
	if c.stall > 0 {
		c.readBy = t
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// hold starts gathering writes into buf (its capacity is the limit; more
// is written through).
func (c *eofConn) hold(buf []byte) { c.out = buf[:0] }

func (c *eofConn) Write(p []byte) (int, error) {
	if c.werr != nil {
		return 0, c.werr
	}
	if c.out == nil {
		return c.write(p)
	}
	if len(c.out)+len(p) > cap(c.out) {
		if err := c.send(); err != nil {
			return 0, err
		}
		if len(p) > cap(c.out) {
			return c.write(p)
		}
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

// write writes p to the connection, under the progress deadline if on.
func (c *eofConn) write(p []byte) (int, error) {
	if c.stall <= 0 {
		return c.Conn.Write(p)
	}
	n := 0
	for {
		c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
		m, err := c.Conn.Write(p[n:])
		n += m
		// A timeout after some bytes moved is a slow reader, not a
		// stalled one.
		if err == nil || m == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
	}
}

// send writes what was gathered; after a failed write it only reports it.
func (c *eofConn) send() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.out) > 0 {
		if _, err := c.write(c.out); err != nil {
			c.werr = err
			return err
		}
		c.out = c.out[:0]
	}
	return nil
}

// flush writes what was gathered and stops gathering.
func (c *eofConn) flush() error {
	err := c.send()
	c.out = nil
	return err
}

func (c *eofConn) Read(p []byte) (int, error) {
	if c.stall > 0 {
		d := time.Now().Add(c.stall)
		if !c.readBy.IsZero() && c.readBy.Before(d) {
			d = c.readBy
		}
		c.Conn.SetReadDeadline(d)
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.firstRead != nil {
		f := c.firstRead
		c.firstRead = nil
		f()
	}
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

// sawTCPEOF reports whether the TCP stream ended.
func (c *eofConn) sawTCPEOF() bool { return c.eof.Load() }

// ---- how a leg ends ----

// startLinger counts one more lingering data leg, unless limit linger
// already; it reports whether it counted it.
func (s *Server) startLinger(limit int) bool {
	for {
		n := s.lingering.Load()
		if n >= int64(limit) {
			return false
		}
		if s.lingering.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// lingerTimeout bounds how long a closed client leg waits for the client's
// own close.
const lingerTimeout = 10 * time.Second

// lingerLeg is the goroutine of a lingering client leg, counted in
// lingering until it ends.
func lingerLeg(wg *sync.WaitGroup, lingering *atomic.Int64, cd *clientData) {
	defer wg.Done()
	defer lingering.Add(-1)
	lingerClose(cd, lingerTimeout)
}

// lingerClose drains a half-closed data connection until the client closes
// it (or the timeout), then closes it.
func lingerClose(cd *clientData, timeout time.Duration) {
	cd.tcp.SetReadDeadline(time.Now().Add(timeout))
	var buf [512]byte
	for {
		if _, err := cd.conn.Read(buf[:]); err != nil {
			break
		}
	}
	cd.tcp.Close()
}

// resetLeg closes a data leg with a TCP reset, so that the peer cannot take
// the end of the stream for the end of the file.
func resetLeg(c net.Conn) {
	switch tc := c.(type) {
	case *net.TCPConn:
		tc.SetLinger(0)
	case interface{ Reset() error }: // a stream through an agent (agent.Conn)
		tc.Reset()
		return
	}
	c.Close()
}
