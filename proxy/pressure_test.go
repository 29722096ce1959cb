package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestTransferUnderPressure: during a long download NOOP and STAT are
// answered at once (STAT with the progress), the control idle timeout does
// not cut the transfer however long it runs, the file arrives whole, and
// the session goes on.
func TestTransferUnderPressure(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := startGate(t, be.Addr, gateOptions{extra: `timeouts {
  idle = "2s"
}`})
	size := int64(16 << 20)
	sum := ftptest.RandomFile(t, be.Root+"/big.bin", size)
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR big.bin")
	start := time.Now()
	h := sha256.New()
	chunk := make([]byte, 1<<20)
	if _, err := io.ReadFull(d, chunk); err != nil {
		t.Fatal(err)
	}
	h.Write(chunk)
	c.Cmd(200, "NOOP")
	if msg := c.Cmd(211, "STAT"); !strings.Contains(msg, "RETR /big.bin") || !strings.Contains(msg, "bytes") {
		t.Fatalf("STAT during the transfer: %q", msg)
	}
	// Read slowly, past the idle timeout, with no command on the control
	// connection.
	for time.Since(start) < 4500*time.Millisecond {
		time.Sleep(400 * time.Millisecond) // the client's pace
		n, err := io.ReadFull(d, chunk[:256<<10])
		h.Write(chunk[:n])
		if err != nil {
			t.Fatal(err)
		}
	}
	rest, err := io.ReadAll(d)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(rest)
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		t.Fatal("the download differs")
	}
	c.Expect(226)
	c.Cmd(257, "PWD") // the session goes on
	if evs := g.eventsOf(t, "transfer"); len(evs) != 1 || evs[0]["bytes"].(float64) != float64(size) {
		t.Fatalf("transfer events %v", evs)
	}
	// Idle again, the session times out as it should.
	if msg := c.Expect(421); !strings.Contains(msg, "Idle timeout") {
		t.Fatalf("after the transfer: %q", msg)
	}
}
