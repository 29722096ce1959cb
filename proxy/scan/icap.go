package scan

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ICAP (RFC 3507): one connection per scan. Start asks the service for
// its OPTIONS, so that a scanner that is down, or a service name it does
// not know, refuses the upload before the backend sees it; then it sends
// a RESPMOD whose encapsulated HTTP response carries the upload as its
// chunked body, with "Allow: 204". No preview is sent, even when OPTIONS
// offers one: an antivirus service needs the whole file (c-icap's
// virus_scan answers every preview of a type it scans with 100 Continue),
// so a preview would only add a round trip while the upload's bytes
// queue, and a 204 after a preview would mean the server judged the
// first bytes alone while the audit says every byte was scanned.
//
// A goroutine of the stream reads the response while the body is sent:
// a server may answer before the body's end, or echo the body as it
// reads it (c-icap does for bodies above a few KiB, even with Allow:
// 204), and would deadlock with a client that only reads after writing.
// An echoed body is compared with what was sent by length and a seeded
// hash, never kept.

// DefaultICAPPort and DefaultICAPSPort are the ports of icap:// and
// icaps:// URLs that name none (RFC 3507 section 4.2; 11344 is c-icap's
// and Squid's usual TLS port).
const (
	DefaultICAPPort  = "1344"
	DefaultICAPSPort = "11344"
)

// Bounds on what an ICAP server may send: a reply that exceeds one is an
// error, never a reason to allocate.
const (
	maxICAPHeader = 64 << 10 // the ICAP header section, and the encapsulated HTTP header
	maxICAPLines  = 256      // header lines in a section (folded lines count)
	maxChunkLine  = 4 << 10  // a chunk-size line with its extensions
	maxTrailer    = 16 << 10 // the trailer after the last chunk
)

// ICAP scans streams with an ICAP server's RESPMOD service, one
// connection per stream.
type ICAP struct {
	// URL is the service: icap://host[:port]/service[?args], or icaps://
	// for TLS (ParseICAPURL).
	URL *url.URL
	// TLS is the client configuration of icaps:// URLs: nil verifies the
	// server against the system's roots for the URL's host; a given one
	// is cloned, and its ServerName set to the URL's host when empty.
	TLS *tls.Config
	// Timeout bounds the connection with its OPTIONS exchange, each write
	// without progress, and the wait for the verdict after the stream's
	// end. Zero: 60 s.
	Timeout time.Duration
	// MaxSize is the most bytes sent for one stream; past it they are
	// counted, not sent (Verdict.Truncated). It also bounds a body the
	// server echoes. Zero: no bound.
	MaxSize int64
	// Dial, if set, opens the TCP connection (a test's seam). Nil: a
	// net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// A StatusError is an ICAP reply whose status is no verdict: 400, 404
// (no such service), 405, 500 (the server's scanner failed), 503…
type StatusError struct {
	Status int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("icap: the server answered %d %s", e.Status, e.Reason)
}

// A ProtocolError is a reply that does not parse, or exceeds a bound.
type ProtocolError struct{ Detail string }

func (e *ProtocolError) Error() string { return "icap: malformed reply: " + e.Detail }

func protoErr(format string, args ...any) error {
	return &ProtocolError{fmt.Sprintf(format, args...)}
}

// ParseICAPURL reads a scan block's ICAP address: icap:// or icaps://,
// a host, an optional port (1344 and 11344 by default), and a service
// path; a query is kept (c-icap reads service arguments from it). The
// returned URL has its port set.
func ParseICAPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", s, err)
	}
	var port string
	switch u.Scheme {
	case "icap":
		port = DefaultICAPPort
	case "icaps":
		port = DefaultICAPSPort
	default:
		return nil, fmt.Errorf("%q: the scheme must be icap:// or icaps://", s)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q: an ICAP URL has no user, fragment or opaque part", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q: the URL names no host", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%q: invalid port", s)
		}
		port = p
	}
	if strings.Trim(u.Path, "/") == "" {
		return nil, fmt.Errorf("%q: the URL names no service (icap://host:port/service)", s)
	}
	u.Host = net.JoinHostPort(u.Hostname(), port)
	return u, nil
}

func (c *ICAP) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// dial connects to the server, with TLS for icaps://, within the timeout.
func (c *ICAP) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	var conn net.Conn
	var err error
	if c.Dial != nil {
		conn, err = c.Dial(ctx, "tcp", c.URL.Host)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", c.URL.Host)
	}
	if err != nil {
		return nil, fmt.Errorf("icap: %w", err)
	}
	if c.URL.Scheme != "icaps" {
		return conn, nil
	}
	conf := &tls.Config{}
	if c.TLS != nil {
		conf = c.TLS.Clone()
	}
	if conf.ServerName == "" {
		conf.ServerName = c.URL.Hostname()
	}
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("icap: TLS handshake with %s: %w", c.URL.Host, err)
	}
	return tc, nil
}

// serviceURL is the request line's URI: the URL with its port.
func (c *ICAP) serviceURL() string { return c.URL.String() }

// Options is what a service's OPTIONS reply says (RFC 3507 section
// 4.10.2).
type Options struct {
	Methods  []string // "RESPMOD", "REQMOD"
	Preview  int      // -1: none offered
	Allow204 bool
	ISTag    string
	// Close reports that the server closes the connection after the
	// reply ("Connection: close").
	Close bool
}

// Options asks the service for its options, on a connection of its own.
// It fails unless the server answers 200 and offers RESPMOD.
func (c *ICAP) Options(ctx context.Context) (Options, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return Options{}, err
	}
	defer conn.Close()
	return c.options(conn, bufio.NewReader(conn))
}

func (c *ICAP) options(conn net.Conn, br *bufio.Reader) (Options, error) {
	conn.SetDeadline(time.Now().Add(c.timeout()))
	defer conn.SetDeadline(time.Time{})
	req := "OPTIONS " + c.serviceURL() + " ICAP/1.0\r\nHost: " + c.URL.Host + "\r\nUser-Agent: ftpsgate\r\nEncapsulated: null-body=0\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return Options{}, fmt.Errorf("icap: sending OPTIONS: %w", err)
	}
	resp, err := ReadResponse(br, maxICAPHeader)
	if err != nil {
		return Options{}, err
	}
	return resp.options()
}

func (r *Response) options() (Options, error) {
	if r.Status != 200 {
		return Options{}, &StatusError{r.Status, r.Reason}
	}
	o := Options{Preview: -1, ISTag: r.Header.Get("istag"), Close: r.close()}
	for _, m := range strings.Split(r.Header.Get("methods"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			o.Methods = append(o.Methods, m)
		}
	}
	if !containsFold(o.Methods, "RESPMOD") {
		return o, protoErr("the service offers %q, not RESPMOD", r.Header.Get("methods"))
	}
	if p := r.Header.Get("preview"); p != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && n >= 0 {
			o.Preview = n
		}
	}
	for _, a := range strings.Split(r.Header.Get("allow"), ",") {
		if strings.TrimSpace(a) == "204" {
			o.Allow204 = true
		}
	}
	return o, nil
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Start asks the service for its options, then starts a RESPMOD whose
// body is the stream: its bytes are then written to the returned
// ICAPStream, and its Finish returns the verdict. name is the file's path,
// sent as the encapsulated request's path for the server's logs (escaped:
// it can inject nothing). The ICAPStream owns the connection.
func (c *ICAP) Start(ctx context.Context, name string) (*ICAPStream, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 32<<10)
	opts, err := c.options(conn, br)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if opts.Close {
		conn.Close()
		if conn, err = c.dial(ctx); err != nil {
			return nil, err
		}
		br = bufio.NewReaderSize(conn, 32<<10)
	}
	s := &ICAPStream{c: c, conn: conn, br: br, done: make(chan struct{})}
	s.sum.SetSeed(maphash.MakeSeed())
	s.echoSeed = s.sum.Seed()
	if err := s.write([]byte(respmodHead(c, name))); err != nil {
		conn.Close()
		return nil, err
	}
	go s.read()
	return s, nil
}

// respmodHead is the RESPMOD request's head: the ICAP header, then the
// encapsulated HTTP request and response headers; the chunked body
// follows.
func respmodHead(c *ICAP, name string) string {
	path := (&url.URL{Path: "/" + strings.TrimLeft(name, "/")}).EscapedPath()
	reqHdr := "PUT " + path + " HTTP/1.1\r\nHost: ftpsgate\r\n\r\n"
	resHdr := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
	return "RESPMOD " + c.serviceURL() + " ICAP/1.0\r\nHost: " + c.URL.Host + "\r\nUser-Agent: ftpsgate\r\nAllow: 204\r\n" +
		fmt.Sprintf("Encapsulated: req-hdr=0, res-hdr=%d, res-body=%d\r\n\r\n", len(reqHdr), len(reqHdr)+len(resHdr)) +
		reqHdr + resHdr
}

// ICAPStream is one RESPMOD in progress. Write and Finish are called by
// one goroutine; Close by any.
type ICAPStream struct {
	c        *ICAP
	conn     net.Conn
	br       *bufio.Reader
	seen     int64 // bytes written to the stream
	sent     int64 // bytes sent to the server
	err      error // the first failure to send
	sum      maphash.Hash
	echoSeed maphash.Seed
	line     [20]byte
	ended    bool // the last chunk was sent
	once     sync.Once

	// Set by read before done is closed.
	done chan struct{}
	resp *Response
	rerr error
}

// read reads the response; it runs while the body is sent.
func (s *ICAPStream) read() {
	defer close(s.done)
	s.resp, s.rerr = readResponseSeeded(s.br, s.c.MaxSize, s.echoSeed)
}

// Write sends p as one chunk, up to MaxSize bytes in all; past MaxSize,
// or once the server has answered, it only counts.
func (s *ICAPStream) Write(p []byte) (int, error) {
	n := len(p)
	s.seen += int64(n)
	if s.err != nil {
		return 0, s.err
	}
	select {
	case <-s.done:
		return n, nil // the server has answered: the rest is not sent
	default:
	}
	if s.c.MaxSize > 0 {
		if room := s.c.MaxSize - s.sent; int64(len(p)) > room {
			p = p[:max(room, 0)]
		}
	}
	if len(p) == 0 {
		return n, nil
	}
	hdr := strconv.AppendInt(s.line[:0], int64(len(p)), 16)
	hdr = append(hdr, '\r', '\n')
	if err := s.write(hdr); err != nil {
		return 0, err
	}
	if err := s.write(p); err != nil {
		return 0, err
	}
	if err := s.write([]byte("\r\n")); err != nil {
		return 0, err
	}
	s.sum.Write(p)
	s.sent += int64(len(p))
	return n, nil
}

// write writes b within the timeout of each write's progress.
func (s *ICAPStream) write(b []byte) error {
	if err := writeProgress(s.conn, b, s.c.timeout()); err != nil {
		s.err = fmt.Errorf("icap: sending the stream: %w", err)
		return s.err
	}
	return nil
}

// Finish ends the body (the last chunk), waits for the response within
// the timeout, closes the connection and returns the verdict. An error
// means no verdict: the server's status was none (a *StatusError), the
// reply did not parse (a *ProtocolError), or the network failed.
func (s *ICAPStream) Finish() (Verdict, error) {
	defer s.Close()
	v := Verdict{Scanned: s.sent, Truncated: s.seen > s.sent}
	early := false // the server answered before the body's end
	select {
	case <-s.done:
		early = true
	default:
	}
	werr := s.err
	if werr == nil && !early {
		werr = s.write([]byte("0\r\n\r\n"))
	}
	s.conn.SetReadDeadline(time.Now().Add(s.c.timeout()))
	<-s.done
	if s.rerr != nil {
		if werr != nil {
			return v, werr // the cause; the read failed after it
		}
		return v, s.rerr
	}
	found, sig, err := s.resp.verdict(s.sent, s.sum.Sum64())
	if err != nil {
		return v, err
	}
	if !found && (werr != nil || early) {
		// The server had not seen the whole body: its "clean" covers
		// only part of it.
		if werr != nil {
			return v, werr
		}
		return v, protoErr("%d before the end of the body", s.resp.Status)
	}
	v.Infected, v.Signature = found, sig
	return v, nil
}

// Close abandons the scan, if Finish did not end it. It may be called
// from another goroutine, and more than once: a Write or Finish blocked
// on the server then returns an error.
func (s *ICAPStream) Close() error {
	err := net.ErrClosed
	s.once.Do(func() { err = s.conn.Close() })
	return err
}

// Header is an ICAP or HTTP header section: names in lower case, values
// with folded lines joined by a space.
type Header map[string][]string

// Get returns the first value of name (lower case), or "".
func (h Header) Get(name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Response is an ICAP response, read by ReadResponse. Its encapsulated
// body is never kept: its length and hash are.
type Response struct {
	Status int
	Reason string
	Header Header
	// HTTPStatus is the encapsulated HTTP response's status (0: none
	// encapsulated), and HTTPHeader its header.
	HTTPStatus int
	HTTPHeader Header
	// Body reports that a body was encapsulated; BodyLen is its length and
	// bodySum its hash under the seed ReadResponse was given.
	Body    bool
	BodyLen int64
	bodySum uint64
}

// close reports whether the server closes the connection after r.
func (r *Response) close() bool {
	for _, v := range r.Header["connection"] {
		if strings.EqualFold(strings.TrimSpace(v), "close") {
			return true
		}
	}
	return false
}

// ReadResponse reads one final ICAP response from br, skipping interim
// 100 Continue responses; an encapsulated body is read to its end,
// counted and hashed, and may be at most maxBody bytes (0: no bound).
// Every section is bounded: input that exceeds a bound or does not parse
// is a *ProtocolError.
func ReadResponse(br *bufio.Reader, maxBody int64) (*Response, error) {
	return readResponseSeeded(br, maxBody, maphash.MakeSeed())
}

func readResponseSeeded(br *bufio.Reader, maxBody int64, seed maphash.Seed) (*Response, error) {
	for interim := 0; ; interim++ {
		r, err := readICAPHead(br)
		if err != nil {
			return nil, err
		}
		if r.Status == 100 {
			// RFC 3507 4.5: interim, after a preview (none is sent):
			// skipped, a few times.
			if interim == 3 {
				return nil, protoErr("100 Continue after 100 Continue")
			}
			continue
		}
		if err := r.readEncapsulated(br, maxBody, seed); err != nil {
			return nil, err
		}
		return r, nil
	}
}

// readICAPHead reads the status line and the ICAP header.
func readICAPHead(br *bufio.Reader) (*Response, error) {
	budget := maxICAPHeader
	line, err := readLine(br, &budget)
	if err != nil {
		return nil, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	if proto != "ICAP/1.0" {
		return nil, protoErr("status line %.64q", line)
	}
	code, reason, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || status < 100 {
		return nil, protoErr("status line %.64q", line)
	}
	h, err := readHeader(br, &budget)
	if err != nil {
		return nil, err
	}
	return &Response{Status: status, Reason: reason, Header: h}, nil
}

// readLine reads one CRLF- (or LF-) terminated line, charging it to
// budget.
func readLine(br *bufio.Reader, budget *int) (string, error) {
	var b []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > *budget {
			return "", protoErr("a header section longer than %d bytes", maxICAPHeader)
		}
		*budget -= len(frag)
		b = append(b, frag...)
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(b) == 0 {
				return "", errors.New("icap: the server closed the connection without a reply")
			}
			return "", protoErr("the connection closed inside a header")
		}
		return "", fmt.Errorf("icap: reading the reply: %w", err)
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return string(b), nil
}

// readHeader reads header lines up to the empty line. A line that starts
// with a space or a tab continues the previous one (c-icap folds
// X-Violations-Found so): the value keeps its lines, joined by "\n".
func readHeader(br *bufio.Reader, budget *int) (Header, error) {
	h := Header{}
	var last string
	for n := 0; ; n++ {
		if n > maxICAPLines {
			return nil, protoErr("more than %d header lines", maxICAPLines)
		}
		line, err := readLine(br, budget)
		if err != nil {
			return nil, err
		}
		if line == "" {
			return h, nil
		}
		if strings.ContainsAny(line, "\x00\r") {
			return nil, protoErr("a control character in header line %.64q", line)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, protoErr("a continuation line before any header")
			}
			v := h[last]
			v[len(v)-1] = strings.TrimSpace(v[len(v)-1] + "\n" + strings.TrimSpace(line))
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, protoErr("header line %.64q", line)
		}
		last = strings.ToLower(name)
		h[last] = append(h[last], strings.TrimSpace(value))
	}
}

// readEncapsulated reads what the Encapsulated header announces (RFC
// 3507 section 4.4.1): an HTTP header section of the given length, then
// a chunked body or none.
func (r *Response) readEncapsulated(br *bufio.Reader, maxBody int64, seed maphash.Seed) error {
	enc := r.Header["encapsulated"]
	if len(enc) == 0 {
		if r.Status == 200 {
			return protoErr("a 200 without Encapsulated header")
		}
		return nil // 204, and errors, may carry nothing
	}
	if len(enc) > 1 {
		return protoErr("two Encapsulated headers")
	}
	type part struct {
		name string
		off  int64
	}
	var parts []part
	for _, f := range strings.Split(enc[0], ",") {
		name, off, ok := strings.Cut(strings.TrimSpace(f), "=")
		n, err := strconv.ParseInt(off, 10, 64)
		if !ok || err != nil || n < 0 || n > maxICAPHeader {
			return protoErr("Encapsulated %.64q", enc[0])
		}
		switch name {
		case "req-hdr", "res-hdr", "req-body", "res-body", "null-body", "opt-body":
		default:
			return protoErr("Encapsulated %.64q", enc[0])
		}
		if len(parts) == 0 && n != 0 || len(parts) > 0 && n < parts[len(parts)-1].off {
			return protoErr("Encapsulated offsets out of order: %.64q", enc[0])
		}
		parts = append(parts, part{name, n})
	}
	for i, p := range parts {
		last := i == len(parts)-1
		if strings.HasSuffix(p.name, "-body") {
			if !last {
				return protoErr("Encapsulated: %s before the end", p.name)
			}
			if p.name == "null-body" {
				return nil
			}
			r.Body = true
			return r.readBody(br, maxBody, seed)
		}
		if last {
			return protoErr("Encapsulated ends with a header, not a body: %.64q", enc[0])
		}
		n := parts[i+1].off - p.off
		sect := make([]byte, n)
		if _, err := io.ReadFull(br, sect); err != nil {
			return protoErr("an encapsulated %s shorter than announced: %v", p.name, err)
		}
		if p.name == "res-hdr" {
			if err := r.parseHTTP(sect); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseHTTP reads the encapsulated HTTP response's header section.
func (r *Response) parseHTTP(sect []byte) error {
	sr := strings.NewReader(string(sect))
	br := bufio.NewReader(sr)
	budget := len(sect) + 1
	line, err := readLine(br, &budget)
	if err != nil {
		return protoErr("encapsulated HTTP header: %v", err)
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/") || err != nil || len(code) != 3 || status < 100 {
		return protoErr("encapsulated HTTP status line %.64q", line)
	}
	h, err := readHeader(br, &budget)
	if err != nil {
		return err
	}
	if br.Buffered() != 0 || sr.Len() != 0 {
		return protoErr("bytes after the encapsulated HTTP header")
	}
	r.HTTPStatus, r.HTTPHeader = status, h
	return nil
}

// readBody reads a chunked body to its last chunk and trailer, counting
// and hashing it.
func (r *Response) readBody(br *bufio.Reader, maxBody int64, seed maphash.Seed) error {
	var sum maphash.Hash
	sum.SetSeed(seed)
	for {
		budget := maxChunkLine
		line, err := readLine(br, &budget)
		if err != nil {
			return protoErr("chunk size: %v", err)
		}
		size, _, _ := strings.Cut(line, ";") // extensions: "0; ieof"
		size = strings.TrimSpace(size)
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil || n < 0 || size == "" || size[0] == '+' || size[0] == '-' {
			return protoErr("chunk size %.64q", line)
		}
		if n == 0 {
			break
		}
		if maxBody > 0 && r.BodyLen+n > maxBody {
			return protoErr("an encapsulated body longer than %d bytes", maxBody)
		}
		if _, err := io.CopyN(&sum, br, n); err != nil {
			return protoErr("a chunk shorter than announced: %v", err)
		}
		r.BodyLen += n
		budget = 2
		if crlf, err := readLine(br, &budget); err != nil || crlf != "" {
			return protoErr("no CRLF after a chunk")
		}
	}
	budget := maxTrailer
	if _, err := readHeader(br, &budget); err != nil {
		return err
	}
	r.bodySum = sum.Sum64()
	return nil
}

// verdict reads r as the answer to a RESPMOD whose body was sent bytes
// hashing to sum: 204, or a 200 with the unchanged body, is clean; a
// 403, a 200 whose encapsulated response is another status or another
// body, or any reply naming a threat (X-Infection-Found,
// X-Violations-Found, X-Virus-ID) is infected, named after the threat
// when the server names one. Another status is a *StatusError.
func (r *Response) verdict(sent int64, sum uint64) (found bool, sig string, err error) {
	name := threat(r.Header)
	switch r.Status {
	case 204:
		if name != "" {
			return true, name, nil
		}
		return false, "", nil
	case 200:
		if name != "" {
			return true, name, nil
		}
		if r.HTTPStatus != 200 && r.HTTPStatus != 0 {
			return true, "unnamed: the ICAP server answered HTTP " + strconv.Itoa(r.HTTPStatus), nil
		}
		if r.HTTPStatus == 0 || !r.Body || r.BodyLen != sent || r.bodySum != sum {
			return true, "unnamed: the ICAP server replaced the file", nil
		}
		return false, "", nil
	case 403:
		if name == "" {
			name = "unnamed: the ICAP server answered 403"
		}
		return true, name, nil
	}
	return false, "", &StatusError{r.Status, r.Reason}
}

// threat is the name a response's headers give a threat, or "" when they
// name none: X-Infection-Found's Threat= (draft-stecher-icap-subid), the
// threat of X-Violations-Found's first violation (its count, then
// filename, threat, problem and resolution ids per violation), or
// X-Virus-ID.
func threat(h Header) string {
	if v := h.Get("x-infection-found"); v != "" {
		for _, f := range strings.Split(v, ";") {
			if k, val, ok := strings.Cut(strings.TrimSpace(f), "="); ok && strings.EqualFold(k, "threat") {
				if val = strings.TrimSpace(val); val != "" {
					return val
				}
			}
		}
		return "unnamed (X-Infection-Found)"
	}
	if v := h.Get("x-violations-found"); v != "" {
		lines := strings.Split(v, "\n")
		n, err := strconv.Atoi(strings.TrimSpace(lines[0]))
		switch {
		case err == nil && n == 0:
			return ""
		case err == nil && n > 0 && len(lines) >= 3 && strings.TrimSpace(lines[2]) != "":
			return strings.TrimSpace(lines[2])
		}
		return "unnamed (X-Violations-Found)"
	}
	if v := strings.TrimSpace(h.Get("x-virus-id")); v != "" {
		return v
	}
	return ""
}
