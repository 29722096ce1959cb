package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// Rate limits are measured with tolerances that hold on a loaded machine
// and still fail without the limit: unthrottled, each of these transfers
// takes a fraction of a second on loopback, and a transfer at the wrong
// limit (not shared, not reloaded) takes twice or a third of the time.

const mib = 1 << 20

// within fails unless got is within frac of want.
func within(t *testing.T, what string, got, want time.Duration, frac float64) {
	t.Helper()
	lo, hi := time.Duration(float64(want)*(1-frac)), time.Duration(float64(want)*(1+frac))
	if got < lo || got > hi {
		t.Fatalf("%s took %s, want %s ±%.0f%% (%s to %s)", what, got.Round(time.Millisecond), want, frac*100, lo, hi)
	}
	t.Logf("%s took %s (want %s ±%.0f%%)", what, got.Round(time.Millisecond), want, frac*100)
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// writeData writes data on a data connection and closes it, in the
// background; the error arrives on the channel.
func writeData(d *ftptest.DataConn, data []byte, timeout time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		d.SetDeadline(time.Now().Add(timeout))
		_, err := d.Write(data)
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return done
}

// TestRateLimitUser: a 20 MiB upload under a 2 MiB/s user limit takes
// 10 s, and the control connection stays prompt meanwhile: NOOP round
// trips, sampled through the transfer, have a median under 50 ms (and
// none waits for the transfer). The audit names the limit.
func TestRateLimitUser(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: "rates {\n  user_up = \"2MiB\"\n}"})
	data := randomBytes(t, 20*mib)

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	start := time.Now()
	c.Cmd(150, "STOR big.bin")
	written := writeData(d, data, time.Minute)

	var rtts []time.Duration
	got226 := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
noop:
	for {
		select {
		case err := <-written:
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			break noop
		case <-tick.C:
		}
		sent := time.Now()
		c.Send("NOOP")
		code, msg := c.Read()
		if code == 226 { // the transfer ended just before this NOOP was read: it follows
			got226 = true
			code, msg = c.Read()
		} else {
			rtts = append(rtts, time.Since(sent))
		}
		if code != 200 {
			t.Fatalf("NOOP: %d %s", code, msg)
		}
	}
	if !got226 {
		c.Expect(226)
	}
	elapsed := time.Since(start)
	within(t, "20 MiB at 2 MiB/s", elapsed, 10*time.Second, 0.15)

	if len(rtts) < 20 {
		t.Fatalf("only %d NOOPs during the transfer", len(rtts))
	}
	slices.Sort(rtts)
	median, worst := rtts[len(rtts)/2], rtts[len(rtts)-1]
	t.Logf("%d NOOPs during the transfer: median %s, max %s", len(rtts), median, worst)
	if median > 50*time.Millisecond || worst > time.Second {
		t.Fatalf("NOOP round trips during a throttled transfer: median %s, max %s", median, worst)
	}
	if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "big.bin")); got != sha(data) {
		t.Fatal("the file differs")
	}
	c.Cmd(221, "QUIT")
	ev := g.eventsOf(t, "transfer")
	if len(ev) != 1 || ev[0]["rate_level"] != "user" || ev[0]["rate_limit"] != float64(2*mib) || ev[0]["throttled_ms"].(float64) < 5000 {
		t.Fatalf("audit: %v", ev)
	}
	if m := metric(t, g, `ftpsgate_throttled_bytes_total{direction="upload",level="user"}`); m == "" {
		t.Fatal("no throttled bytes in the metrics")
	}
}

// TestRateLimitSharedByUser: two sessions of one user (curl, in parallel)
// share the user's 2 MiB/s: two 8 MiB uploads take 8 s together, where
// each alone would take 4. The shared bucket exists while they run, and
// is dropped when their sessions end. The time is the proxy's (the audit's
// duration, from the 150 on), which curl's start and login do not blur.
func TestRateLimitSharedByUser(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: "rates {\n  user_up = \"2MiB\"\n}"})
	dir := t.TempDir()
	if m := metric(t, g, "ftpsgate_rate_buckets "); m != "ftpsgate_rate_buckets 0" {
		t.Fatalf("before any session: %q", m)
	}
	var wg sync.WaitGroup
	sums := make([]string, 2)
	for i := range 2 {
		local := filepath.Join(dir, fmt.Sprintf("up%d.bin", i))
		sums[i] = ftptest.RandomFile(t, local, 8*mib)
		url := ftpURL("ftp", be.User, be.Password, g.explicit, fmt.Sprintf("shared%d.bin", i))
		wg.Go(func() {
			_, errOut, err := ftptest.RunErr(time.Minute, "", ftptest.Tool(t, "curl"),
				"--silent", "--show-error", "--fail", "--ssl-reqd", "--cacert", g.certs.CAFile, "-T", local, url)
			if err != nil {
				t.Errorf("curl: %v\n%s", err, errOut)
			}
		})
	}
	waitMetric(t, g, "ftpsgate_rate_buckets 1")
	wg.Wait()
	var longest time.Duration
	for _, ev := range g.eventsOf(t, "transfer") {
		longest = max(longest, time.Duration(ev["duration_ms"].(float64))*time.Millisecond)
	}
	within(t, "two 8 MiB uploads of one user at 2 MiB/s", longest, 8*time.Second, 0.15)
	for i, sum := range sums {
		if ftptest.FileSHA256(t, filepath.Join(be.Root, fmt.Sprintf("shared%d.bin", i))) != sum {
			t.Fatalf("file %d differs", i)
		}
	}
	waitMetric(t, g, "ftpsgate_rate_buckets 0")
}

// TestRateLimitReload: a reload halfway through a download changes the
// rate of that very transfer. 12 MiB at the listener's 1 MiB/s would take
// 12 s; after 2 MiB the limit becomes 10 MiB/s, and the rest takes 1 s.
func TestRateLimitReload(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	data := randomBytes(t, 12*mib)
	writeFile(t, be.Root, "down.bin", data)
	g := startGate(t, be.Addr, gateOptions{listenerExtra: `rate_down = "1MiB"`})

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	start := time.Now()
	c.Cmd(150, "RETR down.bin")
	d.SetDeadline(time.Now().Add(time.Minute))
	h := sha256.New()
	if _, err := io.CopyN(h, d, 2*mib); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	within(t, "the first 2 MiB at 1 MiB/s", first, 2*time.Second, 0.4) // with the data connection's setup

	cfg, diags := config.Parse([]byte(strings.ReplaceAll(g.src, `rate_down = "1MiB"`, `rate_down = "10MiB"`)), "reloaded.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if err := g.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	if _, err := io.Copy(h, d); err != nil {
		t.Fatal(err)
	}
	c.Expect(226)
	// 10 MiB at 10 MiB/s; at the old rate, 10 s.
	if rest := time.Since(reloaded); rest < 700*time.Millisecond || rest > 3*time.Second {
		t.Fatalf("the 10 MiB after the reload took %s, want about 1 s", rest)
	}
	if hex.EncodeToString(h.Sum(nil)) != sha(data) {
		t.Fatal("the download differs")
	}
}

// TestRateLimitAbort: ABOR during a throttled download is answered at
// once (426, then 226), not after the transfer: the relay's wait for
// tokens ends with the transfer's cancel.
func TestRateLimitAbort(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	writeFile(t, be.Root, "slow.bin", randomBytes(t, 16*mib))
	g := startGate(t, be.Addr, gateOptions{extra: "rates {\n  transfer_down = \"1MiB\"\n}"})
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR slow.bin")
	d.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.CopyN(io.Discard, d, mib/2); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	c.Send("ABOR")
	c.Expect(426)
	c.Expect(226)
	if took := time.Since(sent); took > 2*time.Second {
		t.Fatalf("ABOR during a throttled transfer took %s", took)
	} else {
		t.Logf("ABOR answered in %s", took)
	}
	c.Cmd(200, "NOOP")
	if ev := g.eventsOf(t, "transfer"); len(ev) != 1 || ev[0]["result"] != "aborted" {
		t.Fatalf("audit: %v", ev)
	}
}

// TestRateLimitLevels: each level limits on its own (downloads with
// curl, 2 MiB at 1 MiB/s: about 2 s, by the audit's duration), and
// limits far above the link's rate never make a transfer wait.
func TestRateLimitLevels(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	data := randomBytes(t, 2*mib)
	writeFile(t, be.Root, "two.bin", data)
	for _, tt := range []struct {
		name, listener, extra string
		want                  time.Duration
		level                 string // the audit's rate_level
	}{
		{"listener", `rate_down = "1MiB"`, "", 2 * time.Second, "listener"},
		{"class", "", fmt.Sprintf("rates {\n  user_down = \"100MiB\"\n  class \"slow\" {\n    users = [%q]\n    down = \"1MiB\"\n  }\n}", be.User), 2 * time.Second, "user"},
		{"address", "", "rates {\n  address_down = \"1MiB\"\n}", 2 * time.Second, "address"},
		{"transfer", "", "rates {\n  transfer_down = \"1MiB\"\n}", 2 * time.Second, "transfer"},
		{"smallest wins", `rate_down = "10MiB"`, "rates {\n  user_down = \"8MiB\"\n  address_down = \"1MiB\"\n  transfer_down = \"4MiB\"\n}", 2 * time.Second, "address"},
		{"upload limit only", "", "rates {\n  user_up = \"1MiB\"\n  address_up = \"1MiB\"\n  transfer_up = \"1MiB\"\n}", 0, ""},
		{"far above", `rate_down = "10GiB"`, "rates {\n  user_down = \"10GiB\"\n  address_down = \"10GiB\"\n  transfer_down = \"10GiB\"\n}", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := startGate(t, be.Addr, gateOptions{listenerExtra: tt.listener, extra: tt.extra})
			out := filepath.Join(t.TempDir(), "two.bin")
			ftptest.Curl(t, "--ssl-reqd", "--cacert", g.certs.CAFile, "-o", out,
				ftpURL("ftp", be.User, be.Password, g.explicit, "two.bin"))
			if ftptest.FileSHA256(t, out) != sha(data) {
				t.Fatal("the download differs")
			}
			ev := g.eventsOf(t, "transfer")
			if len(ev) != 1 {
				t.Fatalf("audit: %v", ev)
			}
			if tt.want == 0 {
				if _, waited := ev[0]["throttled_ms"]; waited {
					t.Fatalf("a transfer under limits far above waited: %v", ev[0])
				}
				return
			}
			within(t, "2 MiB at 1 MiB/s", time.Duration(ev[0]["duration_ms"].(float64))*time.Millisecond, tt.want, 0.25)
			if ev[0]["rate_level"] != tt.level || ev[0]["rate_limit"] != float64(mib) {
				t.Fatalf("audit names the limit %v at %v, want %d at %s", ev[0]["rate_limit"], ev[0]["rate_level"], mib, tt.level)
			}
		})
	}
}

// TestMaxFileSize: an upload past max_file_size gets 552 the moment it
// crosses, the backend keeps no partial file (the proxy removes it with
// DELE), the audit and the metrics say so, and the session goes on. A
// file of exactly the maximum passes; curl's upload is cut as well.
func TestMaxFileSize(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: "limits {\n  max_file_size = \"1MiB\"\n}"})

	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "STOR huge.bin")
	written := writeData(d, randomBytes(t, 64*mib), time.Minute)
	msg := c.Expect(552)
	if !strings.Contains(msg, "1MiB") {
		t.Fatalf("552 %q does not name the limit", msg)
	}
	if err := <-written; err == nil {
		t.Fatal("the client wrote 64 MiB through a 1 MiB limit")
	}
	if _, err := os.Stat(filepath.Join(be.Root, "huge.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the backend kept the partial file: %v", err)
	}
	ev := g.eventsOf(t, "transfer")
	if len(ev) != 1 || ev[0]["result"] != "too_large" || ev[0]["partial_file"] != "removed" ||
		ev[0]["bytes"] != float64(mib) || ev[0]["code"] != float64(552) {
		t.Fatalf("audit: %v", ev)
	}
	if m := metric(t, g, "ftpsgate_max_file_size_refusals_total"); m != "ftpsgate_max_file_size_refusals_total 1" {
		t.Fatalf("metric %q", m)
	}

	// The session goes on, its backend connection in step.
	c.Cmd(200, "NOOP")
	exact := randomBytes(t, mib)
	d = c.DialData(c.EPSV())
	c.Cmd(150, "STOR exact.bin")
	d.WriteAll(t, exact)
	c.Expect(226)
	if ftptest.FileSHA256(t, filepath.Join(be.Root, "exact.bin")) != sha(exact) {
		t.Fatal("a file of exactly max_file_size differs")
	}

	// A resumed upload counts from its offset, and its file, which held
	// data before, is kept: no larger than max_file_size (the backend's
	// leg is reset at the cut, as after any broken upload, so what was in
	// flight may be lost), and no smaller than before.
	ftptest.Chown(t, writeFile(t, be.Root, "resumed.bin", exact[:mib/2]))
	d = c.DialData(c.EPSV())
	c.Cmd(350, "REST %d", mib/2)
	c.Cmd(150, "STOR resumed.bin")
	written = writeData(d, randomBytes(t, mib), time.Minute)
	c.Expect(552)
	<-written
	if fi, err := os.Stat(filepath.Join(be.Root, "resumed.bin")); err != nil || fi.Size() < mib/2 || fi.Size() > mib {
		t.Fatalf("the resumed file: %v, %v; want it kept at max_file_size", fi, err)
	}
	if ev := g.eventsOf(t, "transfer"); len(ev) != 3 || ev[2]["partial_file"] != "kept" || ev[2]["bytes"] != float64(mib/2) {
		t.Fatalf("audit: %v", ev)
	}
	c.Cmd(221, "QUIT")

	local := filepath.Join(t.TempDir(), "big.bin")
	ftptest.RandomFile(t, local, 8*mib)
	_, errOut, err := ftptest.RunErr(time.Minute, "", ftptest.Tool(t, "curl"), "--silent", "--show-error", "--ssl-reqd",
		"--cacert", g.certs.CAFile, "-T", local, ftpURL("ftp", be.User, be.Password, g.explicit, "curl.bin"))
	if err == nil {
		t.Fatal("curl uploaded 8 MiB through a 1 MiB limit")
	}
	t.Logf("curl: %v: %s", err, errOut)
	// curl hangs up at the cut; the proxy removes the file after the
	// server's final reply, and audits the transfer after that.
	deadline := time.Now().Add(30 * time.Second)
	for len(g.eventsOf(t, "transfer")) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("curl's upload never audited: %v", g.eventsOf(t, "transfer"))
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded above
	}
	if ev := g.eventsOf(t, "transfer")[3]; ev["path"] != "/curl.bin" || ev["partial_file"] != "removed" {
		t.Fatalf("audit: %v", ev)
	}
	if _, err := os.Stat(filepath.Join(be.Root, "curl.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the backend kept curl's partial file: %v", err)
	}
}
