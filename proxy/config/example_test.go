package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleNamesEverySetting: configs/ftpsgate.hcl, the commented
// reference, names every attribute and block of the schema (set or
// commented out), so a new knob cannot be forgotten there.
func TestExampleNamesEverySetting(t *testing.T) {
	src, err := os.ReadFile("../../configs/ftpsgate.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
			if name == "" || kind == "label" || kind == "remain" {
				continue
			}
			sep := `\s*=`
			if kind == "block" {
				sep = `\s*("[^"]*"\s*)?\{`
			}
			if !regexp.MustCompile(`(?m)^\s*#?\s*` + regexp.QuoteMeta(name) + sep).Match(src) {
				missing = append(missing, prefix+name)
			}
			if kind == "block" {
				walk(prefix+name+".", f.Type)
			}
		}
	}
	walk("", reflect.TypeOf(fileSchema{}))
	if len(missing) > 0 {
		t.Fatalf("configs/ftpsgate.hcl does not name %s", strings.Join(missing, ", "))
	}
}
