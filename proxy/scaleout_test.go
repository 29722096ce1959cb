package proxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// TestScaleOutBehindHAProxy is the README's scale-out guide, run: two
// ftpsgate instances behind a real HAProxy on loopback. HAProxy balances
// control connections round-robin with PROXY protocol v2; each instance
// owns a slice of the passive ports, which HAProxy forwards, port for port,
// to that instance, and advertises HAProxy's address as its public one. A
// client at 127.0.0.5 downloads and uploads through it: both instances
// serve sessions, every file arrives intact, and each audit names the
// client (from the header) and the balancer (tcp_peer).
func TestScaleOutBehindHAProxy(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	sum := ftptest.RandomFile(t, filepath.Join(be.Root, "f.bin"), 3<<20)
	const balancer, client = "127.0.0.1", "127.0.0.5"
	trusted := `proxy_protocol {
    trusted_cidrs = ["127.0.0.1/32"]
  }`
	var gates []*gate
	var cas []string
	conf := fmt.Sprintf(`defaults
  mode tcp
  timeout connect 10s
  timeout client 5m
  timeout server 5m

frontend ftp_control
  bind %s:%d
  default_backend gates

backend gates
  balance roundrobin
`, balancer, ftptest.FreePort(t))
	front := conf[strings.Index(conf, "bind ")+5 : strings.Index(conf, "\n  default_backend")]
	var data string
	passive := regexp.MustCompile(`passive_ports = "(\d+)-(\d+)"`)
	for i, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		g := startGate(t, be.Addr, gateOptions{listen: ip + ":0", public: balancer, listenerExtra: trusted})
		gates = append(gates, g)
		b, err := os.ReadFile(g.certs.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, string(b))
		m := passive.FindStringSubmatch(g.src) // the explicit listener's range
		first, _ := strconv.Atoi(m[1])
		last, _ := strconv.Atoi(m[2])
		conf += fmt.Sprintf("  server gate%d %s send-proxy-v2\n", i, g.explicit)
		// No port on the server: HAProxy keeps the one the client asked for.
		data += fmt.Sprintf("\nfrontend passive_gate%d\n  bind %s:%d-%d\n  default_backend passive_gate%d\n\nbackend passive_gate%d\n  server gate%d %s\n",
			i, balancer, first, last, i, i, i, ip)
	}
	ftptest.HAProxy(t, conf+data, func() error { return ftptest.WaitGreeting(front, 30*time.Second) })

	bundle := filepath.Join(ftptest.TempDir(t), "cas.pem")
	if err := os.WriteFile(bundle, []byte(strings.Join(cas, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("ftp://%s:%s@%s/", be.User, be.Password, front)
	curl := func(args ...string) string {
		return ftptest.Curl(t, append([]string{"--interface", client, "--ssl-reqd", "--cacert", bundle}, args...)...)
	}
	out := filepath.Join(ftptest.TempDir(t), "down.bin")
	for range 4 {
		curl("-o", out, url+"f.bin")
		if got := ftptest.FileSHA256(t, out); got != sum {
			t.Fatal("a download through HAProxy arrived damaged")
		}
	}
	curl("--ftp-pasv", "--disable-epsv", "-T", out, url+"up.bin") // PASV: the 227 names HAProxy
	if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "up.bin")); got != sum {
		t.Fatal("the upload through HAProxy arrived damaged")
	}
	for i, g := range gates {
		served := 0
		for _, e := range g.eventsOf(t, "session_start") {
			if !strings.HasPrefix(fmt.Sprint(e["tcp_peer"]), balancer+":") {
				t.Fatalf("gate %d: session_start %v: not through the balancer", i, e)
			}
			if strings.HasPrefix(fmt.Sprint(e["client"]), client+":") {
				served++
			} // else the readiness probe's greeting, from the balancer's own address
		}
		if served < 2 {
			t.Fatalf("gate %d served %d of the client's 5 sessions: not balanced", i, served)
		}
		for _, e := range g.eventsOf(t, "transfer") {
			if e["result"] != "complete" || e["data_tls_resumed"] != true {
				t.Fatalf("gate %d: transfer %v", i, e)
			}
		}
	}
}
