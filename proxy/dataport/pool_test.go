package dataport

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freeRange finds n consecutive ports that can be bound now.
func freeRange(t *testing.T, n int) (uint16, uint16) {
	first, last := ftptest.FreePortRange(t, n)
	return uint16(first), uint16(last)
}

func TestExhaustAndRelease(t *testing.T) {
	first, last := freeRange(t, 4)
	p := New(first, last)
	seen := map[uint16]bool{}
	var ls []*Listener
	for i := 0; i < 4; i++ {
		l, err := p.Listen(loopback)
		if err != nil {
			t.Fatal(err)
		}
		if l.Port() < first || l.Port() > last || seen[l.Port()] {
			t.Fatalf("port %d out of range or reused", l.Port())
		}
		seen[l.Port()] = true
		ls = append(ls, l)
	}
	if _, err := p.Listen(loopback); !errors.Is(err, ErrExhausted) {
		t.Fatalf("fifth listen: %v, want ErrExhausted", err)
	}
	if p.InUse() != 4 {
		t.Fatalf("in use %d", p.InUse())
	}
	ls[2].Close()
	ls[2].Close() // twice is safe and releases once
	if p.InUse() != 3 {
		t.Fatalf("in use after close %d", p.InUse())
	}
	l, err := p.Listen(loopback)
	if err != nil || l.Port() != ls[2].Port() {
		t.Fatalf("after release: %v %v", l, err)
	}
	for _, l := range append(ls, l) {
		l.Close()
	}
	if p.InUse() != 0 {
		t.Fatalf("leak: %d in use", p.InUse())
	}
}

// TestPortsHeldElsewhereAreSkipped: a port bound by another process is
// passed over, not reported as exhaustion.
func TestPortsHeldElsewhereAreSkipped(t *testing.T) {
	first, last := freeRange(t, 3)
	var held []net.Listener
	for p := first; p < last; p++ {
		l, err := net.Listen("tcp4", netip.AddrPortFrom(loopback, p).String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	p := New(first, last)
	for i := 0; i < 5; i++ {
		l, err := p.Listen(loopback)
		if err != nil || l.Port() != last {
			t.Fatalf("got %v %v, want port %d", l, err, last)
		}
		l.Close()
	}
}

func TestRandomOrder(t *testing.T) {
	p := New(40000, 49999)
	// With every bind failing the pool gives up after maxTries; the ports
	// it tried must be distinct and not a sequential walk.
	ports := map[uint16]bool{}
	p.ListenTCP = func(_ string, a *net.TCPAddr) (*net.TCPListener, error) {
		ports[uint16(a.Port)] = true
		return nil, syscall.EADDRINUSE
	}
	if _, err := p.Listen(loopback); !errors.Is(err, ErrExhausted) {
		t.Fatalf("err %v", err)
	}
	if len(ports) != maxTries {
		t.Fatalf("tried %d ports, want %d distinct", len(ports), maxTries)
	}
	var min, max uint16 = 65535, 0
	for port := range ports {
		min, max = minU(min, port), maxU(max, port)
	}
	if max-min < 1000 {
		t.Fatalf("ports tried span only %d..%d: not random", min, max)
	}
	if p.InUse() != 0 {
		t.Fatalf("failed binds leaked %d ports", p.InUse())
	}
}

func minU(a, b uint16) uint16 {
	if a < b {
		return a
	}
	return b
}

func maxU(a, b uint16) uint16 {
	if a > b {
		return a
	}
	return b
}
