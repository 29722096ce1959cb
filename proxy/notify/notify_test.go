package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

func block(url string, mod func(*config.Notify)) *config.Notify {
	n := &config.Notify{Name: "hook", URL: url, Events: []string{"upload_complete"}, Secret: []byte("0123456789abcdef"),
		Timeout: 10 * time.Second, Queue: 16, Workers: 1, Retries: 3, Backoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, MaxAge: time.Minute, DrainTimeout: 5 * time.Second}
	if mod != nil {
		mod(n)
	}
	return n
}

func start(t *testing.T, b *config.Notify) (*Set, *Metrics) {
	m := NewMetrics(prometheus.NewRegistry())
	s := Start([]*config.Notify{b}, Options{Metrics: m})
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, m
}

func TestSignVerify(t *testing.T) {
	sec := []byte("0123456789abcdef")
	body := []byte(`{"event":"transfer"}`)
	sig := Sign(sec, "1700000000", "abc", body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	for _, tc := range []struct {
		name         string
		secret       []byte
		ts, id, body string
		ok           bool
	}{
		{"as signed", sec, "1700000000", "abc", string(body), true},
		{"other secret", []byte("0123456789abcdeX"), "1700000000", "abc", string(body), false},
		{"other timestamp", sec, "1700000001", "abc", string(body), false},
		{"other id", sec, "1700000000", "abd", string(body), false},
		{"other body", sec, "1700000000", "abc", `{"event":"transfer" }`, false},
		// The dots keep the parts apart: moving a character across
		// one changes the signature.
		{"shifted", sec, "170000000", "0abc", string(body), false},
	} {
		if got := Verify(tc.secret, tc.ts, tc.id, []byte(tc.body), sig); got != tc.ok {
			t.Errorf("%s: Verify = %v", tc.name, got)
		}
	}
}

func TestBackoff(t *testing.T) {
	e := &endpoint{cfg: &config.Notify{Backoff: time.Second, MaxBackoff: 10 * time.Second}}
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second}, {1, time.Second, 2 * time.Second}, {2, 2 * time.Second, 4 * time.Second},
		{3, 4 * time.Second, 8 * time.Second}, {4, 5 * time.Second, 10 * time.Second}, {60, 5 * time.Second, 10 * time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := e.backoff(tc.n)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.n, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("backoff(%d): %d distinct waits in 200: no jitter", tc.n, len(seen))
		}
	}
}

func TestRetryable(t *testing.T) {
	for status, want := range map[int]bool{200: false, 301: false, 302: false, 400: false, 401: false, 404: false, 410: false,
		429: true, 500: true, 502: true, 503: true, 504: true} {
		if retryable(status) != want {
			t.Errorf("retryable(%d) = %v", status, !want)
		}
	}
}

// TestRedirectNotFollowed: a redirect would take the signed body to a URL
// the configuration does not name: it is a final failure.
func TestRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	s, m := start(t, block(srv.URL, nil))
	s.Event("upload_complete", []byte(`{}`))
	waitFor(t, func() bool { return testutil.ToFloat64(m.failed.WithLabelValues("hook", "status")) == 1 })
	if hits.Load() != 1 || elsewhere.Load() != 0 {
		t.Fatalf("%d requests, %d followed", hits.Load(), elsewhere.Load())
	}
}

// TestRetriesRunOut: a receiver that always answers 429 gets 1+retries
// attempts, then the event is counted failed.
func TestRetriesRunOut(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	s, m := start(t, block(srv.URL, nil))
	s.Event("upload_complete", []byte(`{}`))
	waitFor(t, func() bool { return testutil.ToFloat64(m.failed.WithLabelValues("hook", "retries")) == 1 })
	if hits.Load() != 4 || testutil.ToFloat64(m.retries.WithLabelValues("hook")) != 3 {
		t.Fatalf("%d attempts, %v retries counted", hits.Load(), testutil.ToFloat64(m.retries.WithLabelValues("hook")))
	}
}

// TestMaxAge: an event is not retried past max_age, whatever retries says.
func TestMaxAge(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	s, m := start(t, block(srv.URL, func(n *config.Notify) {
		n.Retries, n.Backoff, n.MaxBackoff, n.MaxAge = 100, 40*time.Millisecond, 40*time.Millisecond, 100*time.Millisecond
	}))
	s.Event("upload_complete", []byte(`{}`))
	waitFor(t, func() bool { return testutil.ToFloat64(m.failed.WithLabelValues("hook", "retries")) == 1 })
	if n := hits.Load(); n < 2 || n > 6 {
		t.Fatalf("%d attempts within a max_age of 100ms, backoff 20-40ms", n)
	}
}

// TestCloseDrains: Close delivers what is queued when the receiver
// answers, and when it hangs gives up at drain_timeout, counting every
// event left as dropped; events after Close are dropped too.
func TestCloseDrains(t *testing.T) {
	t.Run("answers", func(t *testing.T) {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		defer srv.Close()
		s, m := start(t, block(srv.URL, nil))
		for range 10 {
			s.Event("upload_complete", []byte(`{}`))
		}
		s.Close(context.Background())
		if hits.Load() != 10 || testutil.ToFloat64(m.delivered.WithLabelValues("hook")) != 10 {
			t.Fatalf("%d delivered at close", hits.Load())
		}
		s.Event("upload_complete", []byte(`{}`))
		if testutil.ToFloat64(m.dropped.WithLabelValues("hook", "shutdown")) != 1 {
			t.Fatal("an event after Close is not counted dropped")
		}
	})
	t.Run("hangs", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		s, m := start(t, block(srv.URL, func(n *config.Notify) { n.DrainTimeout = 200 * time.Millisecond }))
		for range 5 {
			s.Event("upload_complete", []byte(`{}`))
		}
		began := time.Now()
		closed := make(chan struct{})
		go func() {
			s.Close(context.Background())
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close still waits after 10s, with a drain_timeout of 200ms")
		}
		took := time.Since(began)
		if took < 200*time.Millisecond || took > 5*time.Second {
			t.Fatalf("Close took %v with a drain_timeout of 200ms", took)
		}
		if d := testutil.ToFloat64(m.dropped.WithLabelValues("hook", "shutdown")); d != 5 {
			t.Fatalf("%v counted dropped, want 5", d)
		}
		if testutil.ToFloat64(m.depth.WithLabelValues("hook")) != 0 {
			t.Fatal("queue depth not 0 after Close")
		}
		if e := s.endpoints[0]; e.shutLost.Load() != 5 {
			t.Fatalf("close's log line would say %d dropped", e.shutLost.Load())
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer srv.Close()
		defer close(release)
		s, m := start(t, block(srv.URL, nil)) // 5s to drain, but ctx is done
		s.Event("upload_complete", []byte(`{}`))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		began := time.Now()
		s.Close(ctx)
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("Close with a done context took %v", took)
		}
		if testutil.ToFloat64(m.dropped.WithLabelValues("hook", "shutdown")) != 1 {
			t.Fatal("not counted dropped")
		}
	})
}

// TestQueueFull: Event never waits; past the queue it drops and counts.
func TestQueueFull(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered) })
		<-release
	}))
	defer srv.Close()
	defer close(release)
	s, m := start(t, block(srv.URL, func(n *config.Notify) { n.Queue = 3; n.DrainTimeout = 10 * time.Millisecond }))
	s.Event("upload_complete", []byte(`{}`))
	<-entered // the worker holds the first
	began := time.Now()
	for range 10 {
		s.Event("upload_complete", []byte(`{}`))
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("10 events took %v", took)
	}
	if testutil.ToFloat64(m.depth.WithLabelValues("hook")) != 3 || testutil.ToFloat64(m.dropped.WithLabelValues("hook", "queue_full")) != 7 {
		t.Fatalf("depth %v, dropped %v", testutil.ToFloat64(m.depth.WithLabelValues("hook")),
			testutil.ToFloat64(m.dropped.WithLabelValues("hook", "queue_full")))
	}
	// Not subscribed: not queued.
	s.Event("ban", []byte(`{}`))
	if s.Wants("ban") || !s.Wants("upload_complete") || testutil.ToFloat64(m.dropped.WithLabelValues("hook", "queue_full")) != 7 {
		t.Fatal("an event of another kind was taken")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
