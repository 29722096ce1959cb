package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the agent's health and metrics, for health_address:
// /healthz answers 200 while at least one session with the edge is
// established, else 503 (the edge cannot reach the FTP server through
// this agent); /metrics has the agent's counters in Prometheus' format.
// It carries no secret and no credential: keep it on loopback or a
// management network.
func (a *Agent) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	ns := "ftpsgate_agent"
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "sessions_connected",
			Help: "Sessions with the edge established now."}, func() float64 { return float64(a.connected.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "reconnects_total",
			Help: "Sessions with the edge established again after one ended or failed."}, func() float64 { return float64(a.reconnects.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "streams_active",
			Help: "Streams (connections to targets) being served now."}, func() float64 { return float64(a.streams.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "streams_refused_total",
			Help: "Stream requests refused: outside allow_targets, malformed, or the target unreachable."}, func() float64 { return float64(a.refused.Load()) }),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if a.connected.Load() == 0 {
			http.Error(w, "not connected to the edge", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
