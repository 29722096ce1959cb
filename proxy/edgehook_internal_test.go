package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// TestParseHookAnswer: an answer is one object of the known fields, with
// "allow", under the size limit; anything else is an error (421), never a
// login.
func TestParseHookAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		allow      bool
		ok         bool
	}{
		{"allow", `{"allow": true}`, true, true},
		{"deny", `{"allow": false}`, false, true},
		{"every field", `{"allow": true, "backend": "b", "backend_user": "u", "read_only": true}`, true, true},
		{"a route", `{"allow": true, "route": "r", "backend_user": "u", "read_only": true}`, true, true},
		{"a route and a backend", `{"allow": true, "route": "r", "backend": "b"}`, false, false},
		{"routes, a list", `{"allow": true, "routes": ["r"]}`, false, false},
		{"white space after", "{\"allow\": true}\n", true, true},
		{"no allow", `{"backend": "b"}`, false, false},
		{"allow null", `{"allow": null}`, false, false},
		{"allow a string", `{"allow": "yes"}`, false, false},
		{"unknown field", `{"allow": true, "admin": true}`, false, false},
		{"second object", `{"allow": false}{"allow": true}`, false, false},
		{"trailing text", `{"allow": true} ok`, false, false},
		{"array", `[{"allow": true}]`, false, false},
		{"empty", ``, false, false},
		{"html", `<html>allow</html>`, false, false},
		{"cut short", `{"allow": tr`, false, false},
		{"over the limit", `{"allow": true}` + strings.Repeat(" ", maxHookAnswer), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := parseHookAnswer([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if err == nil && *a.Allow != tc.allow {
				t.Fatalf("allow %v", *a.Allow)
			}
		})
	}
}

// recordingHook is an httptest hook that records the raw bodies it gets
// and allows every login whose password is not "wrong".
type recordingHook struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newRecordingHook(t *testing.T) *recordingHook {
	h := &recordingHook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(b))
		h.mu.Unlock()
		var req hookRequest
		json.Unmarshal(b, &req)
		fmt.Fprintf(w, `{"allow": %v}`, req.Password != "wrong")
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *recordingHook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

// hookClientFor makes a hook client for url whose connections all go to
// the recording hook, whatever host url names.
func hookClientFor(h *recordingHook, url string, ttl time.Duration) *hookClient {
	a := &config.Auth{Name: "t", Hook: &config.Hook{URL: url, Timeout: 5 * time.Second, CacheTTL: ttl}}
	to := h.Listener.Addr().String()
	return newHookClient(a, func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, to)
	})
}

// TestHookPasswordOnlyOverSafeURLs: the password is in the request to a
// loopback address or over https only. A plain http URL naming another
// host (which validate refuses; here the client is made directly) gets
// the request without it, and so does a request that needs no password.
func TestHookPasswordOnlyOverSafeURLs(t *testing.T) {
	h := newRecordingHook(t)
	port := h.Listener.Addr().(*net.TCPAddr).Port
	for i, tc := range []struct {
		url          string
		withPassword bool
		sent         bool
	}{
		{fmt.Sprintf("http://127.0.0.1:%d/", port), true, true},
		{fmt.Sprintf("http://[::1]:%d/", port), true, true},
		{fmt.Sprintf("http://hook.example.net:%d/", port), true, false},
		{fmt.Sprintf("http://localhost:%d/", port), true, false},
		{fmt.Sprintf("http://127.0.0.1:%d/", port), false, false},
	} {
		c := hookClientFor(h, tc.url, 0)
		req := &hookRequest{User: "alice", Client: "192.0.2.1:5000"}
		if _, _, err := c.check(context.Background(), req, "pw-of-alice", tc.withPassword); err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		h.mu.Lock()
		body := h.bodies[i]
		h.mu.Unlock()
		if got := strings.Contains(body, "pw-of-alice"); got != tc.sent {
			t.Errorf("%s (password wanted: %v): the hook got %s", tc.url, tc.withPassword, body)
		}
		if !strings.Contains(body, `"user":"alice"`) {
			t.Errorf("%s: the hook got %s", tc.url, body)
		}
	}
}

// TestHookCache: an allow is reused within cache_ttl for the same user,
// password, client address (any port) and certificate, and asked again
// after it; a refusal is never cached; another password, address or
// certificate asks again; without cache_ttl every login asks.
func TestHookCache(t *testing.T) {
	h := newRecordingHook(t)
	now := time.Unix(1_000_000, 0)
	c := hookClientFor(h, h.URL, 30*time.Second)
	c.now = func() time.Time { return now }
	ask := func(user, pw, client, cert string) (allow, cached bool) {
		t.Helper()
		req := &hookRequest{User: user, Client: client}
		if cert != "" {
			req.Certificate = &hookCertificate{SHA256: cert}
		}
		a, cached, err := c.check(context.Background(), req, pw, true)
		if err != nil {
			t.Fatal(err)
		}
		return *a.Allow, cached
	}
	steps := []struct {
		what, user, pw, client, cert string
		advance                      time.Duration
		allow, cached                bool
		asked                        int // the hook's requests after the step
	}{
		{"first", "alice", "pw", "192.0.2.1:5000", "", 0, true, false, 1},
		{"again, another port", "alice", "pw", "192.0.2.1:5001", "", 10 * time.Second, true, true, 1},
		{"another password", "alice", "pw2", "192.0.2.1:5000", "", 0, true, false, 2},
		{"another address", "alice", "pw", "192.0.2.2:5000", "", 0, true, false, 3},
		{"a certificate", "alice", "pw", "192.0.2.1:5000", "ab", 0, true, false, 4},
		{"another user", "bob", "pw", "192.0.2.1:5000", "", 0, true, false, 5},
		{"a refusal", "alice", "wrong", "192.0.2.1:5000", "", 0, false, false, 6},
		{"the refusal again", "alice", "wrong", "192.0.2.1:5000", "", 0, false, false, 7},
		{"just within the ttl", "alice", "pw", "192.0.2.1:5000", "", 19*time.Second + 999*time.Millisecond, true, true, 7},
		{"at the ttl", "alice", "pw", "192.0.2.1:5000", "", time.Millisecond, true, false, 8},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		allow, cached := ask(st.user, st.pw, st.client, st.cert)
		if allow != st.allow || cached != st.cached || h.count() != st.asked {
			t.Fatalf("%s: allow %v cached %v, the hook asked %d times; want %v %v %d", st.what, allow, cached, h.count(),
				st.allow, st.cached, st.asked)
		}
	}

	off := hookClientFor(h, h.URL, 0)
	for i := 0; i < 2; i++ {
		if _, cached, _ := off.check(context.Background(), &hookRequest{User: "alice", Client: "192.0.2.1:1"}, "pw", true); cached {
			t.Fatal("cached without cache_ttl")
		}
	}
	if h.count() != 10 {
		t.Fatalf("the hook asked %d times", h.count())
	}
}
