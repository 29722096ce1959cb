package proxy

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"
)

// TestTicketOwner: the owner entry a ticket carries after its session's
// login reads back as written, and anything else (no entry, a cut or
// padded one, a bad address) reads as no owner, never as another.
func TestTicketOwner(t *testing.T) {
	alice := bindOwner{client: netip.MustParseAddr("2001:db8::7"), user: "alice", backend: "legacy"}
	good := alice.entry("0123456789abcdef")
	bad := func(fields ...string) []byte {
		e := []byte(ownerTag)
		for _, f := range fields {
			e = append(e, byte(len(f)>>8), byte(len(f)))
			e = append(e, f...)
		}
		return e
	}
	for _, tc := range []struct {
		name  string
		extra [][]byte
		ok    bool
	}{
		{"none", nil, false},
		{"binding id only", [][]byte{[]byte(bindTag + "0123456789abcdef")}, false},
		{"owner", [][]byte{[]byte(bindTag + "x"), good}, true},
		{"cut short", [][]byte{good[:len(good)-1]}, false},
		{"padded", [][]byte{append(append([]byte(nil), good...), 0)}, false},
		{"length past the end", [][]byte{append([]byte(ownerTag), 0xFF, 0xFF, 'a')}, false},
		{"three fields", [][]byte{bad("s", "127.0.0.1", "alice")}, false},
		{"bad address", [][]byte{bad("s", "127.0.0.256", "alice", "legacy")}, false},
		{"empty", [][]byte{[]byte(ownerTag)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			session, o, ok := ticketOwner(&tls.SessionState{Extra: tc.extra})
			if ok != tc.ok || (ok && (o != alice || session != "0123456789abcdef")) {
				t.Fatalf("got %q %+v %v, want ok %v", session, o, ok, tc.ok)
			}
		})
	}
	// A field too long for its two-byte length: no entry at all.
	long := bindOwner{client: alice.client, user: strings.Repeat("a", 1<<16), backend: "legacy"}
	if e := long.entry("s"); e != nil {
		t.Fatalf("entry of %d bytes for a user name of 65536", len(e))
	}
}
