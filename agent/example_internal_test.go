package agent

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleNamesEverySetting: configs/agent.hcl names every attribute of
// the agent's file (set or commented out).
func TestExampleNamesEverySetting(t *testing.T) {
	src, err := os.ReadFile("../configs/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(fileSchema{})
	var missing []string
	for i := range typ.NumField() {
		name, kind, _ := strings.Cut(typ.Field(i).Tag.Get("hcl"), ",")
		if name == "" || kind != "" && kind != "optional" {
			continue
		}
		if !regexp.MustCompile(`(?m)^\s*#?\s*` + regexp.QuoteMeta(name) + `\s*=`).Match(src) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("configs/agent.hcl does not name %s", strings.Join(missing, ", "))
	}
}
