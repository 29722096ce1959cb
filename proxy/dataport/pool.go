// Package dataport hands out passive data ports from a fixed range: chosen
// at random, one owner at a time, released when the owner closes the
// listener. It knows nothing of FTP.
package dataport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// ErrExhausted reports that every port of the range is taken.
var ErrExhausted = errors.New("passive port range exhausted")

// maxTries bounds how many ports Listen tries before it gives up; ports the
// pool thinks free may be held by other processes.
const maxTries = 64

// Pool is a range of TCP ports. Its methods are safe for concurrent use.
type Pool struct {
	first, last uint16

	// ListenTCP opens a listener; nil means net.ListenTCP. A seam for
	// tests.
	ListenTCP func(network string, laddr *net.TCPAddr) (*net.TCPListener, error)

	mu    sync.Mutex
	inUse map[uint16]struct{} // ports with an open Listener
}

// New returns a pool of the ports first through last inclusive.
func New(first, last uint16) *Pool {
	if last < first {
		first, last = last, first
	}
	return &Pool{first: first, last: last, inUse: make(map[uint16]struct{})}
}

// Size is the number of ports in the range.
func (p *Pool) Size() int { return int(p.last) - int(p.first) + 1 }

// InUse is the number of ports held by open listeners.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inUse)
}

// Listen opens a TCP listener on ip and a random free port of the range.
// The port returns to the pool when the listener is closed.
func (p *Pool) Listen(ip netip.Addr) (*Listener, error) {
	listen := p.ListenTCP
	if listen == nil {
		listen = net.ListenTCP
	}
	network := "tcp4"
	if ip.Is6() && !ip.Is4In6() {
		network = "tcp6"
	}
	ip = ip.Unmap()
	var lastErr error
	var busy []uint16 // held by other processes: kept reserved until we return
	defer func() {
		for _, port := range busy {
			p.release(port)
		}
	}()
	for try := 0; try < maxTries; try++ {
		port, ok := p.reserve()
		if !ok {
			return nil, ErrExhausted
		}
		l, err := listen(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		if err != nil {
			lastErr = err
			if errors.Is(err, syscall.EADDRINUSE) {
				busy = append(busy, port) // try another, never this one again
				continue
			}
			p.release(port)
			return nil, fmt.Errorf("passive listen on %s: %w", netip.AddrPortFrom(ip, port), err)
		}
		return &Listener{TCPListener: l, pool: p, port: port}, nil
	}
	return nil, fmt.Errorf("%w: %d ports tried, last error: %w", ErrExhausted, maxTries, lastErr)
}

// reserve marks a random free port as used. It starts at a random offset
// and walks the range, so a nearly full range still finds the free port.
func (p *Pool) reserve() (uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.Size()
	if len(p.inUse) >= n {
		return 0, false
	}
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		port := p.first + uint16((start+i)%n)
		if _, used := p.inUse[port]; !used {
			p.inUse[port] = struct{}{}
			return port, true
		}
	}
	return 0, false
}

func (p *Pool) release(port uint16) {
	p.mu.Lock()
	delete(p.inUse, port)
	p.mu.Unlock()
}

// Listener is a passive listener holding one port of a Pool.
type Listener struct {
	*net.TCPListener
	pool *Pool
	port uint16

	once sync.Once
}

var _ net.Listener = (*Listener)(nil)

// Port is the listener's port.
func (l *Listener) Port() uint16 { return l.port }

// Close closes the listener and returns its port to the pool. It is safe to
// call more than once.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.TCPListener.Close()
		l.pool.release(l.port)
	})
	return err
}
