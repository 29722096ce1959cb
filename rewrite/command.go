// Package rewrite is the FTP control-channel grammar: it splits lines, parses
// commands and replies, and rewrites the replies a proxy must change (PASV,
// EPSV, FEAT). It reads from an io.Reader it is given and opens no sockets.
package rewrite

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// Errors of the line splitter and the command parser. They are sentinel
// values so that callers map them to reply codes with errors.Is.
var (
	// ErrLineTooLong reports a line longer than the caller's limit. The
	// line was consumed; the next read starts after its terminator.
	ErrLineTooLong = errors.New("line too long")
	// ErrLineFlood reports a line so long that the reader stopped looking
	// for its end; the stream cannot be resynchronised and must be closed.
	ErrLineFlood = errors.New("line too long, terminator not found")
	// ErrBareCR reports a CR that is not followed by LF.
	ErrBareCR = errors.New("bare CR in line")
	// ErrNUL reports a NUL byte in a line.
	ErrNUL = errors.New("NUL byte in line")
	// ErrSyntax reports a line that is not VERB [SP ARG].
	ErrSyntax = errors.New("command syntax error")
)

// floodFactor bounds how far past its limit ReadLine keeps reading to find the
// end of an over-long line before it gives up with ErrLineFlood.
const floodFactor = 16

// ReadLine reads one line ended by LF or CRLF and returns it without its
// terminator. It is the one line splitter of the proxy: what it returns is
// what gets parsed, logged and forwarded.
//
// A line longer than max bytes is consumed through its terminator and
// reported as ErrLineTooLong; if no terminator appears within floodFactor*max
// bytes, ReadLine returns ErrLineFlood. At end of stream a partial line is
// returned with io.ErrUnexpectedEOF, an empty one with io.EOF.
//
// The returned slice is owned by the caller.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	seen := 0
	for {
		chunk, err := r.ReadSlice('\n')
		seen += len(chunk)
		if !tooLong {
			if len(line)+len(chunk) > max+2 { // +2: the terminator does not count
				tooLong = true
				line = nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, ErrLineTooLong
			}
			line = line[:len(line)-1] // LF
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) > max {
				return nil, ErrLineTooLong
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if tooLong && seen > floodFactor*max {
				return nil, ErrLineFlood
			}
			continue
		default:
			if seen == 0 {
				return nil, err
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// Command is one client command as the proxy understood it.
type Command struct {
	// Verb is the command name, upper-cased (RFC 959 §5.3: verbs are
	// case-insensitive).
	Verb string
	// Arg is the argument exactly as sent, without the separating space.
	// It never contains CR, LF or NUL.
	Arg string
}

// maxVerbLen bounds a verb: RFC 959 verbs have 3 or 4 letters; extensions
// (e.g. "XCRC", "HOST", "CLNT") stay short too.
const maxVerbLen = 8

// Telnet bytes a client may put before a command (RFC 959 §4.1.3: ABOR is
// preceded by Telnet IP and Synch, i.e. IAC IP IAC DM).
const (
	telnetIAC  = 0xFF
	telnetWILL = 0xFB
	telnetDONT = 0xFE
)

// ParseCommand parses a line returned by ReadLine. Telnet command sequences
// before the verb are dropped; a bare CR or a NUL anywhere is an error, so a
// parsed command can always be rebuilt as a single line.
func ParseCommand(line []byte) (Command, error) {
	for _, b := range line {
		switch b {
		case '\r':
			return Command{}, ErrBareCR
		case '\n':
			return Command{}, ErrSyntax // ReadLine never returns one; a caller might
		case 0:
			return Command{}, ErrNUL
		}
	}
	line = stripTelnet(line)
	verb, arg, _ := strings.Cut(string(line), " ")
	if verb == "" || len(verb) > maxVerbLen {
		return Command{}, ErrSyntax
	}
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, ErrSyntax
		}
	}
	return Command{Verb: strings.ToUpper(verb), Arg: arg}, nil
}

// stripTelnet drops Telnet command sequences at the start of a line: IAC
// followed by a command byte, or IAC WILL/WONT/DO/DONT followed by an option.
// IAC IAC (an escaped 0xFF data byte) ends the prefix.
func stripTelnet(b []byte) []byte {
	for len(b) >= 2 && b[0] == telnetIAC && b[1] != telnetIAC {
		if b[1] >= telnetWILL && b[1] <= telnetDONT {
			if len(b) < 3 {
				return b[len(b):]
			}
			b = b[3:]
			continue
		}
		b = b[2:]
	}
	return b
}

// Sensitive reports whether the argument is a secret (PASS, ACCT) that must
// never be logged.
func (c Command) Sensitive() bool {
	return c.Verb == "PASS" || c.Verb == "ACCT"
}

// Redacted is the form of the command that may be logged: the argument of
// PASS and ACCT is replaced.
func (c Command) Redacted() string {
	if c.Sensitive() {
		return c.Verb + " ****"
	}
	if c.Arg == "" {
		return c.Verb
	}
	return c.Verb + " " + c.Arg
}

// String returns the redacted form, so that a Command dropped into a log
// line by mistake still hides the password.
func (c Command) String() string { return c.Redacted() }

// LogArg is the argument as it may be logged: "****" for PASS and ACCT.
func (c Command) LogArg() string {
	if c.Sensitive() {
		return "****"
	}
	return c.Arg
}

// Wire is the command as it goes to a server: VERB [SP ARG] CRLF. It is
// rebuilt from the parsed parts, never copied from the client's bytes, so
// what the backend runs is what the proxy parsed and logged.
func (c Command) Wire() []byte {
	n := len(c.Verb) + 2
	if c.Arg != "" {
		n += 1 + len(c.Arg)
	}
	b := make([]byte, 0, n)
	b = append(b, c.Verb...)
	if c.Arg != "" {
		b = append(b, ' ')
		b = append(b, c.Arg...)
	}
	return append(b, '\r', '\n')
}
