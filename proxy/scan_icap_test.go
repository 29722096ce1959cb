package proxy_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// icapGate starts a gate in front of be whose explicit listener scans
// uploads with the ICAP scan block "av": address, then body.
func icapGate(t *testing.T, be *ftptest.Server, address, body string) *gate {
	t.Helper()
	return startGate(t, be.Addr, gateOptions{
		listenerExtra: `scan = "av"`,
		extra:         fmt.Sprintf("scan \"av\" {\n  engine = \"icap\"\n  address = %q\n%s\n}\n", address, body),
	})
}

// TestScanICAP: uploads through the proxy to a real vsftpd, scanned by a
// real c-icap (virus_scan, with its clamd). EICAR is refused with 550
// naming the signature c-icap reports and is deleted on the backend; a
// small clean file (c-icap answers 204) and a 1 MiB one (c-icap echoes
// it) get their 226 and arrive unchanged; the metrics carry the engine.
func TestScanICAP(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	ci := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{})
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := icapGate(t, be, ci.URL, `max_size = "200M"`)
	c := g.login(t, be.User, be.Password)
	code, msg := scanUpload(t, c, "eicar.com", ftptest.EICAR)
	if code != 550 || msg != "Upload rejected: malware detected ("+ftptest.EICARSignature+")." {
		t.Fatalf("EICAR upload: %d %s", code, msg)
	}
	if exists(filepath.Join(be.Root, "eicar.com")) {
		t.Fatal("EICAR left on the backend")
	}
	small := []byte("just a text file\n")
	big := make([]byte, 1<<20)
	rand.Read(big)
	for name, data := range map[string][]byte{"small.txt": small, "big.bin": big} {
		if code, msg := scanUpload(t, c, name, data); code != 226 {
			t.Fatalf("clean upload %s: %d %s", name, code, msg)
		}
		if got, err := os.ReadFile(filepath.Join(be.Root, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s on the backend differs: %v", name, err)
		}
	}
	c.Cmd(221, "QUIT")
	e := g.transferEvent(t, "/eicar.com")
	if e["result"] != "rejected" || e["scan"] != "infected" || e["signature"] != ftptest.EICARSignature || e["deleted"] != true {
		t.Fatalf("EICAR's transfer event: %v", e)
	}
	body := g.metricsText(t)
	for _, want := range []string{`ftpsgate_scan_verdicts_total{engine="icap",result="infected",scan="av"} 1`,
		`ftpsgate_scan_verdicts_total{engine="icap",result="clean",scan="av"} 2`, `ftpsgate_scan_latency_seconds_count{engine="icap",scan="av"} 3`} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// TestScanICAPLargeCleanUpload: a clean 100 MiB file, which c-icap scans
// whole and echoes back while the proxy still sends it, arrives
// byte-identical and gets 226.
func TestScanICAPLargeCleanUpload(t *testing.T) {
	clamd := ftptest.StartClamd(t, 200<<20)
	ci := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{})
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := icapGate(t, be, ci.URL, `max_size = "200M"`)
	data := make([]byte, 100<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	c := g.login(t, be.User, be.Password)
	start := time.Now()
	if code, msg := scanUpload(t, c, "big.bin", data); code != 226 {
		t.Fatalf("clean 100 MiB upload: %d %s", code, msg)
	}
	t.Logf("100 MiB uploaded and scanned over ICAP in %v", time.Since(start))
	c.Cmd(221, "QUIT")
	if got := ftptest.FileSHA256(t, filepath.Join(be.Root, "big.bin")); got != hex.EncodeToString(sum[:]) {
		t.Fatal("the file on the backend differs from the upload")
	}
	if e := g.transferEvent(t, "/big.bin"); e["scan"] != "clean" || e["bytes"] != float64(100<<20) {
		t.Fatalf("transfer event: %v", e)
	}
}

// TestScanICAPScannerDown: with c-icap stopped, an upload is refused with
// 451 under on_error = "reject" before the backend sees it, and passes
// with 226 under "pass". With c-icap up but its clamd stopped, c-icap
// answers 500 after the upload: under "reject" the file the backend
// already has is deleted (451), under "pass" it stays (226).
func TestScanICAPScannerDown(t *testing.T) {
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	clamd := ftptest.StartClamd(t, 25<<20)
	down := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{})
	down.Stop()
	deadClamd := ftptest.StartClamd(t, 25<<20)
	blind := ftptest.StartCICAP(t, deadClamd, ftptest.CICAPOptions{})
	deadClamd.Stop()
	for _, tc := range []struct {
		name, url, onError string
		code               int
		stored             bool
		logged             string
	}{
		{"c-icap down, reject", down.URL, "reject", 451, false, "scanner unavailable; upload refused (on_error = reject)"},
		{"c-icap down, pass", down.URL, "pass", 226, true, "scanner unavailable; upload passed unscanned (on_error = pass)"},
		{"clamd down, reject", blind.URL, "reject", 451, false, "scan failed; upload rejected (on_error = reject)"},
		{"clamd down, pass", blind.URL, "pass", 226, true, "scan failed; upload passed unscanned (on_error = pass)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := icapGate(t, be, tc.url, fmt.Sprintf("on_error = %q", tc.onError))
			c := g.login(t, be.User, be.Password)
			name := strings.ReplaceAll(tc.name, ", ", "-") + ".bin"
			name = strings.ReplaceAll(name, " ", "-")
			d := c.DialData(c.EPSV())
			c.Send("STOR " + name)
			code, msg := c.Read()
			if code == 150 {
				d.WriteAll(t, ftptest.EICAR)
				code, msg = c.Read()
			} else {
				d.Close()
			}
			if code != tc.code {
				t.Fatalf("upload: %d %s", code, msg)
			}
			if exists(filepath.Join(be.Root, name)) != tc.stored {
				t.Fatalf("file on the backend: %v, want %v", !tc.stored, tc.stored)
			}
			c.Cmd(200, "NOOP")
			c.Cmd(221, "QUIT")
			if !g.logged(tc.logged) {
				t.Fatalf("not logged: %s", tc.logged)
			}
			if body := g.metricsText(t); !strings.Contains(body, `ftpsgate_scan_verdicts_total{engine="icap",result="error",scan="av"} 1`) {
				t.Fatal("/metrics lacks the error")
			}
		})
	}
}

// TestScanICAPAboveMax: an upload larger than max_size is sent to c-icap
// for its first max_size bytes; above_max then decides: "reject" gives
// 552 and deletes it, "pass" gives 226.
func TestScanICAPAboveMax(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	ci := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{})
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	data := make([]byte, 3<<20)
	rand.Read(data)
	for _, tc := range []struct {
		aboveMax string
		code     int
		stored   bool
		scan     string
	}{{"reject", 552, false, "too_large"}, {"pass", 226, true, "partial"}} {
		t.Run(tc.aboveMax, func(t *testing.T) {
			g := icapGate(t, be, ci.URL, fmt.Sprintf("max_size = \"64K\"\nabove_max = %q", tc.aboveMax))
			c := g.login(t, be.User, be.Password)
			name := "above-" + tc.aboveMax + ".bin"
			if code, msg := scanUpload(t, c, name, data); code != tc.code {
				t.Fatalf("upload: %d %s", code, msg)
			}
			c.Cmd(221, "QUIT")
			if exists(filepath.Join(be.Root, name)) != tc.stored {
				t.Fatalf("file on the backend: %v, want %v", !tc.stored, tc.stored)
			}
			if e := g.transferEvent(t, "/"+name); e["scan"] != tc.scan {
				t.Fatalf("transfer event: %v", e)
			}
		})
	}
}

// TestScanICAPS: icaps:// to c-icap's TLS port, its certificate verified
// against ca_file: EICAR refused (550), a clean file accepted; a
// certificate from another CA fails the handshake, and the upload is
// refused (451) before the backend sees it.
func TestScanICAPS(t *testing.T) {
	certs := ftptest.NewCerts(t, ftptest.ECDSA)
	other := ftptest.NewCerts(t, ftptest.ECDSA)
	clamd := ftptest.StartClamd(t, 25<<20)
	ci := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{TLSCert: certs.CertFile, TLSKey: certs.KeyFile})
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	t.Run("verified", func(t *testing.T) {
		g := icapGate(t, be, ci.TLSURL, fmt.Sprintf("ca_file = %q", certs.CAFile))
		c := g.login(t, be.User, be.Password)
		if code, msg := scanUpload(t, c, "tls-eicar.com", ftptest.EICAR); code != 550 || !strings.Contains(msg, ftptest.EICARSignature) {
			t.Fatalf("EICAR over icaps: %d %s", code, msg)
		}
		if code, msg := scanUpload(t, c, "tls-clean.txt", []byte("clean\n")); code != 226 {
			t.Fatalf("clean file over icaps: %d %s", code, msg)
		}
		c.Cmd(221, "QUIT")
		if exists(filepath.Join(be.Root, "tls-eicar.com")) || !exists(filepath.Join(be.Root, "tls-clean.txt")) {
			t.Fatal("files on the backend")
		}
	})
	t.Run("another CA", func(t *testing.T) {
		g := icapGate(t, be, ci.TLSURL, fmt.Sprintf("ca_file = %q", other.CAFile))
		c := g.login(t, be.User, be.Password)
		d := c.DialData(c.EPSV())
		c.Send("STOR tls-unverified.txt")
		if code, msg := c.Read(); code != 451 {
			t.Fatalf("upload with an unverified scanner: %d %s", code, msg)
		}
		d.Close()
		c.Cmd(221, "QUIT")
		if exists(filepath.Join(be.Root, "tls-unverified.txt")) {
			t.Fatal("an upload scanned by an unverified server reached the backend")
		}
		if !g.logged("scanner unavailable; upload refused (on_error = reject)") {
			t.Fatal("not logged")
		}
	})
}

// TestScanICAPUnknownService: a service name c-icap does not know is
// found by the OPTIONS the proxy sends before the command reaches the
// backend: the STOR is refused at once (451, no 150), and the backend
// never sees the file.
func TestScanICAPUnknownService(t *testing.T) {
	clamd := ftptest.StartClamd(t, 25<<20)
	ci := ftptest.StartCICAP(t, clamd, ftptest.CICAPOptions{})
	be := ftptest.Vsftpd(t, ftptest.VsftpdOptions{})
	g := icapGate(t, be, strings.TrimSuffix(ci.URL, "virus_scan")+"no_such_service", "")
	c := g.login(t, be.User, be.Password)
	d := c.DialData(c.EPSV())
	c.Send("STOR unknown-service.txt")
	if code, msg := c.Read(); code != 451 {
		t.Fatalf("STOR with an unknown ICAP service: %d %s", code, msg)
	}
	d.Close()
	c.Cmd(221, "QUIT")
	if exists(filepath.Join(be.Root, "unknown-service.txt")) {
		t.Fatal("the file reached the backend")
	}
	if !g.logged("scanner unavailable; upload refused (on_error = reject)") {
		t.Fatal("not logged")
	}
}
