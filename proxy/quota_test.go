package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Quotas (quota.go), end to end through vsftpd: a transfer that crosses
// its user's quota is cut at the bound with 552, the next is refused with
// 552 before the backend sees it, and both are audited and counted.

// resetsAt is how a 552 names the end of the window of q holding now.
func resetsAt(period time.Duration) string {
	_, end := config.Quota{Period: period}.Window(time.Now())
	return end.UTC().Format("2006-01-02 15:04:05 MST")
}

// quotaPeriod is a quota_period whose window holding now ends at least
// five minutes from now: a test running across a window's end would see
// its counts start again. Windows of 1, 7, 11, 13 and 17 hours end
// together only at multiples of 17017 hours from the epoch.
func quotaPeriod(t *testing.T) (string, time.Duration) {
	t.Helper()
	for _, h := range []int{1, 7, 11, 13, 17} {
		d := time.Duration(h) * time.Hour
		if _, end := (config.Quota{Period: d}).Window(time.Now()); time.Until(end) > 5*time.Minute {
			return fmt.Sprintf("%dh", h), d
		}
	}
	t.Fatal("every candidate quota period ends within five minutes")
	return "", 0
}

// waitTransfers polls g's audit until it holds n transfer events.
func waitTransfers(t *testing.T, g *gate, n int) []map[string]any {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d transfer events", n), func() bool { return len(g.eventsOf(t, "transfer")) >= n })
	return g.eventsOf(t, "transfer")
}

// TestQuotaUpload: under a 3 MiB upload quota, a 2 MiB upload completes;
// a 4 MiB one is cut after exactly the 1 MiB left, with 552 naming the
// quota and its reset, and its partial file is removed from the backend;
// the next upload is refused with 552 before the backend sees it (no
// empty file is left); downloads are not bound by it. The audit and the
// metrics have each refusal. A reload that raises the quota lets the
// same session upload again.
func TestQuotaUpload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "down.bin", randomBytes(t, 4*mib))
	ps, pd := quotaPeriod(t)
	g := startGate(t, be.Addr, gateOptions{extra: fmt.Sprintf("rates {\n  quota_up = \"3MiB\"\n  quota_period = %q\n}", ps)})

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	first := randomBytes(t, 2*mib)
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR first.bin")
	d.WriteAll(t, first)
	c.Expect(226)

	d = c.DialData(c.EPSV())
	c.Cmd(150, "STOR second.bin")
	written := writeData(d, randomBytes(t, 4*mib), time.Minute)
	msg := c.Expect(552)
	want := "the upload quota of 3MiB per " + ps + " is used up; it resets at " + resetsAt(pd)
	if !strings.Contains(msg, want) {
		t.Fatalf("552 %q does not say %q", msg, want)
	}
	if err := <-written; err == nil {
		t.Fatal("the client wrote 4 MiB through the 1 MiB left of its quota")
	}
	if _, err := os.Stat(filepath.Join(be.Root, "second.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the backend kept the partial file: %v", err)
	}

	// Past the quota: refused before the backend sees the command.
	d = c.DialData(c.EPSV())
	if msg := c.Cmd(552, "STOR third.bin"); msg != "Upload quota exceeded: 3MiB per "+ps+" used; it resets at "+resetsAt(pd)+"." {
		t.Fatalf("refusal %q", msg)
	}
	d.Close()
	if _, err := os.Stat(filepath.Join(be.Root, "third.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the backend saw the refused STOR: %v", err)
	}
	// Downloads are another quota, unbounded here.
	d = c.DialData(c.EPSV())
	c.Cmd(150, "RETR down.bin")
	if n, err := io.Copy(io.Discard, d); err != nil || n != 4*mib {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	c.Expect(226)

	ev := waitTransfers(t, g, 4)
	if ev[1]["result"] != "quota_exceeded" || ev[1]["bytes"] != float64(mib) || ev[1]["code"] != float64(552) ||
		ev[1]["partial_file"] != "removed" || ev[1]["quota"] != "3MiB per "+ps || ev[1]["quota_resets"] == nil {
		t.Fatalf("audit of the cut upload: %v", ev[1])
	}
	if ev[2]["result"] != "quota_exceeded" || ev[2]["bytes"] != float64(0) || ev[2]["code"] != float64(552) || ev[2]["path"] != "third.bin" {
		t.Fatalf("audit of the refused upload: %v", ev[2])
	}
	if m := metric(t, g, `ftpsgate_quota_refusals_total{direction="upload"}`); m != `ftpsgate_quota_refusals_total{direction="upload"} 2` {
		t.Fatalf("metric %q", m)
	}
	if m := metric(t, g, `ftpsgate_quota_refusals_total{direction="download"}`); m != "" {
		t.Fatalf("metric %q", m)
	}

	// A reload (SIGHUP) raising the quota applies to the session at once.
	cfg, diags := config.Parse([]byte(strings.ReplaceAll(g.src, `quota_up = "3MiB"`, `quota_up = "10MiB"`)), "reloaded.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	again := randomBytes(t, 2*mib)
	d = c.DialData(c.EPSV())
	c.Cmd(150, "STOR third.bin")
	d.WriteAll(t, again)
	c.Expect(226)
	if ftptest.FileSHA256(t, filepath.Join(be.Root, "third.bin")) != sha(again) {
		t.Fatal("the upload after the reload differs")
	}
	c.Cmd(221, "QUIT")
}

// TestQuotaDownload: under a 3 MiB download quota (and a 1 MiB/s rate, so
// that a transfer lasts), STAT during a download and the status page show
// the rate limit and the quota's use; curl's 4 MiB download crosses the
// quota and is cut after the 1 MiB left, never reported complete; the next
// download is refused with 552, naming the quota and its reset.
func TestQuotaDownload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	small := randomBytes(t, 2*mib)
	writeFile(t, be.Root, "small.bin", small)
	writeFile(t, be.Root, "big.bin", randomBytes(t, 4*mib))
	ps, pd := quotaPeriod(t)
	g := startGate(t, be.Addr, gateOptions{extra: fmt.Sprintf("rates {\n  user_down = \"1MiB\"\n  quota_down = \"3MiB\"\n  quota_period = %q\n}", ps)})

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR small.bin")
	d.SetDeadline(time.Now().Add(time.Minute))
	h := sha256.New()
	if _, err := io.CopyN(h, d, mib/2); err != nil {
		t.Fatal(err)
	}
	stat := c.Cmd(211, "STAT")
	for _, want := range []string{"Rate limit: 1MiB/s (user).", "Download quota: ", " of 3MiB per " + ps + " used; it resets at " + resetsAt(pd)} {
		if !strings.Contains(stat, want) {
			t.Fatalf("STAT %q does not say %q", stat, want)
		}
	}
	st := g.srv.Status()
	if len(st.Sessions) != 1 || st.Sessions[0].RateDown != mib || st.Sessions[0].RateUp != 0 || st.Sessions[0].QuotaUp != nil {
		t.Fatalf("status: %+v", st.Sessions)
	}
	if q := st.Sessions[0].QuotaDown; q == nil || q.Limit != 3*mib || q.Used < mib/2 || q.Used > 3*mib || q.Period != pd {
		t.Fatalf("status of the quota: %+v", q)
	}
	if _, err := io.Copy(h, d); err != nil {
		t.Fatal(err)
	}
	c.Expect(226)
	if hex.EncodeToString(h.Sum(nil)) != sha(small) {
		t.Fatal("the download differs")
	}
	if q := g.srv.Status().Sessions[0].QuotaDown; q == nil || q.Used != 2*mib {
		t.Fatalf("status after the download: %+v", q)
	}
	for path, want := range map[string]string{
		"/status": "download: 2MiB of 3MiB per " + ps + " used; it resets at " + resetsAt(pd),
		"/status.json": `"rate_limit_down": 1048576,
      "quota_down": {
        "used": 2097152,
        "limit": 3145728,`,
	} {
		rec := httptest.NewRecorder()
		g.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if body := rec.Body.String(); !strings.Contains(body, want) {
			t.Fatalf("%s lacks %q:\n%s", path, want, body)
		}
	}

	local := filepath.Join(t.TempDir(), "big.bin")
	_, errOut, err := ftptest.RunErr(time.Minute, "", ftptest.Tool(t, "curl"), "--silent", "--show-error", "--ssl-reqd",
		"--cacert", g.certs.CAFile, "-o", local, ftpURL("ftp", be.User, be.Password, g.explicit, "big.bin"))
	if err == nil {
		t.Fatal("curl reported complete a 4 MiB download through the 1 MiB left of the quota")
	}
	t.Logf("curl: %v: %s", err, errOut)
	if fi, err := os.Stat(local); err == nil && fi.Size() > mib {
		t.Fatalf("curl received %d bytes through the 1 MiB left of the quota", fi.Size())
	}
	ev := waitTransfers(t, g, 2)
	if ev[1]["result"] != "quota_exceeded" || ev[1]["bytes"] != float64(mib) || ev[1]["code"] != float64(552) ||
		ev[1]["quota"] != "3MiB per "+ps || ev[1]["partial_file"] != nil {
		t.Fatalf("audit of the cut download: %v", ev[1])
	}

	d = c.DialData(c.EPSV())
	if msg := c.Cmd(552, "RETR small.bin"); msg != "Download quota exceeded: 3MiB per "+ps+" used; it resets at "+resetsAt(pd)+"." {
		t.Fatalf("refusal %q", msg)
	}
	d.Close()
	// Listings are never refused, nor counted.
	d = c.DialData(c.EPSV())
	c.Cmd(150, "LIST")
	if b, err := io.ReadAll(d); err != nil || !strings.Contains(string(b), "big.bin") {
		t.Fatalf("listing: %q %v", b, err)
	}
	c.Expect(226)
	if ev := waitTransfers(t, g, 4); ev[2]["result"] != "quota_exceeded" || ev[2]["bytes"] != float64(0) || ev[3]["result"] != "complete" {
		t.Fatalf("audit: %v", ev)
	}
	if m := metric(t, g, `ftpsgate_quota_refusals_total{direction="download"}`); m != `ftpsgate_quota_refusals_total{direction="download"} 2` {
		t.Fatalf("metric %q", m)
	}
	c.Cmd(221, "QUIT")
}

// TestQuotaAndRateOneUserTwoSpellings: "Alice" and "alice" are one user to
// the policy (user_names = "case_insensitive", policy.Rules.Key): their
// sessions share one rate bucket and one quota. Edge authentication knows
// both spellings, with passwords of their own, and maps both to the
// backend's account.
func TestQuotaAndRateOneUserTwoSpellings(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "a.bin", randomBytes(t, 2*mib))
	ps, _ := quotaPeriod(t)
	g, _ := edgeGate(t, be, edgeUsers(t, t.TempDir(), "Alice", "Alice-pw"), true,
		fmt.Sprintf("rates {\n  user_down = \"8MiB\"\n  quota_down = \"3MiB\"\n  quota_period = %q\n}", ps))

	upper := g.login(t, "Alice", "Alice-pw")
	lower := g.login(t, "alice", "alice-edge-pw")
	for _, c := range []*ftptest.Conn{upper, lower} {
		c.Cmd(200, "TYPE I")
	}
	d := upper.DialData(upper.EPSV())
	upper.Cmd(150, "RETR a.bin")
	if n, err := io.Copy(io.Discard, d); err != nil || n != 2*mib {
		t.Fatalf("first download: %d, %v", n, err)
	}
	upper.Expect(226)

	d = lower.DialData(lower.EPSV())
	lower.Cmd(150, "RETR a.bin")
	io.Copy(io.Discard, d)
	if msg := lower.Expect(552); !strings.Contains(msg, "after 1048576 bytes") {
		t.Fatalf("the other spelling's download: %q, want it cut after the 1 MiB left of the shared quota", msg)
	}
	// Each session holds the user's bucket until it ends: one bucket for
	// both spellings.
	if m := metric(t, g, "ftpsgate_rate_buckets "); m != "ftpsgate_rate_buckets 1" {
		t.Fatalf("two spellings of one user hold %q", m)
	}
	ev := waitTransfers(t, g, 2)
	if ev[1]["user"] != "alice" || ev[1]["result"] != "quota_exceeded" || ev[1]["bytes"] != float64(mib) {
		t.Fatalf("audit: %v", ev)
	}
	upper.Cmd(221, "QUIT")
	lower.Cmd(221, "QUIT")
}

// TestSharedQuota: two ftpsgate instances sharing a real redis-server count
// one user's quota together: 2 MiB uploaded through A leave 1 MiB of a 3 MiB
// quota to B, whose 2 MiB upload is cut there; both instances then refuse
// the next upload. The count expires at the window's end.
func TestSharedQuota(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	rd := ftptest.StartRedis(t)
	ps, pd := quotaPeriod(t)
	opt := gateOptions{extra: fmt.Sprintf(`rates {
  quota_up     = "3MiB"
  quota_period = %q
}
state {
  redis {
    address = %q
    prefix  = "test:%s:"
  }
}`, ps, rd.Addr, t.Name())}
	a, b := startGate(t, be.Addr, opt), startGate(t, be.Addr, opt)

	ca := a.login(t, be.User, be.Password)
	ca.Cmd(200, "TYPE I")
	d := ca.DialData(ca.EPSV())
	ca.Cmd(150, "STOR a.bin")
	d.WriteAll(t, randomBytes(t, 2*mib))
	ca.Expect(226)

	cb := b.login(t, be.User, be.Password)
	cb.Cmd(200, "TYPE I")
	d = cb.DialData(cb.EPSV())
	cb.Cmd(150, "STOR b.bin")
	written := writeData(d, randomBytes(t, 2*mib), time.Minute)
	if msg := cb.Expect(552); !strings.Contains(msg, "after 1048576 bytes: the upload quota of 3MiB per "+ps+" is used up") {
		t.Fatalf("B's upload: %q, want it cut after the 1 MiB A left", msg)
	}
	<-written
	if _, err := os.Stat(filepath.Join(be.Root, "b.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the backend kept B's partial file: %v", err)
	}
	for _, c := range []*ftptest.Conn{ca, cb} {
		d := c.DialData(c.EPSV())
		c.Cmd(552, "STOR c.bin")
		d.Close()
		c.Cmd(221, "QUIT")
	}

	rc := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "test:"+t.Name()+":quota:*").Result()
	if err != nil || len(keys) != 1 || !strings.HasSuffix(keys[0], ":user:"+strings.ToLower(be.User)) {
		t.Fatalf("quota keys in Redis: %q %v", keys, err)
	}
	if got, err := rc.Get(ctx, keys[0]).Int64(); err != nil || got != 3*mib {
		t.Fatalf("the shared count: %d %v, want %d", got, err, 3*mib)
	}
	_, end := config.Quota{Period: pd}.Window(time.Now())
	if got, err := rc.PExpireTime(ctx, keys[0]).Result(); err != nil || got != time.Duration(end.UnixMilli())*time.Millisecond {
		t.Fatalf("the count expires at %v (%v), want the window's end %v", got, err, end.UnixMilli())
	}
}
