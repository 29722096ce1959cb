package agent

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestConnFrames: what a Conn's reader makes of each frame sequence a peer
// may send, hostile ones included.
func TestConnFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wire  []byte
		data  string
		isErr func(error) bool
	}{
		{"data then FIN", []byte("D\x00\x03abcD\x00\x02deF"), "abcde", func(err error) bool { return err == nil }},
		{"data then reset", []byte("D\x00\x03abcR"), "abc", func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"empty data frame", []byte("D\x00\x00"), "", func(err error) bool { return errors.Is(err, errProtocol) }},
		{"unknown type", []byte("D\x00\x01aX"), "a", func(err error) bool { return errors.Is(err, errProtocol) }},
		{"cut inside a frame", []byte("D\x00\x09abc"), "abc", func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"no end frame", []byte("D\x00\x01a"), "a", func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }}, // the agent went away: not a clean end
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() { b.Write(tc.wire); b.Close() }()
			c := newConn(a, bufio.NewReader(a), nil)
			got, err := io.ReadAll(c)
			if string(got) != tc.data || !tc.isErr(err) {
				t.Fatalf("read %q, %v", got, err)
			}
		})
	}
}

// TestConnWrites: writes become frames of at most 65535 bytes; CloseWrite
// ends them with 'F', Reset with 'R', once; a write after either fails.
func TestConnWrites(t *testing.T) {
	a, b := net.Pipe()
	var wire bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&wire, b); close(done) }()
	c := newConn(a, bufio.NewReader(a), nil)
	payload := bytes.Repeat([]byte("z"), 70000)
	if n, err := c.Write(payload); n != len(payload) || err != nil {
		t.Fatal(n, err)
	}
	c.CloseWrite()
	c.Reset() // too late: the direction ended with F
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after CloseWrite")
	}
	<-done
	w := wire.Bytes()
	want := append([]byte{'D', 0xFF, 0xFF}, payload[:65535]...)
	rest := 70000 - 65535
	want = append(want, 'D', byte(rest>>8), byte(rest))
	want = append(append(want, payload[65535:]...), 'F')
	if !bytes.Equal(w, want) {
		t.Fatalf("wire of %d bytes, want %d", len(w), len(want))
	}
}

// TestBackoff: waits stay within [min/2, max+min/2) and grow with failures.
func TestBackoff(t *testing.T) {
	minW, maxW := 100*time.Millisecond, 2*time.Second
	for failures := 0; failures < 40; failures++ {
		for range 50 {
			d := backoff(minW, maxW, failures)
			if d < minW/2 || d >= maxW+minW/2 {
				t.Fatalf("failures %d: %s", failures, d)
			}
		}
	}
}
