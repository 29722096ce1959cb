package config

import (
	"fmt"
	"strings"
	"testing"
)

// agentTmpl is validTmpl's backend reached through an agent, and an
// agent_listener (line 31 on).
const agentListenerTmpl = `agent_listener {
  address        = "0.0.0.0:7443"
  cert_file      = "%[1]s"
  key_file       = "%[2]s"
  client_ca_file = "%[1]s"
  allowed_names  = ["dc1", "dc2"]
}
`

// TestAgentListener: the agent_listener block and via_agent compile, and
// each mistake is an error at its line.
func TestAgentListener(t *testing.T) {
	cert, key := testCert(t)
	base := strings.Replace(fmt.Sprintf(validTmpl, cert, key), `tls     = "none"`, "tls     = \"none\"\n  via_agent = \"dc1\"", 1) +
		fmt.Sprintf(agentListenerTmpl, cert, key)
	cfg, diags := Parse([]byte(base), "gate.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	al := cfg.AgentListener
	if al == nil || al.Address != "0.0.0.0:7443" || al.Certificate == nil || al.ClientCAs == nil ||
		strings.Join(al.AllowedNames, ",") != "dc1,dc2" || cfg.Backends["legacy"].ViaAgent != "dc1" {
		t.Fatalf("agent listener %+v, backend %+v", al, cfg.Backends["legacy"])
	}
	for _, tc := range []struct {
		name, old, new string
		line           int
		summary        string
	}{
		{"agent not allowed", `via_agent = "dc1"`, `via_agent = "dc9"`, 21, "Invalid via_agent"},
		{"no agent listener", fmt.Sprintf(agentListenerTmpl, cert, key), "", 21, "Invalid via_agent"},
		{"active data", `via_agent = "dc1"`, "via_agent = \"dc1\"\n  data_mode = \"active\"", 22, "Invalid data mode"},
		{"server by name", `"10.0.0.5:21"`, `"ftp.internal:21"`, 19, "Invalid via_agent"},
		{"bad address", `"0.0.0.0:7443"`, `"7443"`, 32, "Invalid agent_listener address"},
		{"no names", `["dc1", "dc2"]`, `[]`, 36, "Invalid allowed_names"},
		{"name twice", `["dc1", "dc2"]`, `["dc1", "dc1"]`, 36, "Invalid allowed_names"},
		{"missing CA", `client_ca_file = "` + cert + `"`, `client_ca_file = "/nonexistent/ca.pem"`, 35, "Cannot read client_ca_file"},
		{"CA not PEM", `client_ca_file = "` + cert + `"`, `client_ca_file = "/etc/hostname"`, 35, "Invalid client_ca_file"},
		{"same port as a listener", `"0.0.0.0:7443"`, `"0.0.0.0:21"`, 32, "Address in use twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, tc.old, tc.new, 1)
			if src == base {
				t.Fatal("edit changed nothing")
			}
			cfg, diags := Parse([]byte(src), "gate.hcl")
			if cfg != nil || !diags.HasErrors() {
				t.Fatal("accepted")
			}
			for _, d := range diags {
				if d.Summary == tc.summary {
					if d.Subject == nil || d.Subject.Start.Line != tc.line {
						t.Fatalf("%q at %v, want line %d", d.Summary, d.Subject, tc.line)
					}
					return
				}
			}
			t.Fatalf("no %q in %s", tc.summary, diags.Error())
		})
	}
}
