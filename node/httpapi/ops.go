package httpapi

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Health serves GET /api/v1/health: this node's view of the network.
type Health struct {
	H interface {
		Check(ctx context.Context) api.Health
	}
}

// Routes implements Area.
func (a Health) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/health", func(w http.ResponseWriter, r *http.Request) {
		Reply(w, a.H.Check(r.Context()), nil)
	})
}

// Instrument counts the API's requests by route pattern (never the raw
// path: record IDs would make a series each), method and status, and
// times them: medmesh_api_requests_total and
// medmesh_api_request_duration_seconds.
func Instrument(s *api.Server, reg prometheus.Registerer) {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medmesh_api_requests_total", Help: "API requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "medmesh_api_request_duration_seconds", Help: "Time to answer an API request (a download: until its last byte), by route pattern and method.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"route", "method"})
	reg.MustRegister(reqs, dur)
	s.Observe(func(method, pattern string, code int, d time.Duration) {
		if pattern == "" {
			pattern = "unmatched"
		}
		switch method { // anyone on loopback may send any method: bound the series
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch:
		default:
			method = "other"
		}
		reqs.WithLabelValues(pattern, method, strconv.Itoa(code)).Inc()
		dur.WithLabelValues(pattern, method).Observe(d.Seconds())
	})
}

// Backup serves GET /api/v1/backup/state: what `medmesh backup` takes from
// a running node besides the repo's files; and GET
// /api/v1/backup/auditlog?size=N: the export of the audit log's first N
// leaves (the state says N, and how many bytes that is).
type Backup struct {
	B interface {
		BackupState(ctx context.Context) (api.BackupState, error)
		ExportAuditLog(ctx context.Context, size int64, w io.Writer) (int64, error)
	}
}

// Routes implements Area.
func (a Backup) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/backup/state", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.B.BackupState(r.Context())
		Reply(w, st, err)
	})
	m.HandleFunc("GET "+p+"/backup/auditlog", func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		if err != nil || size < 1 {
			api.Fail(w, api.Errorf(http.StatusBadRequest, "give size=N, the tree size GET "+p+"/backup/state reported", "bad size %q", r.URL.Query().Get("size")))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		// A failure after the first byte cannot change the status: the
		// client checks the length the state announced, and a restore the
		// tree's root.
		if _, err := a.B.ExportAuditLog(r.Context(), size, w); err != nil {
			api.Fail(w, err)
		}
	})
}
