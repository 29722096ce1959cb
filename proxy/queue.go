package proxy

import (
	"container/list"
	"sync"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// A backendQueue is the waiting room of one backend: it counts, for each
// of its servers, the sessions held (from the dial until the session's
// backend connection closes) and the connections being set up, and makes
// logins wait, first come first served, for a server within the backend's
// limits (config.BackendLimits: max_sessions, max_dials, each per server).
// It opens no socket and starts no goroutine; the session waits on a
// waiter's channel (session.waitTurn). One exists per backend name and
// outlives reloads, so that sessions of a replaced configuration still
// count against the servers they use.
type backendQueue struct {
	name string

	mu      sync.Mutex
	load    map[string]*serverLoad // by server address
	waiting list.List              // of *waiter, oldest first
}

// serverLoad is what one server has taken.
type serverLoad struct {
	sessions int // slots held: dialling, or connected until closed
	dials    int // connections being set up
}

// A waiter is one login waiting for a server. The queue grants it a
// session slot and a dial slot on one of servers, the first of them (in
// the session's order of preference) that has room.
type waiter struct {
	limits  config.BackendLimits // the session's snapshot's
	servers []*poolServer
	since   time.Time // when it came
	// grant receives the server granted, once; it is buffered so that
	// the queue never blocks.
	grant chan *poolServer
	elem  *list.Element // in waiting; nil once granted or gone
}

func newBackendQueue(name string) *backendQueue {
	return &backendQueue{name: name, load: map[string]*serverLoad{}}
}

// enter queues w behind everyone already waiting and grants what can be
// granted: w at once when it is first in line and a server has room.
func (q *backendQueue) enter(w *waiter) {
	w.grant = make(chan *poolServer, 1)
	q.mu.Lock()
	defer q.mu.Unlock()
	w.elem = q.waiting.PushBack(w)
	q.dispatch()
}

// leave takes w out of the line (it gave up: timeout, the client left, the
// server shuts down) and reports the server it was granted meanwhile, if
// any, whose slots are then the caller's to use or release.
func (q *backendQueue) leave(w *waiter) *poolServer {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.elem != nil {
		q.waiting.Remove(w.elem)
		w.elem = nil
		// Those behind w may now be first for a server w was blocking.
		q.dispatch()
		return nil
	}
	return <-w.grant
}

// dialed gives back the dial slot of a connection to addr whose setup
// ended, well or not.
func (q *backendQueue) dialed(addr string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.at(addr).dials--
	q.dispatch()
}

// release gives back the session slot on addr.
func (q *backendQueue) release(addr string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.at(addr)
	l.sessions--
	if l.sessions == 0 && l.dials == 0 {
		delete(q.load, addr) // a server a reload removed leaves no trace
	}
	q.dispatch()
}

// waitingCount is how many logins wait now.
func (q *backendQueue) waitingCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting.Len()
}

// snapshot returns the sessions held and the dials in flight by server,
// how many logins wait, and since when the first in line has.
func (q *backendQueue) snapshot() (loads map[string]serverLoad, waiting int, first time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	loads = make(map[string]serverLoad, len(q.load))
	for a, l := range q.load {
		loads[a] = *l
	}
	if e := q.waiting.Front(); e != nil {
		first = e.Value.(*waiter).since
	}
	return loads, q.waiting.Len(), first
}

// at is addr's load; under mu.
func (q *backendQueue) at(addr string) *serverLoad {
	l := q.load[addr]
	if l == nil {
		l = &serverLoad{}
		q.load[addr] = l
	}
	return l
}

// dispatch grants, in the order of the line, every waiter a server that
// has room for it: a waiter behind one that must wait goes first only when
// it can use a server the one before it cannot (another pool member, or
// looser limits from another configuration). Under mu.
func (q *backendQueue) dispatch() {
	for e := q.waiting.Front(); e != nil; {
		next := e.Next()
		w := e.Value.(*waiter)
		if ps := q.room(w); ps != nil {
			l := q.at(ps.addr)
			l.sessions++
			l.dials++
			q.waiting.Remove(e)
			w.elem = nil
			w.grant <- ps
		}
		e = next
	}
}

// room is the first of w's servers with room for it, or nil; under mu.
func (q *backendQueue) room(w *waiter) *poolServer {
	for _, ps := range w.servers {
		l := q.load[ps.addr]
		if l == nil {
			return ps
		}
		if (w.limits.MaxSessions <= 0 || l.sessions < w.limits.MaxSessions) &&
			(w.limits.MaxDials <= 0 || l.dials < w.limits.MaxDials) {
			return ps
		}
	}
	return nil
}
