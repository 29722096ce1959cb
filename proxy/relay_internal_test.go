package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// recordingConn records each Write it is given, and passes it on when it
// wraps a connection.
type recordingConn struct {
	net.Conn
	writes [][]byte
	fail   error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	if c.Conn != nil {
		return c.Conn.Write(p)
	}
	return len(p), nil
}

// TestEOFConnCoalesces: between hold and flush, writes are gathered up to
// the buffer's capacity and leave in order, one send per buffer; a write
// larger than the buffer goes straight through after what was gathered; a
// failed send is reported by flush and by every later write; after flush,
// writes go straight through again.
func TestEOFConnCoalesces(t *testing.T) {
	chunk := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	tests := []struct {
		name   string
		writes [][]byte
		sends  []int // sizes of the underlying writes, flush included
	}{
		{"three fit", [][]byte{chunk('a', 30), chunk('b', 30), chunk('c', 30)}, []int{90}},
		{"fourth overflows", [][]byte{chunk('a', 30), chunk('b', 30), chunk('c', 30), chunk('d', 30)}, []int{90, 30}},
		{"one too big", [][]byte{chunk('a', 30), chunk('b', 150), chunk('c', 10)}, []int{30, 150, 10}},
		{"exactly full", [][]byte{chunk('a', 100)}, []int{100}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recordingConn{}
			c := &eofConn{Conn: rc}
			c.hold(make([]byte, 100))
			var want []byte
			for _, w := range tt.writes {
				if n, err := c.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
				want = append(want, w...)
			}
			if err := c.flush(); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var got []byte
			for _, w := range rc.writes {
				sizes = append(sizes, len(w))
				got = append(got, w...)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("bytes reordered or lost")
			}
			if len(sizes) != len(tt.sends) {
				t.Fatalf("sends %v, want %v", sizes, tt.sends)
			}
			for i := range sizes {
				if sizes[i] != tt.sends[i] {
					t.Fatalf("sends %v, want %v", sizes, tt.sends)
				}
			}
			c.Write([]byte("after"))
			if last := rc.writes[len(rc.writes)-1]; string(last) != "after" {
				t.Fatalf("a write after flush was held: last send %q", last)
			}
		})
	}
	t.Run("failure", func(t *testing.T) {
		boom := errors.New("boom")
		rc := &recordingConn{fail: boom}
		c := &eofConn{Conn: rc}
		c.hold(make([]byte, 100))
		if _, err := c.Write([]byte("gathered")); err != nil {
			t.Fatal(err)
		}
		if err := c.flush(); !errors.Is(err, boom) {
			t.Fatalf("flush = %v, want boom", err)
		}
		if _, err := c.Write([]byte("more")); !errors.Is(err, boom) {
			t.Fatalf("write after a failed send = %v, want boom", err)
		}
	})
}

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan net.Conn, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a, <-dialed
}

// relayToTLSClient relays what src yields to a real TLS client, as the
// proxy's leg toward a client does, and returns the relay's count, what
// the client received, and each send the relay made on the raw
// connection after the handshake.
func relayToTLSClient(t *testing.T, src net.Conn) (n int64, received []byte, sends [][]byte) {
	t.Helper()
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	cert, err := tls.LoadX509KeyPair(certs.CertFile, certs.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cliSrv, cliC := tcpPair(t)
	rc := &recordingConn{Conn: cliSrv}
	server := tls.Server(&eofConn{Conn: rc}, &tls.Config{Certificates: []tls.Certificate{cert}})
	client := tls.Client(cliC, certs.ClientConfig())
	defer client.Close()
	defer server.Close()
	deadline := time.Now().Add(time.Minute)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	got := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(client)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	if err := server.HandshakeContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := len(rc.writes)
	var total atomic.Int64
	n, err = relay(server, src, false, 30*time.Second, &total, nil, nil)
	if err != nil || total.Load() != n {
		t.Fatalf("relay = %d, %v (total %d)", n, err, total.Load())
	}
	sends = rc.writes[first:]
	server.Close()
	return n, <-got, sends
}

// TestRelayCoalescesTLSRecords relays 1 MiB from a plain connection to a
// real TLS client: every byte arrives in order, and the TLS records of
// each 64 KiB chunk leave in one send (about 16 sends, not 64 or more).
func TestRelayCoalescesTLSRecords(t *testing.T) {
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	srcW, srcR := tcpPair(t) // the backend's plain leg
	go func() {
		srcW.Write(payload)
		srcW.Close()
	}()
	n, got, sends := relayToTLSClient(t, srcR)
	if n != int64(len(payload)) || !bytes.Equal(got, payload) {
		t.Fatalf("relayed %d, client received %d bytes, not the %d sent, or not in order", n, len(got), len(payload))
	}
	// 16 chunks of 64 KiB at best; reads may return less than a chunk, so
	// allow twice that, still far under the 64 records' worth of sends.
	if len(sends) > 32 {
		t.Fatalf("%d sends for 1 MiB: records were not coalesced", len(sends))
	}
	t.Logf("1 MiB relayed in %d sends", len(sends))
}

// TestRelayBuffersGrowForBulk: a transfer reads in 64 KiB chunks until it
// has moved bulkAfter bytes, then in 256 KiB ones (issue 22); a listing
// or a small file never takes the large buffers. The source hands out
// whole chunks (a pipe written at once), so each send toward the TLS
// client carries the records of one read: their size shows the buffer.
// Every byte arrives in order, across the change of buffers too.
func TestRelayBuffersGrowForBulk(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		bulk bool // sends larger than a 64 KiB chunk's records
	}{
		{"small", 1 << 20, false},
		{"just under", bulkAfter - 1, false},
		{"bulk", bulkAfter + 8<<20 + 12345, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			rand.Read(payload)
			srcW, srcR := net.Pipe()
			go func() {
				srcW.Write(payload)
				srcW.Close()
			}()
			n, got, sends := relayToTLSClient(t, srcR)
			if n != int64(len(payload)) || !bytes.Equal(got, payload) {
				t.Fatalf("relayed %d, client received %d bytes, not the %d sent, or not in order", n, len(got), len(payload))
			}
			largest := 0
			for _, w := range sends {
				largest = max(largest, len(w))
			}
			if grew := largest > sealedSize(relayBufferSize); grew != tc.bulk {
				t.Fatalf("largest send %d bytes: the buffers grew %v, want %v", largest, grew, tc.bulk)
			}
			if tc.bulk && largest < bulkBufferSize {
				t.Fatalf("largest send %d bytes, want a whole %d-byte chunk's records", largest, bulkBufferSize)
			}
		})
	}
}

// heldConn plays a TLS connection for readHeld: it hands out held chunks
// without waiting, then its end (a held close_notify) if it has one; else
// a read under a past deadline times out as net.Conn reads do.
type heldConn struct {
	net.Conn
	held     [][]byte
	end      error // after the held chunks, when the deadline allows
	deadline time.Time
}

func (c *heldConn) SetReadDeadline(t time.Time) error { c.deadline = t; return nil }

func (c *heldConn) Read(p []byte) (int, error) {
	if len(c.held) > 0 {
		n := copy(p, c.held[0])
		c.held = c.held[1:]
		return n, nil
	}
	if c.end != nil {
		return 0, c.end
	}
	if !c.deadline.IsZero() && c.deadline.Before(time.Now()) {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return 0, errors.New("heldConn: a read would have waited")
}

// TestReadHeld: after a read from a TLS client, the records it holds are
// taken without waiting, up to the buffer's room for a whole record; a
// timeout only ends the gathering, while an end or an error is passed on.
func TestReadHeld(t *testing.T) {
	rec := bytes.Repeat([]byte("r"), maxRecord)
	boom := errors.New("boom")
	tests := []struct {
		name   string
		bufLen int
		held   int   // records held after the first
		end    error // what comes after them
		want   int   // records in the result
		err    error
	}{
		{"three held", 4 * maxRecord, 3, nil, 4, nil},
		{"room for one more only", 2 * maxRecord, 3, nil, 2, nil},
		{"nothing held", 4 * maxRecord, 0, nil, 1, nil},
		{"end after the held", 4 * maxRecord, 1, io.EOF, 2, io.EOF},
		{"buffer full", maxRecord, 3, nil, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &heldConn{end: tt.end}
			for range tt.held {
				c.held = append(c.held, rec)
			}
			buf := make([]byte, tt.bufLen)
			copy(buf, rec)
			n, err := readHeld(c, buf, maxRecord, nil)
			if n != tt.want*maxRecord || !errors.Is(err, tt.err) {
				t.Fatalf("readHeld = %d bytes, %v; want %d records, %v", n, err, tt.want, tt.err)
			}
		})
	}
	t.Run("error passed on", func(t *testing.T) {
		c := &errConn{err: boom}
		if n, err := readHeld(c, make([]byte, 4*maxRecord), 10, nil); n != 10 || !errors.Is(err, boom) {
			t.Fatalf("readHeld = %d, %v; want 10, boom", n, err)
		}
	})
	t.Run("first read's error kept", func(t *testing.T) {
		if n, err := readHeld(&heldConn{}, make([]byte, 4*maxRecord), 10, io.EOF); n != 10 || err != io.EOF {
			t.Fatalf("readHeld = %d, %v; want 10, EOF", n, err)
		}
	})
}

type errConn struct {
	net.Conn
	err error
}

func (c *errConn) SetReadDeadline(time.Time) error { return nil }
func (c *errConn) Read([]byte) (int, error)        { return 0, c.err }
