package rewrite

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrMalformedReply reports server output that is not an RFC 959 reply.
var ErrMalformedReply = errors.New("malformed reply")

// ErrReplyTooLarge reports a reply over the reader's limits.
var ErrReplyTooLarge = errors.New("reply too large")

// Reply is one complete server reply, single- or multi-line (RFC 959 §4.2).
type Reply struct {
	// Code is the three-digit reply code, 100 to 599.
	Code int
	// Lines are the reply's lines without their CRLF, exactly as the
	// server sent them: "227 Entering…", or "211-Features:", " MLST…",
	// "211 End". The last line always starts with the code and a space.
	Lines []string
}

// Final reports whether the reply ends a command (it is not a 1yz
// preliminary reply).
func (r *Reply) Final() bool { return r.Code >= 200 }

// Positive reports whether the reply is a 2yz completion.
func (r *Reply) Positive() bool { return r.Code >= 200 && r.Code < 300 }

// Text is the text of the last line, after the code.
func (r *Reply) Text() string {
	last := r.Lines[len(r.Lines)-1]
	if len(last) <= 4 {
		return ""
	}
	return last[4:]
}

// Wire is the reply as it goes to a client: each line with CRLF.
func (r *Reply) Wire() []byte {
	n := 0
	for _, l := range r.Lines {
		n += len(l) + 2
	}
	b := make([]byte, 0, n)
	for _, l := range r.Lines {
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	return b
}

// String is the reply on one line, for logs.
func (r *Reply) String() string { return strings.Join(r.Lines, " | ") }

// ReplyLimits bound what ReadReply accepts from a server.
type ReplyLimits struct {
	// MaxLine is the longest line in bytes. If zero, 8 KiB.
	MaxLine int
	// MaxBytes is the most bytes in one reply. If zero, 1 MiB.
	MaxBytes int
	// MaxLines is the most lines in one reply. If zero, 20,000.
	MaxLines int
}

func (l ReplyLimits) withDefaults() ReplyLimits {
	if l.MaxLine <= 0 {
		l.MaxLine = 8 << 10
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 1 << 20
	}
	if l.MaxLines <= 0 {
		l.MaxLines = 20000
	}
	return l
}

// ReadReply reads one complete reply. A multi-line reply ("123-" … "123 ")
// is read to its end, whatever its middle lines hold. A server's bare CR or
// NUL is refused: the proxy would otherwise forward bytes a client may
// misparse.
func ReadReply(r *bufio.Reader, lim ReplyLimits) (*Reply, error) {
	lim = lim.withDefaults()
	first, err := readReplyLine(r, lim.MaxLine)
	if err != nil {
		return nil, err
	}
	code, sep, err := replyCode(first)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", err, truncate(first, 64))
	}
	rep := &Reply{Code: code, Lines: []string{first}}
	if sep != '-' {
		return rep, nil
	}
	end := first[:3] + " "
	total := len(first)
	for {
		line, err := readReplyLine(r, lim.MaxLine)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		total += len(line) + 2
		if total > lim.MaxBytes || len(rep.Lines) >= lim.MaxLines {
			return nil, ErrReplyTooLarge
		}
		rep.Lines = append(rep.Lines, line)
		if strings.HasPrefix(line, end) || line == first[:3] {
			if line == first[:3] { // "123" alone ends the reply too
				rep.Lines[len(rep.Lines)-1] = end
			}
			return rep, nil
		}
	}
}

func readReplyLine(r *bufio.Reader, max int) (string, error) {
	b, err := ReadLine(r, max)
	switch {
	case errors.Is(err, ErrLineTooLong), errors.Is(err, ErrLineFlood):
		return "", ErrReplyTooLarge
	case err != nil:
		return "", err
	}
	for _, c := range b {
		if c == '\r' || c == 0 {
			return "", fmt.Errorf("%w: control byte %#x", ErrMalformedReply, c)
		}
	}
	return string(b), nil
}

// replyCode parses "ddd", "ddd text" or "ddd-text".
func replyCode(line string) (code int, sep byte, err error) {
	if len(line) < 3 {
		return 0, 0, ErrMalformedReply
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, 0, ErrMalformedReply
		}
	}
	code, _ = strconv.Atoi(line[:3])
	if code < 100 || code > 599 {
		return 0, 0, ErrMalformedReply
	}
	if len(line) == 3 {
		return code, ' ', nil
	}
	if line[3] != ' ' && line[3] != '-' {
		return 0, 0, ErrMalformedReply
	}
	return code, line[3], nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// NewReply builds a reply of the proxy's own. With one line it is "ddd
// text"; with several, the first is "ddd-", the last "ddd ", and middle
// lines are indented by one space, so none of them can be read as an end
// line (RFC 959 §4.2).
func NewReply(code int, lines ...string) *Reply {
	if len(lines) == 0 {
		lines = []string{""}
	}
	c := strconv.Itoa(code)
	out := make([]string, len(lines))
	for i, l := range lines {
		switch {
		case len(lines) == 1:
			out[i] = c + " " + l
		case i == 0:
			out[i] = c + "-" + l
		case i == len(lines)-1:
			out[i] = c + " " + l
		default:
			out[i] = " " + strings.TrimLeft(l, " ")
		}
	}
	return &Reply{Code: code, Lines: out}
}
