package httpapi

import (
	"context"
	"net/http"

	"github.com/medmesh/medmesh/node/api"
)

// KeyRotator is what the key routes need (node/keys).
type KeyRotator interface {
	Rotate(ctx context.Context, destroyOld bool) (*api.KeyRotateResult, error)
}

// Keys serves `medmesh keys rotate`.
type Keys struct{ S KeyRotator }

// Routes implements Area.
func (a Keys) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		var req api.KeyRotateRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := a.S.Rotate(r.Context(), req.DestroyOld)
		Reply(w, res, err)
	})
}
