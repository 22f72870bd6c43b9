package httpapi

import (
	"net/http"
	"net/http/pprof"

	"github.com/medmesh/medmesh/node/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Debug serves Prometheus metrics at /metrics and, as Kubo does, Go's
// profiler at /debug/pprof/ (behind the same token as everything else):
// what an operator, or scripts/bench.sh, reaches for when a node is slow.
type Debug struct {
	Metrics prometheus.Gatherer
}

// Routes implements Area.
func (a Debug) Routes(m Mux) {
	m.Handle("GET /metrics", promhttp.HandlerFor(a.Metrics, promhttp.HandlerOpts{}))
	m.HandleFunc("GET /debug/pprof/", pprof.Index)
	m.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	m.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Identity serves GET /v1/id: the node's peer, network, organisation and
// membership (`medmesh id`).
type Identity struct {
	Of func() api.IDInfo
}

// Routes implements Area.
func (a Identity) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/id", func(w http.ResponseWriter, r *http.Request) {
		api.JSON(w, http.StatusOK, a.Of())
	})
}
