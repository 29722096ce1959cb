package proxy_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Shielding fragile backends (issue 27): logins paced (max_dials), bounded
// per server with a queue (max_sessions, queue_timeout), retried after a
// fast failure (retries), against Debian's pure-ftpd.

// clientTB is the testing.TB of a client goroutine: a failure is recorded
// and ends the goroutine (as t.FailNow would), and the test reads the
// record once its clients are done.
type clientTB struct {
	testing.TB
	mu  sync.Mutex
	err string
}

func (c *clientTB) Fatalf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)) }
func (c *clientTB) Fatal(args ...any)                 { c.fail(fmt.Sprint(args...)) }
func (c *clientTB) Errorf(format string, args ...any) { c.fail(fmt.Sprintf(format, args...)) }
func (c *clientTB) FailNow()                          { c.fail("FailNow") }

func (c *clientTB) fail(msg string) {
	c.mu.Lock()
	if c.err == "" {
		c.err = msg
	}
	c.mu.Unlock()
	runtime.Goexit()
}

func (c *clientTB) failure() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// clients runs n clients at once, each in its own goroutine with its own
// clientTB, released together; it returns their failures, by client.
func clients(t *testing.T, n int, client func(i int, tb testing.TB)) []string {
	t.Helper()
	tbs := make([]*clientTB, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		tbs[i] = &clientTB{TB: t}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			client(i, tbs[i])
		}()
	}
	close(start)
	wg.Wait()
	failures := make([]string, n)
	for i, tb := range tbs {
		failures[i] = tb.failure()
	}
	return failures
}

// summary counts failures by their text, for a failure message.
func summary(failures []string) (int, string) {
	n, by := 0, map[string]int{}
	for _, f := range failures {
		if f != "" {
			n++
			by[f]++
		}
	}
	var parts []string
	for f, k := range by {
		parts = append(parts, fmt.Sprintf("%d× %s", k, f))
	}
	return n, strings.Join(parts, "\n")
}

// barrier returns a function that blocks until n goroutines have called
// it, or a minute has passed (a client that failed before it never
// comes).
func barrier(n int) func() {
	var mu sync.Mutex
	count := 0
	all := make(chan struct{})
	timeout := time.After(time.Minute)
	return func() {
		mu.Lock()
		if count++; count == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-timeout:
		}
	}
}

// download logs in through g, downloads name and checks its SHA-256.
// Between TLS and USER it calls before (if not nil).
func download(tb testing.TB, g *gate, user, pass, name, sum string, before func()) *ftptest.Conn {
	c := ftptest.Dial(tb, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	if before != nil {
		before()
	}
	c.LoginProtP(user, pass)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR %s", name)
	got := ftptest.ReadAll(tb, d)
	c.Expect(226)
	if s := sha256Hex(got); s != sum {
		tb.Fatalf("%s arrived damaged (%d bytes)", name, len(got))
	}
	return c
}

// TestBurstOfLoginsPaced: 100 clients at once in front of Debian's
// pure-ftpd at its stock bound of 100 clients, whose listen backlog is
// then 15 (-c/8 + 3): straight at it, some connections overflow the
// backlog and get no greeting; through ftpsgate with no backend knob set
// (max_dials at its default), all 100 log in and download a file intact.
// The test reports both counts side by side.
func TestBurstOfLoginsPaced(t *testing.T) {
	const n = 100
	direct := ftptest.PureFTPdWith(t, ftptest.PureFTPdOptions{MaxClients: 100})
	be := ftptest.PureFTPdWith(t, ftptest.PureFTPdOptions{MaxClients: 100})
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "f.bin"), 256<<10)
	g := startGate(t, be.Addr, gateOptions{ports: 2 * n, extra: `limits {
  max_sessions_per_ip = 0
}`})

	// Straight at pure-ftpd: each client waits for the greeting as long
	// as ftpsgate would (timeouts.backend_greeting), and holds its
	// connection until every client has had its answer.
	var greeted, refused, silent int
	var mu sync.Mutex
	hold := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		clients(t, n, func(i int, tb testing.TB) {
			c, err := net.DialTimeout("tcp", direct.Addr, 10*time.Second)
			if err != nil {
				mu.Lock()
				silent++
				mu.Unlock()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			switch {
			case strings.HasPrefix(line, "220"):
				greeted++
			case strings.HasPrefix(line, "421"):
				refused++
			default:
				silent++
			}
			mu.Unlock()
			<-hold
			_ = err
		})
	}()
	// Every client has its answer when the three counts make n.
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		all := greeted+refused+silent == n
		mu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the direct clients never all had an answer")
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded above
	}
	close(hold)
	<-done

	// Through ftpsgate: the clients set up TLS, then send USER together,
	// so that ftpsgate dials the backend 100 times at once.
	start := time.Now()
	together := barrier(n)
	failures := clients(t, n, func(i int, tb testing.TB) {
		c := download(tb, g, be.User, be.Password, "f.bin", sum, together)
		c.Cmd(221, "QUIT")
	})
	took := time.Since(start)
	t.Logf("100 clients at once: straight at pure-ftpd %d greeted, %d refused, %d without a greeting within 10s; "+
		"through ftpsgate %d of %d logged in and downloaded intact, in %s", greeted, refused, silent,
		n-countFailures(failures), n, took.Round(time.Millisecond))
	if k, why := summary(failures); k > 0 {
		t.Fatalf("%d of %d clients failed through ftpsgate:\n%s", k, n, why)
	}
	if took > 2*time.Minute {
		t.Fatalf("the burst took %s", took)
	}
}

func countFailures(failures []string) int {
	n, _ := summary(failures)
	return n
}

// relay is a TCP relay in front of a backend, from the backend's side of
// the proxy: it counts the control sessions open through it, from accept
// until the proxy's QUIT (or its close), and keeps the most at once. The
// count drops as the QUIT passes, before the backend answers it, so that a
// session the proxy counts as closed (after the 221) is never counted
// here. Before relaying, each connection may be handled otherwise by
// misbehave (with its number, from 1), which reports whether it did.
type relay struct {
	ln        net.Listener
	target    string
	misbehave func(n int, c net.Conn) bool
	wg        sync.WaitGroup

	mu       sync.Mutex
	accepted int
	open     int
	most     int
}

func startRelay(t *testing.T, target string, misbehave func(n int, c net.Conn) bool) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, misbehave: misbehave}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.accepted++
			n := r.accepted
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.serve(n, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// peak is the most sessions open at once so far.
func (r *relay) peak() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.most
}

func (r *relay) serve(n int, c net.Conn) {
	defer c.Close()
	if r.misbehave != nil && r.misbehave(n, c) {
		return
	}
	s, err := net.DialTimeout("tcp", r.target, 10*time.Second)
	if err != nil {
		return
	}
	defer s.Close()
	r.mu.Lock()
	r.open++
	r.most = max(r.most, r.open)
	r.mu.Unlock()
	var once sync.Once
	ended := func() {
		once.Do(func() {
			r.mu.Lock()
			r.open--
			r.mu.Unlock()
		})
	}
	defer ended()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(c, s)
		c.(*net.TCPConn).CloseWrite()
	}()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
			ended()
		}
		if _, werr := io.WriteString(s, line); werr != nil || err != nil {
			break
		}
	}
	s.Close() // ends the copy the other way, if the backend did not
	<-copied
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestMaxSessionsQueue: with max_sessions = 50, 150 clients log in at once
// and each holds its session for 2 s: every one is served, none waits
// past queue_timeout, and the backend never has more than 50 sessions at
// once, counted on its side of the proxy (a relay in front of pure-ftpd)
// and in ftpsgate's metrics; the cap is reached, so logins did wait.
func TestMaxSessionsQueue(t *testing.T) {
	const n, limit, hold = 150, 50, 2 * time.Second
	be := ftptest.PureFTPd(t) // its own bound, 200, is not what is tested
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "f.bin"), 64<<10)
	r := startRelay(t, be.Addr, nil)
	g := startGate(t, r.addr(), gateOptions{ports: 2 * n, backend: fmt.Sprintf(`max_sessions = %d`, limit),
		extra: `limits {
  max_sessions_per_ip = 0
}`})
	start := time.Now()
	together := barrier(n)
	waits := make([]time.Duration, n)
	failures := clients(t, n, func(i int, tb testing.TB) {
		var asked time.Time
		c := download(tb, g, be.User, be.Password, "f.bin", sum, func() { together(); asked = time.Now() })
		waits[i] = time.Since(asked) // USER to the end of the download; the queue's wait is most of it
		time.Sleep(hold)             // the client's pace: a session held
		c.Cmd(221, "QUIT")
	})
	took := time.Since(start)
	longest := time.Duration(0)
	for _, w := range waits {
		longest = max(longest, w)
	}
	t.Logf("%d clients, max_sessions %d: %d served in %s; at most %d sessions at the backend; longest login %s",
		n, limit, n-countFailures(failures), took.Round(time.Millisecond), r.peak(), longest.Round(time.Millisecond))
	if k, why := summary(failures); k > 0 {
		t.Fatalf("%d of %d clients failed:\n%s", k, n, why)
	}
	if p := r.peak(); p != limit {
		t.Fatalf("the backend had %d sessions at once, want %d (the bound, reached)", p, limit)
	}
	if longest >= 30*time.Second {
		t.Fatalf("a login took %s, past queue_timeout (30s)", longest)
	}
	if m := metric(t, g, `ftpsgate_backend_queue_wait_seconds_count{backend="legacy",result="served"}`); m !=
		fmt.Sprintf(`ftpsgate_backend_queue_wait_seconds_count{backend="legacy",result="served"} %d`, n) {
		t.Fatalf("queue wait metric %q", m)
	}
	if m := metric(t, g, `ftpsgate_backend_queue_wait_seconds_count{backend="legacy",result="timeout"}`); m != "" {
		t.Fatalf("queue timeouts: %q", m)
	}
	// Waiting logins were counted: the bucket of those served at once
	// (under 1 ms) holds fewer than all.
	if m := metric(t, g, `ftpsgate_backend_queue_wait_seconds_bucket{backend="legacy",result="served",le="0.256"}`); m ==
		fmt.Sprintf(`ftpsgate_backend_queue_wait_seconds_bucket{backend="legacy",result="served",le="0.256"} %d`, n) {
		t.Fatalf("no login waited: %q", m)
	}
	waitMetric(t, g, fmt.Sprintf(`ftpsgate_backend_sessions{backend="legacy",server=%q} 0`, r.addr()))
	waitMetric(t, g, `ftpsgate_backend_queue_waiting{backend="legacy"} 0`)
}

// TestBackendRetries: a server that fails fast for its first two
// connections (the dial refused, the connection reset or closed before
// the greeting, a 421 greeting) serves the login at the third (retries =
// 2 by default), each retry counted by cause; one that keeps failing
// gets the client a 421 naming what happened, after the retries. In a
// pool, a server that keeps saying it is busy passes the session to the
// next one, and is not marked down (it is busy, not gone).
func TestBackendRetries(t *testing.T) {
	be := ftptest.PureFTPd(t)
	dead := fmt.Sprintf("127.0.0.1:%d", ftptest.FreePort(t)) // nothing listens: the kernel refuses
	const busy = "421 10 users (the maximum) are already logged in, sorry"
	misbehave := map[string]func(c net.Conn){
		"reset": func(c net.Conn) {
			c.(*net.TCPConn).SetLinger(0) // RST
		},
		"closed": func(c net.Conn) {},
		"busy": func(c net.Conn) {
			io.WriteString(c, busy+"\r\n")
		},
	}
	for _, tc := range []struct {
		cause string
		text  string // the 421 when it keeps failing
	}{
		{"refused", "Service not available: the FTP server refused the connection; try again later."},
		{"reset", "Service not available: the FTP server reset the connection; try again later."},
		{"closed", "Service not available: the FTP server closed the connection before its greeting; try again later."},
		{"busy", `Service not available: the FTP server is busy: "10 users (the maximum) are already logged in, sorry"; try again later.`},
	} {
		for _, failing := range []int{2, 1000} {
			name := tc.cause + " twice"
			if failing > 2 {
				name = tc.cause + " always"
			}
			t.Run(name, func(t *testing.T) {
				opt := gateOptions{}
				addr := be.Addr
				if tc.cause == "refused" {
					var mu sync.Mutex
					dials := 0
					opt.dialBackend = func(ctx context.Context, network, a string) (net.Conn, error) {
						mu.Lock()
						first := a == be.Addr && dials < failing
						if a == be.Addr {
							dials++
						}
						mu.Unlock()
						if first {
							a = dead
						}
						var d net.Dialer
						return d.DialContext(ctx, network, a)
					}
				} else {
					r := startRelay(t, be.Addr, func(n int, c net.Conn) bool {
						if n > failing {
							return false
						}
						misbehave[tc.cause](c)
						return true
					})
					addr = r.addr()
				}
				g := startGate(t, addr, opt)
				retries := fmt.Sprintf(`ftpsgate_backend_retries_total{backend="legacy",cause=%q} 2`, tc.cause)
				if failing == 2 {
					c := g.login(t, be.User, be.Password)
					c.Cmd(257, "PWD")
					c.Cmd(221, "QUIT")
					if m := metric(t, g, retries[:strings.LastIndex(retries, " ")]); m != retries {
						t.Fatalf("metrics say %q, want %q", m, retries)
					}
					return
				}
				c := ftptest.Dial(t, g.explicit)
				c.AuthTLS(g.certs.ClientConfig())
				if msg := c.Cmd(421, "USER %s", be.User); msg != tc.text {
					t.Fatalf("421 text %q, want %q", msg, tc.text)
				}
				if m := metric(t, g, retries[:strings.LastIndex(retries, " ")]); m != retries {
					t.Fatalf("metrics say %q, want %q", m, retries)
				}
				if n := g.logs.FilterMessage("retrying the backend server").Len(); n != 2 {
					t.Fatalf("%d retry log lines, want 2", n)
				}
				evs := g.eventsOf(t, "backend_unavailable")
				if len(evs) != 1 || !strings.Contains(tc.text, evs[0]["what"].(string)) {
					t.Fatalf("backend_unavailable events %v", evs)
				}
			})
		}
	}

	t.Run("pool", func(t *testing.T) {
		full := startRelay(t, be.Addr, func(n int, c net.Conn) bool {
			io.WriteString(c, busy+"\r\n")
			return true
		})
		g := startGate(t, "", gateOptions{servers: []string{full.addr(), be.Addr}})
		for range 2 { // round robin: one of the two starts with the busy server
			c := g.login(t, be.User, be.Password)
			c.Cmd(257, "PWD")
			c.Cmd(221, "QUIT")
		}
		if !g.logged("trying the backend's next server") {
			t.Fatal("no log line for the move to the next server")
		}
		want := fmt.Sprintf(`ftpsgate_backend_server_up{backend="legacy",server=%q} 1`, full.addr())
		if m := metric(t, g, want[:strings.LastIndex(want, " ")]); m != want {
			t.Fatalf("metrics say %q, want %q: busy is not down", m, want)
		}
	})
}

// TestQueueTimeout: with max_sessions = 1 held, the next login waits
// queue_timeout (3 s) and gets "421 Server busy", within the timeout and a
// second, with a log line and an audit event; the proxy serves on, and
// the next login after the held session ends is served.
func TestQueueTimeout(t *testing.T) {
	be := ftptest.PureFTPd(t)
	g := startGate(t, be.Addr, gateOptions{backend: `max_sessions = 1
  queue_timeout = "3s"`})
	held := g.login(t, be.User, be.Password)
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	start := time.Now()
	c.Send("USER " + be.User)
	code, msg := c.Read()
	waited := time.Since(start)
	if code != 421 || msg != "Server busy: 1 session waiting, try again later." {
		t.Fatalf("got %d %q", code, msg)
	}
	if waited < 2900*time.Millisecond || waited > 4*time.Second {
		t.Fatalf("the 421 came after %s, want 3s to 4s", waited)
	}
	if _, _, err := c.ReadErr(); err == nil {
		t.Fatal("the session went on after 421")
	}
	if !g.logged("login waited past the backend's queue_timeout; refused as busy") {
		t.Fatal("no log line")
	}
	evs := g.eventsOf(t, "backend_unavailable")
	if len(evs) != 1 || evs[0]["what"] != "Server busy: 1 session waiting" {
		t.Fatalf("backend_unavailable events %v", evs)
	}
	if m := metric(t, g, `ftpsgate_backend_queue_wait_seconds_count{backend="legacy",result="timeout"}`); m !=
		`ftpsgate_backend_queue_wait_seconds_count{backend="legacy",result="timeout"} 1` {
		t.Fatalf("queue wait metric %q", m)
	}
	held.Cmd(257, "PWD") // the proxy serves on
	held.Cmd(221, "QUIT")
	c = g.login(t, be.User, be.Password)
	c.Cmd(257, "PWD")
	c.Cmd(221, "QUIT")
}

// TestQueueStaysResponsive: a login waiting in the queue is shown on the
// status page (rendered in Debian's headless Chromium) and ends at once,
// with its place freed, when its client sends QUIT (530 for the USER, 221
// for the QUIT) or hangs up, when the login timeout passes, and when the
// server shuts down.
func TestQueueStaysResponsive(t *testing.T) {
	chromium := ftptest.Tool(t, "chromium")
	be := ftptest.PureFTPd(t)
	g := startGate(t, be.Addr, gateOptions{backend: `max_sessions = 1
  queue_timeout = "50s"`, extra: `timeouts {
  login = "55s"
}`})
	admin := httptest.NewServer(g.srv.AdminHandler())
	defer admin.Close()
	held := g.login(t, be.User, be.Password)
	queued := func() *ftptest.Conn {
		t.Helper()
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Send("USER " + be.User)
		waitMetric(t, g, `ftpsgate_backend_queue_waiting{backend="legacy"} 1`)
		return c
	}
	// prompt fails unless what ends a wait frees its place within 2 s.
	prompt := func(what string, since time.Time) {
		t.Helper()
		waitMetric(t, g, `ftpsgate_backend_queue_waiting{backend="legacy"} 0`)
		if d := time.Since(since); d > 2*time.Second {
			t.Fatalf("%s: the wait ended after %s", what, d)
		}
	}

	c := queued()
	out, errOut, err := ftptest.RunErr(2*time.Minute, "", chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--user-data-dir="+ftptest.TempDir(t), "--dump-dom", admin.URL+"/status")
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, errOut)
	}
	for _, re := range []string{
		`<tr class="queue" data-backend="legacy"><td>legacy</td>\s*<td class="num waiting"><span class="down">1</span></td>`,
		`<td class="num held">1 of 1</td>`,
		`<td>legacy \(queued\)</td>`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("the rendered page does not match %s:\n%s", re, out)
		}
	}

	start := time.Now()
	c.Send("QUIT")
	if msg := c.Expect(530); msg != "Login abandoned: QUIT received while waiting for the FTP server." {
		t.Fatalf("530 text %q", msg)
	}
	c.Expect(221)
	prompt("QUIT", start)

	c = queued()
	start = time.Now()
	c.Raw.Close()
	prompt("hang-up", start)
	if !g.logged("login left the backend's queue") {
		t.Fatal("no log line for a login that left")
	}

	// The held session's place went to nobody else: the queue is empty.
	held.Cmd(257, "PWD")
	c = queued()
	start = time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- g.srv.Shutdown(ctx)
	}()
	if msg := c.Expect(421); !strings.Contains(msg, "shutting down") {
		t.Fatalf("at shutdown: %q", msg)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the queued login heard of the shutdown after %s", d)
	}
	held.Expect(421) // idle: told at once too
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestQueueLoginTimeout: the login timeout ends a wait in the queue.
func TestQueueLoginTimeout(t *testing.T) {
	be := ftptest.PureFTPd(t)
	g := startGate(t, be.Addr, gateOptions{backend: `max_sessions = 1`, extra: `timeouts {
  login = "3s"
}`})
	held := g.login(t, be.User, be.Password)
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.Send("USER " + be.User)
	if msg := c.Expect(421); msg != "Login timeout (3s); closing control connection." {
		t.Fatalf("421 text %q", msg)
	}
	waitMetric(t, g, `ftpsgate_backend_queue_waiting{backend="legacy"} 0`)
	held.Cmd(221, "QUIT")
}
