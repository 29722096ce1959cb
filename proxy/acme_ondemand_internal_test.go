package proxy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/time/rate"

	"github.com/ftpsgate/ftpsgate/proxy/config"
)

// TestOnDemandRefusalLog: past the on_demand rate, a client that sends
// one allowed name after another (a *. pattern allows any label) gets the
// default certificate each time; every refusal is counted, but only the
// first of each minute is logged, the next one saying how many were not.
func TestOnDemandRefusalLog(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	am := &acmeManager{cfg: &config.ACME{Name: "ca", OnDemand: &config.ACMEOnDemand{Allow: []string{"*.customers.test"},
		Orders: 1, Per: time.Hour}}, log: zap.New(core), m: newMetrics(&Server{})}
	od := &onDemand{am: am, admitted: map[string]time.Time{}, obtained: map[string]bool{},
		limiter: rate.NewLimiter(rate.Every(time.Hour), 1)}
	if err := od.decide(context.Background(), "a.customers.test"); err != nil {
		t.Fatalf("the first name, within the rate: %v", err)
	}
	for i := range 50 {
		if err := od.decide(context.Background(), fmt.Sprintf("x%d.customers.test", i)); !errors.Is(err, errOnDemandRate) {
			t.Fatalf("name %d past the rate: %v", i, err)
		}
	}
	const msg = "on-demand certificate refused: the on_demand rate is spent; the handshake gets the default certificate"
	if n := logs.FilterMessage(msg).Len(); n != 1 {
		t.Fatalf("%d warnings for 50 refusals within a minute, want 1", n)
	}
	if got := testutil.ToFloat64(am.m.acmeOnDemandRefused.WithLabelValues("ca")); got != 50 {
		t.Fatalf("refusals counted: %v, want 50", got)
	}
	od.rateLog.last = time.Now().Add(-refusalLogPeriod) // a minute later
	od.decide(context.Background(), "late.customers.test")
	w := logs.FilterMessage(msg).All()
	if len(w) != 2 || w[1].ContextMap()["not_logged_since_last"] != int64(49) {
		t.Fatalf("warnings %v; the second should say 49 were not logged", w)
	}
}
