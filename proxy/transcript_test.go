package proxy_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
	"github.com/ftpsgate/ftpsgate/rewrite"
)

var updateTranscripts = flag.Bool("update-transcripts", false,
	"record the real servers' replies into rewrite/testdata")

// transcriptCommands are sent straight to each real server; the directory
// name is chosen to echo parentheses and digit runs in a 257 reply, which a
// careless PASV parser would read as an address.
var transcriptCommands = []string{
	"HOST 127.0.0.1", "USER {user}", "PASS {pass}", "SYST", "FEAT", "PWD", "TYPE I",
	"MKD (1,2,3,4,5,6)", "CWD (1,2,3,4,5,6)", "PWD", "CWD /",
	"PASV", "EPSV", "PORT 127,0,0,1,156,64", "EPRT |1|127.0.0.1|40000|", "EPRT |3|x|1|",
	"SIZE nonexistent", "STAT", "HELP", "NOOP", "QUIT",
}

// TestServerTranscripts talks to vsftpd, pure-ftpd and ProFTPD directly and checks
// that rewrite parses every reply they send, including PASV and EPSV ports
// that are then dialled. With -update-transcripts it records the replies
// into rewrite/testdata, where rewrite's table tests read them.
func TestServerTranscripts(t *testing.T) {
	for _, start := range []func(testing.TB) *ftptest.Server{
		func(t testing.TB) *ftptest.Server { return ftptest.Vsftpd(t, ftptest.VsftpdOptions{}) },
		ftptest.PureFTPd,
		func(t testing.TB) *ftptest.Server { return ftptest.ProFTPD(t, ftptest.ProFTPDOptions{}) },
	} {
		be := start(t)
		t.Run(be.Name, func(t *testing.T) {
			c, err := net.Dial("tcp", be.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			var rec bytes.Buffer
			capture := func(cmd string) []*rewrite.Reply {
				var reps []*rewrite.Reply
				c.SetDeadline(time.Now().Add(30 * time.Second))
				tee := &teeReader{r: r}
				for {
					rep, err := rewrite.ReadReply(bufio.NewReader(tee), rewrite.ReplyLimits{})
					if err != nil {
						t.Fatalf("%s: reply to %q: %v", be.Name, cmd, err)
					}
					reps = append(reps, rep)
					if rep.Final() {
						break
					}
				}
				if cmd == "" {
					cmd = "(greeting)"
				}
				fmt.Fprintf(&rec, "> %s\n", redact(cmd))
				rec.Write(tee.buf.Bytes())
				return reps
			}
			capture("")
			for _, cmd := range transcriptCommands {
				line := strings.NewReplacer("{user}", be.User, "{pass}", be.Password).Replace(cmd)
				if _, err := c.Write([]byte(line + "\r\n")); err != nil {
					t.Fatal(err)
				}
				reps := capture(cmd)
				last := reps[len(reps)-1]
				switch cmd {
				case "PASV":
					ap, err := rewrite.ParsePASV(last)
					if err != nil {
						t.Fatalf("PASV %q: %v", last, err)
					}
					dialProbe(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()))
				case "EPSV":
					p, err := rewrite.ParseEPSV(last)
					if err != nil {
						t.Fatalf("EPSV %q: %v", last, err)
					}
					dialProbe(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
				case "FEAT":
					if len(rewrite.ParseFEAT(last)) < 3 {
						t.Fatalf("FEAT %q parsed to %v", last, rewrite.ParseFEAT(last))
					}
				}
			}
			if *updateTranscripts {
				p := filepath.Join("..", "rewrite", "testdata", be.Name+".transcript")
				if err := os.WriteFile(p, rec.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s", p)
			}
		})
	}
}

// redact hides the user name and password of a transcript command.
func redact(cmd string) string {
	verb, _, _ := strings.Cut(cmd, " ")
	if verb == "USER" || verb == "PASS" {
		return verb + " ****"
	}
	return cmd
}

// dialProbe proves a parsed passive port is where the server listens.
func dialProbe(t *testing.T, ap netip.AddrPort) {
	t.Helper()
	c, err := net.DialTimeout("tcp", ap.String(), 10*time.Second)
	if err != nil {
		t.Fatalf("parsed passive address %s does not answer: %v", ap, err)
	}
	c.Close()
}

// teeReader keeps the bytes read through it.
type teeReader struct {
	r   *bufio.Reader
	buf bytes.Buffer
}

// Read reads one byte at a time, so that the reply reader over it never
// consumes bytes of the next reply.
func (t *teeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := t.r.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	t.buf.WriteByte(b)
	return 1, nil
}
