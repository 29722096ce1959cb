package proxy

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// newTestRedisStorage is a redisStorage on rd with short lock timings.
func newTestRedisStorage(t *testing.T, rd *ftptest.Redis) *redisStorage {
	t.Helper()
	rs, err := newRedisStorage(&config.RedisState{Address: rd.Addr, Prefix: "t:"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rs.lockTTL, rs.lockPoll = 900*time.Millisecond, 20*time.Millisecond
	t.Cleanup(rs.close)
	return rs
}

// TestRedisStorage: certmagic's Storage semantics on a real redis-server:
// values, directories (a prefix of other keys), List flat and recursive,
// Delete of a directory, missing keys as fs.ErrNotExist.
func TestRedisStorage(t *testing.T) {
	rd := ftptest.StartRedis(t)
	rs := newTestRedisStorage(t, rd)
	ctx := context.Background()
	for _, k := range []string{"certificates/ca/ftp.test/ftp.test.crt", "certificates/ca/ftp.test/ftp.test.key",
		"certificates/ca/a.test/a.test.crt", "acme/ca/users/default/default.json", "certificatesx"} {
		if err := rs.Store(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := rs.Load(ctx, "certificates/ca/ftp.test/ftp.test.key"); err != nil || string(b) != "value of certificates/ca/ftp.test/ftp.test.key" {
		t.Fatalf("Load: %q, %v", b, err)
	}
	if _, err := rs.Load(ctx, "certificates/ca/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := rs.Load(ctx, "certificates/ca"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a directory: %v, want fs.ErrNotExist", err)
	}
	for _, tc := range []struct {
		key      string
		exists   bool
		terminal bool
	}{
		{"certificates/ca/ftp.test/ftp.test.crt", true, true},
		{"certificates/ca/ftp.test", true, false},
		{"certificates", true, false},
		{"certificates/c", false, false},
		{"certificatesx", true, true},
		{"nothing", false, false},
	} {
		info, err := rs.Stat(ctx, tc.key)
		if rs.Exists(ctx, tc.key) != tc.exists || (err == nil) != tc.exists || (tc.exists && info.IsTerminal != tc.terminal) {
			t.Errorf("%s: Exists %v, Stat %+v %v; want exists %v, terminal %v", tc.key, rs.Exists(ctx, tc.key), info, err, tc.exists, tc.terminal)
		}
		if tc.terminal && (info.Size == 0 || time.Since(info.Modified) > time.Minute) {
			t.Errorf("%s: Stat %+v", tc.key, info)
		}
	}
	flat, err := rs.List(ctx, "certificates/ca", false)
	if err != nil || !slices.Equal(flat, []string{"certificates/ca/a.test", "certificates/ca/ftp.test"}) {
		t.Fatalf("List flat: %v, %v", flat, err)
	}
	all, err := rs.List(ctx, "certificates", true)
	if err != nil || len(all) != 3 || slices.Contains(all, "certificatesx") {
		t.Fatalf("List recursive: %v, %v", all, err)
	}
	if _, err := rs.List(ctx, "nothing", true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of nothing: %v", err)
	}
	if err := rs.Delete(ctx, "certificates/ca/ftp.test"); err != nil {
		t.Fatal(err)
	}
	if rs.Exists(ctx, "certificates/ca/ftp.test/ftp.test.crt") || rs.Exists(ctx, "certificates/ca/ftp.test") ||
		!rs.Exists(ctx, "certificates/ca/a.test/a.test.crt") {
		t.Fatal("Delete of a directory removed too little or too much")
	}
	if err := rs.Delete(ctx, "nothing"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
}

// TestRedisStorageLock: a lock is exclusive across instances; its holder
// keeps it past its expiry by refreshing it; a holder that stops
// refreshing (crashed) loses it after the expiry, and another takes it;
// Unlock of a lock another took does not free it.
func TestRedisStorageLock(t *testing.T) {
	rd := ftptest.StartRedis(t)
	a, b := newTestRedisStorage(t, rd), newTestRedisStorage(t, rd)
	ctx := context.Background()
	if err := a.Lock(ctx, "issue_cert_ftp.test"); err != nil {
		t.Fatal(err)
	}
	// Held by a, refreshed: b waits in vain for three expiries.
	wait, cancel := context.WithTimeout(ctx, 3*a.lockTTL)
	err := b.Lock(wait, "issue_cert_ftp.test")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b took a's refreshed lock: %v", err)
	}
	if err := b.Lock(ctx, "issue_cert_other.test"); err != nil { // another name is free
		t.Fatal(err)
	}
	// a crashes: its refresher stops, the lock stays until it expires.
	a.mu.Lock()
	h := a.held["issue_cert_ftp.test"]
	a.mu.Unlock()
	h.stop()
	<-h.done
	start := time.Now()
	wait, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Lock(wait, "issue_cert_ftp.test"); err != nil {
		t.Fatalf("b never took a crashed holder's lock: %v", err)
	}
	if time.Since(start) > 10*a.lockTTL {
		t.Fatalf("b took the lock after %v; expiry %v", time.Since(start), a.lockTTL)
	}
	// a's late Unlock does not free b's lock.
	a.Unlock(ctx, "issue_cert_ftp.test")
	wait2, cancel2 := context.WithTimeout(ctx, 2*a.lockTTL)
	defer cancel2()
	if err := a.Lock(wait2, "issue_cert_ftp.test"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a took the lock b holds: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_ftp.test"); err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctx, "issue_cert_ftp.test"); err != nil {
		t.Fatalf("after b's Unlock: %v", err)
	}
}
