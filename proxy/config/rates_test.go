package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/policy"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in        string
		perSecond bool
		want      int64
		ok        bool
	}{
		{"0", false, 0, true},
		{"65536", false, 65536, true},
		{"2MiB", false, 2 << 20, true},
		{"2 MiB", false, 2 << 20, true},
		{"1.5GiB", false, 3 << 29, true},
		{"500KiB", false, 500 << 10, true},
		{"10MB", false, 10e6, true},
		{"1kB", false, 1000, true},
		{"3TiB", false, 3 << 40, true},
		{"100B", false, 100, true},
		{"2MiB/s", true, 2 << 20, true},
		{"2MiB/s", false, 0, false}, // "/s" only on rates
		{"", false, 0, false},
		{"MiB", false, 0, false},
		{"-1MiB", false, 0, false},
		{"1e6", false, 0, false},
		{"0x10", false, 0, false},
		{"NaN", false, 0, false},
		{"Inf", false, 0, false},
		{"2 Mib", false, 0, false},
		{"9999999TiB", false, 0, false},
	} {
		got, err := ParseSize(tt.in, tt.perSecond)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q, %v) = %d, %v; want %d, ok %v", tt.in, tt.perSecond, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want string
	}{{0, "0B"}, {100, "100B"}, {1 << 10, "1KiB"}, {2 << 20, "2MiB"}, {3 << 29, "1.5GiB"}, {2e6, "1.91MiB"}} {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRates: the rates block, a listener's rate_down/rate_up and
// max_file_size compile, and bad values are refused at their line.
func TestRates(t *testing.T) {
	cert, key := testCert(t)
	listener := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "b"
  rate_down = "100MiB"
  rate_up = "50MiB/s"
}
backend "b" {
  address = "10.0.0.5:21"
}
`, cert, key)
	cfg, diags := Parse([]byte(listener+`rates {
  user_down     = "2MiB"
  user_up       = "1MiB"
  address_down  = "10MiB"
  transfer_up   = "0"
  class "partners" {
    users  = ["acme-*"]
    down   = "4MiB"
    shared = true
  }
  class "each" {
    users = ["solo"]
    up    = "8MiB"
  }
}
limits {
  max_file_size = "1GiB"
}
`), "rates.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	l := cfg.Listeners[0]
	if l.RateDown != 100<<20 || l.RateUp != 50<<20 || cfg.Limits.MaxFileSize != 1<<30 {
		t.Fatalf("listener %v/%v, max_file_size %d", l.RateDown, l.RateUp, cfg.Limits.MaxFileSize)
	}
	r := cfg.Rates
	if r.User != (RatePair{2 << 20, 1 << 20}) || r.Address != (RatePair{Down: 10 << 20}) || !r.Transfer.IsZero() {
		t.Fatalf("rates %+v", r)
	}
	rules := policy.Default()
	for _, tt := range []struct {
		user, key string
		rate      RatePair
	}{
		{"", "", RatePair{}},
		{"bob", "user:bob", RatePair{2 << 20, 1 << 20}},
		{"Bob", "user:bob", RatePair{2 << 20, 1 << 20}}, // case_insensitive: one bucket
		{"acme-1", "class:partners", RatePair{Down: 4 << 20}},
		{"ACME-2", "class:partners", RatePair{Down: 4 << 20}},
		{"solo", "user:solo", RatePair{Up: 8 << 20}},
	} {
		key, rate := r.ForUser(&rules, tt.user)
		if key != tt.key || rate != tt.rate {
			t.Errorf("ForUser(%q) = %q %+v, want %q %+v", tt.user, key, rate, tt.key, tt.rate)
		}
	}
	var none Rates
	if !none.IsZero() || r.IsZero() {
		t.Fatal("IsZero")
	}

	for _, tt := range []struct {
		name, block string
		line        int
		summary     string
	}{
		{"not a size", "rates {\n  user_down = \"fast\"\n}", 14, "Invalid rate"},
		{"below the least", "rates {\n  user_up = \"100B\"\n}", 14, "Invalid rate"},
		{"negative", "rates {\n  transfer_up = \"-1MiB\"\n}", 14, "Invalid rate"},
		{"class rate", "rates {\n  class \"c\" {\n    users = [\"x\"]\n    down = \"2 parsecs\"\n  }\n}", 16, "Invalid rate"},
		{"class without users", "rates {\n  class \"c\" {\n    users = []\n  }\n}", 15, "Invalid rate class"},
		{"duplicate class", "rates {\n  class \"c\" {\n    users = [\"x\"]\n  }\n  class \"c\" {\n    users = [\"y\"]\n  }\n}", 17, "Duplicate rate class"},
		{"max_file_size", "limits {\n  max_file_size = \"big\"\n}", 14, "Invalid limit"},
		{"listener rate", "", 7, "Invalid rate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := listener + tt.block + "\n"
			if tt.block == "" {
				src = strings.Replace(listener, `"100MiB"`, `"1 byte"`, 1)
			}
			_, diags := Parse([]byte(src), "rates.hcl")
			if !diags.HasErrors() {
				t.Fatalf("accepted:\n%s", src)
			}
			if d := diags[0]; d.Summary != tt.summary || d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Fatalf("got %q at %v (%s), want %q at line %d", d.Summary, d.Subject, d.Detail, tt.summary, tt.line)
			}
		})
	}
}

// TestQuotas: the quota attributes of the rates block and of its classes
// compile (a class inherits what it leaves out; "0" lifts it), windows are
// aligned to the epoch, and bad values are refused at their line.
func TestQuotas(t *testing.T) {
	cert, key := testCert(t)
	listener := fmt.Sprintf(`listener "a" {
  address = ":2121"
  cert_file = %q
  key_file = %q
  passive_ports = "40000-40009"
  backend = "b"
}
backend "b" {
  address = "10.0.0.5:21"
}
`, cert, key)
	cfg, diags := Parse([]byte(listener+`rates {
  quota_down   = "10GiB"
  quota_up     = "1GiB"
  class "partners" {
    users      = ["acme-*"]
    shared     = true
    quota_up   = "5GiB"
  }
  class "free" {
    users        = ["free"]
    quota_down   = "0"
    quota_period = "1h"
  }
  class "rate-only" {
    users = ["fast"]
    down  = "8MiB"
  }
}
`), "quota.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	rules := policy.Default()
	day := 24 * time.Hour
	for _, tt := range []struct {
		user, key string
		quota     Quota
	}{
		{"", "", Quota{}},
		{"bob", "user:bob", Quota{10 << 30, 1 << 30, day}},
		{"BOB", "user:bob", Quota{10 << 30, 1 << 30, day}}, // case_insensitive: one count
		{"acme-1", "class:partners", Quota{10 << 30, 5 << 30, day}},
		{"free", "user:free", Quota{0, 1 << 30, time.Hour}},
		{"fast", "user:fast", Quota{10 << 30, 1 << 30, day}}, // a class for a rate keeps the quota
	} {
		key, q := cfg.Rates.QuotaForUser(&rules, tt.user)
		if key != tt.key || q != tt.quota {
			t.Errorf("QuotaForUser(%q) = %q %+v, want %q %+v", tt.user, key, q, tt.key, tt.quota)
		}
	}
	if cfg, _ := Parse([]byte(listener), "none.hcl"); cfg == nil || !cfg.Rates.Quota.IsZero() || cfg.Rates.Quota.Period != DefaultQuotaPeriod {
		t.Fatalf("default quota: %+v", cfg.Rates.Quota)
	}

	at := time.Date(2026, 12, 3, 18, 30, 5, 0, time.UTC)
	for _, tt := range []struct {
		period     time.Duration
		start, end time.Time
		text       string
	}{
		{day, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), "1KiB per 24h"},
		{time.Hour, time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC), time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC), "1KiB per 1h"},
		{90 * time.Minute, time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC), time.Date(2026, 12, 3, 19, 30, 0, 0, time.UTC), "1KiB per 1h30m"},
		{7 * day, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC), "1KiB per 168h"}, // epoch weeks start on Thursdays
	} {
		q := Quota{Down: 1 << 10, Period: tt.period}
		start, end := q.Window(at)
		if !start.Equal(tt.start) || !end.Equal(tt.end) || q.String(false) != tt.text {
			t.Errorf("period %s: window %s – %s (%q), want %s – %s (%q)", tt.period, start.UTC(), end.UTC(), q.String(false), tt.start, tt.end, tt.text)
		}
	}

	for _, tt := range []struct {
		name, block string
		line        int
		summary     string
	}{
		{"not a size", "rates {\n  quota_down = \"lots\"\n}", 12, "Invalid quota"},
		{"negative", "rates {\n  quota_up = \"-1GiB\"\n}", 12, "Invalid quota"},
		{"period not a duration", "rates {\n  quota_period = \"daily\"\n}", 12, "Invalid quota period"},
		{"period too short", "rates {\n  quota_period = \"30s\"\n}", 12, "Invalid quota period"},
		{"period too long", "rates {\n  quota_period = \"9000h\"\n}", 12, "Invalid quota period"},
		{"period not whole seconds", "rates {\n  quota_period = \"90.5s\"\n}", 12, "Invalid quota period"},
		{"class quota", "rates {\n  class \"c\" {\n    users = [\"x\"]\n    quota_up = \"1 ton\"\n  }\n}", 14, "Invalid quota"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse([]byte(listener+tt.block+"\n"), "quota.hcl")
			if !diags.HasErrors() {
				t.Fatalf("accepted:\n%s", tt.block)
			}
			if d := diags[0]; d.Summary != tt.summary || d.Subject == nil || d.Subject.Start.Line != tt.line {
				t.Fatalf("got %q at %v (%s), want %q at line %d", d.Summary, d.Subject, d.Detail, tt.summary, tt.line)
			}
		})
	}
}
