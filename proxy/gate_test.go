package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/proxy/audit"
	"github.com/ftpsgate/ftpsgate/proxy/config"
	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// gate is an ftpsgate running in the test process, with an explicit and an
// implicit listener in front of one backend.
type gate struct {
	srv      *proxy.Server
	cfg      *config.Config
	explicit string // host:port of the explicit listener
	implicit string // host:port of the implicit listener
	certs    *ftptest.Certs
	logs     *observer.ObservedLogs // diagnostic log
	audit    *observer.ObservedLogs // audit events
	auditBuf *ftptest.SyncBuffer
	xferlog  *ftptest.SyncBuffer // xferlog lines
	src      string              // the configuration's HCL
}

type gateOptions struct {
	keyType ftptest.KeyType
	policy  string // HCL body of the policy block
	extra   string // more HCL (timeouts, limits…)
	ports   int    // passive ports per listener; 0 means 20
	public  string // public_address of the explicit listener
	// listenerExtra is more HCL for both listeners.
	listenerExtra string
	// listen is the address of both listeners; "127.0.0.1:0" if empty.
	listen string
	// servers makes the backend a pool of these, instead of backendAddr.
	servers []string
	// backend is the HCL body of the backend block after its address;
	// empty means tls = "none".
	backend string
	// audit replaces the observed audit stream (g.audit, g.auditBuf and
	// g.xferlog stay empty), e.g. with audit.Open's files.
	audit *audit.Logger
	// dialBackend, if set, is the proxy's dialer toward the backend
	// (control and data connections).
	dialBackend func(ctx context.Context, network, address string) (net.Conn, error)
}

// startGate starts ftpsgate in front of the backend at backendAddr.
func startGate(t testing.TB, backendAddr string, opt gateOptions) *gate {
	t.Helper()
	g := newGate(t, backendAddr, opt)
	if err := g.srv.Start(); err != nil {
		t.Fatal(err)
	}
	g.explicit = g.srv.Addr("ftps").String()
	g.implicit = g.srv.Addr("ftps-implicit").String()
	return g
}

// startGateErr is startGate for a gate that should not start: it returns
// Start's error.
func startGateErr(t testing.TB, backendAddr string, opt gateOptions) error {
	t.Helper()
	return newGate(t, backendAddr, opt).srv.Start()
}

// newGate builds the gate startGate starts, and stops it when the test
// ends.
func newGate(t testing.TB, backendAddr string, opt gateOptions) *gate {
	t.Helper()
	if opt.keyType == "" {
		opt.keyType = ftptest.ECDSA
	}
	if opt.ports == 0 {
		opt.ports = 20
	}
	if opt.listen == "" {
		opt.listen = "127.0.0.1:0"
	}
	if opt.backend == "" {
		opt.backend = `tls = "none"`
	}
	certs := ftptest.NewCerts(t, opt.keyType)
	f1, l1 := ftptest.FreePortRange(t, opt.ports)
	f2, l2 := ftptest.FreePortRange(t, opt.ports)
	for f2 <= l1 && f1 <= l2 { // the two ranges must not overlap
		f2, l2 = ftptest.FreePortRange(t, opt.ports)
	}
	src := fmt.Sprintf(`
listener "ftps" {
  address       = %q
  tls           = "explicit"
  cert_file     = %q
  key_file      = %q
  passive_ports = "%d-%d"
  backend       = "legacy"
  %s
  %s
}
listener "ftps-implicit" {
  address       = %q
  tls           = "implicit"
  cert_file     = %q
  key_file      = %q
  passive_ports = "%d-%d"
  backend       = "legacy"
  %s
}
backend "legacy" {
  %s
  %s
}
policy {
%s
}
%s
`, opt.listen, certs.CertFile, certs.KeyFile, f1, l1, publicAttr(opt.public), opt.listenerExtra, opt.listen, certs.CertFile, certs.KeyFile, f2, l2, opt.listenerExtra, backendAttr(backendAddr, opt.servers), opt.backend, opt.policy, opt.extra)
	cfg, diags := config.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("config: %s\n%s", diags.Error(), src)
	}
	g := &gate{cfg: cfg, certs: certs, auditBuf: &ftptest.SyncBuffer{}, xferlog: &ftptest.SyncBuffer{}, src: src}

	logCore, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core(), logCore))
	auditCore, auditObs := observer.New(zap.InfoLevel)
	auditJSON := zapcore.NewCore(zapcore.NewJSONEncoder(audit.EncoderConfig()), zapcore.AddSync(g.auditBuf), zap.InfoLevel)
	g.logs, g.audit = logs, auditObs

	aud := audit.New(zap.New(zapcore.NewTee(auditCore, auditJSON))).WithXferlog(g.xferlog)
	if opt.audit != nil {
		aud = opt.audit
	}
	g.srv = proxy.New(cfg, proxy.Options{Logger: log, CertCheckInterval: 100 * time.Millisecond, Audit: aud, DialBackend: opt.dialBackend})
	t.Cleanup(func() { g.srv.Close() })
	return g
}

func backendAttr(addr string, servers []string) string {
	if servers == nil {
		return fmt.Sprintf("address = %q", addr)
	}
	q := make([]string, len(servers))
	for i, a := range servers {
		q[i] = strconv.Quote(a)
	}
	return "servers = [" + strings.Join(q, ", ") + "]"
}

func publicAttr(a string) string {
	if a == "" {
		return ""
	}
	return fmt.Sprintf("public_address = %q", a)
}

func port(t testing.TB, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// login opens a session through the gate's explicit listener: AUTH TLS,
// then USER, PASS, PBSZ 0 and PROT P.
func (g *gate) login(t testing.TB, user, pass string) *ftptest.Conn {
	t.Helper()
	c := ftptest.Dial(t, g.explicit)
	c.AuthTLS(g.certs.ClientConfig())
	c.LoginProtP(user, pass)
	return c
}

// auditEvents parses the audit stream written so far.
func (g *gate) auditEvents(t testing.TB) []map[string]any {
	t.Helper()
	var evs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(g.auditBuf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		evs = append(evs, m)
	}
	return evs
}

// eventsOf returns the audit events named event.
func (g *gate) eventsOf(t testing.TB, event string) []map[string]any {
	var out []map[string]any
	for _, e := range g.auditEvents(t) {
		if e["event"] == event {
			out = append(out, e)
		}
	}
	return out
}

// logged reports whether the diagnostic log has an entry with message msg.
func (g *gate) logged(msg string) bool {
	return g.logs.FilterMessage(msg).Len() > 0
}

// ftpURL is the URL of path through the listener at addr.
func ftpURL(scheme, user, pass, addr, path string) string {
	return fmt.Sprintf("%s://%s:%s@%s/%s", scheme, user, pass, addr, strings.TrimPrefix(path, "/"))
}

// writeFile writes data to a new file in dir.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
