package proxy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/proxy/ftptest"
)

// BenchmarkNOOP measures the round trip of NOOP and PWD against a real
// vsftpd, straight to it in clear and through ftpsgate under TLS, in the
// same run, and reports the median and 99th percentile of each (make bench
// runs it; `go test -run '^$' -bench NOOP ./proxy/`). NOOP after login is
// forwarded, so both paths reach vsftpd.
func BenchmarkNOOP(b *testing.B) {
	be := ftptest.Vsftpd(b, ftptest.VsftpdOptions{})
	g := startGate(b, be.Addr, gateOptions{})
	for _, path := range []string{"direct", "proxied"} {
		for _, verb := range []string{"NOOP", "PWD"} {
			b.Run(path+"/"+verb, func(b *testing.B) {
				var c *ftptest.Conn
				if path == "direct" {
					c = ftptest.Dial(b, be.Addr)
					c.Cmd(331, "USER %s", be.User)
					c.Cmd(230, "PASS %s", be.Password)
				} else {
					c = ftptest.Dial(b, g.explicit)
					c.AuthTLS(g.certs.ClientConfig())
					c.Login(be.User, be.Password)
				}
				want := map[string]int{"NOOP": 200, "PWD": 257}[verb]
				rtts := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					c.Cmd(want, "%s", verb)
					rtts = append(rtts, time.Since(start))
				}
				b.StopTimer()
				slices.Sort(rtts)
				b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99-µs")
				c.Cmd(221, "QUIT")
			})
		}
	}
}
