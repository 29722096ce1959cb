package ftptest

import (
	_ "embed"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ClientTimeout bounds one run of an external FTP client.
const ClientTimeout = 5 * time.Minute

// Curl runs curl with args and returns its standard output.
func Curl(t testing.TB, args ...string) string {
	t.Helper()
	bin := Tool(t, "curl")
	base := []string{"--silent", "--show-error", "--fail", "--max-time", "240", "--connect-timeout", "30"}
	return Run(t, ClientTimeout, "", bin, append(base, args...)...)
}

// Lftp runs an lftp script (commands separated by ";" or newlines) with
// TLS forced on control and data, trusting caFile.
func Lftp(t testing.TB, caFile, script string) string {
	t.Helper()
	bin := Tool(t, "lftp")
	pre := "set cmd:fail-exit true; set ssl:ca-file " + caFile + "; set ssl:verify-certificate true; " +
		"set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; " +
		"set net:max-retries 1; set net:timeout 60; set net:reconnect-interval-base 1; "
	return Run(t, ClientTimeout, "", bin, "-c", pre+script)
}

//go:embed ftplib_client.py
var ftplibClient []byte

// PythonSpec is what the ftplib driver does: see ftplib_client.py.
type PythonSpec struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	CAFile   string `json:"cafile"`
	User     string `json:"user"`
	Password string `json:"password"`
	Implicit bool   `json:"implicit,omitempty"`
	// Stock uses ftplib.FTP_TLS as shipped, whose data connections never
	// resume the control connection's TLS session; by default the driver
	// uses the few-line subclass the README shows, which does.
	Stock bool `json:"stock,omitempty"`
	// Active: data connections in active mode (PORT, or EPRT over IPv6).
	Active bool         `json:"active,omitempty"`
	Steps  []PythonStep `json:"steps"`
}

// PythonStep is one operation of the ftplib driver.
type PythonStep struct {
	Op     string `json:"op"`
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	Rest   *int64 `json:"rest,omitempty"`
	Line   string `json:"line,omitempty"`
	// MayFail: the step is expected to fail; its client-side error and
	// the server's reply are recorded instead of ending the run.
	MayFail bool `json:"may_fail,omitempty"`
}

// PythonResult is the driver's output.
type PythonResult struct {
	Welcome string `json:"welcome"`
	Steps   []struct {
		Op      string                       `json:"op"`
		Reply   string                       `json:"reply"`
		Error   string                       `json:"error"`
		SHA256  string                       `json:"sha256"`
		Size    int64                        `json:"size"`
		Lines   []string                     `json:"lines"`
		Names   []string                     `json:"names"`
		Entries map[string]map[string]string `json:"entries"`
	} `json:"steps"`
	Quit string `json:"quit"`
}

// Python runs the ftplib.FTP_TLS driver with spec.
func Python(t testing.TB, spec PythonSpec) *PythonResult {
	t.Helper()
	bin := Tool(t, "python3")
	script := filepath.Join(t.TempDir(), "ftplib_client.py")
	if err := os.WriteFile(script, ftplibClient, 0o600); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(spec)
	out := Run(t, ClientTimeout, "", bin, script, string(js))
	var res PythonResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ftplib driver output: %v\n%s", err, out)
	}
	return &res
}
