package scan_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy/scan"
)

var updateICAP = flag.Bool("update-icap", false, "record c-icap's replies into testdata/c-icap")

// Pattern is the body of the echo rows: 8 KiB, more than c-icap answers
// with 204 (it echoes larger bodies, Allow: 204 or not).
func Pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 % 251)
	}
	return b
}

// rawExchange sends req, then body in one chunk (none if empty) and the
// last chunk, as the ICAP client does, to addr, and returns the bytes
// of the reply (interim replies included), delimited by ReadResponse.
// With preview >= 0 the first preview bytes go first, with a Preview
// header, and the rest after the server's 100 Continue.
func rawExchange(t *testing.T, addr, head string, body []byte, preview int) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	chunk := func(p []byte) []byte {
		if len(p) == 0 {
			return nil
		}
		return append(append([]byte(fmt.Sprintf("%x\r\n", len(p))), p...), "\r\n"...)
	}
	var rec bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &rec))
	switch {
	case head == "":
		t.Fatal("no request")
	case body == nil: // OPTIONS
		io.WriteString(c, head)
	case preview >= 0:
		io.WriteString(c, head)
		c.Write(chunk(body[:preview]))
		io.WriteString(c, "0\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "ICAP/1.0 100 Continue\r\n" {
			t.Fatalf("reply to the preview: %q %v", line, err)
		}
		if l, _ := br.ReadString('\n'); l != "\r\n" {
			t.Fatalf("100 Continue followed by %q", l)
		}
		c.Write(chunk(body[preview:]))
		io.WriteString(c, "0\r\n\r\n")
	default:
		io.WriteString(c, head)
		c.Write(chunk(body))
		io.WriteString(c, "0\r\n\r\n")
	}
	if _, err := scan.ReadResponse(br, 1<<20); err != nil {
		t.Fatalf("c-icap's reply does not parse: %v\n%.2000q", err, rec.Bytes())
	}
	if br.Buffered() > 0 {
		t.Fatalf("bytes after the reply: %.2000q", rec.Bytes())
	}
	return rec.Bytes()
}

// respmod is the head of a RESPMOD as the client sends it.
func respmod(u *url.URL, allow204 bool, preview int) string {
	req := "PUT /upload.bin HTTP/1.1\r\nHost: ftpsgate\r\n\r\n"
	res := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
	h := "RESPMOD " + u.String() + " ICAP/1.0\r\nHost: " + u.Host + "\r\nUser-Agent: ftpsgate\r\n"
	if allow204 {
		h += "Allow: 204\r\n"
	}
	if preview >= 0 {
		h += fmt.Sprintf("Preview: %d\r\n", preview)
	}
	return h + fmt.Sprintf("Encapsulated: req-hdr=0, res-hdr=%d, res-body=%d\r\n\r\n", len(req), len(req)+len(res)) + req + res
}

// TestCICAPReplies talks to a real c-icap (Debian's, with its virus_scan
// module and the test's clamd) in the raw, checks that ReadResponse
// delimits and parses every reply, and with -update-icap records them
// into testdata/c-icap, where TestICAPVerdicts' table reads them.
func TestCICAPReplies(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	ci := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{})
	u, err := url.Parse(ci.URL)
	if err != nil {
		t.Fatal(err)
	}
	missing := *u
	missing.Path = "/no_such_service"
	for _, tc := range []struct {
		name    string
		head    string
		body    []byte
		preview int
		stop    bool // clamd is stopped first
	}{
		{"options", "OPTIONS " + u.String() + " ICAP/1.0\r\nHost: " + u.Host + "\r\nUser-Agent: ftpsgate\r\nEncapsulated: null-body=0\r\n\r\n", nil, -1, false},
		{"clean-204", respmod(u, true, -1), []byte("just a text file\n"), -1, false},
		{"empty-204", respmod(u, true, -1), []byte{}, -1, false},
		{"eicar", respmod(u, true, -1), ftptest.EICAR, -1, false},
		{"eicar-no204", respmod(u, false, -1), ftptest.EICAR, -1, false},
		{"echo-8k", respmod(u, true, -1), Pattern(8 << 10), -1, false},
		{"preview-echo-8k", respmod(u, true, 1024), Pattern(8 << 10), 1024, false},
		{"no-such-service", respmod(&missing, true, -1), []byte("x"), -1, false},
		{"clamd-down", respmod(u, true, -1), []byte("just a text file\n"), -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.stop {
				clamd.Stop()
			}
			rec := rawExchange(t, u.Host, tc.head, tc.body, tc.preview)
			if *updateICAP {
				p := filepath.Join("testdata", "c-icap", tc.name+".icap")
				if err := os.WriteFile(p, rec, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s", p)
			}
		})
	}
}
