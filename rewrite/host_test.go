package rewrite

import "testing"

func TestParseHOST(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"ftp.example.com", "ftp.example.com"},
		{"FTP.Example.COM.", "ftp.example.com"},
		{"files-1.internal", "files-1.internal"},
		{"localhost", "localhost"},
		{"[127.0.0.1]", "[127.0.0.1]"},
		{"[::1]", "[::1]"},
		{"[2001:DB8::1]", "[2001:db8::1]"},
		{"", ""},
		{".", ""},
		{"a..b", ""},
		{"-a.example", ""},
		{"a-.example", ""},
		{"under_score.example", ""},
		{"ftp.example.com:21", ""},
		{"127.0.0.1:21", ""},
		{"[::1", ""},
		{"[fe80::1%eth0]", ""},
		{"[ftp.example.com]", ""},
		{"a b", ""},
		{"a\x00b", ""},
		{string(make([]byte, 64)) + ".example", ""},
	} {
		got, err := ParseHOST(tc.arg)
		if tc.want == "" {
			if err == nil {
				t.Errorf("HOST %q accepted as %q", tc.arg, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("HOST %q = %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
}
