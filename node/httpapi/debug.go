package httpapi

import (
	"net/http"
	"net/http/pprof"
)

// Debug serves Prometheus metrics at /metrics and, as Kubo does, Go's
// profiler at /debug/pprof/ (behind the same token as everything else):
// what an operator, or scripts/bench.sh, reaches for when a node is slow.
type Debug struct {
	Metrics http.Handler
}

// Routes implements Area.
func (a Debug) Routes(m Mux) {
	m.Handle("GET /metrics", a.Metrics)
	m.HandleFunc("GET /debug/pprof/", pprof.Index)
	m.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	m.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
