package audit

import (
	"encoding/base64"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Client- and server-controlled text reaches the audit stream as it came:
// a path is whatever bytes the client sent. Two things must hold of what is
// logged (issue 14, item 12): nothing a reader of the log takes for a line
// break or a terminal control gets through raw, and two different byte
// strings never log the same. zap's JSON encoder gives neither on its own
// (TestZapJSONEncoder pins what it does): it replaces invalid UTF-8 with
// U+FFFD, so "a\xff" and "a\xfe" log alike, and writes C1 controls, DEL and
// U+2028/U+2029 raw.
//
// The escape below is injective: `\` becomes `\\`, and every other
// backslash in its output starts `\xNN` (one byte: invalid UTF-8, a C0
// control or DEL) or `\uNNNN` (a C1 control, U+2028, U+2029). Reading the
// escapes back gives the original bytes.

// clean reports whether s may be logged as it is in a JSON string: valid
// UTF-8 without C0 or C1 controls, DEL, U+2028 and U+2029. zap encodes such
// a string losslessly (it escapes only `"` and `\`, as JSON requires).
func clean(s string) bool {
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b < 0x20 || b == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || escapedRune(r, false) {
			return false
		}
		i += n
	}
	return true
}

// escapedRune reports whether the valid rune r ≥ U+0080 is written as
// \uNNNN: C1 controls and the line and paragraph separators; for xferlog
// also every other Unicode space (U+0085, U+00A0, U+2000…), which
// strings.Fields and Python's str.split take for field separators.
func escapedRune(r rune, xferlog bool) bool {
	return r <= 0x9f || r == 0x2028 || r == 0x2029 || xferlog && unicode.IsSpace(r)
}

// Escape returns s on one line, readable, with nothing a terminal or a log
// reader interprets: `\` as `\\`; a byte that is not valid UTF-8, a C0
// control or DEL as `\xNN`; a C1 control, U+2028 or U+2029 as `\uNNNN`.
// Different strings have different escapes.
func Escape(s string) string { return escape(s, false) }

// escape is Escape; with xferlog, spaces (ASCII and Unicode) are escaped
// too, so that s stays one whitespace-separated field.
func escape(s string, xferlog bool) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\\':
				b.WriteString(`\\`)
			case c < 0x20 || c == 0x7f || xferlog && c == ' ':
				b.WriteString(`\x`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		case escapedRune(r, xferlog):
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hex[r>>shift&0xf])
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// text appends the field key = s to fs. A clean s is written as it is;
// any other is written escaped (Escape), with key+"_b64" holding its exact
// bytes in standard base64. So a field with a _b64 twin always came from
// bytes that needed escaping, and equal bytes ⇔ equal logged fields.
func text(fs []zap.Field, key, s string) []zap.Field {
	if clean(s) {
		return append(fs, zap.String(key, s))
	}
	return append(fs, zap.String(key, Escape(s)), zap.String(key+"_b64", base64.StdEncoding.EncodeToString([]byte(s))))
}
