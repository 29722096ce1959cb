package config

import (
	"testing"
)

// FuzzParse: whatever the file holds, Parse returns a configuration or
// diagnostics, never a panic, and never both nothing and no error. Seeds
// are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`listener "a" {
  address = ":2121"
  cert_file = "/nonexistent/c.pem"
  key_file = "/nonexistent/k.pem"
  passive_ports = "40000-40009"
  backend = "b"
  allow_cidrs = ["10.0.0.0/8"]
}
backend "b" {
  address = "127.0.0.1:21"
  tls = "explicit"
  data_mode = "active"
}
route "r" {
  users = ["a*"]
  backend = "b"
}
bans { failures = 3 }
`))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := Parse(src, "fuzz.hcl")
		if cfg == nil && !diags.HasErrors() {
			t.Fatal("no configuration and no error")
		}
		if cfg != nil && diags.HasErrors() {
			t.Fatal("a configuration despite errors")
		}
	})
}
