package proxy

import (
	"crypto/tls"
	"testing"
)

// TestSessionCache: a session's cache toward its backend hands out the
// least used session, newest first, so that servers accepting each TLS 1.3
// ticket once still find a fresh one; it ignores Go's key (which differs on
// every data connection when no ServerName is set), forgets on Put(nil)
// the session it handed out last, and stays bounded.
func TestSessionCache(t *testing.T) {
	a, b, c := &tls.ClientSessionState{}, &tls.ClientSessionState{}, &tls.ClientSessionState{}
	var sc sessionCache
	if _, ok := sc.Get("x"); ok {
		t.Fatal("empty cache returned a session")
	}
	steps := []struct {
		op   string // "put", "get", "forget"
		cs   *tls.ClientSessionState
		key  string
		want *tls.ClientSessionState
	}{
		{"put", a, "127.0.0.1:21", nil},
		{"get", nil, "127.0.0.1:40001", a}, // another key: same backend
		{"get", nil, "127.0.0.1:40002", a}, // reused when nothing fresher
		{"put", b, "127.0.0.1:21", nil},
		{"put", c, "127.0.0.1:21", nil},
		{"get", nil, "k", c}, // unused, newest first
		{"get", nil, "k", b},
		{"get", nil, "k", c}, // all used once: newest of the least used
		{"forget", nil, "k", nil},
		{"get", nil, "k", b},
	}
	for i, st := range steps {
		switch st.op {
		case "put":
			sc.Put(st.key, st.cs)
		case "forget":
			sc.Put(st.key, nil)
		case "get":
			got, ok := sc.Get(st.key)
			if !ok || got != st.want {
				t.Fatalf("step %d: got %p, want %p", i, got, st.want)
			}
		}
	}
	for i := 0; i < 3*maxCachedSessions; i++ {
		sc.Put("k", &tls.ClientSessionState{})
	}
	if len(sc.entries) != maxCachedSessions {
		t.Fatalf("cache holds %d sessions, bound %d", len(sc.entries), maxCachedSessions)
	}
}
