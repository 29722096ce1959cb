package proxy_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// hookSecret is the notify blocks' signing secret in these tests.
const hookSecret = "test-secret-0123456789abcdef"

// hookRequest is one request a receiver got.
type hookRequest struct {
	header http.Header
	body   []byte
}

// receiver is an HTTP endpoint on loopback that records what it is
// posted and answers as status says for the n-th request (from 1).
type receiver struct {
	srv    *httptest.Server
	status func(n int, r *hookRequest) int
	mu     sync.Mutex
	reqs   []*hookRequest
	got    chan struct{} // a token per request
}

func startReceiver(t *testing.T, status func(n int, r *hookRequest) int) *receiver {
	t.Helper()
	rc := &receiver{status: status, got: make(chan struct{}, 1000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		req := &hookRequest{header: r.Header.Clone(), body: body}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, req)
		n := len(rc.reqs)
		rc.mu.Unlock()
		rc.got <- struct{}{}
		w.WriteHeader(rc.status(n, req))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// wait waits for n requests in all and returns them.
func (rc *receiver) wait(t *testing.T, n int) []*hookRequest {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		rc.mu.Lock()
		have := len(rc.reqs)
		reqs := append([]*hookRequest(nil), rc.reqs...)
		rc.mu.Unlock()
		if have >= n {
			return reqs
		}
		select {
		case <-rc.got:
		case <-deadline:
			t.Fatalf("the receiver got %d requests, want %d", have, n)
		}
	}
}

// notifyBlock is the HCL of a notify block named "hook" posting to url;
// body adds attributes.
func notifyBlock(t *testing.T, url, body string) string {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secret, []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("notify \"hook\" {\n  url = %q\n  secret_file = %q\n%s\n}\n", url, secret, body)
}

// signature is the X-Ftpsgate-Signature a receiver expects, computed as
// the README tells receivers to (not with package notify's Sign).
func signature(secret string, r *hookRequest) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(r.header.Get("X-Ftpsgate-Timestamp") + "." + r.header.Get("X-Ftpsgate-Event-Id") + "."))
	m.Write(r.body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// verified reports whether r carries a valid signature by secret, and a
// timestamp within a minute of now.
func verified(t *testing.T, secret string, r *hookRequest) bool {
	t.Helper()
	var ts int64
	if _, err := fmt.Sscan(r.header.Get("X-Ftpsgate-Timestamp"), &ts); err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Fatalf("timestamp %q", r.header.Get("X-Ftpsgate-Timestamp"))
	}
	return hmac.Equal([]byte(r.header.Get("X-Ftpsgate-Signature")), []byte(signature(secret, r)))
}

func (r *hookRequest) event(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// auditLine is the audit stream's line of the transfer event of path.
func (g *gate) auditLine(t *testing.T, event, key, value string) []byte {
	t.Helper()
	for _, line := range bytes.Split(g.auditBuf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["event"] == event && m[key] == value {
			return line
		}
	}
	t.Fatalf("no %s audit line with %s %q", event, key, value)
	return nil
}

var eventID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestNotifyUpload: an upload and a download through a real vsftpd each
// post one event, signed: the receiver verifies the signature with the
// secret, and a wrong secret fails. The body is the audit line, byte for
// byte, and it is posted after the client has the 226.
func TestNotifyUpload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "report.csv", []byte("a,b\n1,2\n"))
	var gp struct {
		sync.Mutex
		g *gate
	}
	var repliedFirst []bool // the audit had the STOR's or RETR's reply when the event came
	rc := startReceiver(t, func(n int, r *hookRequest) int {
		gp.Lock()
		defer gp.Unlock()
		verb := map[string]string{"upload_complete": "STOR", "download_complete": "RETR"}[r.header.Get("X-Ftpsgate-Event")]
		repliedFirst = append(repliedFirst, bytes.Contains(gp.g.auditBuf.Bytes(), []byte(`"event":"reply","session":`)) &&
			len(gp.g.eventsOfVerb(t, "reply", verb)) > 0)
		return http.StatusNoContent
	})
	gp.Lock()
	gp.g = startGate(t, be.Addr, gateOptions{extra: notifyBlock(t, rc.srv.URL+"/ftp?x=1", `events = ["upload_complete", "download_complete"]`)})
	g := gp.g
	gp.Unlock()

	c := g.login(t, be.User, be.Password)
	if code, msg := scanUpload(t, c, "in.txt", []byte("hello\n")); code != 226 {
		t.Fatalf("upload: %d %s", code, msg)
	}
	retr(t, c, "report.csv")
	c.Cmd(221, "QUIT")

	reqs := rc.wait(t, 2)
	gp.Lock()
	replied := slices.Clone(repliedFirst) // written by the receiver's handler
	gp.Unlock()
	for i, want := range []struct{ kind, path string }{{"upload_complete", "/in.txt"}, {"download_complete", "/report.csv"}} {
		r := reqs[i]
		if r.header.Get("X-Ftpsgate-Event") != want.kind || !eventID.MatchString(r.header.Get("X-Ftpsgate-Event-Id")) ||
			r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("request %d headers %v", i, r.header)
		}
		if !verified(t, hookSecret, r) {
			t.Fatalf("request %d: signature %q does not verify", i, r.header.Get("X-Ftpsgate-Signature"))
		}
		if verified(t, "another-secret-0123456789abcdef", r) {
			t.Fatalf("request %d verifies with a wrong secret", i)
		}
		if line := g.auditLine(t, "transfer", "path", want.path); !bytes.Equal(r.body, line) {
			t.Fatalf("request %d body\n%s\nis not the audit line\n%s", i, r.body, line)
		}
		if i >= len(replied) || !replied[i] {
			t.Fatalf("request %d came before the client had the final reply", i)
		}
	}
	if reqs[0].header.Get("X-Ftpsgate-Event-Id") == reqs[1].header.Get("X-Ftpsgate-Event-Id") {
		t.Fatal("two events, one id")
	}
	// A tampered body or timestamp fails verification.
	bad := *reqs[0]
	bad.body = bytes.Replace(bad.body, []byte("in.txt"), []byte("xx.txt"), 1)
	if verified(t, hookSecret, &bad) {
		t.Fatal("a tampered body verifies")
	}
	waitMetric(t, g, `ftpsgate_notify_delivered_total{notify="hook"} 2`)
}

// eventsOfVerb returns the audit events named event whose verb is verb.
func (g *gate) eventsOfVerb(t testing.TB, event, verb string) []map[string]any {
	var out []map[string]any
	for _, e := range g.eventsOf(t, event) {
		if e["verb"] == verb {
			out = append(out, e)
		}
	}
	return out
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestNotifyRetries: a receiver that fails three times (503) then
// succeeds gets the event four times, the same id and body each time, and
// never again after its 2xx; a 4xx other than 429 is final at once. One
// worker: the next event's request proves no retry of the earlier one is
// still to come.
func TestNotifyRetries(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	rc := startReceiver(t, func(n int, r *hookRequest) int {
		switch {
		case n <= 3:
			return http.StatusServiceUnavailable
		case n == 4:
			return http.StatusOK
		case n == 5:
			return http.StatusBadRequest
		}
		return http.StatusAccepted
	})
	g := startGate(t, be.Addr, gateOptions{extra: notifyBlock(t, rc.srv.URL,
		`events = ["upload_complete"]
  workers = 1
  backoff = "20ms"
  max_backoff = "100ms"`)})
	c := g.login(t, be.User, be.Password)
	upload := func(name string) {
		if code, msg := scanUpload(t, c, name, []byte(name)); code != 226 {
			t.Fatalf("upload %s: %d %s", name, code, msg)
		}
	}
	upload("a.txt")
	rc.wait(t, 4)
	waitMetric(t, g, `ftpsgate_notify_delivered_total{notify="hook"} 1`)
	upload("b.txt") // refused for good with 400
	rc.wait(t, 5)
	waitMetric(t, g, `ftpsgate_notify_failed_total{notify="hook",reason="status"} 1`)
	upload("c.txt")
	reqs := rc.wait(t, 6)
	c.Cmd(221, "QUIT")

	paths := []string{"/a.txt", "/a.txt", "/a.txt", "/a.txt", "/b.txt", "/c.txt"}
	for i, r := range reqs {
		if p := r.event(t)["path"]; p != paths[i] {
			t.Fatalf("request %d is about %v, want %s", i+1, p, paths[i])
		}
		if !verified(t, hookSecret, r) {
			t.Fatalf("request %d does not verify", i+1)
		}
		if i > 0 && i < 4 && (r.header.Get("X-Ftpsgate-Event-Id") != reqs[0].header.Get("X-Ftpsgate-Event-Id") || !bytes.Equal(r.body, reqs[0].body)) {
			t.Fatalf("retry %d: id %s, body %s; first: %s, %s", i, r.header.Get("X-Ftpsgate-Event-Id"), r.body,
				reqs[0].header.Get("X-Ftpsgate-Event-Id"), reqs[0].body)
		}
	}
	if reqs[4].header.Get("X-Ftpsgate-Event-Id") == reqs[0].header.Get("X-Ftpsgate-Event-Id") {
		t.Fatal("a new event with the old id")
	}
	waitMetric(t, g, `ftpsgate_notify_delivered_total{notify="hook"} 2`)
	body := g.metricsText(t)
	for _, want := range []string{`ftpsgate_notify_retries_total{notify="hook"} 3`, `ftpsgate_notify_queue_depth{notify="hook"} 0`,
		`ftpsgate_notify_latency_seconds_count{notify="hook"} 2`} {
		if !strings.Contains(body, want+"\n") {
			t.Fatalf("/metrics lacks %s:\n%s", want, grepLines(body, "ftpsgate_notify_"))
		}
	}
	if !g.logged("notification refused by the receiver; not retried") || !g.logged("notification delivered after retries") {
		t.Fatal("the failure and the retries are not logged")
	}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.mu.Unlock()
	if n != 6 {
		t.Fatalf("%d requests, want 6", n)
	}
}

// TestNotifyHangingReceiver: a receiver that never answers slows no
// transfer. With one worker stuck on it and a queue of one, the next
// event waits in the queue, the one after is dropped and counted, and
// every upload gets its 226 at once, while the receiver is still stuck.
func TestNotifyHangingReceiver(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	rc := startReceiver(t, func(n int, r *hookRequest) int {
		entered <- struct{}{}
		<-release
		return http.StatusOK
	})
	g := startGate(t, be.Addr, gateOptions{extra: notifyBlock(t, rc.srv.URL,
		`events = ["upload_complete"]
  workers = 1
  queue   = 1
  timeout = "5m"`)})
	t.Cleanup(func() { close(release) }) // before the gate and the receiver close
	c := g.login(t, be.User, be.Password)
	data := bytes.Repeat([]byte("x"), 1<<20)
	upload := func(name string) time.Duration {
		start := time.Now()
		if code, msg := scanUpload(t, c, name, data); code != 226 {
			t.Fatalf("upload %s: %d %s", name, code, msg)
		}
		return time.Since(start)
	}
	upload("1.bin")
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the receiver got no request")
	}
	for _, name := range []string{"2.bin", "3.bin", "4.bin"} {
		d := upload(name)
		t.Logf("%s: 226 after %v with the receiver stuck", name, d)
		if d > 10*time.Second {
			t.Errorf("%s: 226 after %v", name, d)
		}
		c.Cmd(200, "NOOP") // the session goes on: nothing waits for the queue
	}
	select {
	case <-release:
		t.Fatal("released early")
	default:
	}
	c.Cmd(221, "QUIT")
	waitMetric(t, g, `ftpsgate_notify_dropped_total{notify="hook",reason="queue_full"} 2`)
	waitMetric(t, g, `ftpsgate_notify_queue_depth{notify="hook"} 1`)
	if !g.logged("notification dropped") {
		t.Fatal("the drop is not logged")
	}
	if n := len(rc.wait(t, 1)); n != 1 {
		t.Fatalf("%d requests while stuck", n)
	}
}

// TestNotifyLoginFailedAndBan: failed logins and the ban they bring each
// post an event.
func TestNotifyLoginFailedAndBan(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	rc := startReceiver(t, func(int, *hookRequest) int { return http.StatusOK })
	g := startGate(t, be.Addr, gateOptions{extra: "bans {\n  failures = 2\n}\n" +
		notifyBlock(t, rc.srv.URL, `events = ["login_failed", "ban", "upload_complete"]`)})
	for i := 0; i < 2; i++ {
		c := ftptest.Dial(t, g.explicit)
		c.AuthTLS(g.certs.ClientConfig())
		c.Cmd(331, "USER %s", be.User)
		c.Cmd(530, "PASS wrong")
	}
	reqs := rc.wait(t, 3)
	kinds := map[string]int{}
	for _, r := range reqs {
		if !verified(t, hookSecret, r) {
			t.Fatal("does not verify")
		}
		k := r.header.Get("X-Ftpsgate-Event")
		kinds[k]++
		e := r.event(t)
		switch k {
		case "login_failed":
			if e["event"] != "login" || e["result"] != "failure" || e["user"] != be.User || e["code"] != float64(530) {
				t.Fatalf("login_failed body %s", r.body)
			}
		case "ban":
			if e["event"] != "ban" || e["address"] != "127.0.0.1" || e["failures"] != float64(2) {
				t.Fatalf("ban body %s", r.body)
			}
		}
	}
	if kinds["login_failed"] != 2 || kinds["ban"] != 1 {
		t.Fatalf("events %v", kinds)
	}
	waitMetric(t, g, `ftpsgate_notify_delivered_total{notify="hook"} 3`)
}

// TestNotifyUploadRejected: an upload refused by policy and one cut at
// max_file_size each post upload_rejected; the STOR that succeeds posts
// nothing (not subscribed).
func TestNotifyUploadRejected(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	rc := startReceiver(t, func(int, *hookRequest) int { return http.StatusOK })
	g := startGate(t, be.Addr, gateOptions{policy: `deny_commands = ["APPE"]`,
		extra: "limits {\n  max_file_size = \"1KiB\"\n}\n" + notifyBlock(t, rc.srv.URL, `events = ["upload_rejected"]
  workers = 1`)})
	c := g.login(t, be.User, be.Password)
	c.Cmd(502, "APPE log.txt")
	if code, msg := scanUpload(t, c, "small.txt", []byte("ok\n")); code != 226 {
		t.Fatalf("small upload: %d %s", code, msg)
	}
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR big.bin")
	d.Write(bytes.Repeat([]byte("y"), 64<<10)) // cut at 1 KiB: the write may fail
	d.Close()
	c.Expect(552)
	c.Cmd(221, "QUIT")
	reqs := rc.wait(t, 2)
	e0, e1 := reqs[0].event(t), reqs[1].event(t)
	if e0["event"] != "policy_denied" || e0["verb"] != "APPE" || e0["rule"] != "deny_commands" {
		t.Fatalf("first event %s", reqs[0].body)
	}
	if e1["event"] != "transfer" || e1["path"] != "/big.bin" || e1["result"] != "too_large" || e1["code"] != float64(552) {
		t.Fatalf("second event %s", reqs[1].body)
	}
	for _, r := range reqs {
		if r.header.Get("X-Ftpsgate-Event") != "upload_rejected" {
			t.Fatalf("kind %q", r.header.Get("X-Ftpsgate-Event"))
		}
	}
	waitMetric(t, g, `ftpsgate_notify_delivered_total{notify="hook"} 2`)
}

// TestNotifyReload: a reload applies to the events after it: a new URL
// and a new secret (re-read from the file); the old receiver gets nothing
// more.
func TestNotifyReload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	ok := func(int, *hookRequest) int { return http.StatusOK }
	a, b := startReceiver(t, ok), startReceiver(t, ok)
	g := startGate(t, be.Addr, gateOptions{extra: notifyBlock(t, a.srv.URL, `events = ["upload_complete"]`)})
	c := g.login(t, be.User, be.Password)
	scanUpload(t, c, "1.txt", []byte("1"))
	a.wait(t, 1)

	src := strings.Replace(g.src, a.srv.URL, b.srv.URL, 1)
	secret := regexp.MustCompile(`secret_file = "([^"]+)"`).FindStringSubmatch(src)[1]
	if err := os.WriteFile(secret, []byte("rotated-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	scanUpload(t, c, "2.txt", []byte("2")) // an open session: the event is new
	c.Cmd(221, "QUIT")
	r := b.wait(t, 1)[0]
	if r.event(t)["path"] != "/2.txt" || !verified(t, "rotated-secret-0123456789abcdef", r) {
		t.Fatalf("after the reload: %s, verified with the new secret: %v", r.body, verified(t, "rotated-secret-0123456789abcdef", r))
	}
	if n := len(a.wait(t, 1)); n != 1 {
		t.Fatalf("the old receiver got %d requests", n)
	}
}

// TestNotifyScanRejected: EICAR refused by a real clamd posts
// upload_rejected naming the signature, after the client has its 550.
func TestNotifyScanRejected(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	rc := startReceiver(t, func(int, *hookRequest) int { return http.StatusOK })
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `scan = "av"`,
		extra: fmt.Sprintf("scan \"av\" {\n  engine = \"clamd\"\n  address = %q\n}\n", "unix:"+clamd.Unix) +
			notifyBlock(t, rc.srv.URL, `events = ["upload_rejected", "upload_complete"]`)})
	c := g.login(t, be.User, be.Password)
	if code, msg := scanUpload(t, c, "eicar.com", ftptest.EICAR); code != 550 {
		t.Fatalf("EICAR upload: %d %s", code, msg)
	}
	c.Cmd(221, "QUIT")
	r := rc.wait(t, 1)[0]
	e := r.event(t)
	if r.header.Get("X-Ftpsgate-Event") != "upload_rejected" || e["path"] != "/eicar.com" || e["scan"] != "infected" ||
		e["signature"] != ftptest.EICARSignature || e["code"] != float64(550) || !verified(t, hookSecret, r) {
		t.Fatalf("event %s %s", r.header.Get("X-Ftpsgate-Event"), r.body)
	}
	waitMetric(t, g, `ftpsgate_notify_delivered_total{notify="hook"} 1`)
}
