package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a state, bounded by deadline
	}
}

// TestSinkStalledReader (issue 24, item 8): a pipe nobody reads never
// blocks the writers of events; the queue takes what it can, the rest is
// dropped, counted and logged once (rate-limited), and the sink reports
// itself unhealthy. Once the reader reads again, the queued lines arrive
// whole and in order.
func TestSinkStalledReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	core, logs := observer.New(zap.DebugLevel)
	opt := Options{Log: zap.New(core), QueueLines: 16, StallTimeout: 100 * time.Millisecond, ErrorLogInterval: time.Hour}
	opt.defaults()
	s := newSink("audit", newTarget("pipe", w), opt)
	go s.run()
	defer func() { // bounded: a failed test must not wait on a stuck writer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.close(ctx)
	}()
	defer w.Close()

	// Write until the pipe is full and the queue too: how soon that is
	// depends on when the writer runs, so the loop lets it run now and
	// then, and is bounded in lines and time.
	pad := strings.Repeat("x", 1000)
	start := time.Now()
	n := 0
	for st := s.stats(); s.health() == nil || st.Queued != 16 || st.Dropped == 0; st = s.stats() {
		if n == 100000 || time.Since(start) > 30*time.Second {
			t.Fatalf("%d lines of 1 KiB in %s: the pipe never filled: %+v", n, time.Since(start), s.stats())
		}
		fmt.Fprintf(s, "%d %s\n", n, pad)
		n++
		if n%64 == 0 {
			time.Sleep(time.Millisecond) // the writer's turn, bounded above
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("%d writes took %s: they block", n, d)
	}
	if got := logs.FilterMessage("audit lines dropped").Len(); got != 1 {
		t.Fatalf("%d log lines about drops, want 1 (rate-limited)", got)
	}
	e := logs.FilterMessage("audit lines dropped").All()[0].ContextMap()
	if e["sink"] != "audit" || e["reason"] != "queue full" {
		t.Fatalf("drop log line %v", e)
	}

	// The reader comes back: what was taken arrives, whole and in order.
	got := make(chan []string)
	go func() {
		var lines []string
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		got <- lines
	}()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.health(); err != nil {
		t.Fatalf("drained, but unhealthy: %v", err)
	}
	st := s.stats()
	w.Close()
	lines := <-got
	if uint64(len(lines)) != st.Written || st.Written+st.Dropped != uint64(n) {
		t.Fatalf("%d lines read, %+v", len(lines), st)
	}
	last := -1
	for _, l := range lines {
		i, err := strconv.Atoi(strings.TrimSuffix(l, " "+pad))
		if err != nil || i <= last {
			t.Fatalf("line %q after %d", l, last)
		}
		last = i
	}
}

// TestFullDisk (issue 24, item 9): on a full filesystem (a real tmpfs), no
// partial line is left in either file; the failure is logged once,
// structured, and counted; the lines wait in the queue, and once space
// returns they are all written, each whole.
func TestFullDisk(t *testing.T) {
	// Room, once the filler goes, for every line the loop below may queue
	// (at most 2000 events of under 600 bytes each, in both files).
	dir := ftptest.Tmpfs(t, 4<<20)
	core, logs := observer.New(zap.DebugLevel)
	auditPath, xferPath := filepath.Join(dir, "audit.log"), filepath.Join(dir, "xferlog")
	l, files, err := Open(auditPath, xferPath, Options{Log: zap.New(core), ErrorLogInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	events := 0
	transfer := func() {
		s := l.Session(fmt.Sprintf("s%04d", events))
		s.Command(rewrite.Command{Verb: "RETR", Arg: fmt.Sprintf("file %d with a long name, to fill pages quickly.bin", events)})
		s.Transfer(Transfer{Verb: "RETR", Direction: "download", Path: fmt.Sprintf("file %d.bin", events), File: true,
			Bytes: int64(events), Result: "complete", Client: "192.0.2.1", User: "alice", Binary: true})
		events++
	}
	for range 10 {
		transfer()
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	filler := ftptest.Fill(t, dir)

	// The files' last pages have room for a few lines; then a write
	// comes up short.
	stats := func(i int) SinkStats { return l.Stats()[i] }
	for stats(0).WriteErrors == 0 || stats(1).WriteErrors == 0 {
		if events > 2000 {
			t.Fatalf("no write error after %d events on a full disk: %+v", events, l.Stats())
		}
		transfer()
		if events%50 == 0 {
			waitFor(t, "the writers to catch up", func() bool { return stats(0).Queued == 0 || stats(0).WriteErrors > 0 })
		}
	}
	if l.Health() == nil {
		t.Fatal("writes fail, but the audit is healthy")
	}
	// No partial line is left: read under the targets' locks, which a
	// write and its cutting off hold.
	for _, s := range files.sinks {
		s.t.mu.Lock()
	}
	err = filesError(auditPath, xferPath, -1)
	for _, s := range files.sinks {
		s.t.mu.Unlock()
	}
	if err != nil {
		t.Fatal(err)
	}
	// Both files share the disk: one file's cut-back line frees room in
	// which the other's retry may succeed, and then fail again. Each
	// episode is logged once when it starts and once when it ends
	// (checked below), not once per failed write.
	failed := func(sink string) []observer.LoggedEntry {
		return logs.FilterMessage("audit write failed; retrying, new lines are queued").FilterField(zap.String("sink", sink)).All()
	}
	for _, sink := range []string{"audit", "xferlog"} {
		fl := failed(sink)
		if len(fl) == 0 {
			t.Fatalf("%s: no failure logged", sink)
		}
		for _, e := range fl {
			if !strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "no space left on device") {
				t.Fatalf("%s: failure log line %v", sink, e)
			}
		}
	}

	// Space returns: the queued lines go out, all of them, whole.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.Health(); err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"audit", "xferlog"} {
		resumed := logs.FilterMessage("audit writes resumed").FilterField(zap.String("sink", sink)).Len()
		if n := len(failed(sink)); resumed != n {
			t.Fatalf("%s: %d failures logged, %d resumptions: %v", sink, n, resumed, logs.All())
		}
	}
	checkFiles(t, auditPath, xferPath, events)
	for _, st := range l.Stats() {
		if st.Dropped != 0 {
			t.Fatalf("lines dropped: %+v", st)
		}
	}
}

// checkFiles fails unless every line of the audit file is a JSON object
// and every xferlog line has 18 fields, and (n ≥ 0) they hold n transfers.
func checkFiles(t *testing.T, auditPath, xferPath string, n int) {
	t.Helper()
	if err := filesError(auditPath, xferPath, n); err != nil {
		t.Fatal(err)
	}
}

func filesError(auditPath, xferPath string, n int) error {
	b, err := os.ReadFile(auditPath)
	if err != nil {
		return err
	}
	if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
		return fmt.Errorf("%s ends in a partial line: %q", auditPath, b[max(0, len(b)-200):])
	}
	transfers := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return fmt.Errorf("%s: line %q: %v", auditPath, line, err)
		}
		if m["event"] == EventTransfer {
			transfers++
		}
	}
	x, err := os.ReadFile(xferPath)
	if err != nil {
		return err
	}
	if len(x) > 0 && !bytes.HasSuffix(x, []byte("\n")) {
		return fmt.Errorf("%s ends in a partial line: %q", xferPath, x[max(0, len(x)-200):])
	}
	xlines := strings.Split(strings.TrimSuffix(string(x), "\n"), "\n")
	for _, line := range xlines {
		if f := strings.Fields(line); len(f) != 18 {
			return fmt.Errorf("%s: line %q has %d fields", xferPath, line, len(f))
		}
	}
	if n >= 0 && (transfers != n || len(xlines) != n) {
		return fmt.Errorf("%d transfer events and %d xferlog lines, want %d", transfers, len(xlines), n)
	}
	return nil
}

// TestCloseFlushes: Close writes every queued line before it closes the
// file; a line logged after Close is dropped and counted.
func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, files, err := Open(path, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		l.Session("s").Reply(strconv.Itoa(i), 200)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	l.Session("s").Reply("late", 200)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if got := bytes.Count(b, []byte("\n")); got != n {
		t.Fatalf("%d lines after Close, want %d", got, n)
	}
	if st := l.Stats()[0]; st.Dropped != 1 || st.Written != n {
		t.Fatalf("%+v", st)
	}
}
