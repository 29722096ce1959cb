package proxy

import (
	"crypto/tls"
	"slices"
	"sync"
)

// sessionCache is one client session's TLS session cache toward its
// backend, shared by the backend control connection and its data
// connections, so that data connections resume the control session as
// vsftpd's require_ssl_reuse (its default) and ProFTPD demand. One cache
// per session: a cache shared across sessions would resume another
// session's TLS session. The key Go passes (ServerName, or the address with
// its port, which differs on every data connection) is ignored: a cache
// serves one backend.
//
// OpenSSL servers may accept each TLS 1.3 ticket once, so the cache keeps
// the last few tickets and hands out the least used, newest first.
type sessionCache struct {
	mu      sync.Mutex
	entries []*cacheEntry // oldest first
	last    *cacheEntry   // the entry Get returned last
}

type cacheEntry struct {
	cs   *tls.ClientSessionState
	uses int
}

// maxCachedSessions bounds a session cache.
const maxCachedSessions = 8

func (c *sessionCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *cacheEntry
	for i := len(c.entries) - 1; i >= 0; i-- {
		if e := c.entries[i]; best == nil || e.uses < best.uses {
			best = e
		}
	}
	if best == nil {
		return nil, false
	}
	best.uses++
	c.last = best
	return best.cs, true
}

// Put adds a session; nil (Go's "forget this session") drops the one
// handed out last.
func (c *sessionCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs == nil {
		if c.last != nil {
			c.entries = slices.DeleteFunc(c.entries, func(e *cacheEntry) bool { return e == c.last })
			c.last = nil
		}
		return
	}
	if len(c.entries) == maxCachedSessions {
		c.entries = slices.Delete(c.entries, 0, 1)
	}
	c.entries = append(c.entries, &cacheEntry{cs: cs})
}
