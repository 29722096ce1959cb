package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// TestBackendQueue plays scripts against a backend's queue: logins enter
// ("+name server…", with its limits), leave ("-name"), finish their
// connection setup ("dialed server") or their session ("release
// server"); after each step the logins granted so far, in order, and the
// load must be as written. It checks first come first served, a place
// freed by a login that left, a later login served first only on a
// server the earlier one cannot use (another pool member, or its own
// configuration's limits after a reload), the dial bound apart from the
// session bound, and a grant made as its login left.
func TestBackendQueue(t *testing.T) {
	one := config.BackendLimits{MaxSessions: 1, MaxDials: 8}
	two := config.BackendLimits{MaxSessions: 2, MaxDials: 8}
	dials := config.BackendLimits{MaxDials: 2} // sessions unbounded
	type step struct {
		do      string
		limits  config.BackendLimits
		granted string // logins granted so far: "a=x b=y"
		load    string // "x:sessions/dials …", sorted by server
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first come first served", []step{
			{"+a x", one, "a=x", "x:1/1"},
			{"dialed x", one, "a=x", "x:1/0"},
			{"+b x", one, "a=x", "x:1/0"},
			{"+c x", one, "a=x", "x:1/0"},
			{"release x", one, "a=x b=x", "x:1/1"},
			{"dialed x", one, "a=x b=x", "x:1/0"},
			{"release x", one, "a=x b=x c=x", "x:1/1"},
			{"dialed x", one, "a=x b=x c=x", "x:1/0"},
			{"release x", one, "a=x b=x c=x", ""},
		}},
		{"a login that leaves frees its place", []step{
			{"+a x", one, "a=x", "x:1/1"},
			{"+b x", one, "a=x", "x:1/1"},
			{"+c x", one, "a=x", "x:1/1"},
			{"-b", one, "a=x", "x:1/1"},
			{"dialed x", one, "a=x", "x:1/0"},
			{"release x", one, "a=x c=x", "x:1/1"},
		}},
		{"limits of another configuration", []step{
			{"+a x", two, "a=x", "x:1/1"},
			{"dialed x", two, "a=x", "x:1/0"},
			{"+b x", one, "a=x", "x:1/0"}, // b's configuration allows one session
			{"+c x", two, "a=x c=x", "x:2/1"},
			{"dialed x", two, "a=x c=x", "x:2/0"},
			{"+d x", two, "a=x c=x", "x:2/0"},
			{"release x", two, "a=x c=x d=x", "x:2/1"}, // d may take x at two; b, first, may not
			{"dialed x", two, "a=x c=x d=x", "x:2/0"},
			{"release x", two, "a=x c=x d=x", "x:1/0"},
			{"release x", two, "a=x c=x d=x b=x", "x:1/1"},
		}},
		{"the pool's next server", []step{
			{"+a x", one, "a=x", "x:1/1"},
			{"dialed x", one, "a=x", "x:1/0"},
			{"+b x", one, "a=x", "x:1/0"},             // has tried y: waits for x
			{"+c x y", one, "a=x c=y", "x:1/0 y:1/1"}, // prefers x, takes y at once
			{"dialed y", one, "a=x c=y", "x:1/0 y:1/0"},
			{"release y", one, "a=x c=y", "x:1/0"},
			{"release x", one, "a=x c=y b=x", "x:1/1"},
		}},
		{"dials bounded apart from sessions", []step{
			{"+a x", dials, "a=x", "x:1/1"},
			{"+b x", dials, "a=x b=x", "x:2/2"},
			{"+c x", dials, "a=x b=x", "x:2/2"},
			{"dialed x", dials, "a=x b=x c=x", "x:3/2"},
			{"release x", dials, "a=x b=x c=x", "x:2/2"},
		}},
		{"granted while leaving", []step{
			{"+a x", one, "a=x", "x:1/1"},
			{"dialed x", one, "a=x", "x:1/0"},
			{"+b x", one, "a=x", "x:1/0"},
			{"release x", one, "a=x b=x", "x:1/1"},
			{"-b", one, "a=x b=x", "x:1/1"}, // leave returns the grant: the slots stay the caller's
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newBackendQueue("b")
			servers := map[string]*poolServer{}
			server := func(addr string) *poolServer {
				if servers[addr] == nil {
					servers[addr] = &poolServer{addr: addr}
				}
				return servers[addr]
			}
			waiters := map[string]*waiter{}
			var granted []string
			seen := map[string]bool{}
			for i, st := range tc.steps {
				f := strings.Fields(st.do)
				switch {
				case f[0][0] == '+':
					w := &waiter{limits: st.limits}
					for _, a := range f[1:] {
						w.servers = append(w.servers, server(a))
					}
					waiters[f[0][1:]] = w
					q.enter(w)
				case f[0][0] == '-':
					name := f[0][1:]
					ps := q.leave(waiters[name])
					if want := seen[name]; (ps != nil) != want {
						t.Fatalf("step %d: %s left with %v; granted before: %v", i, name, ps, want)
					}
					delete(waiters, name)
				case f[0] == "dialed":
					q.dialed(f[1])
				case f[0] == "release":
					q.release(f[1])
				}
				// The grants this step made (one at most in these
				// scripts, so the order of the list is the order made).
				for _, name := range []string{"a", "b", "c", "d"} {
					w := waiters[name]
					if w == nil || seen[name] {
						continue
					}
					select {
					case ps := <-w.grant:
						granted = append(granted, name+"="+ps.addr)
						seen[name] = true
						w.grant <- ps // as the queue left it, for a later leave
					default:
					}
				}
				if got := strings.Join(granted, " "); got != st.granted {
					t.Fatalf("step %d (%s): granted %q, want %q", i, st.do, got, st.granted)
				}
				loads, _, _ := q.snapshot()
				var parts []string
				for _, a := range []string{"x", "y"} {
					if l, ok := loads[a]; ok {
						parts = append(parts, fmt.Sprintf("%s:%d/%d", a, l.sessions, l.dials))
					}
				}
				if got := strings.Join(parts, " "); got != st.load {
					t.Fatalf("step %d (%s): load %q, want %q", i, st.do, got, st.load)
				}
			}
		})
	}
}
