package proxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// verbCount is how many commands of verb the gate's audit holds.
func verbCount(t *testing.T, g *gate, verb string) int {
	t.Helper()
	n := 0
	for _, e := range g.eventsOf(t, "command") {
		if e["verb"] == verb {
			n++
		}
	}
	return n
}

// TestAgentLftp: through the agent, lftp uploads, downloads
// (sha256-compared) and lists, once with PASV, once with EPSV and once in
// active mode (PORT) (the audit shows which verb each run used, and only
// that one); then it
// interrupts a download it runs in the background ("kill all"): lftp sends
// ABOR, the edge audits the transfer aborted, and the same lftp lists the
// directory afterwards. The edge never connects to the FTP server itself.
func TestAgentLftp(t *testing.T) {
	s := newAgentSetupWith(t, allowLocal, "") // lftp's PORT names 127.0.0.1
	s.startAgent(t, "dc1", s.targets)
	be, g := s.be, s.g
	dir := t.TempDir()
	local := filepath.Join(dir, "up.bin")
	sum := ftptest.RandomFile(t, local, 16<<20)
	open := fmt.Sprintf("open -u %s,%s ftp://%s; ", be.User, be.Password, g.explicit)
	modes := []string{"PASV", "EPSV", "PORT", "EPRT"}
	for _, m := range []struct{ verb, set string }{
		{"PASV", "set ftp:prefer-epsv false; "},
		{"EPSV", "set ftp:prefer-epsv true; "},
		// Active mode on the client's side; the edge's side toward the
		// FTP server stays passive, through the agent.
		{"PORT", "set ftp:passive-mode false; "},
	} {
		used := map[string]int{}
		for _, v := range modes {
			used[v] = verbCount(t, g, v)
		}
		name := "lftp-" + m.verb + ".bin"
		down := filepath.Join(dir, name)
		ls := ftptest.Lftp(t, g.certs.CAFile, m.set+open+fmt.Sprintf("put %s -o %s; get %s -o %s; cls -1", local, name, name, down))
		if !strings.Contains(ls, name) {
			t.Fatalf("%s: LIST %q", m.verb, ls)
		}
		if ftptest.FileSHA256(t, down) != sum || ftptest.FileSHA256(t, filepath.Join(be.Root, name)) != sum {
			t.Fatalf("%s: files differ", m.verb)
		}
		// put, get and cls: three data connections, each opened by the
		// verb the run asked for.
		for _, v := range modes {
			n := verbCount(t, g, v) - used[v]
			if v == m.verb && n < 3 {
				t.Fatalf("%s run: %d %s commands audited, want at least 3", m.verb, n, v)
			}
			if v != m.verb && n != 0 {
				t.Fatalf("%s run: %d %s commands audited, want none", m.verb, n, v)
			}
		}
	}

	// ABOR: a download slowed to 1 MB/s, killed after two seconds.
	const size = 64 << 20
	ftptest.RandomFile(t, filepath.Join(be.Root, "abort.bin"), size)
	partial := filepath.Join(dir, "abort.part")
	abors := verbCount(t, g, "ABOR")
	ls := ftptest.Lftp(t, g.certs.CAFile, open+fmt.Sprintf(
		"set net:limit-rate 1048576; get abort.bin -o %s &; sleep 2; kill all; set net:limit-rate 0; cls -1", partial))
	if !strings.Contains(ls, "abort.bin") {
		t.Fatalf("LIST after the interrupted download: %q", ls)
	}
	if fi, err := os.Stat(partial); err == nil && fi.Size() >= size {
		t.Fatalf("the interrupted download is whole (%d bytes)", fi.Size())
	}
	if verbCount(t, g, "ABOR") == abors {
		t.Fatal("lftp's interrupted download sent no ABOR")
	}
	// The session that aborted went on: its next transfer is the LIST.
	var session any
	listed := false
	for _, e := range g.eventsOf(t, "transfer") {
		switch {
		case e["path"] == "/abort.bin" && e["result"] == "aborted":
			session = e["session"]
		case session != nil && e["session"] == session && e["verb"] == "LIST" && e["result"] == "complete":
			listed = true
		}
	}
	if session == nil || !listed {
		t.Fatalf("no aborted transfer of abort.bin audited, then a LIST in its session: %v", g.eventsOf(t, "transfer"))
	}
	s.guard.check(t)
}

// bigSize is the size of TestAgentGiB's file: FTPSGATE_AGENT_BIG_SIZE
// bytes if set, else 1 GiB, or 64 MiB under -short.
func bigSize(t *testing.T) int64 {
	t.Helper()
	if v := os.Getenv("FTPSGATE_AGENT_BIG_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("FTPSGATE_AGENT_BIG_SIZE=%q: want a positive number of bytes", v)
		}
		return n
	}
	if testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// TestAgentGiB: curl uploads 1 GiB through the agent (EPSV) and downloads
// it back, both sha256-compared; neither copy is left behind.
func TestAgentGiB(t *testing.T) {
	size := bigSize(t)
	s := newAgentSetup(t)
	s.startAgent(t, "dc1", s.targets)
	be, g := s.be, s.g
	dir := t.TempDir()
	local := filepath.Join(dir, "big.bin")
	sum := ftptest.RandomFile(t, local, size)
	stored := filepath.Join(be.Root, "big.bin")
	down := filepath.Join(dir, "big.down")
	t.Cleanup(func() { os.Remove(local); os.Remove(stored); os.Remove(down) })
	url := ftpURL("ftp", be.User, be.Password, g.explicit, "big.bin")
	// Generous bounds: 1 GiB each way through the edge and the agent,
	// both under -race, on a loaded machine.
	const timeout = 20 * time.Minute
	curl := func(args ...string) {
		t.Helper()
		ftptest.Run(t, timeout, "", ftptest.Tool(t, "curl"), append([]string{"--silent", "--show-error", "--fail",
			"--connect-timeout", "30", "--max-time", strconv.Itoa(int(timeout.Seconds())),
			"--ssl-reqd", "--cacert", g.certs.CAFile}, args...)...)
	}
	start := time.Now()
	curl("-T", local, url)
	up := time.Since(start)
	if ftptest.FileSHA256(t, stored) != sum {
		t.Fatal("the uploaded file differs")
	}
	os.Remove(local)
	start = time.Now()
	curl("-o", down, url)
	downTime := time.Since(start)
	if ftptest.FileSHA256(t, down) != sum {
		t.Fatal("the downloaded file differs")
	}
	mib := float64(size) / (1 << 20)
	t.Logf("%.0f MiB through the agent: up %s (%.1f MiB/s), down %s (%.1f MiB/s)",
		mib, up.Round(time.Millisecond), mib/up.Seconds(), downTime.Round(time.Millisecond), mib/downTime.Seconds())
	s.guard.check(t)
}
