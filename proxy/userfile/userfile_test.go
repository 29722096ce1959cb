package userfile

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestParse: every line that Parse must refuse names its line; good
// files load.
func TestParse(t *testing.T) {
	good := bcryptHash(t, "pw", 10)
	argon := hashArgon2id("pw", MinArgon2, 32)
	weakArgon := hashArgon2id("pw", Argon2Params{Memory: 4096, Time: 1, Threads: 1}, 32)
	hugeArgon := "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43)
	for _, tc := range []struct {
		name, file string
		line       int    // 0: valid
		want       string // in the error
	}{
		{"bcrypt", "alice:" + good + "\n", 0, ""},
		{"argon2id", "# staff\n\nbob:" + argon + "\r\n", 0, ""},
		{"both", "alice:" + good + "\nbob:" + argon, 0, ""},
		{"empty", "", 0, ""},
		{"no colon", "alice\n", 1, "not user:hash"},
		{"plaintext", "alice:secret\n", 1, "not a bcrypt"},
		{"apr1", "# x\nalice:$apr1$abc$def\n", 2, "weak"},
		{"sha", "alice:{SHA}abc=\n", 1, "weak"},
		{"argon2i", "alice:$argon2i$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$abc\n", 1, "argon2id"},
		{"weak argon2id", "alice:" + weakArgon + "\n", 1, "weaker than the minimum"},
		{"huge argon2id", "alice:" + hugeArgon + "\n", 1, "exceed the maximum"},
		{"argon2id v=16", "alice:" + strings.Replace(argon, "v=19", "v=16", 1) + "\n", 1, "only v=19"},
		{"argon2id params order", "alice:" + strings.Replace(argon, "m=19456,t=2", "t=2,m=19456", 1) + "\n", 1, "m=MEMORY"},
		{"argon2id short salt", "alice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + strings.Repeat("A", 43) + "\n", 1, "salt"},
		{"argon2id bad b64", "alice:" + argon[:len(argon)-2] + "!!\n", 1, "hash must be"},
		{"weak bcrypt", "alice:" + bcryptHash(t, "pw", 4) + "\n", 1, "cost 4"},
		{"truncated bcrypt", "alice:" + good[:50] + "\n", 1, "bcrypt"},
		{"duplicate", "alice:" + good + "\nalice:" + good + "\n", 2, "already defined"},
		{"space in name", "al ice:" + good + "\n", 1, "white space"},
		{"empty name", ":" + good + "\n", 1, "empty user name"},
		{"extra field", "alice:" + good + ":x\n", 1, "more than one colon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, errs := Parse([]byte(tc.file))
			if tc.line == 0 {
				if len(errs) > 0 || f == nil {
					t.Fatalf("errors %v", errs)
				}
				return
			}
			if f != nil || len(errs) != 1 || errs[0].Line != tc.line || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("got %v, want one error at line %d with %q", errs, tc.line, tc.want)
			}
		})
	}
}

// TestVerify: right and wrong passwords for each scheme, unknown names.
func TestVerify(t *testing.T) {
	b, err := Hash("bcrypt-pw", Bcrypt)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Hash("argon-pw", Argon2id)
	if err != nil {
		t.Fatal(err)
	}
	f, errs := Parse([]byte("alice:" + b + "\nbob:" + a + "\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		user, pw  string
		known, ok bool
	}{
		{"alice", "bcrypt-pw", true, true},
		{"alice", "bcrypt-pw ", true, false},
		{"alice", "", true, false},
		{"bob", "argon-pw", true, true},
		{"bob", "Argon-pw", true, false},
		{"Bob", "argon-pw", false, false}, // names are exact
		{"carol", "bcrypt-pw", false, false},
	} {
		if known, ok := f.Verify(tc.user, tc.pw); known != tc.known || ok != tc.ok {
			t.Errorf("Verify(%q, %q) = %v, %v; want %v, %v", tc.user, tc.pw, known, ok, tc.known, tc.ok)
		}
	}
	if _, err := Hash(strings.Repeat("x", 73), Bcrypt); err == nil {
		t.Error("bcrypt took a password longer than 72 bytes")
	}
}

// TestDummyMatchesFile: the dummy hash of a file costs what its usual
// entry does.
func TestDummyMatchesFile(t *testing.T) {
	a1 := hashArgon2id("x", Argon2Params{Memory: 32768, Time: 3, Threads: 2}, 32)
	a2 := hashArgon2id("y", Argon2Params{Memory: 32768, Time: 3, Threads: 2}, 32)
	b := bcryptHash(t, "z", 10)
	f, errs := Parse([]byte("a:" + a1 + "\nb:" + b + "\nc:" + a2 + "\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	if f.dummy.scheme != Argon2id || f.dummy.params != (Argon2Params{Memory: 32768, Time: 3, Threads: 2}) {
		t.Fatalf("dummy %+v", f.dummy)
	}
	f, _ = Parse([]byte("b:" + b + "\n"))
	if f.dummy.scheme != Bcrypt || f.dummy.cost != 10 {
		t.Fatalf("dummy %+v", f.dummy)
	}
}

// TestSet: an entry is replaced in place or appended; other lines stay.
func TestSet(t *testing.T) {
	old := bcryptHash(t, "old", 10)
	nw := bcryptHash(t, "new", 10)
	in := "# staff\nalice:" + old + "\n#bob:x\nbob:" + old + "\n"
	out, err := Set([]byte(in), "alice", nw)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# staff\nalice:" + nw + "\n#bob:x\nbob:" + old + "\n"; string(out) != want {
		t.Fatalf("replace:\n%s\nwant\n%s", out, want)
	}
	out, err = Set([]byte("# staff"), "carol", nw)
	if err != nil || string(out) != "# staff\ncarol:"+nw+"\n" {
		t.Fatalf("append: %q %v", out, err)
	}
	if _, err := Set(nil, "a:b", nw); err == nil {
		t.Fatal("a name with a colon was set")
	}
	if _, err := Set(nil, "carol", "plain"); err == nil {
		t.Fatal("a plaintext hash was set")
	}
	if f, errs := Parse(out); errs != nil || !f.Has("carol") {
		t.Fatalf("Set's output does not parse: %v", errs)
	}
}
