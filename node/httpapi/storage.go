package httpapi

import (
	"context"
	"net/http"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/gc"
)

// Collector is what the storage routes need (node/gc.Service).
type Collector interface {
	GC(ctx context.Context) (gc.Result, error)
	Stat(ctx context.Context) (gc.Stat, error)
}

// Storage serves `medmesh gc` and `medmesh repo stat`.
type Storage struct{ S Collector }

// Routes implements Area.
func (a Storage) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/gc", a.gc)
	m.HandleFunc("GET "+p+"/repo/stat", a.stat)
}

func (a Storage) gc(w http.ResponseWriter, r *http.Request) {
	res, err := a.S.GC(r.Context())
	Reply(w, api.GCResult(res), err)
}

func (a Storage) stat(w http.ResponseWriter, r *http.Request) {
	st, err := a.S.Stat(r.Context())
	Reply(w, api.RepoStat(st), err)
}
