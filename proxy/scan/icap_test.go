package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var eicar = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)

// pattern is the body TestCICAPReplies sent for its echo rows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 % 251)
	}
	return b
}

// TestICAPVerdicts: the replies of c-icap 0.5.10 with virus_scan 0.5.5
// and clamd 1.4.6 (Debian bookworm), captured by TestCICAPReplies
// -update-icap, each read as the answer to the body that was sent; then
// hostile and unusual replies.
func TestICAPVerdicts(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "c-icap", name+".icap"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const (
		clean = iota
		infected
		statusErr
		protoErr
	)
	text := []byte("just a text file\n")
	eicarReply := read("eicar")
	for _, tc := range []struct {
		name  string
		reply string
		sent  []byte
		want  int
		sig   string
	}{
		{"c-icap: 204 for a small clean file", read("clean-204"), text, clean, ""},
		{"c-icap: 204 for an empty file", read("empty-204"), nil, clean, ""},
		{"c-icap: EICAR, 200 with a 403 page and X-Infection-Found", eicarReply, eicar, infected, "Eicar-Test-Signature.UNOFFICIAL"},
		{"c-icap: EICAR without Allow: 204", read("eicar-no204"), eicar, infected, "Eicar-Test-Signature.UNOFFICIAL"},
		{"c-icap: 8 KiB echoed unchanged", read("echo-8k"), pattern(8 << 10), clean, ""},
		{"c-icap: 100 Continue, then the echo", read("preview-echo-8k"), pattern(8 << 10), clean, ""},
		{"c-icap: echo of another body", read("echo-8k"), pattern(8<<10 - 1), infected, "unnamed: the ICAP server replaced the file"},
		{"c-icap: echo of a body that differs in one byte", read("echo-8k"), append(pattern(8<<10-1), 0), infected, "unnamed: the ICAP server replaced the file"},
		{"c-icap: no such service", read("no-such-service"), text, statusErr, ""},
		{"c-icap: clamd down", read("clamd-down"), text, statusErr, ""},
		// Other servers' ways of saying it.
		{"403 without a name", "ICAP/1.0 403 Forbidden\r\nEncapsulated: null-body=0\r\n\r\n", eicar, infected, "unnamed: the ICAP server answered 403"},
		{"403 with X-Virus-ID", "ICAP/1.0 403 Forbidden\r\nX-Virus-ID: Win.Test.EICAR\r\n\r\n", eicar, infected, "Win.Test.EICAR"},
		{"204 with X-Infection-Found", "ICAP/1.0 204 No Content\r\nX-Infection-Found: Type=0; Resolution=2; Threat=EICAR;\r\n\r\n", eicar, infected, "EICAR"},
		{"X-Infection-Found without Threat", "ICAP/1.0 204 No Content\r\nX-Infection-Found: Type=0; Resolution=2;\r\n\r\n", eicar, infected, "unnamed (X-Infection-Found)"},
		{"X-Violations-Found with spaces in the threat", "ICAP/1.0 204 No Content\r\nX-Violations-Found: 1\r\n\tfile.bin\r\n\tSecret Document\r\n\t0\r\n\t2\r\n\r\n", text, infected, "Secret Document"},
		{"X-Violations-Found: 0", "ICAP/1.0 204 No Content\r\nX-Violations-Found: 0\r\n\r\n", text, clean, ""},
		{"200 with another HTTP status", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, null-body=21\r\n\r\nHTTP/1.1 451 Nope\r\n\r\n", text, infected, "unnamed: the ICAP server answered HTTP 451"},
		{"200 without a body", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, null-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", text, infected, "unnamed: the ICAP server replaced the file"},
		{"bare LF line ends", "ICAP/1.0 204 No Content\nISTag: x\n\n", text, clean, ""},
		{"503", "ICAP/1.0 503 Service Overloaded\r\n\r\n", text, statusErr, ""},
		{"100 at the end", "ICAP/1.0 100 Continue\r\n\r\n", text, protoErr, ""},
		// Hostile replies: errors, never a panic or a large allocation.
		{"empty", "", text, protoErr, ""},
		{"HTTP, not ICAP", "HTTP/1.1 200 OK\r\n\r\n", text, protoErr, ""},
		{"status not a number", "ICAP/1.0 2x4 No\r\n\r\n", text, protoErr, ""},
		{"status of four digits", "ICAP/1.0 2040 No\r\n\r\n", text, protoErr, ""},
		{"status line only", "ICAP/1.0 204 No Content\r\n", text, protoErr, ""},
		{"header line without colon", "ICAP/1.0 204 No Content\r\nISTag\r\n\r\n", text, protoErr, ""},
		{"continuation first", "ICAP/1.0 204 No Content\r\n\tx\r\n\r\n", text, protoErr, ""},
		{"NUL in a header", "ICAP/1.0 204 No Content\r\nX-A: a\x00b\r\n\r\n", text, protoErr, ""},
		{"100 KiB header line", "ICAP/1.0 204 No Content\r\nX-A: " + strings.Repeat("a", 100<<10) + "\r\n\r\n", text, protoErr, ""},
		{"1000 header lines", "ICAP/1.0 204 No Content\r\n" + strings.Repeat("X-A: a\r\n", 1000) + "\r\n", text, protoErr, ""},
		{"endless 100 Continue", strings.Repeat("ICAP/1.0 100 Continue\r\n\r\n", 10) + "ICAP/1.0 204 No\r\n\r\n", text, protoErr, ""},
		{"200 without Encapsulated", "ICAP/1.0 200 OK\r\n\r\n", text, protoErr, ""},
		{"two Encapsulated", "ICAP/1.0 200 OK\r\nEncapsulated: null-body=0\r\nEncapsulated: null-body=0\r\n\r\n", text, protoErr, ""},
		{"Encapsulated offset huge", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=99999999999\r\n\r\n", text, protoErr, ""},
		{"Encapsulated offset negative", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=-5\r\n\r\n", text, protoErr, ""},
		{"Encapsulated out of order", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=20, res-body=0\r\n\r\n", text, protoErr, ""},
		{"Encapsulated unknown part", "ICAP/1.0 200 OK\r\nEncapsulated: evil=0\r\n\r\n", text, protoErr, ""},
		{"Encapsulated ends with a header", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0\r\n\r\n", text, protoErr, ""},
		{"body before a header", "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0, res-hdr=0\r\n\r\n", text, protoErr, ""},
		{"HTTP header shorter than announced", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=500\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", text, protoErr, ""},
		{"HTTP header longer than its section", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=10\r\n\r\nHTTP/1.1 200 OK\r\n\r\n0\r\n\r\n", text, protoErr, ""},
		{"HTTP status line garbage", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=8\r\n\r\ngarbage\n0\r\n\r\n", text, protoErr, ""},
		{"chunk size not hex", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\nzz\r\n", text, protoErr, ""},
		{"chunk size negative", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n-5\r\n", text, protoErr, ""},
		{"chunk size overflows", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\nffffffffffffffffff\r\n", text, protoErr, ""},
		{"chunk larger than the bound", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n7fffffffffffffff\r\n", text, protoErr, ""},
		{"body past the bound", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n" +
			strings.Repeat("8000\r\n"+strings.Repeat("b", 32<<10)+"\r\n", 3) + "0\r\n\r\n", text, protoErr, ""},
		{"chunk shorter than announced", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n11\r\nshort", text, protoErr, ""},
		{"chunk without CRLF", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n11\r\njust a text file\nXX\r\n0\r\n\r\n", text, protoErr, ""},
		{"chunk-size line of 8 KiB", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n1;" + strings.Repeat("x", 8<<10) + "\r\n", text, protoErr, ""},
		{"no last chunk", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n11\r\njust a text file\n\r\n", text, protoErr, ""},
		{"endless trailer", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n0\r\n" + strings.Repeat("X-T: t\r\n", 4000), text, protoErr, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := maphash.MakeSeed()
			r, err := readResponseSeeded(bufio.NewReader(strings.NewReader(tc.reply)), 64<<10, seed)
			var found bool
			var sig string
			if err == nil {
				found, sig, err = r.verdict(int64(len(tc.sent)), maphash.Bytes(seed, tc.sent))
			}
			var se *StatusError
			var pe *ProtocolError
			switch tc.want {
			case clean, infected:
				if err != nil || found != (tc.want == infected) || sig != tc.sig {
					t.Fatalf("verdict: found %v %q, %v; want %v %q", found, sig, err, tc.want == infected, tc.sig)
				}
			case statusErr:
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a *StatusError", err)
				}
			case protoErr:
				if !errors.As(err, &pe) && (err == nil || !strings.Contains(err.Error(), "icap")) {
					t.Fatalf("err = %v (found %v %q), want a protocol error", err, found, sig)
				}
				if err == nil {
					t.Fatal("accepted")
				}
			}
		})
	}
}

// TestICAPOptions reads c-icap's OPTIONS reply, and refuses a service
// that does not offer RESPMOD.
func TestICAPOptions(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "c-icap", "options.icap"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadResponse(bufio.NewReader(bytes.NewReader(b)), maxICAPHeader)
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.options()
	if err != nil || o.Preview != 1024 || !o.Allow204 || o.Close || len(o.Methods) != 2 || o.ISTag == "" {
		t.Fatalf("options %+v, %v", o, err)
	}
	r, _ = ReadResponse(bufio.NewReader(strings.NewReader("ICAP/1.0 200 OK\r\nMethods: REQMOD\r\nEncapsulated: null-body=0\r\n\r\n")), 0)
	if _, err := r.options(); err == nil {
		t.Fatal("a REQMOD-only service was accepted")
	}
}

func TestParseICAPURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"icap://127.0.0.1:1344/virus_scan", "icap://127.0.0.1:1344/virus_scan"},
		{"icap://av.internal/avscan", "icap://av.internal:1344/avscan"},
		{"icaps://av.internal/avscan", "icaps://av.internal:11344/avscan"},
		{"icap://[::1]/srv_clamav?allow204=on", "icap://[::1]:1344/srv_clamav?allow204=on"},
		{"icap://127.0.0.1:1344/", ""},
		{"icap://127.0.0.1:1344", ""},
		{"icap:///virus_scan", ""},
		{"http://127.0.0.1/virus_scan", ""},
		{"icap://user:pw@127.0.0.1/virus_scan", ""},
		{"icap://127.0.0.1:0/virus_scan", ""},
		{"icap://127.0.0.1:70000/virus_scan", ""},
		{"icap://127.0.0.1/virus_scan#x", ""},
		{"icap://127.0.0.1/virus\r\nscan", ""},
		{"tcp:127.0.0.1:1344", ""},
	} {
		u, err := ParseICAPURL(tc.in)
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != tc.want {
			t.Errorf("ParseICAPURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// fakeICAP serves one connection: it answers OPTIONS with options, then
// hands the RESPMOD to serve.
func fakeICAP(t *testing.T, options string, serve func(c net.Conn, br *bufio.Reader)) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute)) // a stuck client does not hold the test
		br := bufio.NewReader(c)
		if err := skipHead(br); err != nil {
			return
		}
		io.WriteString(c, options)
		if serve != nil {
			serve(c, br)
		}
	}()
	u, _ := ParseICAPURL("icap://" + ln.Addr().String() + "/av")
	return u
}

const okOptions = "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nPreview: 1024\r\nAllow: 204\r\nEncapsulated: null-body=0\r\n\r\n"

// skipHead reads a request's head up to its empty line.
func skipHead(br *bufio.Reader) error {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if l == "\r\n" {
			return nil
		}
	}
}

// readChunked reads a RESPMOD's encapsulated headers and chunked body.
func readChunked(br *bufio.Reader) []byte {
	skipHead(br) // PUT …
	skipHead(br) // HTTP/1.1 200 OK …
	var body []byte
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return body
		}
		n, err := parseHex(strings.TrimSpace(l))
		if err != nil || n == 0 {
			br.ReadString('\n')
			return body
		}
		b := make([]byte, n+2)
		io.ReadFull(br, b)
		body = append(body, b[:n]...)
	}
}

func parseHex(s string) (int, error) {
	var v int
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			v = v*16 + int(c-'0')
		case c >= 'a' && c <= 'f':
			v = v*16 + int(c-'a'+10)
		default:
			return 0, errors.New("not hex")
		}
	}
	return v, nil
}

// TestICAPStreamWire: what the client sends (OPTIONS, then a RESPMOD
// with Allow: 204, no preview, the body in chunks, cut at MaxSize, the
// file's path escaped), and the verdicts it draws.
func TestICAPStreamWire(t *testing.T) {
	got := make(chan string, 1)
	u := fakeICAP(t, okOptions, func(c net.Conn, br *bufio.Reader) {
		var head strings.Builder
		for {
			l, _ := br.ReadString('\n')
			head.WriteString(l)
			if l == "\r\n" || l == "" {
				break
			}
		}
		l, _ := br.ReadString('\n') // PUT line
		head.WriteString(l)
		body := readChunked(br)
		got <- head.String() + "|" + string(body)
		io.WriteString(c, "ICAP/1.0 204 No Content\r\n\r\n")
	})
	cl := &ICAP{URL: u, Timeout: 10 * time.Second, MaxSize: 8}
	s, err := cl.Start(context.Background(), "/in box/a\r\nX-Evil: 1.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"12345", "67890", "abc"} {
		if n, err := s.Write([]byte(w)); err != nil || n != len(w) {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	v, err := s.Finish()
	if err != nil || v.Infected || !v.Truncated || v.Scanned != 8 {
		t.Fatalf("verdict %+v, %v", v, err)
	}
	w := <-got
	for _, want := range []string{"RESPMOD " + u.String() + " ICAP/1.0\r\n", "Allow: 204\r\n", "Encapsulated: req-hdr=0, res-hdr=",
		"PUT /in%20box/a%0D%0AX-Evil:%201.txt HTTP/1.1\r\n", "|12345678"} {
		if !strings.Contains(w, want) {
			t.Fatalf("request lacks %q:\n%q", want, w)
		}
	}
	if strings.Contains(w, "Preview:") || strings.HasSuffix(w, "abc") {
		t.Fatalf("request: %q", w)
	}
}

// TestICAPEchoWhileSending: a server that echoes the body as it reads it
// (c-icap does, past a few KiB) must be read while the body is sent: 16
// MiB through socket buffers of a few hundred KiB would deadlock a
// client that reads only after writing. The unchanged echo is clean; a
// changed one is not.
func TestICAPEchoWhileSending(t *testing.T) {
	for _, change := range []bool{false, true} {
		u := fakeICAP(t, okOptions, func(c net.Conn, br *bufio.Reader) {
			skipHead(br) // RESPMOD
			skipHead(br) // PUT
			skipHead(br) // HTTP/1.1 200 OK
			io.WriteString(c, "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
			first := true
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				n, err := parseHex(strings.TrimSpace(l))
				if err != nil || n == 0 {
					br.ReadString('\n')
					io.WriteString(c, "0\r\n\r\n")
					return
				}
				b := make([]byte, n+2)
				io.ReadFull(br, b)
				if change && first {
					b[0] ^= 1
				}
				first = false
				io.WriteString(c, l)
				c.Write(b)
			}
		})
		cl := &ICAP{URL: u, Timeout: 20 * time.Second}
		s, err := cl.Start(context.Background(), "big.bin")
		if err != nil {
			t.Fatal(err)
		}
		chunk := pattern(64 << 10)
		for i := 0; i < 256; i++ {
			if _, err := s.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		v, err := s.Finish()
		if err != nil || v.Infected != change || v.Scanned != 16<<20 {
			t.Fatalf("changed %v: verdict %+v, %v", change, v, err)
		}
	}
}

// TestICAPEarlyAnswer: a server that answers before the body's end: an
// infection counts; a "clean" on part of the body is no verdict.
func TestICAPEarlyAnswer(t *testing.T) {
	for _, tc := range []struct {
		reply    string
		infected bool
	}{
		{"ICAP/1.0 403 Forbidden\r\nX-Virus-ID: Early\r\n\r\n", true},
		{"ICAP/1.0 204 No Content\r\n\r\n", false},
	} {
		answered := make(chan struct{})
		u := fakeICAP(t, okOptions, func(c net.Conn, br *bufio.Reader) {
			skipHead(br) // RESPMOD
			skipHead(br) // PUT
			skipHead(br) // HTTP/1.1 200 OK
			io.WriteString(c, tc.reply)
			close(answered)
			io.Copy(io.Discard, br)
		})
		cl := &ICAP{URL: u, Timeout: 10 * time.Second}
		s, err := cl.Start(context.Background(), "x")
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("first"))
		<-answered
		for deadline := time.Now().Add(10 * time.Second); ; {
			select {
			case <-s.done:
			default:
				if time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond) // polls the reader's end
					continue
				}
			}
			break
		}
		s.Write([]byte("second"))
		v, err := s.Finish()
		if tc.infected && (err != nil || !v.Infected || v.Signature != "Early") {
			t.Fatalf("verdict %+v, %v", v, err)
		}
		if !tc.infected && err == nil {
			t.Fatalf("an early 204 was taken for a verdict: %+v", v)
		}
	}
}

// TestICAPTimeouts: a server that never answers OPTIONS, and one that
// takes the body and never answers, each give up after the timeout.
func TestICAPTimeouts(t *testing.T) {
	silent := fakeICAP(t, "", func(c net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	cl := &ICAP{URL: silent, Timeout: 300 * time.Millisecond}
	if _, err := cl.Start(context.Background(), "x"); !isTimeout(err) {
		t.Fatalf("Start against a silent server: %v", err)
	}
	mute := fakeICAP(t, okOptions, func(c net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	cl = &ICAP{URL: mute, Timeout: 300 * time.Millisecond}
	s, err := cl.Start(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("data"))
	start := time.Now()
	if _, err := s.Finish(); !isTimeout(err) {
		t.Fatalf("Finish: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Finish took %v", d)
	}
}

// FuzzReadResponse: no input makes the reader panic, loop or allocate
// past its bounds; whatever it accepts has a verdict or an error.
func FuzzReadResponse(f *testing.F) {
	for _, name := range []string{"options", "clean-204", "eicar", "echo-8k", "preview-echo-8k", "no-such-service", "clamd-down"} {
		b, err := os.ReadFile(filepath.Join("testdata", "c-icap", name+".icap"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 200 OK\r\n\r\n5; ieof\r\nhello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadResponse(bufio.NewReader(bytes.NewReader(b)), 1<<20)
		if err != nil {
			return
		}
		r.verdict(5, 0)
		r.options()
	})
}
