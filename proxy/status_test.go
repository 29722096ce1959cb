package proxy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestStatusPage renders the status page in a real browser (Debian's
// headless Chromium) while one session idles and another is half-way
// through a 64 MiB download: the page shows both sessions with user, TLS
// version and backend, the transfer with a progress bar against the size
// vsftpd announced, and the backend server up. A screenshot is kept in
// test-artifacts/ (or $FTPSGATE_ARTIFACTS).
func TestStatusPage(t *testing.T) {
	chromium := ftptest.Tool(t, "chromium")
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	const size = 64 << 20
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "big.bin"), size)
	g := startGate(t, be.Addr, gateOptions{})
	admin := httptest.NewServer(g.srv.AdminHandler())
	defer admin.Close()

	idle := g.login(t, be.User, be.Password)
	c := g.login(t, be.User, be.Password)
	c.Cmd(200, "TYPE I")
	d := c.DialData(c.EPSV())
	c.Cmd(150, "RETR big.bin")
	head := make([]byte, 4<<20)
	if _, err := io.ReadFull(d, head); err != nil {
		t.Fatal(err)
	}
	// The download now waits for this reader; the page must show it moving.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(admin.URL + "/status.json")
		if err != nil {
			t.Fatal(err)
		}
		var st proxy.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		moving := false
		for _, s := range st.Sessions {
			moving = moving || (s.Transfer != nil && s.Transfer.Bytes >= 4<<20 && s.Transfer.Size == size)
		}
		if moving {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the transfer never showed in /status.json: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded above
	}

	browser := func(args ...string) string {
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir=" + ftptest.TempDir(t)}
		out, errOut, err := ftptest.RunErr(2*time.Minute, "", chromium, append(base, args...)...)
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errOut)
		}
		return out
	}
	dom := browser("--dump-dom", admin.URL+"/status")
	for _, want := range []string{"<title>ftpsgate status</title>", "big.bin", "RETR", "TLS 1.3", be.User,
		`class="up"`, "legacy (" + be.Addr + ")"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if n := strings.Count(dom, `class="session"`); n != 2 {
		t.Errorf("%d session rows, want 2", n)
	}
	m := regexp.MustCompile(`<progress value="(\d+)" max="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no progress bar in the rendered page:\n%s", dom)
	}
	if v, _ := strconv.Atoi(m[1]); v < 4<<20 || m[2] != strconv.Itoa(size) {
		t.Errorf("progress %s of %s, want at least %d of %d", m[1], m[2], 4<<20, size)
	}

	shot := filepath.Join(ftptest.TempDir(t), "status.png")
	browser("--screenshot="+shot, "--window-size=1280,720", "--hide-scrollbars", admin.URL+"/status")
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Fatalf("no screenshot (%d bytes, %v)", len(png), err)
	}
	dir := os.Getenv("FTPSGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status-page.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// The rest of the file, intact.
	rest, err := io.ReadAll(d)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	c.Expect(226)
	h := sha256.Sum256(append(head, rest...))
	if hex.EncodeToString(h[:]) != sum {
		t.Fatal("the download watched by the page arrived damaged")
	}
	c.Cmd(221, "QUIT")
	idle.Cmd(221, "QUIT")
}
