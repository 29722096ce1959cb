package ftptest

import (
	_ "embed"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// ServerName, if set, is the name the certificate is verified under
	// (and the SNI), while Host is connected to: explicit FTPS only.
	ServerName string `json:"server_name,omitempty"`
	// CertFile and KeyFile, if set, are the client certificate and key
	// the TLS context presents (SSLContext.load_cert_chain).
	CertFile string `json:"certfile,omitempty"`
	KeyFile  string `json:"keyfile,omitempty"`
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

//go:embed FtpsClient.java
var javaClient []byte

// CommonsNetJar is Debian's Apache Commons Net (libcommons-net-java).
const CommonsNetJar = "/usr/share/java/commons-net.jar"

// JavaSpec is what the Commons Net driver does: see FtpsClient.java.
type JavaSpec struct {
	Host     string
	Port     int
	CAFile   string
	User     string
	Password string
	// Steps: "download:REMOTE", "upload:LOCAL:REMOTE" or "list".
	Steps []string
}

// JavaResult is the Commons Net driver's output.
type JavaResult struct {
	Steps []struct {
		Op     string `json:"op"`
		OK     bool   `json:"ok"`
		Reply  string `json:"reply"` // the last reply, after the step
		Error  string `json:"error"` // the exception the step threw, if any
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"steps"`
	Quit string `json:"quit"`
}

// Java compiles the Apache Commons Net FTPSClient driver (javac) and runs
// it with spec.
func Java(t testing.TB, spec JavaSpec) *JavaResult {
	t.Helper()
	javac, java := Tool(t, "javac"), Tool(t, "java")
	if _, err := os.Stat(CommonsNetJar); err != nil {
		t.Fatalf("Apache Commons Net: %v: %s", err, setupHint)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "FtpsClient.java")
	if err := os.WriteFile(src, javaClient, 0o600); err != nil {
		t.Fatal(err)
	}
	Run(t, ClientTimeout, "", javac, "-cp", CommonsNetJar, "-d", dir, src)
	args := append([]string{"-cp", CommonsNetJar + ":" + dir, "FtpsClient",
		spec.Host, strconv.Itoa(spec.Port), spec.User, spec.Password, spec.CAFile}, spec.Steps...)
	out := Run(t, ClientTimeout, "", java, args...)
	var res JavaResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("Commons Net driver output: %v\n%s", err, out)
	}
	return &res
}

// Rclone runs rclone with args, and a configuration from the environment
// only (remotes as RCLONE_CONFIG_NAME_OPTION=value in env), trusting the
// certificates in caFile alone (SSL_CERT_FILE). It returns rclone's
// outputs and error.
func Rclone(t testing.TB, caFile string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := Tool(t, "rclone")
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	envArgs := append([]string{"-i", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "SSL_CERT_FILE=" + caFile, "SSL_CERT_DIR=/nonexistent"}, env...)
	envArgs = append(envArgs, bin, "--config", conf)
	return RunErr(ClientTimeout, "", "env", append(envArgs, args...)...)
}

// RcloneObscure is password as rclone's configuration wants it.
func RcloneObscure(t testing.TB, password string) string {
	t.Helper()
	return strings.TrimSpace(Run(t, time.Minute, "", Tool(t, "rclone"), "obscure", password))
}
