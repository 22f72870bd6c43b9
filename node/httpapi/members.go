package httpapi

import (
	"context"
	"net/http"

	"github.com/medmesh/medmesh/node/api"
)

// MembersService is what the membership routes need (node/membership).
type MembersService interface {
	Members(ctx context.Context) ([]api.Member, error)
	Invite(ctx context.Context, req api.InviteRequest) (*api.InviteResult, error)
	Remove(ctx context.Context, req api.RemoveRequest) (*api.RemoveResult, error)
}

// Members serves `medmesh members`, `medmesh network invite` and
// `medmesh network remove`.
type Members struct{ S MembersService }

// Routes implements Area.
func (a Members) Routes(m Mux) {
	m.HandleFunc("GET "+p+"/members", func(w http.ResponseWriter, r *http.Request) {
		ms, err := a.S.Members(r.Context())
		Reply(w, ms, err)
	})
	m.HandleFunc("POST "+p+"/network/invite", func(w http.ResponseWriter, r *http.Request) {
		var req api.InviteRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := a.S.Invite(r.Context(), req)
		Reply(w, res, err)
	})
	m.HandleFunc("POST "+p+"/network/remove", func(w http.ResponseWriter, r *http.Request) {
		var req api.RemoveRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := a.S.Remove(r.Context(), req)
		Reply(w, res, err)
	})
}
