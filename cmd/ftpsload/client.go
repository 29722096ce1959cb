package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// target is where a measurement connects and how.
type target struct {
	addr     string      // host:port of the control connection
	tls      *tls.Config // nil: plain FTP
	user     string
	password string
	timeout  time.Duration
	// cache, if not nil, is the TLS session cache of every session made
	// to this target, as a client that reconnects keeps it; nil: each
	// session has a cache of its own.
	cache tls.ClientSessionCache
}

// session is one logged-in FTP control connection, made the way a careful
// client makes it: AUTH TLS before USER, PBSZ 0 and PROT P after login, and
// a TLS client session cache of its own, so its data connections resume the
// control connection's TLS session and nobody else's.
type session struct {
	t    target
	conn net.Conn
	r    *bufio.Reader
	conf *tls.Config // this session's own copy, with its own session cache
}

// errReply is an unexpected FTP reply.
type errReply struct {
	cmd, reply string
}

func (e *errReply) Error() string { return fmt.Sprintf("%s: %s", e.cmd, e.reply) }

func dial(ctx context.Context, t target) (*session, error) {
	d := net.Dialer{Timeout: t.timeout}
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	s := &session{t: t, conn: conn, r: bufio.NewReaderSize(conn, 512)}
	if err := s.open(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *session) open(ctx context.Context) error {
	if _, _, err := s.expect("greeting", 220); err != nil {
		return err
	}
	if s.t.tls != nil {
		if _, _, err := s.cmd("AUTH TLS", 234); err != nil {
			return err
		}
		s.conf = s.t.tls.Clone()
		s.conf.ClientSessionCache = s.t.cache
		if s.conf.ClientSessionCache == nil {
			s.conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		}
		tc := tls.Client(s.conn, s.conf)
		hctx, cancel := context.WithTimeout(ctx, s.t.timeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		s.conn = tc
		s.r = bufio.NewReaderSize(tc, 512)
	}
	code, _, err := s.cmd("USER "+s.t.user, 331, 230)
	if err != nil {
		return err
	}
	if code == 331 {
		if _, _, err := s.cmdAs("PASS ****", "PASS "+s.t.password, 230); err != nil {
			return err
		}
	}
	if s.t.tls != nil {
		if _, _, err := s.cmd("PBSZ 0", 200); err != nil {
			return err
		}
		if _, _, err := s.cmd("PROT P", 200); err != nil {
			return err
		}
	}
	return nil
}

// cmd sends line and reads one reply, which must have one of the codes.
func (s *session) cmd(line string, codes ...int) (int, string, error) {
	return s.cmdAs(line, line, codes...)
}

func (s *session) cmdAs(shown, line string, codes ...int) (int, string, error) {
	s.conn.SetDeadline(time.Now().Add(s.t.timeout))
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return 0, "", fmt.Errorf("%s: %w", shown, err)
	}
	return s.expect(shown, codes...)
}

// expect reads one reply, multi-line ones included.
func (s *session) expect(what string, codes ...int) (int, string, error) {
	s.conn.SetDeadline(time.Now().Add(s.t.timeout))
	line, err := s.r.ReadString('\n')
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", what, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 4 {
		return 0, "", &errReply{what, line}
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return 0, "", &errReply{what, line}
	}
	text := line
	if line[3] == '-' {
		end := line[:3] + " "
		for {
			more, err := s.r.ReadString('\n')
			if err != nil {
				return 0, "", fmt.Errorf("%s: %w", what, err)
			}
			text += "\n" + strings.TrimRight(more, "\r\n")
			if strings.HasPrefix(more, end) {
				break
			}
		}
	}
	for _, c := range codes {
		if c == code {
			return code, text, nil
		}
	}
	return code, text, &errReply{what, line}
}

func (s *session) quit() {
	s.cmd("QUIT", 221)
	s.conn.Close()
}

// dataConn opens a passive data connection (EPSV, else PASV) and returns it
// unsecured: the caller sends the transfer command first, then wraps it,
// since vsftpd and ProFTPD accept the data TLS handshake only after it.
func (s *session) dataConn(ctx context.Context) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(s.t.addr)
	var port int
	if _, text, err := s.cmd("EPSV", 229); err == nil {
		i := strings.Index(text, "(|||")
		j := strings.LastIndex(text, "|)")
		if i < 0 || j < i+4 {
			return nil, &errReply{"EPSV", text}
		}
		if port, err = strconv.Atoi(text[i+4 : j]); err != nil {
			return nil, &errReply{"EPSV", text}
		}
	} else {
		_, text, err := s.cmd("PASV", 227)
		if err != nil {
			return nil, err
		}
		i, j := strings.Index(text, "("), strings.Index(text, ")")
		f := strings.Split(text[i+1:max(i+1, j)], ",")
		if i < 0 || len(f) != 6 {
			return nil, &errReply{"PASV", text}
		}
		hi, _ := strconv.Atoi(f[4])
		lo, _ := strconv.Atoi(f[5])
		port = hi<<8 | lo
	}
	d := net.Dialer{Timeout: s.t.timeout}
	return d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
}

// retrieve downloads path and returns the bytes read; want (if ≥ 0) is the
// size the file must have.
func (s *session) retrieve(ctx context.Context, path string, want int64, buf []byte) (int64, error) {
	raw, err := s.dataConn(ctx)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	if _, _, err := s.cmd("RETR "+path, 150, 125); err != nil {
		return 0, err
	}
	data := s.secure(raw)
	var n int64
	for {
		raw.SetReadDeadline(time.Now().Add(s.t.timeout))
		m, err := data.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("RETR %s: data: %w", path, err)
		}
	}
	data.Close()
	if _, _, err := s.expect("RETR "+path, 226, 250); err != nil {
		return n, err
	}
	if want >= 0 && n != want {
		return n, fmt.Errorf("RETR %s: %d bytes, want %d", path, n, want)
	}
	return n, nil
}

// store uploads size bytes (buf repeated) to path.
func (s *session) store(ctx context.Context, path string, size int64, buf []byte) (int64, error) {
	raw, err := s.dataConn(ctx)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	if _, _, err := s.cmd("STOR "+path, 150, 125); err != nil {
		return 0, err
	}
	data := s.secure(raw)
	var n int64
	for n < size {
		chunk := buf[:min(int64(len(buf)), size-n)]
		raw.SetWriteDeadline(time.Now().Add(s.t.timeout))
		m, err := data.Write(chunk)
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("STOR %s: data: %w", path, err)
		}
	}
	// End the upload the orderly way: close_notify, then FIN, then read
	// what the server still sends (TLS 1.3 session tickets, its own
	// close_notify) until it closes. Closing with those unread would reset
	// the connection, and a server may then lose the file's tail.
	if tc, ok := data.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return n, fmt.Errorf("STOR %s: close_notify: %w", path, err)
		}
	}
	if err := raw.(*net.TCPConn).CloseWrite(); err != nil {
		return n, fmt.Errorf("STOR %s: data close: %w", path, err)
	}
	raw.SetReadDeadline(time.Now().Add(s.t.timeout))
	io.Copy(io.Discard, data)
	data.Close()
	if _, _, err := s.expect("STOR "+path, 226, 250); err != nil {
		return n, err
	}
	return n, nil
}

func (s *session) secure(raw net.Conn) net.Conn {
	if s.conf == nil {
		return raw
	}
	return tls.Client(raw, s.conf)
}
