// Package userfile reads, checks and writes the user files of edge
// authentication: htpasswd-style "user:hash" lines whose hashes are bcrypt
// or argon2id. It opens no file and no socket: callers hand it bytes.
//
// The accepted hashes:
//
//   - bcrypt, as htpasswd -B and every bcrypt library write it:
//     "$2y$12$" (or $2a$, $2b$) followed by 53 characters; the cost (the
//     number after the prefix) must be within [MinBcryptCost,
//     MaxBcryptCost].
//   - argon2id, as the PHC string format writes it (the reference
//     implementation's and libsodium's encoding):
//     "$argon2id$v=19$m=MEMORY,t=TIME,p=THREADS$SALT$HASH", MEMORY in KiB,
//     SALT and HASH in unpadded standard base64. Only version 19 (0x13) is
//     accepted; the parameters must be within MinArgon2 and MaxArgon2, the
//     salt at least 16 bytes and the hash 16 to 64 bytes.
//
// Anything else (Apache's $apr1$ MD5, {SHA}, crypt, plaintext) is refused
// with its line number: such a file is not loaded at all.
//
// Lines are "user:hash"; empty lines and lines starting with # are kept
// and ignored. A user name is matched exactly (case-sensitive). TOTP
// secrets files (totp.go) have the same shape, "user:BASE32SECRET".
package userfile

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2Params are argon2id's cost parameters, as the PHC string names
// them: m (Memory, KiB), t (Time, passes) and p (Threads).
type Argon2Params struct {
	Memory  uint32
	Time    uint32
	Threads uint8
}

// The bounds of the parameters a user file may use. The minimums are
// OWASP's for argon2id (19 MiB, 2 passes, 1 lane) and bcrypt's default
// cost, below which an offline attack on a stolen file gets cheap. The
// maximums stop one entry from making every login (and every login of an
// unknown name, which is checked against a hash as costly as the file's
// usual one) take seconds or hundreds of MiB: a denial of service by the
// file's author, or by a typo.
var (
	MinArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1}
	MaxArgon2 = Argon2Params{Memory: 256 * 1024, Time: 10, Threads: 16}
)

const (
	MinBcryptCost = 10
	MaxBcryptCost = 14
	// minSaltLen and the hash length bounds are the argon2id encoding's.
	minSaltLen = 16
	minKeyLen  = 16
	maxKeyLen  = 64
)

// DefaultArgon2 are the parameters Hash uses: OWASP's first
// recommendation (19 MiB, 2 passes, 1 lane), about 30 ms on one core.
var DefaultArgon2 = MinArgon2

// DefaultBcryptCost is the cost Hash uses for bcrypt: about 100 ms per
// check on one core; each step up doubles it.
const DefaultBcryptCost = 10

// Scheme is a hash algorithm of a user file.
type Scheme int

const (
	Argon2id Scheme = iota + 1
	Bcrypt
)

func (s Scheme) String() string {
	switch s {
	case Argon2id:
		return "argon2id"
	case Bcrypt:
		return "bcrypt"
	}
	return "invalid"
}

// A hash is one parsed, checked hash.
type hash struct {
	scheme Scheme
	raw    string // as written: bcrypt compares against it
	params Argon2Params
	cost   int // bcrypt
	salt   []byte
	key    []byte
}

// kind is what two hashes of the same cost share: the dummy hash of a
// file takes the most common one.
func (h *hash) kind() string {
	if h.scheme == Bcrypt {
		return "bcrypt/" + strconv.Itoa(h.cost)
	}
	return fmt.Sprintf("argon2id/%d/%d/%d/%d", h.params.Memory, h.params.Time, h.params.Threads, len(h.key))
}

// verify reports whether password matches h, in constant time for a
// given h.
func (h *hash) verify(password string) bool {
	switch h.scheme {
	case Bcrypt:
		return bcrypt.CompareHashAndPassword([]byte(h.raw), []byte(password)) == nil
	case Argon2id:
		k := argon2.IDKey([]byte(password), h.salt, h.params.Time, h.params.Memory, h.params.Threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(k, h.key) == 1
	}
	return false
}

// ParseHash parses and checks one hash as a user file's line holds it.
func parseHash(s string) (*hash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil || len(s) != 60 {
			return nil, fmt.Errorf("not a valid bcrypt hash")
		}
		if cost < MinBcryptCost || cost > MaxBcryptCost {
			return nil, fmt.Errorf("bcrypt cost %d is outside %d..%d", cost, MinBcryptCost, MaxBcryptCost)
		}
		return &hash{scheme: Bcrypt, raw: s, cost: cost}, nil
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return nil, fmt.Errorf("argon2i and argon2d hashes are not accepted; use argon2id")
	case strings.HasPrefix(s, "$apr1$"), strings.HasPrefix(s, "$1$"), strings.HasPrefix(s, "{SHA}"),
		strings.HasPrefix(s, "$5$"), strings.HasPrefix(s, "$6$"):
		return nil, fmt.Errorf("a weak or unsupported hash (MD5, SHA, crypt); only bcrypt and argon2id are accepted")
	}
	return nil, fmt.Errorf("not a bcrypt (\"$2y$…\") or argon2id (\"$argon2id$v=19$m=…,t=…,p=…$salt$hash\") hash")
}

// parseArgon2id parses "$argon2id$v=19$m=M,t=T,p=P$SALT$HASH".
func parseArgon2id(s string) (*hash, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, hash
	if len(parts) != 6 {
		return nil, fmt.Errorf("argon2id hash must be $argon2id$v=19$m=…,t=…,p=…$salt$hash")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("argon2id version %q: only v=19 is accepted", parts[2])
	}
	var p Argon2Params
	var seen [3]bool
	for i, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		want := [3]string{"m", "t", "p"}
		if !ok || err != nil || i > 2 || k != want[i] {
			return nil, fmt.Errorf("argon2id parameters %q must be m=MEMORY,t=TIME,p=THREADS", parts[3])
		}
		seen[i] = true
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("argon2id p=%d is too large", n)
			}
			p.Threads = uint8(n)
		}
	}
	if seen != [3]bool{true, true, true} {
		return nil, fmt.Errorf("argon2id parameters %q must be m=MEMORY,t=TIME,p=THREADS", parts[3])
	}
	if err := checkArgon2(p); err != nil {
		return nil, err
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < minSaltLen {
		return nil, fmt.Errorf("argon2id salt must be at least %d bytes in unpadded base64", minSaltLen)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, fmt.Errorf("argon2id hash must be %d to %d bytes in unpadded base64", minKeyLen, maxKeyLen)
	}
	return &hash{scheme: Argon2id, raw: s, params: p, salt: salt, key: key}, nil
}

// checkArgon2 reports parameters outside MinArgon2..MaxArgon2.
func checkArgon2(p Argon2Params) error {
	if p.Memory < MinArgon2.Memory || p.Time < MinArgon2.Time || p.Threads < MinArgon2.Threads {
		return fmt.Errorf("argon2id parameters m=%d,t=%d,p=%d are weaker than the minimum m=%d,t=%d,p=%d: "+
			"regenerate the entry with ftpsgate passwd", p.Memory, p.Time, p.Threads, MinArgon2.Memory, MinArgon2.Time, MinArgon2.Threads)
	}
	if p.Memory > MaxArgon2.Memory || p.Time > MaxArgon2.Time || p.Threads > MaxArgon2.Threads {
		return fmt.Errorf("argon2id parameters m=%d,t=%d,p=%d exceed the maximum m=%d,t=%d,p=%d: every login would pay for them",
			p.Memory, p.Time, p.Threads, MaxArgon2.Memory, MaxArgon2.Time, MaxArgon2.Threads)
	}
	return nil
}

// Hash returns a new hash of password: argon2id with DefaultArgon2, or
// bcrypt with DefaultBcryptCost. bcrypt uses only a password's first 72
// bytes, so a longer one is refused for it.
func Hash(password string, s Scheme) (string, error) {
	switch s {
	case Bcrypt:
		if len(password) > 72 {
			return "", errors.New("bcrypt uses only the first 72 bytes of a password: use argon2id for a longer one")
		}
		h, err := bcrypt.GenerateFromPassword([]byte(password), DefaultBcryptCost)
		return string(h), err
	case Argon2id:
		return hashArgon2id(password, DefaultArgon2, 32), nil
	}
	return "", fmt.Errorf("unknown scheme %v", s)
}

func hashArgon2id(password string, p Argon2Params, keyLen int) string {
	salt := make([]byte, minSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(keyLen))
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// LineError is a problem with one line of a user file.
type LineError struct {
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// File is a parsed user file. It is immutable and safe for concurrent use.
type File struct {
	users map[string]*hash
	// dummy is checked for names the file does not hold, so that an
	// unknown name costs what a known one does: the most common kind of
	// hash in the file (bcrypt when the file is empty).
	dummy *hash
}

// Len is how many users the file holds.
func (f *File) Len() int { return len(f.users) }

// Has reports whether the file holds user.
func (f *File) Has(user string) bool { _, ok := f.users[user]; return ok }

// Parse parses and checks a user file. It returns every problem, each
// with its line; with any problem the File is nil.
func Parse(data []byte) (*File, []*LineError) {
	f := &File{users: map[string]*hash{}}
	var errs []*LineError
	kinds := map[string]int{}
	var common *hash
	for i, line := range lines(data) {
		user, h, skip, err := parseLine(line)
		if skip {
			continue
		}
		if err == nil {
			if _, dup := f.users[user]; dup {
				err = fmt.Errorf("user %q is already defined", user)
			}
		}
		if err != nil {
			errs = append(errs, &LineError{Line: i + 1, Err: err})
			continue
		}
		f.users[user] = h
		k := h.kind()
		kinds[k]++
		if common == nil || kinds[k] > kinds[common.kind()] {
			common = h
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	f.dummy = dummyLike(common)
	return f, nil
}

// dummyLike returns a hash of a random password as costly to check as h.
func dummyLike(h *hash) *hash {
	var pw [16]byte
	rand.Read(pw[:])
	secret := base64.RawStdEncoding.EncodeToString(pw[:])
	if h == nil || h.scheme == Bcrypt {
		cost := MinBcryptCost
		if h != nil {
			cost = h.cost
		}
		raw, _ := bcrypt.GenerateFromPassword([]byte(secret), cost)
		d, _ := parseHash(string(raw))
		return d
	}
	d, _ := parseHash(hashArgon2id(secret, h.params, len(h.key)))
	return d
}

// lines splits data into lines without their line ends (LF or CRLF).
func lines(data []byte) []string {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// parseLine parses one line; skip is set for blank lines and comments.
func parseLine(line string) (user string, h *hash, skip bool, err error) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return "", nil, true, nil
	}
	user, rest, ok := strings.Cut(line, ":")
	if !ok {
		return "", nil, false, errors.New("not user:hash")
	}
	if err := ValidUser(user); err != nil {
		return "", nil, false, err
	}
	if strings.Contains(rest, ":") {
		return "", nil, false, errors.New("more than one colon: the line must be user:hash")
	}
	h, err = parseHash(rest)
	return user, h, false, err
}

// ValidUser reports what is wrong with name as a user file's user name:
// empty, or holding a colon, white space or a control character.
func ValidUser(name string) error {
	if name == "" {
		return errors.New("empty user name")
	}
	for _, r := range name {
		if r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("user name %q may not hold a colon, white space or control characters", name)
		}
	}
	if len(name) > 256 {
		return errors.New("user name longer than 256 bytes")
	}
	return nil
}

// Verify reports whether the file holds user (known) and whether password
// is its password (ok). It checks exactly one hash either way: for a name
// the file does not hold, the dummy hash, so that a stranger cannot tell
// an unknown name from a wrong password by the time the answer takes.
func (f *File) Verify(user, password string) (known, ok bool) {
	h, known := f.users[user]
	if !known {
		f.dummy.verify(password)
		return false, false
	}
	return true, h.verify(password)
}

// VerifyNone checks password against the dummy hash and reports nothing:
// the cost of a check whose answer is already known (a name the policy
// refuses).
func (f *File) VerifyNone(password string) { f.dummy.verify(password) }

// Set returns data with user's entry set to hash: its line replaced where
// it is, or a line appended. Every other line (comments, other users) is
// kept as it is. The hash is checked as Parse would.
func Set(data []byte, user, newHash string) ([]byte, error) {
	if err := ValidUser(user); err != nil {
		return nil, err
	}
	if _, err := parseHash(newHash); err != nil {
		return nil, err
	}
	entry := user + ":" + newHash
	ls := lines(data)
	replaced := false
	for i, line := range ls {
		if u, _, ok := strings.Cut(line, ":"); ok && u == user && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			ls[i] = entry
			replaced = true
			break
		}
	}
	if !replaced {
		ls = append(ls, entry)
	}
	var b bytes.Buffer
	for _, l := range ls {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}
