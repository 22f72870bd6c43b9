package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
)

// Eraser is what the erasure route needs (node/erasure).
type Eraser interface {
	Erase(ctx context.Context, id cid.Cid, version int) (*api.DeleteResult, error)
}

// Erasure serves `medmesh delete`.
type Erasure struct{ S Eraser }

// Routes implements Area.
func (a Erasure) Routes(m Mux) {
	m.HandleFunc("DELETE "+p+"/records/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := PathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		version := 0
		if v := r.URL.Query().Get("version"); v != "" {
			if version, err = strconv.Atoi(v); err != nil || version < 1 {
				api.Fail(w, fault.Invalidf("versions are numbered from 1", "bad version %q", v))
				return
			}
		}
		res, err := a.S.Erase(r.Context(), id, version)
		Reply(w, res, err)
	})
}
