package userfile

import (
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// TOTP second factor (RFC 6238), as authenticator apps compute it: HMAC-
// SHA1, six digits, a 30-second step. The client appends the current code
// to its password (SFTPGo does the same for FTP, which has no prompt of
// its own). A secrets file has "user:SECRET" lines, the secret in base32
// as apps take it (case and padding ignored), at least 128 bits (RFC 4226
// R6); comments and empty lines as in a user file.

const (
	// TOTPDigits is the length of a code.
	TOTPDigits = 6
	// TOTPStep is the time step of a code.
	TOTPStep = 30 * time.Second
	// TOTPSkew is how many steps before or after the current one are
	// accepted, for clocks that differ and codes typed late.
	TOTPSkew = 1
	// minSecretLen is RFC 4226's minimum length of a shared secret.
	minSecretLen = 16
)

// Secrets are the TOTP secrets of a secrets file, by user. Immutable.
type Secrets struct {
	users map[string]string // normalized base32
	dummy string
}

// ParseSecrets parses and checks a secrets file. It returns every
// problem, each with its line; with any problem the Secrets are nil.
func ParseSecrets(data []byte) (*Secrets, []*LineError) {
	s := &Secrets{users: map[string]string{}, dummy: strings.Repeat("A", 32)}
	var errs []*LineError
	for i, line := range lines(data) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		user, secret, ok := strings.Cut(line, ":")
		var err error
		switch {
		case !ok:
			err = errors.New("not user:secret")
		case ValidUser(user) != nil:
			err = ValidUser(user)
		default:
			secret, err = normalizeSecret(secret)
			if _, dup := s.users[user]; err == nil && dup {
				err = fmt.Errorf("user %q is already defined", user)
			}
		}
		if err != nil {
			errs = append(errs, &LineError{Line: i + 1, Err: err})
			continue
		}
		s.users[user] = secret
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// normalizeSecret checks a base32 secret and returns it upper-case and
// padded.
func normalizeSecret(s string) (string, error) {
	s = strings.ToUpper(strings.TrimRight(strings.TrimSpace(s), "="))
	if n := len(s) % 8; n != 0 {
		s += strings.Repeat("=", 8-n)
	}
	b, err := base32.StdEncoding.DecodeString(s)
	if err != nil {
		return "", errors.New("the secret is not base32")
	}
	if len(b) < minSecretLen {
		return "", fmt.Errorf("the secret has %d bits; at least %d are required", len(b)*8, minSecretLen*8)
	}
	return s, nil
}

// Has reports whether user has a secret.
func (s *Secrets) Has(user string) bool { _, ok := s.users[user]; return ok }

// SplitCode splits a password with a code appended into the password
// and the code (the last TOTPDigits characters); code is "" when the
// password is too short to hold one.
func SplitCode(password string) (pw, code string) {
	if len(password) < TOTPDigits {
		return password, ""
	}
	return password[:len(password)-TOTPDigits], password[len(password)-TOTPDigits:]
}

// Check reports whether code is user's code at now, within TOTPSkew
// steps, and the step (counter) it belongs to, so that the caller can
// refuse a code used before. It computes as many codes whether or not
// user has a secret.
func (s *Secrets) Check(user, code string, now time.Time) (counter uint64, known, ok bool) {
	secret, known := s.users[user]
	if !known {
		secret = s.dummy
	}
	step := uint64(now.Unix()) / uint64(TOTPStep/time.Second)
	opts := hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	for d := -TOTPSkew; d <= TOTPSkew; d++ {
		c := step + uint64(d)
		want, err := hotp.GenerateCodeCustom(secret, c, opts)
		if err == nil && len(code) == len(want) && subtle.ConstantTimeCompare([]byte(code), []byte(want)) == 1 && !ok {
			counter, ok = c, true
		}
	}
	return counter, known, ok && known
}
